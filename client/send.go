package client

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/webhook"
)

// Send sends one request to target, an absolute http(s) URL, with exactly
// these header lines in this order, and reads the whole answer (a body of
// at most 32 MiB). Host is put first and Content-Length last when headers
// lack them; nothing else is added or dropped. "hookrelay trigger" sends a
// provider's sample event with it, as the provider would. timeout bounds
// the whole exchange (default 30s).
func Send(ctx context.Context, target, method string, headers []protocol.Header, body []byte, timeout time.Duration) (*Response, error) {
	u, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = defaultRequestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hs := make([]protocol.Header, 0, len(headers)+2)
	if _, ok := firstHeader(headers, "Host"); !ok {
		hs = append(hs, protocol.Header{Name: "Host", Value: u.Host})
	}
	hs = append(hs, headers...)
	if _, ok := firstHeader(headers, "Content-Length"); !ok {
		hs = append(hs, protocol.Header{Name: "Content-Length", Value: strconv.Itoa(len(body))})
	}
	for _, h := range hs {
		if err := webhook.ValidHeader(h); err != nil {
			return nil, err
		}
	}
	reqTarget := u.EscapedPath()
	if reqTarget == "" {
		reqTarget = "/"
	}
	if u.RawQuery != "" {
		reqTarget += "?" + u.RawQuery
	}
	c := newH1Client(u, nil, 1)
	defer c.closeIdle()
	start := time.Now()
	resp, err := c.roundTrip(ctx, &h1Request{method: method, target: reqTarget, header: hs,
		body: bytes.NewReader(body), contentLength: int64(len(body))}, maxResponseBody)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	resp.Duration = time.Since(start)
	return resp, nil
}
