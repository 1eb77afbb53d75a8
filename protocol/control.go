package protocol

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Control message types.
const (
	TypeHello       = "hello"       // agent → relay, first message
	TypeWelcome     = "welcome"     // relay → agent, the answer to hello
	TypeError       = "error"       // either way; see SPEC.md for when the session ends
	TypeSubscribe   = "subscribe"   // agent → relay, more subscriptions
	TypeUnsubscribe = "unsubscribe" // agent → relay
	TypeSubscribed  = "subscribed"  // relay → agent, the answer to subscribe
	TypeDrain       = "drain"       // relay → agent: reconnect, this relay is going away
	TypeHealth      = "health"      // agent → relay: how the agent's targets are doing (optional)
	TypeGroupState  = "group_state" // relay → agent: a group paused because its target is down, or flowing again (optional)
)

// GroupState.State values.
const (
	GroupPaused  = "paused"  // the target refuses connections: one probe at a time, the rest wait
	GroupFlowing = "flowing" // deliveries flow
)

// Error codes carried in Error.Code.
const (
	CodeVersionMismatch = "version_mismatch"
	CodeUnauthorized    = "unauthorized"
	CodeChannelNotFound = "channel_not_found"
	CodeBadRequest      = "bad_request"
	CodeLimit           = "limit_exceeded"
	CodeDraining        = "draining"
	CodeRevoked         = "token_revoked"
	CodeInternal        = "internal"
)

// Limits on control message fields, in bytes.
const (
	maxNameLength = 128 // a subscription's channel or group
	maxHostLength = 255 // Hello.Host
)

// ErrUnknownType is returned (wrapped) by ReadControl for a well-framed
// message of a type this version does not know. The stream is still in step,
// so a receiver past the handshake logs it and reads on (see SPEC.md).
var ErrUnknownType = errors.New("protocol: unknown control message type")

// ControlMessage is one message on the control stream. Type says which of
// the other fields is set.
type ControlMessage struct {
	Type        string         `json:"type"`
	Hello       *Hello         `json:"hello,omitempty"`
	Welcome     *Welcome       `json:"welcome,omitempty"`
	Error       *Error         `json:"error,omitempty"`
	Subscribe   []Subscription `json:"subscribe,omitempty"`
	Unsubscribe []Subscription `json:"unsubscribe,omitempty"`
	Subscribed  []ChannelInfo  `json:"subscribed,omitempty"`
	Drain       string         `json:"drain,omitempty"` // reason
	Health      *Health        `json:"health,omitempty"`
	GroupState  *GroupState    `json:"group_state,omitempty"`
}

// Subscription asks for the events of one channel, as one group.
type Subscription struct {
	Channel string `json:"channel"`
	Group   string `json:"group,omitempty"` // "" lets the relay pick the default group
	From    string `json:"from,omitempty"`  // "resume" (default) or "now"
}

// Subscription.From values.
const (
	FromResume = "resume"
	FromNow    = "now"
)

// DefaultGroup is the group the relay uses for a subscription that names
// none: one per token and host, so a developer's agent receives every event
// and resumes where it stopped after a reconnect.
func DefaultGroup(tokenID, host string) string {
	return "default:" + tokenID + ":" + host
}

// Hello opens the control stream.
type Hello struct {
	Version       int            `json:"version"`
	AgentVersion  string         `json:"agent_version"`
	Host          string         `json:"host"`
	Concurrency   int            `json:"concurrency"` // deliveries the agent runs at once; 0: the relay picks
	Subscriptions []Subscription `json:"subscriptions"`
}

// ChannelInfo describes one subscription the relay accepted.
type ChannelInfo struct {
	Channel string `json:"channel"`
	Group   string `json:"group"`
	URL     string `json:"url"` // the public ingress URL
}

// Limits the relay applies to this session.
type Limits struct {
	MaxBody        int64 `json:"max_body"`
	MaxConcurrency int   `json:"max_concurrency"`
}

