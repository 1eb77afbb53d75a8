package server

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: every
// goroutine the relay starts must end by Close or Serve's return.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http's idle keep-alive connections of test clients.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}
