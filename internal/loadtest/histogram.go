package loadtest

import (
	"math"
	"time"
)

// histogram counts durations in buckets whose bounds grow by 1% from one
// microsecond, so that percentiles are within about half a percent of the
// true value while memory stays fixed however many requests are counted.
// Bucket 0 holds durations under a microsecond; durations past the last
// bucket (about 10 hours) are counted in it.
type histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	sum      time.Duration
	min, max time.Duration
}

const (
	histBuckets = 3500
	histGrowth  = 1.01
)

var logGrowth = math.Log(histGrowth)

// bucketOf returns the bucket of d.
func bucketOf(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us < 1 {
		return 0
	}
	i := 1 + int(math.Log(us)/logGrowth)
	return min(i, histBuckets-1)
}

// bucketMid returns a representative duration of bucket i: the geometric
// middle of its bounds.
func bucketMid(i int) time.Duration {
	if i == 0 {
		return time.Microsecond / 2
	}
	lower := math.Pow(histGrowth, float64(i-1))
	return time.Duration(lower * math.Sqrt(histGrowth) * float64(time.Microsecond))
}

func (h *histogram) add(d time.Duration) {
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d
	h.counts[bucketOf(d)]++
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// quantile returns the q-quantile (0 < q <= 1) of the counted durations,
// clamped to the smallest and largest seen; 0 when none were counted.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(max(bucketMid(i), h.min), h.max)
		}
	}
	return h.max
}

func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}
