package webhook

import (
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/hookrelay/hookrelay/protocol"
)

// Get returns the value of the first header line named name (any case).
func Get(headers []protocol.Header, name string) (string, bool) {
	for _, h := range headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

// Set returns headers with the value of the first line named name (any
// case) replaced, keeping its place and the case of its name, and the
// later lines of that name removed; without such a line, name: value is
// appended. headers itself may be changed.
func Set(headers []protocol.Header, name, value string) []protocol.Header {
	out := headers[:0]
	found := false
	for _, h := range headers {
		if strings.EqualFold(h.Name, name) {
			if found {
				continue
			}
			found = true
			h.Value = value
		}
		out = append(out, h)
	}
	if !found {
		out = append(out, protocol.Header{Name: name, Value: value})
	}
	return out
}

// Remove returns headers without the lines named name (any case). headers
// itself may be changed.
func Remove(headers []protocol.Header, name string) []protocol.Header {
	out := headers[:0]
	for _, h := range headers {
		if !strings.EqualFold(h.Name, name) {
			out = append(out, h)
		}
	}
	return out
}

// ParseHeaderLine reads "Name: value" as the --header flags take it. The
// value is trimmed of blanks around it; it may be empty.
func ParseHeaderLine(line string) (protocol.Header, error) {
	name, value, ok := strings.Cut(line, ":")
	if !ok {
		return protocol.Header{}, fmt.Errorf("header %q: want 'Name: value'", line)
	}
	h := protocol.Header{Name: strings.TrimSpace(name), Value: strings.Trim(value, " \t")}
	if err := ValidHeader(h); err != nil {
		return protocol.Header{}, err
	}
	return h, nil
}

// ValidHeader reports whether h can be sent as an HTTP/1.1 header line: a
// name of token characters (RFC 9110) and a value without control
// characters but tab.
func ValidHeader(h protocol.Header) error {
	if !ValidHeaderName(h.Name) {
		return fmt.Errorf("header name %q is not a valid HTTP header name", h.Name)
	}
	if !httpguts.ValidHeaderFieldValue(h.Value) {
		return fmt.Errorf("header %s: the value holds a control character", h.Name)
	}
	return nil
}

// ValidHeaderName reports whether name is a non-empty RFC 9110 token.
func ValidHeaderName(name string) bool { return httpguts.ValidHeaderFieldName(name) }
