package protocol_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/protocol"
)

// frame builds a raw frame: a 4-byte big-endian length, then body.
func frame(length uint32, body string) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	return append(b, body...)
}

// rawFrame builds a well-formed frame around body.
func rawFrame(body string) []byte { return frame(uint32(len(body)), body) }

func TestWriteFrame(t *testing.T) {
	t.Parallel()
	type msg struct {
		A string `json:"a"`
	}
	const limit = 16
	exact := msg{A: strings.Repeat("x", limit-len(`{"a":""}`))} // encodes to exactly limit bytes
	tests := []struct {
		name    string
		v       any
		want    []byte
		wantErr error
	}{
		{"small", msg{A: "b"}, rawFrame(`{"a":"b"}`), nil},
		{"exact limit", exact, rawFrame(`{"a":"` + exact.A + `"}`), nil},
		{"one over", msg{A: exact.A + "x"}, nil, protocol.ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			err := protocol.WriteFrame(&buf, tt.v, limit)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("WriteFrame error = %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(buf.Bytes(), tt.want) {
				t.Errorf("wrote %q, want %q", buf.Bytes(), tt.want)
			}
		})
	}
}

func TestWriteFrameUnencodable(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := protocol.WriteFrame(&buf, make(chan int), 1024); err == nil {
		t.Fatal("WriteFrame of a channel succeeded")
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %d bytes for an unencodable value", buf.Len())
	}
}

func TestReadFrame(t *testing.T) {
	t.Parallel()
	type msg struct {
		A string `json:"a"`
		N int    `json:"n"`
	}
	const limit = 64
	exactBody := `{"a":"` + strings.Repeat("y", limit-len(`{"a":""}`)) + `"}`
	tests := []struct {
		name    string
		in      []byte
		want    msg
		wantErr error  // matched with errors.Is when set
		errText string // a part of the error text when set
	}{
		{name: "valid", in: rawFrame(`{"a":"b","n":3}`), want: msg{A: "b", N: 3}},
		{name: "exact limit", in: rawFrame(exactBody), want: msg{A: strings.Repeat("y", limit-len(`{"a":""}`))}},
		{name: "one over limit", in: rawFrame(exactBody + " "), wantErr: protocol.ErrFrameTooLarge},
		{name: "huge prefix", in: frame(0xFFFFFFFF, "{}"), wantErr: protocol.ErrFrameTooLarge},
		{name: "unknown fields ignored", in: rawFrame(`{"a":"b","later":{"x":[1,2]},"n":1}`), want: msg{A: "b", N: 1}},
		{name: "empty stream", in: nil, wantErr: io.EOF},
		{name: "truncated prefix", in: []byte{0, 0}, wantErr: io.ErrUnexpectedEOF},
		{name: "truncated body", in: frame(20, `{"a":"b"`), wantErr: io.ErrUnexpectedEOF},
		{name: "zero length", in: frame(0, ""), errText: "decode frame"},
		{name: "bad JSON", in: rawFrame(`{"a":`), errText: "decode frame"},
		{name: "wrong JSON type", in: rawFrame(`{"a":1}`), errText: "decode frame"},
		{name: "trailing garbage", in: rawFrame(`{"a":"b"} x`), errText: "decode frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got msg
			err := protocol.ReadFrame(bytes.NewReader(tt.in), &got, limit)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ReadFrame error = %v, want %v", err, tt.wantErr)
				}
			case tt.errText != "":
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("ReadFrame error = %v, want one containing %q", err, tt.errText)
				}
			case err != nil:
				t.Fatalf("ReadFrame: %v", err)
			case got != tt.want:
				t.Errorf("ReadFrame = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestReadFrameCleanEOFIsBare checks that the end of a stream between frames
// is io.EOF itself, which loops over a control stream compare with ==.
func TestReadFrameCleanEOFIsBare(t *testing.T) {
	t.Parallel()
	r := bytes.NewReader(rawFrame(`{}`))
	var v struct{}
	if err := protocol.ReadFrame(r, &v, 64); err != nil {
		t.Fatal(err)
	}
	if err := protocol.ReadFrame(r, &v, 64); err != io.EOF {
		t.Fatalf("ReadFrame at the end = %v, want io.EOF", err)
	}
}

// TestReadFrameSequence reads several frames written back to back.
func TestReadFrameSequence(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	for i := range 5 {
		if err := protocol.WriteFrame(&buf, map[string]int{"i": i}, 64); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		var v map[string]int
		if err := protocol.ReadFrame(&buf, &v, 64); err != nil {
			t.Fatal(err)
		}
		if v["i"] != i {
			t.Fatalf("frame %d holds %v", i, v)
		}
	}
}

// TestReadFrameAllocatesAsBytesArrive checks that a peer announcing a frame
// at the limit and sending only a few bytes does not make the reader
// allocate the announced length. Not parallel: it reads the process's
// allocation counter.
func TestReadFrameAllocatesAsBytesArrive(t *testing.T) {
	in := frame(protocol.MaxHeaderFrame, `{"a":"b"`)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var v map[string]any
	err := protocol.ReadFrame(bytes.NewReader(in), &v, protocol.MaxHeaderFrame)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadFrame error = %v, want io.ErrUnexpectedEOF", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > protocol.MaxHeaderFrame/4 {
		t.Errorf("allocated %d bytes for a %d-byte announcement with 8 bytes sent", got, protocol.MaxHeaderFrame)
	}
}

// TestReadFrameLargeBody reads a frame larger than the first allocation
// step, arriving in small pieces.
func TestReadFrameLargeBody(t *testing.T) {
	t.Parallel()
	want := strings.Repeat("z", 300<<10)
	var buf bytes.Buffer
	if err := protocol.WriteFrame(&buf, want, protocol.MaxHeaderFrame); err != nil {
		t.Fatal(err)
	}
	var got string
	r := &smallChunks{r: &buf, n: 1000}
	if err := protocol.ReadFrame(r, &got, protocol.MaxHeaderFrame); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("read %d bytes, want %d", len(got), len(want))
	}
}

// smallChunks returns at most n bytes per Read, like a slow network.
type smallChunks struct {
	r io.Reader
	n int
}

func (c *smallChunks) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.n)])
}
