package store

import (
	"context"
	"time"
)

// Commit is the outcome, still to come, of an append whose seq is already
// assigned (Store.StartAppend). It lets a caller act on the seq at once and
// learn later whether the event was committed.
type Commit struct {
	done chan struct{}
	err  error // set before done is closed
}

// NewCommit returns a Commit whose outcome is still to come, and the
// function that settles it with the commit's result (nil: committed). It is
// for implementations of Store; settle must be called exactly once.
func NewCommit() (c *Commit, settle func(error)) {
	c = &Commit{done: make(chan struct{})}
	return c, func(err error) {
		c.err = err
		close(c.done)
	}
}

// Done is closed once the outcome is known.
func (c *Commit) Done() <-chan struct{} { return c.done }

// Err is the outcome once Done is closed (nil: committed); nil before.
func (c *Commit) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Wait waits for the outcome and returns it. When ctx ends first it returns
// ctx's error, which says nothing about the commit: it goes on regardless.
func (c *Commit) Wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AppendAndWait is Store.AppendEvent made of start, the store's
// StartAppend: it starts the append, waits for its commit (which runs to
// its end whatever ctx does once the store took the event), and leaves e
// as it was when the append failed.
func AppendAndWait(ctx context.Context, e *Event, start func(context.Context, *Event) (*Commit, error)) error {
	before := *e
	commit, err := start(ctx, e)
	if err == nil {
		<-commit.Done()
		err = commit.Err()
	}
	if err != nil {
		*e = before
	}
	return err
}

// BatchCommit describes one group commit of a store's writer that held at
// least one append (CommitObserver).
type BatchCommit struct {
	// Events is the number of appends in the batch.
	Events int
	// Duration runs from the start of the batch's transaction to the end
	// of its commit (the fsync, or PostgreSQL's answer to it).
	Duration time.Duration
	// Err is the batch's failure: nil when it committed.
	Err error
}

// CommitObserver is implemented by stores that can report their group
// commits (the relay's /metrics). ObserveCommits sets the function called
// after each batch of appends; it runs on the store's writer and must not
// block. nil stops the reports.
type CommitObserver interface {
	ObserveCommits(f func(BatchCommit))
}
