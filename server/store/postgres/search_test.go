package postgres

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
)

// foldASCII lowercases ASCII letters only, as the inspector's search does.
func foldASCII(b []byte) []byte { return mapASCII(b, 'A', 'Z', 'a'-'A') }

// upperASCII uppercases ASCII letters only (bytes.ToUpper would turn bytes
// that are not UTF-8 into U+FFFD).
func upperASCII(b []byte) []byte { return mapASCII(b, 'a', 'z', 'A'-'a') }

func mapASCII(b []byte, from, to byte, shift int) []byte {
	out := bytes.Clone(b)
	for i, c := range out {
		if from <= c && c <= to {
			out[i] = byte(int(c) + shift)
		}
	}
	return out
}

// TestContainsFoldMatchesGo checks the SQL function contains_fold (see the
// migration) against a plain Go definition on random byte strings made of
// the bytes its encoding treats specially: NUL and high bytes (escaped as
// \ooo), backslashes (doubled), octal digits (which must not match inside
// an escape), regular-expression metacharacters and letters of both cases.
func TestContainsFoldMatchesGo(t *testing.T) {
	t.Parallel()
	s := openTest(t, pgtest.Schema(t), Options{})
	alphabet := []byte{0, '\\', '0', '1', '3', '7', 'a', 'A', 'z', 0xff, 0xc3, 0x80, '.', '*', '[', '(', '|', '$', '\n'}
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(maxLen int) []byte {
		b := make([]byte, rng.IntN(maxLen+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return b
	}
	const n = 5000
	haystacks, needles := make([][]byte, n), make([][]byte, n)
	for i := range n {
		haystacks[i] = random(12)
		needles[i] = random(3)
		if len(needles[i]) == 0 {
			needles[i] = []byte{'\\'}
		}
		if i%3 == 0 && len(haystacks[i]) > 2 { // make matches common too
			j := rng.IntN(len(haystacks[i]) - 1)
			needles[i] = upperASCII(haystacks[i][j : j+2])
		}
	}
	rows, _ := s.pool.Query(t.Context(), `SELECT contains_fold(h, n) FROM unnest($1::bytea[], $2::bytea[]) AS t (h, n)`,
		haystacks, needles)
	got, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	if err != nil {
		t.Fatal(err)
	}
	matches := 0
	for i := range n {
		want := bytes.Contains(foldASCII(haystacks[i]), foldASCII(needles[i]))
		if got[i] != want {
			t.Errorf("contains_fold(%q, %q) = %t, want %t", haystacks[i], needles[i], got[i], want)
		}
		if want {
			matches++
		}
	}
	t.Logf("%d pairs, %d matches", n, matches)
}
