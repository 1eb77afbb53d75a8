package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A header list is kept in a database as a compact binary encoding rather
// than JSON, whose strings hold Unicode text and would replace bytes that
// are not valid UTF-8 (a header value may hold any byte but CR, LF and NUL):
//
//	list   = version count *header   ; an empty list is zero bytes
//	header = length name length value
//
// version is the byte 1; count and each length are unsigned varints
// (encoding/binary's Uvarint). Names and values are their bytes as they
// are.
const headersVersion = 1

// errBadHeaders is wrapped by every error of ParseHeaders.
var errBadHeaders = errors.New("bad header list encoding")

// AppendHeaders appends the encoding of hs to dst and returns it.
func AppendHeaders(dst []byte, hs []Header) []byte {
	if len(hs) == 0 {
		return dst
	}
	dst = append(dst, headersVersion)
	dst = binary.AppendUvarint(dst, uint64(len(hs)))
	for _, h := range hs {
		dst = binary.AppendUvarint(dst, uint64(len(h.Name)))
		dst = append(dst, h.Name...)
		dst = binary.AppendUvarint(dst, uint64(len(h.Value)))
		dst = append(dst, h.Value...)
	}
	return dst
}

// ParseHeaders decodes what AppendHeaders wrote; nil for an empty list. The
// names and values share one copy of b.
func ParseHeaders(b []byte) ([]Header, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != headersVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", errBadHeaders, b[0], headersVersion)
	}
	s := string(b) // one allocation for every name and value
	pos := 1
	count, err := uvarint(s, &pos)
	if err != nil {
		return nil, err
	}
	// Each header takes at least two bytes: bound the allocation by what
	// the input can hold.
	if count == 0 || count > uint64(len(s)-pos)/2 {
		return nil, fmt.Errorf("%w: %d headers in %d bytes", errBadHeaders, count, len(s)-pos)
	}
	hs := make([]Header, count)
	for i := range hs {
		if hs[i].Name, err = field(s, &pos); err != nil {
			return nil, err
		}
		if hs[i].Value, err = field(s, &pos); err != nil {
			return nil, err
		}
	}
	if pos != len(s) {
		return nil, fmt.Errorf("%w: %d bytes after the last header", errBadHeaders, len(s)-pos)
	}
	return hs, nil
}

// uvarint reads an unsigned varint of s at *pos and moves past it.
func uvarint(s string, pos *int) (uint64, error) {
	var v uint64
	for shift := 0; shift < 64; shift += 7 {
		if *pos >= len(s) {
			return 0, fmt.Errorf("%w: truncated length", errBadHeaders)
		}
		c := s[*pos]
		*pos++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: length overflows", errBadHeaders)
}

// field reads a length and that many bytes of s at *pos.
func field(s string, pos *int) (string, error) {
	n, err := uvarint(s, pos)
	if err != nil {
		return "", err
	}
	if n > uint64(len(s)-*pos) {
		return "", fmt.Errorf("%w: field of %d bytes, %d left", errBadHeaders, n, len(s)-*pos)
	}
	f := s[*pos : *pos+int(n)]
	*pos += int(n)
	return f, nil
}
