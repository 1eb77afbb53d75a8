package store

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"time"
)

// sortedEncoding is lowercase base32 with its 32 symbols in byte order
// (digits before letters), so that the text of ids sorts as their bytes do.
var sortedEncoding = base32.NewEncoding("234567abcdefghijklmnopqrstuvwxyz").WithPadding(base32.NoPadding)

// NewID returns prefix + 128 bits in lowercase base32 (26 letters): the
// time in milliseconds (48 bits), then 80 random bits. Ids made later sort
// after earlier ones (to the millisecond), so a store's unique index on
// event or delivery ids takes each new id on its last page instead of on a
// random one: a batch then dirties, and writes to the WAL, one index page
// instead of one per row (BenchmarkHotPath in store/sqlite). Ids that must
// be unguessable, such as channel ids, are made of random bits only.
func NewID(prefix string) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails on supported platforms
	return prefix + sortedEncoding.EncodeToString(b[:])
}