// Welcome accepts a Hello.
type Welcome struct {
	SessionID string        `json:"session_id"`
	Channels  []ChannelInfo `json:"channels"`
	Limits    Limits        `json:"limits"`
	// Node names the relay node that holds the session, for the agent's
	// display; optional (older relays leave it out).
	Node string `json:"node,omitempty"`
}

// Limits on a Health message.
const (
	MaxHealthTargets = 64   // targets in one Health
	maxTargetURL     = 2048 // bytes of a TargetHealth.URL
	maxHealthError   = 1024 // bytes of a TargetHealth.Error
)

// Health tells the relay how the agent's targets are doing. The agent sends
// the whole list after the welcome and again whenever a target's state
// changes; each message replaces the previous one.
type Health struct {
	Targets []TargetHealth `json:"targets"`
}

// TargetHealth is the state of one target of the agent.
type TargetHealth struct {
	URL   string    `json:"url"`             // the target, without credentials
	Up    bool      `json:"up"`              // the target answered its last request or check
	Error string    `json:"error,omitempty"` // why it is down
	Since time.Time `json:"since"`           // when it entered this state
}

// Limits on a GroupState message.
const maxGroupStateError = 1024 // bytes of GroupState.Error

// GroupState tells an agent how one of its groups is doing on the relay:
// paused, because the agent's target refused connections (the relay sends
// one event at a time as a probe, and the next one in RetryInMS), or
// flowing again. The relay sends it when the state changes and after each
// probe that found the target still down.
type GroupState struct {
	Channel   string `json:"channel"`
	Group     string `json:"group"`
	State     string `json:"state"`                 // GroupPaused or GroupFlowing
	RetryInMS int64  `json:"retry_in_ms,omitempty"` // paused: the next probe goes out in this many milliseconds
	Error     string `json:"error,omitempty"`       // paused: the target's last error
}

func (g *GroupState) validate() error {
	if g == nil {
		return errors.New("protocol: group_state message without group_state")
	}
	if err := (Subscription{Channel: g.Channel, Group: g.Group}).Validate(); err != nil {
		return err
	}
	if g.State != GroupPaused && g.State != GroupFlowing {
		return fmt.Errorf("protocol: group_state state %q is neither %s nor %s", g.State, GroupPaused, GroupFlowing)
	}
	if g.RetryInMS < 0 {
		return errors.New("protocol: group_state retry_in_ms is negative")
	}
	if len(g.Error) > maxGroupStateError {
		return fmt.Errorf("protocol: group_state error longer than %d bytes", maxGroupStateError)
	}
	return nil
}

// Error refuses a Hello or a Subscribe, or ends a session.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// WriteControl checks m as ReadControl would and writes it as one frame, so
// a sender finds out about a malformed message before its peer does.
func WriteControl(w io.Writer, m *ControlMessage) error {
	if err := m.validate(); err != nil {
		return err
	}
	return WriteFrame(w, m, MaxControlFrame)
}

