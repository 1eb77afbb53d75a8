package store

import (
	"encoding/binary"
	"sort"
	"testing"
)

// TestSortedEncodingKeepsByteOrder checks that the text of ids sorts as
// their bytes do: numbers encoded in increasing order come out sorted.
func TestSortedEncodingKeepsByteOrder(t *testing.T) {
	t.Parallel()
	var texts []string
	for _, n := range []uint64{0, 1, 25, 26, 31, 32, 1 << 20, 1<<40 + 7, 1 << 47, 1<<48 - 1} {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], n<<16)
		texts = append(texts, sortedEncoding.EncodeToString(b[:]))
	}
	if !sort.StringsAreSorted(texts) {
		t.Fatalf("encoded in increasing order, the texts do not sort: %q", texts)
	}
}
