package protocol_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/yamux"

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
				resp, _, err := deliver(relay, req, body)
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

// BenchmarkResponseVsRequestBody moves an 8 MiB body each way over a
// session: as a request (into the agent's 8 MiB window) and as an app's
// answer (into the relay's 256 KiB window). Compare the two MB/s figures
// of one run: the relay's small window is what bounds the memory an agent
// can make it hold.
func BenchmarkResponseVsRequestBody(b *testing.B) {
	const size = 8 << 20
	body := randomBytes(11, size)
	for _, dir := range []string{"request", "response"} {
		b.Run(dir, func(b *testing.B) {
			agent, relay := sessionPair(b)
			serveDeliveries(b, agent, func(req *protocol.DeliveryRequest, in io.Reader) (*protocol.DeliveryResponse, []byte, error) {
				if _, err := io.Copy(io.Discard, in); err != nil {
					return nil, nil, err
				}
				if dir == "request" {
					return &protocol.DeliveryResponse{Status: 204}, nil, nil
				}
				return &protocol.DeliveryResponse{Status: 200, BodyLength: size}, body, nil
			})
			req, in := validRequest(0), []byte(nil)
			if dir == "request" {
				req, in = validRequest(size), body
			}
			b.SetBytes(size)
			for b.Loop() {
				resp, got, err := deliverToEOF(relay, req, in)
				if err != nil || (dir == "response" && len(got) != size) {
					b.Fatalf("%+v %d %v", resp, len(got), err)
				}
			}
		})
	}
}

// deliverToEOF is deliver, then waits for the agent to close its side, so
// that the agent's last write has returned when the benchmark ends.
func deliverToEOF(relay *yamux.Session, req *protocol.DeliveryRequest, body []byte) (*protocol.DeliveryResponse, []byte, error) {
	st, err := relay.OpenStream()
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	if err := protocol.WriteRequest(st, req, body); err != nil {
		return nil, nil, err
	}
	resp, err := protocol.ReadResponse(st)
	if err != nil {
		return nil, nil, err
	}
	got, err := io.ReadAll(st) // the body, then the agent's FIN
	if err == nil && int64(len(got)) != resp.BodyLength {
		err = fmt.Errorf("%d body bytes, want %d", len(got), resp.BodyLength)
	}
	return resp, got, err
}

// BenchmarkStreamConcurrent runs deliveries of 1 KiB bodies from 32
// goroutines at once over one session, as a relay under 32 senders does.
func BenchmarkStreamConcurrent(b *testing.B) {
	agent, relay := sessionPair(b)
	serveDeliveries(b, agent, func(req *protocol.DeliveryRequest, body io.Reader) (*protocol.DeliveryResponse, []byte, error) {
		if n, err := io.Copy(io.Discard, body); err != nil || n != req.BodyLength {
			return nil, nil, fmt.Errorf("read %d of %d body bytes: %v", n, req.BodyLength, err)
		}
		return &protocol.DeliveryResponse{Status: 200, BodyLength: 2}, []byte("ok"), nil
	})
	body := randomBytes(9, 1<<10)
	req := validRequest(1 << 10)
	b.SetParallelism(16) // 32 goroutines on 2 cores
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, _, err := deliver(relay, req, body)
			if err != nil {
				b.Error(err)
				return
			}
			if resp.Status != 200 {
				b.Errorf("status %d", resp.Status)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}
