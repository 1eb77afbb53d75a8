package webhook_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/webhook"
)

func hs(kv ...string) []protocol.Header {
	var out []protocol.Header
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, protocol.Header{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func TestEditApply(t *testing.T) {
	t.Parallel()
	orig := hs("Host", "a", "X-A", "1", "Content-Length", "3", "x-a", "2", "X-B", "b")
	body := []byte("abc")
	for _, tc := range []struct {
		name     string
		edit     webhook.Edit
		wantHead []protocol.Header
		wantBody string
	}{
		{"nothing", webhook.Edit{}, orig, "abc"},
		{"set replaces the first in place and drops repeats", webhook.Edit{Set: hs("X-a", "new")},
			hs("Host", "a", "X-A", "new", "Content-Length", "3", "X-B", "b"), "abc"},
		{"set appends a new header", webhook.Edit{Set: hs("X-New", "n", "X-New2", "m")},
			append(slices.Clone(orig), hs("X-New", "n", "X-New2", "m")...), "abc"},
		{"remove every line of a name", webhook.Edit{Remove: []string{"x-A"}},
			hs("Host", "a", "Content-Length", "3", "X-B", "b"), "abc"},
		{"remove then set", webhook.Edit{Remove: []string{"X-B"}, Set: hs("X-B", "again")},
			hs("Host", "a", "X-A", "1", "Content-Length", "3", "x-a", "2", "X-B", "again"), "abc"},
		{"body fixes Content-Length", webhook.Edit{Body: []byte("hello")},
			hs("Host", "a", "X-A", "1", "Content-Length", "5", "x-a", "2", "X-B", "b"), "hello"},
		{"empty body", webhook.Edit{Body: []byte{}},
			hs("Host", "a", "X-A", "1", "Content-Length", "0", "x-a", "2", "X-B", "b"), ""},
		{"whole list", webhook.Edit{Headers: hs("Z", "z", "Content-Length", "99")}, hs("Z", "z", "Content-Length", "3"), "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotHead, gotBody := tc.edit.Apply(orig, body)
			if !slices.Equal(gotHead, tc.wantHead) || string(gotBody) != tc.wantBody {
				t.Errorf("got %v %q, want %v %q", gotHead, gotBody, tc.wantHead, tc.wantBody)
			}
			if tc.edit.IsZero() != (tc.name == "nothing") {
				t.Errorf("IsZero %v", tc.edit.IsZero())
			}
		})
	}
	if orig[1].Value != "1" || len(orig) != 5 {
		t.Errorf("Apply changed its input: %v", orig)
	}
}

func TestParseHeaderLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want protocol.Header
		ok   bool
	}{
		{"X-A: 1", protocol.Header{Name: "X-A", Value: "1"}, true},
		{"X-A:1", protocol.Header{Name: "X-A", Value: "1"}, true},
		{"  X-A :  spaced value  ", protocol.Header{Name: "X-A", Value: "spaced value"}, true},
		{"X-Empty:", protocol.Header{Name: "X-Empty", Value: ""}, true},
		{"X-Url: https://a/b?c=d:e", protocol.Header{Name: "X-Url", Value: "https://a/b?c=d:e"}, true},
		{"no colon", protocol.Header{}, false},
		{": value", protocol.Header{}, false},
		{"Bad Name: v", protocol.Header{}, false},
		{"X-A: line\r\nInjected: 1", protocol.Header{}, false},
		{"X-A: nul\x00", protocol.Header{}, false},
	} {
		got, err := webhook.ParseHeaderLine(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseHeaderLine(%q) = %v, %v", tc.in, got, err)
		}
	}
	if err := (webhook.Edit{Remove: []string{"bad name"}}).Validate(); err == nil {
		t.Error("a bad name to remove passed Validate")
	}
	if err := (webhook.Edit{Set: hs("X", "a\nb")}).Validate(); err == nil {
		t.Error("a bad value passed Validate")
	}
	if err := (webhook.Edit{Headers: hs("X", "ok"), Set: hs("Y", "ok"), Remove: []string{"Z"}}).Validate(); err != nil {
		t.Error(err)
	}
}

// FuzzParseHeaderLine: whatever the input, an accepted line is one a
// request can carry and reads back the same.
func FuzzParseHeaderLine(f *testing.F) {
	for _, s := range []string{"X-A: 1", "a:b", ":", "X: \t v \t", "X-A: é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		h, err := webhook.ParseHeaderLine(line)
		if err != nil {
			return
		}
		if webhook.ValidHeader(h) != nil {
			t.Fatalf("accepted an invalid header %q", h)
		}
		again, err := webhook.ParseHeaderLine(h.Name + ": " + h.Value)
		if err != nil || again != h {
			t.Fatalf("%q read back as %q (%v)", h, again, err)
		}
	})
}

// FuzzSetField: a --set on a sample body either fails or leaves valid JSON.
func FuzzSetField(f *testing.F) {
	for _, s := range [][2]string{{"a.b", "1"}, {"x", `"s"`}, {"arr.-1", "{}"}, {`a\.b`, "x"}, {"a.0", "[1"}} {
		f.Add(s[0], s[1])
	}
	body := []byte(`{"a":{"b":2,"c":"s"},"arr":[1,2]}`)
	f.Fuzz(func(t *testing.T, field, value string) {
		if field == "" {
			return
		}
		out, err := webhook.SetField(body, field, value)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("SetField(%q, %q) = %q: not JSON", field, value, out)
		}
	})
}
