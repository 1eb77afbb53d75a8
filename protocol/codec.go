package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// The binary encoding of delivery frames (SPEC.md, section 6): unsigned
// varints, zig-zag signed varints, and strings as a varint length followed
// by the bytes, which may be any bytes. Decoding works on one string that
// holds the whole frame, so every string field of a decoded frame is a
// slice of it: one allocation for all of them.

// errShortFrame is a frame that ends inside a field.
var errShortFrame = errors.New("protocol: frame ends inside a field")

func appendUint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func appendString(b []byte, s string) []byte {
	return append(appendUint(b, uint64(len(s))), s...)
}

func appendHeaders(b []byte, hs []Header) []byte {
	b = appendUint(b, uint64(len(hs)))
	for _, h := range hs {
		b = appendString(appendString(b, h.Name), h.Value)
	}
	return b
}

// appendTime writes t as seconds since the Unix epoch (signed) and
// nanoseconds; the zone is not kept.
func appendTime(b []byte, t time.Time) []byte {
	return appendUint(binary.AppendVarint(b, t.Unix()), uint64(t.Nanosecond()))
}

// Times on the wire lie in years 1 to 9999, as RFC 3339 can write them.
const (
	minUnixSeconds = -62135596800 // 0001-01-01T00:00:00Z
	maxUnixSeconds = 253402300799 // 9999-12-31T23:59:59Z
)

// decoder reads fields from a frame. The first error sticks: later reads
// return zero values, and err says what went wrong first.
type decoder struct {
	s   string
	off int
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// uint reads an unsigned varint, as binary.Uvarint does.
func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	var v uint64
	var shift uint
	for i := range binary.MaxVarintLen64 {
		if d.off+i >= len(d.s) {
			d.fail(errShortFrame)
			return 0
		}
		c := d.s[d.off+i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			d.off += i + 1
			return v | uint64(c)<<shift
		}
		v |= uint64(c&0x7f) << shift
		shift += 7
	}
	d.fail(errors.New("protocol: varint longer than 64 bits"))
	return 0
}

// int63 reads an unsigned varint that must fit an int64.
func (d *decoder) int63(field string) int64 {
	v := d.uint()
	if v > math.MaxInt64 {
		d.fail(fmt.Errorf("protocol: %s %d out of range", field, v))
		return 0
	}
	return int64(v)
}

// int31 reads an unsigned varint that must fit an int32.
func (d *decoder) int31(field string) int {
	v := d.uint()
	if v > math.MaxInt32 {
		d.fail(fmt.Errorf("protocol: %s %d out of range", field, v))
		return 0
	}
	return int(v)
}

// string reads a length-prefixed string.
func (d *decoder) string() string {
	n := d.uint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.s)-d.off) {
		d.fail(errShortFrame)
		return ""
	}
	s := d.s[d.off : d.off+int(n)]
	d.off += int(n)
	return s
}

// headers reads a header list; nil when it is empty.
func (d *decoder) headers() []Header {
	n := d.uint()
	if d.err != nil || n == 0 {
		return nil
	}
	if n > uint64(len(d.s)-d.off)/2 { // a header takes at least two bytes
		d.fail(errShortFrame)
		return nil
	}
	hs := make([]Header, n)
	for i := range hs {
		hs[i].Name = d.string()
		hs[i].Value = d.string()
	}
	return hs
}

// time reads a time written by appendTime, in UTC.
func (d *decoder) time(field string) time.Time {
	ux := d.uint()
	sec := int64(ux >> 1) // zig-zag, as binary.AppendVarint writes it
	if ux&1 != 0 {
		sec = ^sec
	}
	nsec := d.uint()
	if d.err != nil {
		return time.Time{}
	}
	if sec < minUnixSeconds || sec > maxUnixSeconds || nsec >= uint64(time.Second) {
		d.fail(fmt.Errorf("protocol: %s out of range (years 1 to 9999)", field))
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// writeChunk is the most a Frame writes at once: a yamux data frame of this
// size is one WebSocket message (MaxMessage with the frame's header). A
// frame and a body that fit in it go out in one Write, copied into the
// frame's buffer; a larger body fills the first Write and follows in
// writes of this size from the caller's slice.
//
// Writes larger than one message gain nothing: yamux sends a Write as data
// frames of up to the stream window (8 MiB), copies each whole into a
// buffer it keeps for the session's life, and sends nothing else, not even
// another stream's frame, until it is written; its receiver grows a buffer
// to hold the frame. Message-sized writes keep all of those small.
const writeChunk = MaxMessage - muxHeaderSize

// maxPooled bounds the buffers kept for reuse.
const maxPooled = 2 * writeChunk

// framePool holds encode and decode buffers. It is the one package-level
// variable: a pool shared by every session, as net/http shares its bufio
// buffers, so an idle session holds no frame buffer.
var framePool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4<<10)
	return &b
}}

