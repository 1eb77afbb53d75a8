package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// MemoryMetrics are the relay metrics Agents reads before and after
// connecting agents: resident memory, heap spans in use, goroutine stacks
// in use, and the number of goroutines.
var MemoryMetrics = []string{
	"process_resident_memory_bytes",
	"go_memstats_heap_inuse_bytes",
	"go_memstats_stack_inuse_bytes",
	"go_goroutines",
}

// Metrics maps unlabelled metric names to their values.
type Metrics map[string]float64

// ParseMetrics reads the unlabelled samples of a Prometheus text
// exposition (the format of /metrics). Labelled samples, comments and
// lines it does not understand are skipped.
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := make(Metrics)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || strings.ContainsRune(fields[0], '{') {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue
		}
		m[fields[0]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return m, nil
}

// ReadMetrics fetches and parses the relay's /metrics. token, when set, is
// sent as a bearer token.
func ReadMetrics(ctx context.Context, hc *http.Client, server, token string) (Metrics, error) {
	url := strings.TrimRight(server, "/") + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("metrics URL %q: %w", url, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the relay's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read the relay's metrics: GET %s answered %d", url, resp.StatusCode)
	}
	m, err := ParseMetrics(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	// process_resident_memory_bytes exists only where the process
	// collector can read it (Linux); the Go runtime's metrics always do.
	if _, ok := m["go_goroutines"]; !ok {
		return nil, fmt.Errorf("the relay's /metrics has no go_goroutines: is %s a hookrelay relay?", server)
	}
	return m, nil
}
