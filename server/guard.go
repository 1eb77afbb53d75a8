package server

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/verify"
)

// maxHeaderCount bounds the header lines of one webhook (431 beyond).
const maxHeaderCount = 256

// limiters holds one token bucket per channel that received webhooks
// lately. A bucket that is full again is the same as a new one, so sweep
// drops those: the map holds only channels busy in the last moments.
type limiters struct {
	mu sync.Mutex
	m  map[string]*channelLimiter // by channel id (or, for anonymous channels, source address)
}

type channelLimiter struct {
	limit   float64
	burst   int
	limiter *rate.Limiter
}

// sweepLimitersAt is the map size at which allow sweeps on its own (the
// retention loop sweeps every PruneInterval as well).
const sweepLimitersAt = 10000

// sweep drops the buckets that are full at now.
func (l *limiters) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
}

func (l *limiters) sweepLocked(now time.Time) {
	for id, cl := range l.m {
		if cl.limiter.TokensAt(now) >= float64(cl.limiter.Burst()) {
			delete(l.m, id)
		}
	}
}

func (l *limiters) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// allow takes one token from the channel's bucket at eventsPerSecond (burst
// twice that). It returns how long to wait when the bucket is empty.
func (l *limiters) allow(channelID string, eventsPerSecond float64) (bool, time.Duration) {
	return l.allowBurst(channelID, eventsPerSecond, max(1, int(math.Ceil(2*eventsPerSecond))))
}

// allowBurst takes one token from key's bucket, which refills at perSecond
// and holds burst tokens. It returns how long to wait when it is empty.
func (l *limiters) allowBurst(key string, perSecond float64, burst int) (bool, time.Duration) {
	if perSecond <= 0 {
		return true, 0
	}
	l.mu.Lock()
	cl := l.m[key]
	if cl == nil || cl.limit != perSecond || cl.burst != burst {
		cl = &channelLimiter{limit: perSecond, burst: burst, limiter: rate.NewLimiter(rate.Limit(perSecond), burst)}
		if l.m == nil {
			l.m = make(map[string]*channelLimiter)
		}
		if len(l.m) >= sweepLimitersAt {
			l.sweepLocked(time.Now())
		}
		l.m[key] = cl
	}
	l.mu.Unlock()
	res := cl.limiter.Reserve()
	if d := res.Delay(); d > 0 {
		res.Cancel()
		return false, d
	}
	return true, 0
}

func (l *limiters) forget(channelID string) {
	l.mu.Lock()
	delete(l.m, channelID)
	l.mu.Unlock()
}

// admit applies the checks that come before reading the body: source
// ranges, rate limit, header count. It answers and returns false when the
// request is refused; nothing is stored for it.
func (r *Relay) admit(c *gin.Context, ch store.Channel) bool {
	if len(ch.AllowedCIDRs) > 0 {
		ip, err := netip.ParseAddr(c.ClientIP())
		ok := false
		if err == nil {
			ok, err = verify.AllowedSource(ch.AllowedCIDRs, ip)
		}
		if err != nil || !ok {
			r.metrics.eventsRejected.WithLabelValues("source").Inc()
			abortJSON(c, http.StatusForbidden, "source_not_allowed",
				fmt.Sprintf("source address %s is not in this channel's allowed ranges", c.ClientIP()))
			return false
		}
	}
	limit := ch.RateLimit
	if limit == 0 {
		limit = r.cfg.RateLimit
	}
	if ok, wait := r.limiters.allow(ch.ID, limit); !ok {
		r.metrics.eventsRejected.WithLabelValues("rate_limit").Inc()
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		abortJSON(c, http.StatusTooManyRequests, "rate_limited",
			fmt.Sprintf("channel %s accepts %g webhooks per second; retry after %s", ch.ID, limit, wait.Round(time.Millisecond)))
		return false
	}
	n := 0
	for _, vs := range c.Request.Header {
		n += len(vs)
	}
	if n > maxHeaderCount {
		r.metrics.eventsRejected.WithLabelValues("headers").Inc()
		abortJSON(c, http.StatusRequestHeaderFieldsTooLarge, "too_many_headers",
			fmt.Sprintf("the request has %d header lines; the relay accepts %d", n, maxHeaderCount))
		return false
	}
	return true
}

// verifySender checks the channel's signature scheme. It returns the reason
// a request fails, or "" when it passes or the channel verifies nothing.
func verifySender(ch store.Channel, ev *store.Event) (string, error) {
	if ch.VerifyScheme == "" {
		return "", nil
	}
	hs := make([]verify.Header, len(ev.Headers))
	for i, h := range ev.Headers {
		hs[i] = verify.Header{Name: h.Name, Value: h.Value}
	}
	cfg := verify.Config{Scheme: ch.VerifyScheme, Secret: ch.VerifySecret, Header: ch.VerifyHeader}
	err := cfg.Verify(verify.Request{
		Method: ev.Method, Path: ev.Path, RawQuery: ev.RawQuery, Headers: hs, Body: ev.Body, Now: ev.ReceivedAt,
	})
	switch {
	case err == nil:
		return "", nil
	case errors.Is(err, verify.ErrSignature):
		return ch.VerifyScheme + ": " + err.Error(), nil
	default:
		return "", fmt.Errorf("channel %s has a broken verification setting: %w", ch.ID, err)
	}
}
