package protocol_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// TestSpecMatchesCode checks that SPEC.md states the numbers and names the
// code uses, so that a change to one without the other fails.
func TestSpecMatchesCode(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	spec := string(data)
	yamux := protocol.MuxConfig(nil)
	want := []string{
		// names
		protocol.Subprotocol, "GET /tunnel", "Authorization: Bearer TOKEN",
		fmt.Sprintf("`Version` is %d", protocol.Version),
		`"default:" + token id + ":" + host`,
		// limits
		grouped(protocol.MaxMessage) + " bytes", grouped(protocol.MaxControlFrame) + " bytes",
		grouped(protocol.MaxHeaderFrame) + " bytes", grouped(protocol.MaxBodyLength),
		fmt.Sprintf("%d MiB (`StreamWindow`)", protocol.StreamWindow>>20),
		fmt.Sprintf("%d KiB (`RelayStreamWindow`)", protocol.RelayStreamWindow>>10),
		fmt.Sprintf("| accept backlog | %d |", yamux.AcceptBacklog),
		fmt.Sprintf("a yamux ping every %s", seconds(yamux.KeepAliveInterval)),
		fmt.Sprintf("| write timeout | %s |", seconds(yamux.ConnectionWriteTimeout)),
		fmt.Sprintf("| stream open timeout | %s |", seconds(yamux.StreamOpenTimeout)),
		fmt.Sprintf("| stream close timeout | %s |", seconds(yamux.StreamCloseTimeout)),
		fmt.Sprintf("(default **%s**)", seconds(protocol.DefaultPingInterval)),
		fmt.Sprintf("at most %d (`MaxHealthTargets`)", protocol.MaxHealthTargets),
		fmt.Sprintf("%s + %s = **%s**", seconds(protocol.DefaultPingInterval), seconds(protocol.DefaultPongTimeout),
			seconds(protocol.DefaultPingInterval+protocol.DefaultPongTimeout)),
	}
	for _, code := range []string{
		protocol.TypeHello, protocol.TypeWelcome, protocol.TypeError, protocol.TypeSubscribe,
		protocol.TypeSubscribed, protocol.TypeUnsubscribe, protocol.TypeDrain, protocol.TypeHealth,
		protocol.CodeVersionMismatch, protocol.CodeUnauthorized, protocol.CodeChannelNotFound,
		protocol.CodeBadRequest, protocol.CodeLimit, protocol.CodeDraining, protocol.CodeRevoked, protocol.CodeInternal,
		protocol.ErrCodeConnectionRefused, protocol.ErrCodeTimeout, protocol.ErrCodeTarget,
		protocol.ErrCodeBadDelivery, protocol.ErrCodeAgentStopping, protocol.ErrCodeTooLarge, protocol.ErrCodeNoRoute,
		protocol.FromResume, protocol.FromNow,
	} {
		want = append(want, "`"+code+"`")
	}
	for _, w := range want {
		if !strings.Contains(spec, w) {
			t.Errorf("SPEC.md does not say %q", w)
		}
	}
}

// grouped writes n with thousands separators, as SPEC.md does.
func grouped(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func seconds(d time.Duration) string { return fmt.Sprintf("%d s", int(d.Seconds())) }