func getBuffer() *[]byte { return framePool.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) <= maxPooled {
		*b = (*b)[:0]
		framePool.Put(b)
	}
}

// Frame is a delivery request or response encoded for the wire, with its
// body: EncodeRequest or EncodeResponse check the value against SPEC.md
// and encode it, WriteTo writes it, Release gives its buffer back. A
// small body travels in the frame's buffer, so the whole delivery is one
// Write.
type Frame struct {
	buf  *[]byte // the length prefix, the frame and the body's start; nil after Release
	body []byte  // the rest of the body, written after buf
}

// EncodeRequest checks req, and that body holds exactly req.BodyLength
// bytes, and encodes them.
func EncodeRequest(req *DeliveryRequest, body []byte) (Frame, error) {
	return newFrame(req.BodyLength, body, func(b []byte) ([]byte, error) { return AppendRequest(b, req) })
}

// EncodeResponse checks resp, and that body holds exactly resp.BodyLength
// bytes, and encodes them.
func EncodeResponse(resp *DeliveryResponse, body []byte) (Frame, error) {
	return newFrame(resp.BodyLength, body, func(b []byte) ([]byte, error) { return AppendResponse(b, resp) })
}

func newFrame(bodyLength int64, body []byte, appendFrame func([]byte) ([]byte, error)) (Frame, error) {
	if int64(len(body)) != bodyLength {
		return Frame{}, fmt.Errorf("protocol: body has %d bytes, the frame announces %d", len(body), bodyLength)
	}
	buf := getBuffer()
	b, err := appendFrame((*buf)[:0])
	*buf = b
	if err != nil {
		putBuffer(buf)
		return Frame{}, err
	}
	head := min(len(body), max(writeChunk-len(b), 0))
	*buf = append(b, body[:head]...)
	return Frame{buf: buf, body: body[head:]}, nil
}

// AppendRequest checks req and appends its request frame, length prefix
// included, to b. The BodyLength body bytes are not part of it.
func AppendRequest(b []byte, req *DeliveryRequest) ([]byte, error) {
	if err := req.Validate(); err != nil {
		return b, err
	}
	return appendFrame(b, req.appendFields)
}

// AppendResponse checks resp and appends its response frame, length
// prefix included, to b.
func AppendResponse(b []byte, resp *DeliveryResponse) ([]byte, error) {
	if err := resp.Validate(); err != nil {
		return b, err
	}
	return appendFrame(b, resp.appendFields)
}

// appendFrame appends a length prefix and the fields appendFields writes,
// or returns b unchanged with ErrFrameTooLarge.
func appendFrame(b []byte, appendFields func([]byte) []byte) ([]byte, error) {
	start := len(b)
	b = appendFields(append(b, 0, 0, 0, 0))
	n := len(b) - start - 4
	if n > MaxHeaderFrame {
		return b[:start], fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, MaxHeaderFrame)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(n))
	return b, nil
}

// Len is the number of bytes WriteTo writes.
func (f *Frame) Len() int { return len(*f.buf) + len(f.body) }

// WriteTo writes the frame and its body: in one Write when both fit in
// one WebSocket message, else in writes of that size.
func (f *Frame) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(*f.buf)
	written := int64(n)
	for body := f.body; err == nil && len(body) > 0; {
		chunk := body[:min(len(body), writeChunk)]
		n, err = w.Write(chunk)
		written += int64(n)
		body = body[len(chunk):]
	}
	if err != nil {
		return written, fmt.Errorf("protocol: wrote %d of %d bytes: %w", written, f.Len(), err)
	}
	return written, nil
}

// Release gives the frame's buffer back for reuse; the Frame must not be
// used after. It may be called more than once.
func (f *Frame) Release() {
	if f.buf != nil {
		putBuffer(f.buf)
		f.buf, f.body = nil, nil
	}
}

// readFrame reads one length-prefixed frame of at most limit bytes and
// returns its bytes as a string. It returns io.EOF, unwrapped, only when r
// ended cleanly before the frame.
func readFrame(r io.Reader, limit int) (string, error) {
	var prefix [4]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return "", io.EOF
		}
		return "", fmt.Errorf("protocol: read frame length: %w", err)
	}
	n := binary.BigEndian.Uint32(prefix[:])
	if uint64(n) > uint64(max(limit, 0)) {
		return "", fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, limit)
	}
	if n == 0 {
		return "", errors.New("protocol: empty frame")
	}
	if n > maxPooled {
		body, err := readBody(r, int(n))
		if err != nil {
			return "", fmt.Errorf("protocol: read frame: %w", err)
		}
		return string(body), nil
	}
	buf := getBuffer()
	defer putBuffer(buf)
	b := append((*buf)[:0], make([]byte, n)...)
	*buf = b
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return "", fmt.Errorf("protocol: read frame: %w", err)
	}
	return string(b), nil
}
