package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
)

// ErrFrameTooLarge is returned for a frame whose length prefix exceeds the
// limit of its kind.
var ErrFrameTooLarge = errors.New("protocol: frame too large")

// frameChunk is how much of a frame's body ReadFrame allocates before the
// bytes have arrived. A peer that announces a large frame and sends nothing
// costs the reader this much, not the announced length.
const frameChunk = 64 << 10

// WriteFrame writes v as one frame: a 4-byte big-endian length, then v as
// JSON. It refuses to write a frame over limit. The frame goes out in one
// Write call, so on a yamux stream it is one data frame.
func WriteFrame(w io.Writer, v any, limit int) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("protocol: encode frame: %w", err)
	}
	if len(body) > limit || uint64(len(body)) > math.MaxUint32 {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(body), limit)
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err = w.Write(buf)
	return err
}

// ReadFrame reads one frame written by WriteFrame into v. A frame over limit
// is refused before its body is read; unknown JSON fields are ignored. It
// returns io.EOF, unwrapped, only when r ended cleanly before the first
// byte of a frame; a frame cut short is io.ErrUnexpectedEOF (wrapped).
func ReadFrame(r io.Reader, v any, limit int) error {
	var prefix [4]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("protocol: read frame length: %w", err)
	}
	n := binary.BigEndian.Uint32(prefix[:])
	if uint64(n) > uint64(max(limit, 0)) {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, limit)
	}
	body, err := readBody(r, int(n))
	if err != nil {
		return fmt.Errorf("protocol: read frame: %w", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("protocol: decode frame: %w", err)
	}
	return nil
}

// readBody reads exactly n bytes, growing its buffer as bytes arrive rather
// than trusting n up front. The buffer never grows past n.
func readBody(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, frameChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*cap(buf), n))
			copy(grown, buf)
			buf = grown
		}
		m, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}
