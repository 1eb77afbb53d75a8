package verify

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/webhook"
)

// ErrSignature is wrapped by every verification failure: the request is not
// proven to come from the channel's sender. The failure's own message says why
// in words the sender's owner can act on.
var ErrSignature = errors.New("signature verification failed")

// Header is one header line as received (order and case kept).
type Header struct{ Name, Value string }

// Request is what a verifier sees of one received webhook.
type Request struct {
	Method, Path, RawQuery string
	Headers                []Header
	Body                   []byte
	// Now is the time the request is judged at; the zero Time means time.Now().
	Now time.Time
}

// Config is one channel's sender verification.
type Config struct {
	Scheme    string        // "github" | "stripe" | "slack" | "standard-webhooks" | "hmac"
	Secret    string        // the provider's signing secret, as the provider shows it
	Header    string        // for "hmac": the header carrying the signature (default "X-Signature")
	Tolerance time.Duration // timestamp tolerance for stripe, slack, standard-webhooks (default 5 min)
}

// defaultTolerance is how far a signed timestamp may be from now.
const defaultTolerance = 5 * time.Minute

// Schemes returns the names Config.Scheme accepts, in the order to show them:
// the webhook package's.
func Schemes() []string { return webhook.Schemes() }

// Validate reports whether c can verify anything: a known scheme, a non-empty
// secret (for standard-webhooks: valid base64, with or without "whsec_"), a
// valid header name for hmac and a tolerance that is not negative. Its errors
// are about the configuration and never wrap ErrSignature.
func (c Config) Validate() error {
	_, err := c.key()
	return err
}

// Verify checks that r was signed with c's secret under c's scheme and, for
// schemes that sign a timestamp, that the timestamp is within the tolerance
// of r.Now in either direction. A failure wraps ErrSignature; any other error
// means c is invalid (see Validate).
func (c Config) Verify(r Request) error {
	key, err := c.key()
	if err != nil {
		return err
	}
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	switch c.Scheme {
	case webhook.GitHub:
		return verifyGitHub(key, r)
	case webhook.Stripe:
		return verifyStripe(key, r, now, c.tolerance())
	case webhook.Slack:
		return verifySlack(key, r, now, c.tolerance())
	case webhook.StandardWebhooks:
		return verifyStandard(key, r, now, c.tolerance())
	default: // webhook.HMAC; key has rejected every other name
		return verifyHMAC(key, c.hmacHeader(), r)
	}
}

// key validates c and returns the HMAC key its scheme signs with.
func (c Config) key() ([]byte, error) {
	switch c.Scheme {
	case webhook.GitHub, webhook.Stripe, webhook.Slack, webhook.StandardWebhooks, webhook.HMAC:
	case "":
		return nil, fmt.Errorf("no verification scheme set (want one of %s)", strings.Join(Schemes(), ", "))
	default:
		return nil, fmt.Errorf("unknown verification scheme %q (want one of %s)", c.Scheme, strings.Join(Schemes(), ", "))
	}
	if c.Secret == "" {
		return nil, fmt.Errorf("%s verification needs a secret; copy the signing secret from the sender's webhook settings", c.Scheme)
	}
	if c.Tolerance < 0 {
		return nil, fmt.Errorf("timestamp tolerance %s is negative", c.Tolerance)
	}
	if c.Scheme == webhook.HMAC {
		if name := c.hmacHeader(); !webhook.ValidHeaderName(name) {
			return nil, fmt.Errorf("signature header %q is not a valid HTTP header name", name)
		}
	}
	return webhook.SigningKey(c.Scheme, c.Secret)
}

func (c Config) tolerance() time.Duration {
	if c.Tolerance == 0 {
		return defaultTolerance
	}
	return c.Tolerance
}

func (c Config) hmacHeader() string {
	if c.Header == "" {
		return webhook.DefaultHMACHeader
	}
	return c.Header
}

// header returns the value of the first header line named name (compared
// case-insensitively), trimmed of surrounding blanks. A header that is
// present but empty counts as missing.
func (r Request) header(name string) (string, bool) {
	for _, h := range r.Headers {
		if strings.EqualFold(h.Name, name) {
			v := strings.Trim(h.Value, " \t")
			return v, v != ""
		}
	}
	return "", false
}

// failure is a verification failure: its message is the reason alone, and it
// wraps ErrSignature.
type failure struct{ reason string }

func (f *failure) Error() string { return f.reason }
func (f *failure) Unwrap() error { return ErrSignature }

func fail(format string, args ...any) error {
	return &failure{reason: fmt.Sprintf(format, args...)}
}

func missing(name string) error { return fail("missing header %s", name) }

func malformed(name, why string) error { return fail("malformed %s header: %s", name, why) }

func mismatch() error { return fail("signature does not match (check the secret)") }

// parseTimestamp parses a Unix time in seconds as the providers send it:
// decimal digits only, no sign.
func parseTimestamp(raw string) (int64, bool) {
	for i := 0; i < len(raw); i++ {
		if raw[i] < '0' || raw[i] > '9' {
			return 0, false
		}
	}
	ts, err := strconv.ParseInt(raw, 10, 64)
	return ts, err == nil
}

// checkTimestamp fails unless the signed timestamp ts (as sent: raw) is within
// tolerance of now, in the past or the future. The arithmetic stays in whole
// seconds so that no timestamp, however large, can overflow into the window.
func checkTimestamp(raw string, ts int64, now time.Time, tolerance time.Duration) error {
	nowSec := now.Unix()
	if ts <= nowSec {
		age := secondsDuration(uint64(nowSec) - uint64(ts))
		if age > tolerance {
			return fail("timestamp %s is %s too old (tolerance %s)", raw, roughDuration(age), tolerance)
		}
		return nil
	}
	ahead := secondsDuration(uint64(ts) - uint64(nowSec))
	if ahead > tolerance {
		return fail("timestamp %s is %s in the future (tolerance %s; check the sender's clock)", raw, roughDuration(ahead), tolerance)
	}
	return nil
}

// secondsDuration converts n seconds to a Duration, saturating at the
// largest whole number of seconds a Duration holds (about 292 years).
func secondsDuration(n uint64) time.Duration {
	const maxSeconds = uint64(math.MaxInt64 / int64(time.Second))
	if n > maxSeconds {
		n = maxSeconds
	}
	return time.Duration(n) * time.Second
}

// roughDuration formats d without trailing zero units: "3h12m", not "3h12m0s".
func roughDuration(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
