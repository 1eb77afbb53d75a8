package protocol_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/hookrelay/hookrelay/protocol"
)

// BenchmarkFrameCodec writes and reads the request frame of a GitHub-like
// delivery with 20 headers (the frame alone; no body).
func BenchmarkFrameCodec(b *testing.B) {
	req := validRequest(0)
	var buf bytes.Buffer
	if err := protocol.WriteRequest(&buf, req, nil); err != nil {
		b.Fatal(err)
	}
	frameBytes := buf.Len()
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := protocol.WriteRequest(&buf, req, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := protocol.ReadRequest(&buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(frameBytes), "frame-bytes")
}

// BenchmarkStreamThroughput runs whole deliveries, one at a time, over a
// yamux session on a Conn over loopback WebSocket: open a stream, send the
// request frame and body, read the agent's response frame.
func BenchmarkStreamThroughput(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			agent, relay := sessionPair(b)
			serveDeliveries(b, agent, func(req *protocol.DeliveryRequest, body io.Reader) (*protocol.DeliveryResponse, []byte, error) {
				n, err := io.Copy(io.Discard, body)
				if err != nil || n != req.BodyLength {
					return nil, nil, fmt.Errorf("read %d of %d body bytes: %v", n, req.BodyLength, err)
				}
				return &protocol.DeliveryResponse{Status: 204}, nil, nil
			})
			body := randomBytes(9, size)
			req := validRequest(int64(size))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				resp, _, err := deliver(relay, req, bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				if resp.Status != 204 {
					b.Fatalf("status %d", resp.Status)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
