package verify

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// Sign returns the headers c's sender would attach to r: set them on the
// request (replacing any of the same name) and c.Verify accepts it. The
// timestamp is r.Now (time.Now() when zero); a time before 1970 is an error
// for the schemes that sign one. For standard-webhooks the message id is r's
// webhook-id (or svix-id) header when it has one, else a new random
// "msg_..." id. The generic hmac scheme signs as "sha256=" + hex.
//
// Sign is for tests and documentation examples; hookrelay itself never signs
// what it relays.
func Sign(c Config, r Request) ([]Header, error) {
	key, err := c.key()
	if err != nil {
		return nil, err
	}
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	if now.Unix() < 0 && (c.Scheme == schemeStripe || c.Scheme == schemeSlack || c.Scheme == schemeStandard) {
		return nil, fmt.Errorf("cannot sign at %s: %s timestamps start at 1970", now.UTC().Format(time.RFC3339), c.Scheme)
	}
	switch c.Scheme {
	case schemeGitHub:
		return []Header{
			{headerGitHub, "sha256=" + hex.EncodeToString(mac(key, r.Body))},
		}, nil
	case schemeStripe:
		sig := mac(key, []byte(ts+"."), r.Body)
		return []Header{
			{headerStripe, "t=" + ts + ",v1=" + hex.EncodeToString(sig)},
		}, nil
	case schemeSlack:
		sig := mac(key, []byte("v0:"+ts+":"), r.Body)
		return []Header{
			{headerSlackTimestamp, ts},
			{headerSlackSignature, "v0=" + hex.EncodeToString(sig)},
		}, nil
	case schemeStandard:
		id, _, err := standardHeader(r, headerWebhookID, headerSvixID)
		if err != nil {
			id = "msg_" + rand.Text()
		}
		sig := mac(key, []byte(id+"."+ts+"."), r.Body)
		return []Header{
			{headerWebhookID, id},
			{headerWebhookTime, ts},
			{headerWebhookSig, "v1," + base64.StdEncoding.EncodeToString(sig)},
		}, nil
	default: // schemeHMAC
		return []Header{
			{c.hmacHeader(), "sha256=" + hex.EncodeToString(mac(key, r.Body))},
		}, nil
	}
}
