package webhook

import (
	"strconv"
	"strings"

	"github.com/hookrelay/hookrelay/protocol"
)

// Edit changes a stored request before it is replayed. The relay's replay
// API and "hookrelay events replay" take the same edits; they are applied
// in the order of the fields. Re-signing is not part of Edit: it needs the
// channel's secret, and comes after the edits (Signer.Sign).
type Edit struct {
	// Headers, when not nil, replaces every header line of the request
	// (the inspector's editor sends the whole list).
	Headers []protocol.Header
	// Remove drops every line of these names (any case).
	Remove []string
	// Set replaces the first line of each name (any case; the line keeps
	// its place, later lines of the name are dropped) or appends it.
	Set []protocol.Header
	// Body, when not nil, replaces the body.
	Body []byte
}

// IsZero reports whether e changes nothing.
func (e Edit) IsZero() bool {
	return e.Headers == nil && len(e.Remove) == 0 && len(e.Set) == 0 && e.Body == nil
}

// Validate checks the header lines e would write.
func (e Edit) Validate() error {
	for _, list := range [][]protocol.Header{e.Headers, e.Set} {
		for _, h := range list {
			if err := ValidHeader(h); err != nil {
				return err
			}
		}
	}
	for _, name := range e.Remove {
		if !ValidHeaderName(name) {
			return ValidHeader(protocol.Header{Name: name})
		}
	}
	return nil
}

// Apply returns the request's headers and body after the edits; headers
// and body are not changed. A Content-Length line, if the request has one,
// is set to the new body's length.
func (e Edit) Apply(headers []protocol.Header, body []byte) ([]protocol.Header, []byte) {
	out := append([]protocol.Header(nil), headers...)
	if e.Headers != nil {
		out = append(out[:0], e.Headers...)
	}
	for _, name := range e.Remove {
		out = Remove(out, name)
	}
	for _, h := range e.Set {
		out = Set(out, h.Name, h.Value)
	}
	if e.Body != nil {
		body = e.Body
	}
	for i, h := range out {
		if strings.EqualFold(h.Name, "Content-Length") {
			out[i].Value = strconv.Itoa(len(body))
		}
	}
	return out, body
}