// ReadControl reads one control message and checks that it is well formed:
// a known type with the field it needs. Fields that belong to other types
// are dropped. A Hello of another protocol version is returned without
// further checks, so that the relay can answer it with VersionError.
// ReadControl returns io.EOF when the stream ended cleanly between messages.
func ReadControl(r io.Reader) (*ControlMessage, error) {
	var m ControlMessage
	if err := ReadFrame(r, &m, MaxControlFrame); err != nil {
		return nil, err
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	m.dropOthers()
	return &m, nil
}

func (m *ControlMessage) validate() error {
	missing := func(field string) error {
		return fmt.Errorf("protocol: %s message without %s", m.Type, field)
	}
	switch m.Type {
	case TypeHello:
		if m.Hello == nil {
			return missing("hello")
		}
		return m.Hello.validate()
	case TypeWelcome:
		if m.Welcome == nil {
			return missing("welcome")
		}
		if m.Welcome.Limits.MaxBody < 0 || m.Welcome.Limits.MaxConcurrency < 0 {
			return errors.New("protocol: welcome with negative limits")
		}
	case TypeError:
		if m.Error == nil || m.Error.Code == "" {
			return missing("error code")
		}
	case TypeSubscribe:
		return validSubscriptions(m.Type, m.Subscribe)
	case TypeUnsubscribe:
		return validSubscriptions(m.Type, m.Unsubscribe)
	case TypeSubscribed:
		if len(m.Subscribed) == 0 {
			return missing("subscribed channels")
		}
	case TypeDrain:
	case TypeHealth:
		return m.Health.validate()
	case TypeGroupState:
		return m.GroupState.validate()
	default:
		return fmt.Errorf("%w %q", ErrUnknownType, m.Type)
	}
	return nil
}

// dropOthers clears the fields that do not belong to m.Type, so a message
// carries exactly what its type says.
func (m *ControlMessage) dropOthers() {
	keep := ControlMessage{Type: m.Type}
	switch m.Type {
	case TypeHello:
		keep.Hello = m.Hello
	case TypeWelcome:
		keep.Welcome = m.Welcome
	case TypeError:
		keep.Error = m.Error
	case TypeSubscribe:
		keep.Subscribe = m.Subscribe
	case TypeUnsubscribe:
		keep.Unsubscribe = m.Unsubscribe
	case TypeSubscribed:
		keep.Subscribed = m.Subscribed
	case TypeDrain:
		keep.Drain = m.Drain
	case TypeHealth:
		keep.Health = m.Health
	case TypeGroupState:
		keep.GroupState = m.GroupState
	}
	*m = keep
}

// validate checks a Hello of this protocol version. A Hello of another
// version passes: its other fields may mean something else, and the relay
// must be able to read it to answer with VersionError.
func (h *Hello) validate() error {
	if h.Version != Version {
		return nil
	}
	if len(h.Host) > maxHostLength {
		return fmt.Errorf("protocol: hello host longer than %d bytes", maxHostLength)
	}
	if h.Concurrency < 0 {
		return fmt.Errorf("protocol: hello concurrency %d is negative", h.Concurrency)
	}
	for _, s := range h.Subscriptions {
		if err := s.Validate(); err != nil {
			return err
		}
	}
	return nil
}

func (h *Health) validate() error {
	if h == nil {
		return errors.New("protocol: health message without health")
	}
	if len(h.Targets) > MaxHealthTargets {
		return fmt.Errorf("protocol: health lists %d targets, more than %d", len(h.Targets), MaxHealthTargets)
	}
	for _, t := range h.Targets {
		if t.URL == "" || len(t.URL) > maxTargetURL || hasCTL(t.URL) {
			return fmt.Errorf("protocol: health target URL must be 1 to %d printable bytes", maxTargetURL)
		}
		if len(t.Error) > maxHealthError {
			return fmt.Errorf("protocol: health target error longer than %d bytes", maxHealthError)
		}
	}
	return nil
}

func validSubscriptions(kind string, subs []Subscription) error {
	if len(subs) == 0 {
		return fmt.Errorf("protocol: %s message without subscriptions", kind)
	}
	for _, s := range subs {
		if err := s.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks a subscription's fields.
func (s Subscription) Validate() error {
	if s.Channel == "" || len(s.Channel) > maxNameLength || hasCTL(s.Channel) {
		return fmt.Errorf("protocol: subscription channel must be 1 to %d printable bytes", maxNameLength)
	}
	if len(s.Group) > maxNameLength || hasCTL(s.Group) {
		return fmt.Errorf("protocol: subscription group must be at most %d printable bytes", maxNameLength)
	}
	switch s.From {
	case "", FromResume, FromNow:
	default:
		return fmt.Errorf("protocol: subscription from must be %s or %s, not %q", FromResume, FromNow, s.From)
	}
	return nil
}

// VersionError is the error a relay sends for a Hello of another version;
// its message tells the user which side to upgrade.
func VersionError(agentVersion int) *Error {
	side := "upgrade hookrelay on this machine (the agent) to a release that speaks version " + fmt.Sprint(Version)
	if agentVersion > Version {
		side = "the relay is older than this agent: upgrade the relay, or use an older agent"
	}
	return &Error{Code: CodeVersionMismatch, Message: fmt.Sprintf(
		"agent speaks protocol version %d, relay speaks %d: %s", agentVersion, Version, side)}
}
