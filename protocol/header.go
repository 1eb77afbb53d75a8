package protocol

import "strings"

// hopByHop lists, in lower case, the header fields that belong to one
// connection (RFC 9110, section 7.6.1): the relay does not store them and
// neither side forwards them. It is the one table both sides use.
var hopByHop = map[string]bool{
	"connection":          true,
	"keep-alive":          true,
	"proxy-connection":    true,
	"proxy-authenticate":  true,
	"proxy-authorization": true,
	"te":                  true,
	"trailer":             true,
	"transfer-encoding":   true,
	"upgrade":             true,
}

// IsHopByHop reports whether the field name (any case) is hop-by-hop in a
// message whose Connection fields hold the values connection: one of RFC
// 9110's fixed list, or a name those values list.
func IsHopByHop(name string, connection []string) bool {
	if hopByHop[strings.ToLower(name)] {
		return true
	}
	for _, v := range connection {
		for option := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(option), name) {
				return true
			}
		}
	}
	return false
}

// DropHopByHop returns the fields of hs that are not hop-by-hop, in their
// order, case and repeats: it leaves out the fields of RFC 9110's fixed list
// and those the message's own Connection fields name. hs is not changed.
func DropHopByHop(hs []Header) []Header {
	var named map[string]bool
	for _, h := range hs {
		if strings.EqualFold(h.Name, "Connection") {
			for name := range strings.SplitSeq(h.Value, ",") {
				if name = strings.TrimSpace(name); name != "" {
					if named == nil {
						named = make(map[string]bool)
					}
					named[strings.ToLower(name)] = true
				}
			}
		}
	}
	out := make([]Header, 0, len(hs))
	for _, h := range hs {
		lower := strings.ToLower(h.Name)
		if !hopByHop[lower] && !named[lower] {
			out = append(out, h)
		}
	}
	return out
}
