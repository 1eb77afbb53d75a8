package dispatch

import (
	"time"
)

type retryItem struct {
	due  time.Time
	item readyItem
}

// retryHeap orders retries by due time.
type retryHeap []retryItem

func (h retryHeap) Len() int { return len(h) }

func (h retryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }

func (h retryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

func (h *retryHeap) Push(x any) { *h = append(*h, x.(retryItem)) }

func (h *retryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// seqHeap orders seqs, lowest first.
type seqHeap []int64

func (h seqHeap) Len() int { return len(h) }

func (h seqHeap) Less(i, j int) bool { return h[i] < h[j] }

func (h seqHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

func (h *seqHeap) Push(x any) { *h = append(*h, x.(int64)) }

func (h *seqHeap) Pop() any {
	old := *h
	seq := old[len(old)-1]
	*h = old[:len(old)-1]
	return seq
}
