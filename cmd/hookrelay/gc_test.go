package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestTuneAgentGC checks that the agent raises GOGC and sets a memory
// limit only when the environment chose neither.
func TestTuneAgentGC(t *testing.T) {
	restore := func() {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
	}
	restore()
	t.Cleanup(restore)
	for _, tc := range []struct {
		gogc, memlimit string
		wantPercent    int
		wantLimit      int64
	}{
		{"", "", agentGCPercent, agentMemoryLimit},
		{"50", "", 100, math.MaxInt64},
		{"", "2GiB", 100, math.MaxInt64},
	} {
		t.Setenv("GOGC", tc.gogc)
		t.Setenv("GOMEMLIMIT", tc.memlimit)
		restore()
		tuneAgentGC()
		gotPercent := debug.SetGCPercent(100)
		gotLimit := debug.SetMemoryLimit(-1)
		if gotPercent != tc.wantPercent || gotLimit != tc.wantLimit {
			t.Errorf("GOGC=%q GOMEMLIMIT=%q: GC percent %d, memory limit %d; want %d, %d",
				tc.gogc, tc.memlimit, gotPercent, gotLimit, tc.wantPercent, tc.wantLimit)
		}
	}
}
