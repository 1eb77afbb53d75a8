package store

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestHeadersRoundTrip(t *testing.T) {
	t.Parallel()
	for _, hs := range [][]Header{
		nil,
		{{Name: "X-Empty", Value: ""}},
		{
			{Name: "Content-Type", Value: "application/json"},
			{Name: "x-sig", Value: "a\xffb"},
			{Name: "X-Sig", Value: "\x80\xfe\x00 tab\there"},
			{Name: "X-Long", Value: strings.Repeat("v", 300)}, // a two-byte length
			{Name: "X-Unicode", Value: "caf\u00e9 \u65e5\u672c"},
		},
	} {
		b := AppendHeaders(nil, hs)
		got, err := ParseHeaders(b)
		if err != nil {
			t.Fatalf("ParseHeaders(AppendHeaders(%q)): %v", hs, err)
		}
		if !reflect.DeepEqual(got, hs) {
			t.Errorf("round trip of %q gave %q", hs, got)
		}
	}
	if b := AppendHeaders([]byte("prefix"), []Header{{Name: "A", Value: "b"}}); !bytes.HasPrefix(b, []byte("prefix")) {
		t.Errorf("AppendHeaders did not append: %q", b)
	}
}

func TestParseHeadersRejects(t *testing.T) {
	t.Parallel()
	good := AppendHeaders(nil, []Header{{Name: "A", Value: "bc"}})
	for name, b := range map[string][]byte{
		"version":        {2, 1, 1, 'A', 0},
		"no count":       {1},
		"zero count":     {1, 0},
		"count too big":  {1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 'A', 0},
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(append([]byte(nil), good...), 0),
		"overflow":       {1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"field too long": {1, 1, 9, 'A'},
	} {
		if hs, err := ParseHeaders(b); err == nil {
			t.Errorf("%s: ParseHeaders(%q) = %q, want an error", name, b, hs)
		}
	}
}

// FuzzParseHeaders checks that any input either fails or decodes to a list
// that survives another round trip.
func FuzzParseHeaders(f *testing.F) {
	f.Add(AppendHeaders(nil, []Header{{Name: "X-Sig", Value: "a\xffb"}, {Name: "b", Value: ""}}))
	f.Add([]byte{1, 1, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		hs, err := ParseHeaders(b)
		if err != nil {
			return
		}
		again, err := ParseHeaders(AppendHeaders(nil, hs))
		if err != nil || !reflect.DeepEqual(again, hs) {
			t.Errorf("ParseHeaders(%q) = %q, which round-trips to %q, %v", b, hs, again, err)
		}
	})
}
