package server

import (
	"strings"
	"testing"
	"time"
)

// TestNewIDSortsByTime checks that ids made a millisecond or more apart
// sort in the order they were made (what keeps the store's id index
// appending on its last page), that two made at once differ, and that
// both kinds keep the 26 letters of 128 bits.
func TestNewIDSortsByTime(t *testing.T) {
	t.Parallel()
	first := newID("evt_")
	time.Sleep(2 * time.Millisecond) // the ids' clock has millisecond steps
	second, third := newID("evt_"), newID("evt_")
	if first >= second {
		t.Errorf("an id made later sorts first: %s, then %s", first, second)
	}
	if second == third {
		t.Errorf("two ids made at once are equal: %s", second)
	}
	channel := NewChannelID()
	for _, id := range []string{strings.TrimPrefix(first, "evt_"), channel} {
		if len(id) != 26 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz234567") != "" {
			t.Errorf("id %q: want 26 letters of lowercase base32", id)
		}
	}
}
