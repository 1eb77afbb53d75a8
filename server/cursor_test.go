package server

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/memstore"
)

func testRelaySecret(t testing.TB, secret []byte) *Relay {
	r, err := New(Config{Store: memstore.New(store.Limits{}), Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestCursorsRoundTripPerChannelAndSecret(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte{7}, 32)
	r := testRelaySecret(t, secret)
	again := testRelaySecret(t, secret) // a restart with the same secret
	other := testRelaySecret(t, bytes.Repeat([]byte{8}, 32))
	a, b := r.cursorsFor("a"), r.cursorsFor("b")
	for _, seq := range []int64{0, 1, 2, 41, 42, 1 << 40, 1<<63 - 1} {
		c := a.encode(seq)
		if got, ok := a.decode(c); !ok || got != seq {
			t.Errorf("seq %d: cursor %q decodes to %d %v", seq, c, got, ok)
		}
		if got, ok := again.cursorsFor("a").decode(c); !ok || got != seq {
			t.Errorf("seq %d: the same secret decodes %d %v", seq, got, ok)
		}
		if _, ok := b.decode(c); ok {
			t.Errorf("seq %d: a cursor of channel a decodes on channel b", seq)
		}
		if _, ok := other.cursorsFor("a").decode(c); ok {
			t.Errorf("seq %d: a cursor decodes with another secret", seq)
		}
		if c == b.encode(seq) {
			t.Errorf("seq %d: channels a and b share a cursor", seq)
		}
	}
	for _, bad := range []string{"", "0", "-1", "42", "garbage", a.encode(5) + "A"} {
		if seq, ok := a.decode(bad); ok {
			t.Errorf("decode(%q) = %d, want refused", bad, seq)
		}
	}
	if _, err := New(Config{Store: memstore.New(store.Limits{}), Secret: []byte("short")}); err == nil {
		t.Error("a 5-byte secret was accepted")
	}
}

func FuzzCursorDecode(f *testing.F) {
	r := testRelaySecret(f, bytes.Repeat([]byte{7}, 32))
	cur := r.cursorsFor("ch")
	f.Add(cur.encode(42))
	f.Add("0")
	f.Add("AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		seq, ok := cur.decode(s)
		if ok && (seq < 0 || cur.encode(seq) != s) {
			t.Fatalf("decode(%q) = %d, which encodes to %q", s, seq, cur.encode(seq))
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && ok {
			t.Fatalf("the number %d decoded as a cursor", n)
		}
	})
}
