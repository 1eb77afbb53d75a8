package wireheader

import (
	"bytes"
	"net/textproto"
	"strconv"
	"strings"
)

// The parsers in this file mirror, line for line, what Go's net/http server
// (net/http, net/textproto, net/http/internal) accepts for a request. The rule
// they follow: whenever net/http accepts a request, they must find the same
// header fields and the same body framing; whenever they are unsure they
// reject, and the recorder stops (the request then falls back to r.Header).
// Rejecting something net/http would accept costs only the fallback;
// accepting something differently would desynchronize the recorder, which
// Headers detects but which costs the rest of the connection.

// requestHead is a parsed header block.
type requestHead struct {
	method     string
	requestURI string
	protoMinor int // HTTP/1.x; HTTP/1.1 and later have chunked bodies and keep-alive by default
	fields     []Header
	folded     bool // some field was folded over several lines (obs-fold)
}

// framing is what the recorder needs of a header block: how its body is
// delimited and whether the connection is still HTTP/1.x afterwards.
type framing struct {
	chunked bool
	length  int64 // body length when not chunked
	post    bool  // net/http skips up to 4 stray CR/LF bytes after a POST
	final   bool  // the connection changes protocol after this request
}

// parseHead parses a header block (request line, header lines, empty line).
func parseHead(block string) (requestHead, bool) {
	var h requestHead
	s := lineScanner{rest: block}
	var ok bool
	if h.method, h.requestURI, h.protoMinor, ok = parseRequestLine(s.line()); !ok {
		return h, false
	}
	h.fields = make([]Header, 0, max(strings.Count(block, "\n")-2, 0))
	for s.field() {
		h.fields = append(h.fields, Header{Name: s.name, Value: s.value})
	}
	h.folded = s.folded
	return h, !s.bad
}

// parseFraming reads from a header block what net/http's readTransfer uses to
// delimit the body, and rejects blocks net/http would reject or that switch
// the connection to another protocol.
func parseFraming(block string) (framing, bool) {
	var fr framing
	s := lineScanner{rest: block}
	method, _, protoMinor, ok := parseRequestLine(s.line())
	if !ok {
		return fr, false
	}
	fr.post = method == "POST"
	fr.final = method == "CONNECT"
	var (
		teCount, clCount int
		te, cl           string
		clConflict       bool
	)
	for s.field() {
		switch {
		case sameName(s.name, "Transfer-Encoding"):
			if teCount == 0 {
				te = s.value
			}
			teCount++
		case sameName(s.name, "Content-Length"):
			// net/http accepts repeated Content-Length fields only when
			// their values are equal.
			if clCount == 0 {
				cl = textproto.TrimString(s.value)
			} else if textproto.TrimString(s.value) != cl {
				clConflict = true
			}
			clCount++
		case sameName(s.name, "Upgrade"):
			fr.final = true
		case sameName(s.name, "Connection"):
			if hasToken(s.value, "upgrade") {
				fr.final = true
			}
		}
	}
	if s.bad {
		return fr, false
	}
	// Transfer-Encoding is ignored on HTTP/1.0 requests; on HTTP/1.1 only a
	// single field reading "chunked" is accepted.
	if teCount > 0 && protoMinor >= 1 {
		if teCount != 1 || !strings.EqualFold(te, "chunked") {
			return fr, false
		}
		fr.chunked = true
	}
	// Content-Length is validated even when chunked encoding overrides it.
	if clCount > 0 {
		if clConflict || cl == "" {
			return fr, false
		}
		n, err := strconv.ParseUint(cl, 10, 63)
		if err != nil {
			return fr, false
		}
		if !fr.chunked {
			fr.length = int64(n)
		}
	}
	return fr, true
}

// parseRequestLine splits "METHOD request-URI HTTP/1.x" as net/http does and
// accepts only HTTP/1.x.
func parseRequestLine(line string) (method, requestURI string, protoMinor int, ok bool) {
	method, rest, ok1 := strings.Cut(line, " ")
	requestURI, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !isToken(method) {
		return "", "", 0, false
	}
	if len(proto) != len("HTTP/1.x") || !strings.HasPrefix(proto, "HTTP/1.") {
		return "", "", 0, false
	}
	minor := proto[len(proto)-1]
	if minor < '0' || minor > '9' {
		return "", "", 0, false
	}
	return method, requestURI, int(minor - '0'), true
}

// lineScanner walks a header block the way net/textproto's ReadMIMEHeader
// reads it: lines end at LF with one optional CR before it, the block ends at
// the first empty line, and lines starting with a space or tab continue the
// previous field.
type lineScanner struct {
	rest   string // unread part of the block
	name   string // current field, set by field
	value  string
	folded bool // a field was continued on another line
	bad    bool // the block is malformed
}

