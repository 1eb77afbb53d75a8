package store

import (
	"context"
	"errors"
	"testing"
)

func TestAppendAndWait(t *testing.T) {
	t.Parallel()
	failed := errors.New("commit failed")
	for _, tc := range []struct {
		name                string
		startErr, commitErr error
		want                error
		wantSeq             int64
	}{
		{"committed", nil, nil, nil, 7},
		{"not taken", ErrUnavailable, nil, ErrUnavailable, 0},
		{"commit failed", nil, failed, failed, 0},
	} {
		e := &Event{ID: "e", ChannelID: "c"}
		err := AppendAndWait(t.Context(), e, func(_ context.Context, e *Event) (*Commit, error) {
			if tc.startErr != nil {
				return nil, tc.startErr
			}
			e.Seq = 7
			c, settle := NewCommit()
			go settle(tc.commitErr) // settled later: AppendAndWait waits for it
			return c, nil
		})
		if err != tc.want || e.Seq != tc.wantSeq {
			t.Errorf("%s: error %v, Seq %d; want %v, %d (e as it was when the append failed)",
				tc.name, err, e.Seq, tc.want, tc.wantSeq)
		}
	}
}
