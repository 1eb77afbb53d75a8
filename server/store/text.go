package store

// Text search (EventQuery.Text) ignores the case of ASCII letters only and
// compares every other byte as it is, as SQLite's lower() does; these are
// the rules written once for every implementation.

// HeadersContain reports whether lowerText (in lower case, see LowerASCII)
// occurs in a name or a value of hs.
func HeadersContain(hs []Header, lowerText string) bool {
	for _, h := range hs {
		if ContainsFold(h.Name, lowerText) || ContainsFold(h.Value, lowerText) {
			return true
		}
	}
	return false
}

// ContainsFold reports whether lowerSub occurs in s when the ASCII letters
// of s are taken in lower case.
func ContainsFold[T string | []byte](s T, lowerSub string) bool {
	for i := 0; i+len(lowerSub) <= len(s); i++ {
		j := 0
		for j < len(lowerSub) && lowerByte(s[i+j]) == lowerSub[j] {
			j++
		}
		if j == len(lowerSub) {
			return true
		}
	}
	return false
}

// LowerASCII returns s with its ASCII letters in lower case.
func LowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerByte(c)
	}
	return string(b)
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
