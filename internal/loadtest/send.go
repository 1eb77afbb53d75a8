package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SendConfig describes one load run against one URL.
type SendConfig struct {
	// URL receives every request (a relay channel's ingress URL, or the
	// target itself).
	URL string
	// Method defaults to POST.
	Method string
	// Concurrency is the number of senders, each sending its next request
	// as soon as the last one's response has been read (default 32).
	Concurrency int
	// Requests is how many requests are sent in all; 0 sends until
	// Duration has passed. At least one of the two must be set.
	Requests int
	// Duration bounds the run; 0: no bound but Requests. Requests in flight
	// when it passes still finish and count.
	Duration time.Duration
	// BodySize is the size of each request body in bytes (random bytes).
	BodySize int
	// ContentType defaults to application/octet-stream.
	ContentType string
	// Timeout bounds one request, including reading the response
	// (default 30s). A request past it counts as an error.
	Timeout time.Duration
	// Warmup requests are sent before the measured run, at the same
	// concurrency, to open connections; they are not counted.
	Warmup int
}

func (c SendConfig) withDefaults() (SendConfig, error) {
	if c.URL == "" {
		return c, errors.New("loadtest: no URL to send to")
	}
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		return c, fmt.Errorf("loadtest: URL %q must start with http:// or https://", c.URL)
	}
	if c.Requests < 0 || c.Duration < 0 || c.Concurrency < 0 || c.BodySize < 0 || c.Warmup < 0 || c.Timeout < 0 {
		return c, errors.New("loadtest: requests, duration, concurrency, size, warmup and timeout must not be negative")
	}
	if c.Requests == 0 && c.Duration == 0 {
		return c, errors.New("loadtest: set a number of requests, a duration, or both")
	}
	if c.Method == "" {
		c.Method = http.MethodPost
	}
	if c.Concurrency == 0 {
		c.Concurrency = 32
	}
	if c.ContentType == "" {
		c.ContentType = "application/octet-stream"
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	return c, nil
}

// SendResult is what one run measured.
type SendResult struct {
	URL         string
	Method      string
	Concurrency int
	BodySize    int
	// Responses counts requests answered with any status.
	Responses int
	// Errors counts requests that got no response (refused, timeout, ...);
	// FirstError is the first such error.
	Errors     int
	FirstError string
	// Status counts responses by status code.
	Status map[int]int
	// Elapsed is the wall time of the measured run.
	Elapsed time.Duration

	latency histogram // of answered requests, until the body was read
}

// Rate is responses per second.
func (r *SendResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Responses) / r.Elapsed.Seconds()
}

// Latency returns the q-quantile (0.5 for the median) of the answered
// requests' latency, from sending the request to reading the whole
// response.
func (r *SendResult) Latency(q float64) time.Duration { return r.latency.quantile(q) }

// MaxLatency is the slowest answered request's latency.
func (r *SendResult) MaxLatency() time.Duration { return r.latency.max }

// MeanLatency is the mean latency of the answered requests.
func (r *SendResult) MeanLatency() time.Duration { return r.latency.mean() }

