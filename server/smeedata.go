package server

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/url"
	"strconv"
	"strings"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/store"
)

// A smee-compatible message carries one webhook as the JSON object smee.io
// sends: the request's headers as top-level keys (lower-case names; repeats
// joined with ", " as Node.js joins them), then "body", "query" and
// "timestamp". smee-client turns every other top-level key back into a
// header, so nothing else may be added.
//
//	body       the JSON itself for a JSON body (application/json, */*+json),
//	           an object of the fields for a form (application/x-www-form-urlencoded),
//	           {} for an empty body, else the body as a string
//	query      the ingress request's query as an object
//	timestamp  when the relay received it, in milliseconds since 1970
//
// A JSON body is embedded as it came, not re-encoded, so a client that
// reads "body" as raw JSON (gosmee does) forwards the sender's bytes.

// smeeReserved are the top-level keys that are not headers; a header of
// that name is left out, as smee.io lets the later key win.
var smeeReserved = map[string]bool{"body": true, "query": true, "timestamp": true}

// appendSmeeMessage appends one SSE message for ev: its id (the event's
// cursor, opaque as in the events API; cur is its channel's), then its
// data, one "data:" line per line of the JSON.
func appendSmeeMessage(buf []byte, ev *store.Event, cur cursors) []byte {
	buf = append(buf, "id: "...)
	buf = append(buf, cur.encode(ev.Seq)...)
	buf = append(buf, '\n')
	data := appendSmeeData(nil, ev)
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		buf = append(buf, "data: "...)
		buf = append(buf, line...)
		buf = append(buf, '\n')
	}
	return append(buf, '\n')
}

// appendSmeeData appends the JSON object of one webhook. It contains no
// carriage return, so splitting it into SSE lines at "\n" and joining them
// again gives it back.
func appendSmeeData(buf []byte, ev *store.Event) []byte {
	var connection []string
	var contentType string
	for _, h := range ev.Headers {
		switch {
		case strings.EqualFold(h.Name, "Connection"):
			connection = append(connection, h.Value)
		case strings.EqualFold(h.Name, "Content-Type"):
			contentType = h.Value
		}
	}
	// Headers in the sender's order, each name once, at its first place.
	var names []string
	values := make(map[string][]string)
	for _, h := range ev.Headers {
		name := strings.ToLower(h.Name)
		if smeeReserved[name] || protocol.IsHopByHop(name, connection) {
			continue
		}
		if _, seen := values[name]; !seen {
			names = append(names, name)
		}
		values[name] = append(values[name], h.Value)
	}
	buf = append(buf, '{')
	for _, name := range names {
		buf = appendJSONString(buf, name)
		buf = append(buf, ':')
		buf = appendJSONString(buf, strings.Join(values[name], ", "))
		buf = append(buf, ',')
	}
	buf = append(buf, `"body":`...)
	buf = appendSmeeBody(buf, contentType, ev.Body)
	buf = append(buf, `,"query":`...)
	buf = appendFields(buf, ev.RawQuery)
	buf = append(buf, `,"timestamp":`...)
	buf = strconv.AppendInt(buf, ev.ReceivedAt.UnixMilli(), 10)
	return append(buf, '}')
}

// appendSmeeBody appends the body as smee.io shows it (see above).
func appendSmeeBody(buf []byte, contentType string, body []byte) []byte {
	if len(body) == 0 {
		return append(buf, "{}"...)
	}
	mediaType, _, _ := mime.ParseMediaType(contentType)
	switch {
	case (mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")) && json.Valid(body):
		if bytes.IndexByte(body, '\r') < 0 {
			return append(buf, body...)
		}
		// A carriage return can only be whitespace between tokens, and SSE
		// would turn it into a line break: drop the whitespace instead.
		var b bytes.Buffer
		_ = json.Compact(&b, body) // valid JSON compacts without error
		return append(buf, b.Bytes()...)
	case mediaType == "application/x-www-form-urlencoded":
		return appendFields(buf, string(body))
	default:
		return appendJSONString(buf, string(body))
	}
}

// appendFields appends URL-encoded fields (a query or a form) as a JSON
// object in their order: a field given once is a string, a repeated one
// an array of strings, as Node.js's querystring parses them. A value that
// does not decode is kept as written.
func appendFields(buf []byte, encoded string) []byte {
	var names []string
	values := make(map[string][]string)
	for pair := range strings.SplitSeq(encoded, "&") {
		if pair == "" {
			continue
		}
		name, value, _ := strings.Cut(pair, "=")
		name, value = unescapeField(name), unescapeField(value)
		if _, seen := values[name]; !seen {
			names = append(names, name)
		}
		values[name] = append(values[name], value)
	}
	buf = append(buf, '{')
	for i, name := range names {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, name)
		buf = append(buf, ':')
		vs := values[name]
		if len(vs) == 1 {
			buf = appendJSONString(buf, vs[0])
			continue
		}
		buf = append(buf, '[')
		for j, v := range vs {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, v)
		}
		buf = append(buf, ']')
	}
	return append(buf, '}')
}

func unescapeField(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// appendJSONString appends s as a JSON string. Bytes that are not UTF-8
// become U+FFFD; control characters, "\r" and "\n" among them, are escaped.
func appendJSONString(buf []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(buf, b...)
}
