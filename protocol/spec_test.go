package protocol_test

import (
	"bytes"
	"encoding/hex"
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
		fmt.Sprintf("| accept backlog | %d on the agent, ", yamux.AcceptBacklog),
		"| keepalive | off |",
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
		protocol.TypeGroupState, protocol.GroupPaused, protocol.GroupFlowing,
		protocol.CodeVersionMismatch, protocol.CodeUnauthorized, protocol.CodeChannelNotFound,
		protocol.CodeBadRequest, protocol.CodeLimit, protocol.CodeDraining, protocol.CodeRevoked, protocol.CodeInternal,
		protocol.ErrCodeConnectionRefused, protocol.ErrCodeTimeout, protocol.ErrCodeTarget,
		protocol.ErrCodeBadDelivery, protocol.ErrCodeAgentStopping, protocol.ErrCodeTooLarge, protocol.ErrCodeNoRoute,
		protocol.FromResume, protocol.FromNow,
	} {
		want = append(want, "`"+code+"`")
	}
	if yamux.EnableKeepAlive {
		t.Error("yamux keepalives are on; SPEC.md says Conn's pings are the only liveness check")
	}
	for _, w := range want {
		if !strings.Contains(spec, w) {
			t.Errorf("SPEC.md does not say %q", w)
		}
	}
}

// TestSpecExamples checks that the hex dumps of section 6 are what the
// encoder writes for the values they describe.
func TestSpecExamples(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	dumps := hexDumps(string(data))
	if len(dumps) != 3 {
		t.Fatalf("SPEC.md has %d hex dumps, want 3 (a request, a response, an error response)", len(dumps))
	}
	var req bytes.Buffer
	if err := protocol.WriteRequest(&req, &protocol.DeliveryRequest{
		EventID: "evt_1", DeliveryID: "dlv_1", Attempt: 1, Channel: "ch_7f3a", Method: "POST",
		Path: "/github", RawQuery: "debug=1",
		Headers:    []protocol.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "X-Name", Value: "caf\xe9"}},
		BodyLength: 2, ReceivedAt: time.Date(2025, 3, 1, 12, 30, 45, 123456789, time.UTC), RemoteAddr: "140.82.115.1",
	}, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	var resp bytes.Buffer
	if err := protocol.WriteResponse(&resp, &protocol.DeliveryResponse{
		Status: 200, Headers: []protocol.Header{{Name: "Content-Type", Value: "text/plain"}}, BodyLength: 2, Duration: 3250 * time.Microsecond,
	}, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	var errResp bytes.Buffer
	if err := protocol.WriteResponse(&errResp, &protocol.DeliveryResponse{
		Error: "connection refused", ErrorCode: protocol.ErrCodeConnectionRefused, Duration: 512 * time.Microsecond,
	}, nil); err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]byte{req.Bytes(), resp.Bytes(), errResp.Bytes()} {
		if !bytes.Equal(dumps[i], want) {
			t.Errorf("hex dump %d in SPEC.md:\n% x\nthe encoder writes:\n% x", i+1, dumps[i], want)
		}
	}
}

// hexDumps returns the bytes of each text block of SPEC.md whose lines
// start with hex bytes: the leading two-digit hex words of each line.
func hexDumps(spec string) [][]byte {
	var dumps [][]byte
	for _, block := range strings.Split(spec, "```text\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		var dump []byte
		for line := range strings.SplitSeq(block, "\n") {
			for _, word := range strings.Fields(line) {
				b, err := hex.DecodeString(word)
				if err != nil || len(b) != 1 {
					break
				}
				dump = append(dump, b[0])
			}
		}
		dumps = append(dumps, dump)
	}
	return dumps
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
