package protocol_test

import (
	"reflect"
	"testing"

	"github.com/hookrelay/hookrelay/protocol"
)

func TestDropHopByHop(t *testing.T) {
	t.Parallel()
	h := func(pairs ...string) []protocol.Header {
		var hs []protocol.Header
		for i := 0; i < len(pairs); i += 2 {
			hs = append(hs, protocol.Header{Name: pairs[i], Value: pairs[i+1]})
		}
		return hs
	}
	for _, tt := range []struct {
		name     string
		in, want []protocol.Header
	}{
		{"nothing to drop", h("X-B", "1", "x-a", "2", "X-B", "3"), h("X-B", "1", "x-a", "2", "X-B", "3")},
		{"the fixed list in any case", h("connection", "close", "Keep-Alive", "5", "TE", "trailers", "Transfer-Encoding", "chunked",
			"Upgrade", "h2c", "Proxy-Authorization", "x", "Proxy-Authenticate", "x", "Proxy-Connection", "x", "Trailer", "X", "Date", "d"),
			h("Date", "d")},
		{"named by Connection", h("X-Keep", "1", "Connection", "X-Hop, , x-other", "x-hop", "2", "X-Other", "3"), h("X-Keep", "1")},
		{"Connection names are matched whole", h("Connection", "X-A", "X-A-B", "1"), h("X-A-B", "1")},
		{"empty", nil, []protocol.Header{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]protocol.Header(nil), tt.in...)
			got := protocol.DropHopByHop(in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DropHopByHop(%v) = %v, want %v", tt.in, got, tt.want)
			}
			if !reflect.DeepEqual(in, tt.in) {
				t.Errorf("DropHopByHop changed its input to %v", in)
			}
		})
	}
}

func TestIsHopByHop(t *testing.T) {
	t.Parallel()
	conn := []string{"X-Hop, keep-alive", " x-other "}
	for name, want := range map[string]bool{
		"Connection": true, "TRANSFER-ENCODING": true, "x-hop": true, "X-Other": true, "X-Hop-Not": false, "Date": false,
	} {
		if got := protocol.IsHopByHop(name, conn); got != want {
			t.Errorf("IsHopByHop(%q) = %v, want %v", name, got, want)
		}
	}
}
