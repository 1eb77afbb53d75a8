package server

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
)

// Cursors name a place in a channel's event list (next_cursor, before=,
// after=). Inside, they are the relay-wide sequence number of an event,
// which would tell a team how many webhooks every other team receives. So
// a cursor is that number encrypted, in one AES block, with a key of its
// channel's own derived from the relay's secret: it means nothing to a
// reader, differs between channels, and decodes only with the channel it
// came from (the block's other half must decode to zeros).

// cursors encodes and decodes the cursors of one channel.
type cursors struct{ block cipher.Block }

// cursorsFor returns the cursor codec of a channel.
func (r *Relay) cursorsFor(channelID string) cursors {
	mac := hmac.New(sha256.New, r.secret)
	mac.Write([]byte("hookrelay cursor v1\x00"))
	mac.Write([]byte(channelID))
	block, err := aes.NewCipher(mac.Sum(nil)[:16])
	if err != nil {
		panic(err) // a 16-byte key is always valid
	}
	return cursors{block: block}
}

// encode returns the cursor of seq: 22 characters of base64url.
func (c cursors) encode(seq int64) string {
	var b [aes.BlockSize]byte
	binary.BigEndian.PutUint64(b[:8], uint64(seq))
	c.block.Encrypt(b[:], b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// decode returns the seq of a cursor of this channel, or false for
// anything else: a cursor of another channel or relay, a number, garbage.
// The seq may be 0: the place before a channel's first event (where an
// event stream of an empty channel starts).
func (c cursors) decode(s string) (int64, bool) {
	var b [aes.BlockSize]byte
	if base64.RawURLEncoding.DecodedLen(len(s)) != len(b) {
		return 0, false
	}
	if n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(s)); err != nil || n != len(b) {
		return 0, false
	}
	c.block.Decrypt(b[:], b[:])
	if binary.BigEndian.Uint64(b[8:]) != 0 {
		return 0, false
	}
	seq := int64(binary.BigEndian.Uint64(b[:8]))
	return seq, seq >= 0
}

// isCursorShaped reports whether s has the form of a cursor, whatever it
// decodes to.
func isCursorShaped(s string) bool {
	var b [aes.BlockSize]byte
	if base64.RawURLEncoding.DecodedLen(len(s)) != len(b) {
		return false
	}
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(s))
	return err == nil && n == len(b)
}