// line returns the next line without its line ending.
func (s *lineScanner) line() string {
	var line string
	if i := strings.IndexByte(s.rest, '\n'); i >= 0 {
		line, s.rest = s.rest[:i], s.rest[i+1:]
	} else {
		line, s.rest = s.rest, ""
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}

// field advances to the next header field. It returns false at the end of
// the block or when the block is malformed (then bad is set).
func (s *lineScanner) field() bool {
	line := s.line()
	if line == "" {
		return false
	}
	colon := strings.IndexByte(line, ':')
	if line[0] == ' ' || line[0] == '\t' || colon < 0 {
		// A continuation with no field before it, or no colon:
		// net/textproto rejects both.
		s.bad = true
		return false
	}
	name, value := line[:colon], trimOWS(line[colon+1:])
	if len(s.rest) > 0 && (s.rest[0] == ' ' || s.rest[0] == '\t') {
		// obs-fold: net/textproto trims each line and joins them with
		// one space, then trims the value's start only.
		kv := trimOWS(line)
		for len(s.rest) > 0 && (s.rest[0] == ' ' || s.rest[0] == '\t') {
			kv += " " + trimOWS(s.line())
		}
		value = kv[colon+1:]
		for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
			value = value[1:]
		}
		s.folded = true
	}
	if !isToken(name) || !validValue(value) {
		s.bad = true
		return false
	}
	s.name, s.value = name, value
	return true
}

// parseChunkLine parses a chunk-size line including its CRLF, as net/http's
// chunked reader does, and updates excess, its count of chunk overhead. ok is
// false where net/http fails the body.
func parseChunkLine(line []byte, excess *int64) (size uint64, ok bool) {
	// The line must end in CRLF and hold no other CR; bare LF is rejected.
	if i := bytes.IndexByte(line, '\r'); i < 0 || i != len(line)-2 || line[len(line)-1] != '\n' {
		return 0, false
	}
	line = line[:len(line)-2]
	if len(line) >= maxChunkLine {
		return 0, false
	}
	*excess += int64(len(line)) + 2
	for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
		line = line[:len(line)-1]
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i] // chunk extensions are ignored
	}
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	for _, b := range line {
		var d byte
		switch {
		case '0' <= b && b <= '9':
			d = b - '0'
		case 'a' <= b && b <= 'f':
			d = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			d = b - 'A' + 10
		default:
			return 0, false
		}
		size = size<<4 | uint64(d)
	}
	// Same arithmetic as net/http, overflow included: it allows 16 bytes of
	// overhead per chunk plus twice the chunk's data.
	*excess -= 16 + (2 * int64(size))
	*excess = max(*excess, 0)
	if *excess > 16*1024 {
		return 0, false
	}
	return size, true
}

// trimOWS trims spaces and tabs at both ends, like net/textproto's trim.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// hasToken reports whether the comma-separated list v holds token,
// compared without case.
func hasToken(v, token string) bool {
	for part := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(trimOWS(part), token) {
			return true
		}
	}
	return false
}

// isToken reports whether s is a non-empty RFC 9110 token: a valid method
// or header field name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

// isTokenByte reports whether c is a tchar of RFC 9110, section 5.6.2.
func isTokenByte(c byte) bool {
	// A 128-bit set of the allowed bytes, as in net/textproto.
	const mask = 0 |
		(1<<10-1)<<'0' |
		(1<<26-1)<<'a' |
		(1<<26-1)<<'A' |
		1<<'!' | 1<<'#' | 1<<'$' | 1<<'%' | 1<<'&' | 1<<'\'' | 1<<'*' |
		1<<'+' | 1<<'-' | 1<<'.' | 1<<'^' | 1<<'_' | 1<<'`' | 1<<'|' | 1<<'~'
	return ((uint64(1)<<c)&(mask&(1<<64-1)) |
		(uint64(1)<<(c-64))&(mask>>64)) != 0
}

// appendCanonicalKey appends the canonical form of the token name to dst, as
// textproto.CanonicalMIMEHeaderKey computes it, without allocating a string.
func appendCanonicalKey(dst []byte, name string) []byte {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		upper = c == '-'
	}
	return dst
}

// sameName reports whether two field names are the same header, that is
// equal without ASCII case.
func sameName(a, b string) bool {
	return len(a) == len(b) && strings.EqualFold(a, b)
}

// validValue reports whether s holds only bytes net/textproto allows in a
// field value: visible ASCII, space, tab and obs-text.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