// Send runs the load described by cfg and returns what it measured. It
// stops early, returning what was measured so far with ctx's error, when
// ctx ends.
func Send(ctx context.Context, cfg SendConfig) (*SendResult, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	body := make([]byte, cfg.BodySize)
	rng := rand.NewChaCha8([32]byte{'h', 'o', 'o', 'k', 'r', 'e', 'l', 'a', 'y'})
	_, _ = rng.Read(body) // ChaCha8.Read never fails

	tr := &http.Transport{
		Proxy:               nil, // measure the URL, not a proxy from the environment
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.Concurrency,
		MaxIdleConnsPerHost: cfg.Concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	s := &sender{cfg: cfg, body: body, client: &http.Client{
		Transport:     tr,
		Timeout:       cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	if cfg.Warmup > 0 {
		s.run(ctx, SendConfig{Requests: cfg.Warmup})
	}
	res := s.run(ctx, cfg)
	return res, ctx.Err()
}

// sender sends one configuration's requests.
type sender struct {
	cfg    SendConfig
	body   []byte
	client *http.Client
}

// run sends limits.Requests requests, or for limits.Duration, from
// cfg.Concurrency goroutines, and merges what each measured.
func (s *sender) run(ctx context.Context, limits SendConfig) *SendResult {
	res := &SendResult{URL: s.cfg.URL, Method: s.cfg.Method, Concurrency: s.cfg.Concurrency,
		BodySize: s.cfg.BodySize, Status: make(map[int]int)}
	var deadline time.Time
	if limits.Duration > 0 {
		deadline = time.Now().Add(limits.Duration)
	}
	var claimed atomic.Int64
	next := func() bool {
		if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			return false
		}
		return limits.Requests == 0 || claimed.Add(1) <= int64(limits.Requests)
	}
	var (
		mu sync.Mutex // guards res while workers merge
		wg sync.WaitGroup
	)
	start := time.Now()
	for range s.cfg.Concurrency {
		wg.Go(func() {
			w := workerResult{status: make(map[int]int)}
			for next() {
				s.one(ctx, &w)
			}
			mu.Lock()
			defer mu.Unlock()
			res.latency.merge(&w.latency)
			res.Responses += int(w.latency.n)
			res.Errors += w.errors
			if res.FirstError == "" {
				res.FirstError = w.firstError
			}
			for code, n := range w.status {
				res.Status[code] += n
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// workerResult is what one sender goroutine measured.
type workerResult struct {
	latency    histogram
	status     map[int]int
	errors     int
	firstError string
}

// one sends one request and records its outcome in w.
func (s *sender) one(ctx context.Context, w *workerResult) {
	req, err := http.NewRequestWithContext(ctx, s.cfg.Method, s.cfg.URL, bytes.NewReader(s.body))
	if err != nil {
		w.fail(err)
		return
	}
	req.Header.Set("Content-Type", s.cfg.ContentType)
	req.Header.Set("User-Agent", "hookrelay-load")
	t0 := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		w.fail(err)
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		w.fail(fmt.Errorf("read the response: %w", err))
		return
	}
	w.latency.add(time.Since(t0))
	w.status[resp.StatusCode]++
}

func (w *workerResult) fail(err error) {
	w.errors++
	if w.firstError == "" {
		w.firstError = err.Error()
	}
}

// WriteReport prints the result in a few aligned lines.
func (r *SendResult) WriteReport(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d senders, %s bodies\n", r.Method, r.URL, r.Concurrency, FormatBytes(float64(r.BodySize)))
	fmt.Fprintf(&b, "  requests  %d answered in %s: %.1f req/s\n", r.Responses, r.Elapsed.Round(time.Millisecond), r.Rate())
	fmt.Fprintf(&b, "  latency   p50 %s  p90 %s  p99 %s  max %s\n",
		fmtDur(r.Latency(0.50)), fmtDur(r.Latency(0.90)), fmtDur(r.Latency(0.99)), fmtDur(r.MaxLatency()))
	var codes []string
	for _, code := range slices.Sorted(maps.Keys(r.Status)) {
		codes = append(codes, fmt.Sprintf("%d ×%d", code, r.Status[code]))
	}
	if len(codes) == 0 {
		codes = []string{"none"}
	}
	fmt.Fprintf(&b, "  status    %s\n", strings.Join(codes, ", "))
	if r.Errors > 0 {
		fmt.Fprintf(&b, "  errors    %d (first: %s)\n", r.Errors, r.FirstError)
	} else {
		b.WriteString("  errors    0\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Comparison relates two runs of the same load: typically through the relay
// (First) and straight to the target (Second).
type Comparison struct {
	First, Second *SendResult
}

// ThroughputRatio is First's rate ÷ Second's rate.
func (c Comparison) ThroughputRatio() float64 {
	if c.Second.Rate() == 0 {
		return 0
	}
	return c.First.Rate() / c.Second.Rate()
}

// AddedLatency is First's q-quantile latency minus Second's.
func (c Comparison) AddedLatency(q float64) time.Duration {
	return c.First.Latency(q) - c.Second.Latency(q)
}

// WriteReport prints the ratios in one short paragraph.
func (c Comparison) WriteReport(w io.Writer) error {
	_, err := fmt.Fprintf(w, "first ÷ second: throughput %.3f (%.1f ÷ %.1f req/s)\n"+
		"  latency added (first − second): p50 %s  p90 %s  p99 %s\n",
		c.ThroughputRatio(), c.First.Rate(), c.Second.Rate(),
		fmtSigned(c.AddedLatency(0.50)), fmtSigned(c.AddedLatency(0.90)), fmtSigned(c.AddedLatency(0.99)))
	return err
}

// fmtDur prints a latency with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.3gms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.3gs", d.Seconds())
}

func fmtSigned(d time.Duration) string {
	if d < 0 {
		return "-" + fmtDur(-d)
	}
	return "+" + fmtDur(d)
}

// FormatBytes prints a byte count in binary units (1 KiB, 3.5 MiB).
func FormatBytes(n float64) string {
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	units := []string{"B", "KiB", "MiB", "GiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 || n == float64(int64(n)) {
		return fmt.Sprintf("%s%.0f %s", sign, n, units[i])
	}
	return fmt.Sprintf("%s%.1f %s", sign, n, units[i])
}
