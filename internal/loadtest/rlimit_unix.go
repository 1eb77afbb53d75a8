//go:build unix

package loadtest

import (
	"fmt"
	"syscall"
)

// raiseFileLimit makes sure this process may open need file descriptors,
// raising the soft RLIMIT_NOFILE up to the hard limit when it must, and
// says what to do when even the hard limit is too low.
func raiseFileLimit(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read the open-file limit: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	if lim.Max < need {
		return fmt.Errorf("the open-file limit is %d (hard limit %d) but this run needs about %d: "+
			"raise it (ulimit -n %d, or LimitNOFILE= for systemd) for this tool and for the relay, or connect fewer agents",
			lim.Cur, lim.Max, need, need)
	}
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the open-file limit to %d: %w (try ulimit -n %d)", need, err, need)
	}
	return nil
}
