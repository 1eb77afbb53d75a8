// Package store holds hookrelay's durable state: channels, events, groups
// and their delivery progress, deliveries, teams and tokens. Store is the
// interface the relay uses; store/sqlite (and later store/postgres)
// implement it, and storetest holds the contract every implementation must
// pass.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound means the named channel, event, group, team or token does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means an object with that id or name already exists.
	ErrConflict = errors.New("already exists")
	// ErrUnavailable wraps every failure to write durable state (disk full,
	// read-only file, closed store): the relay answers 503 for it.
	ErrUnavailable = errors.New("store unavailable")
)

// Header is one header line as received: name case, order and repeats are
// kept by storing a list of these, never a map.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Channel is an inbox with a public ingress URL.
type Channel struct {
	ID        string    // url-safe; 128-bit random unless a team names it
	TeamID    string    // owning team; "" for channels of the admin / anonymous
	Async     bool      // always answer 202 at once
	ExpiresAt time.Time // zero: never; else deleted with its events after this time
	CreatedAt time.Time

	// Security settings (issue 4); empty values mean "not set".
	ReadKeyHash  string   // SHA-256 hex of the channel's read key
	VerifyScheme string   // github|stripe|slack|standard-webhooks|hmac
	VerifySecret string   // the provider secret, kept as given
	VerifyHeader string   // header name for the generic hmac scheme
	AllowedCIDRs []string // source address ranges allowed to post; empty: any
	RateLimit    float64  // events per second; 0: relay default
}

// EventState says whether an event was accepted for delivery.
type EventState string

// Event states.
const (
	EventAccepted EventState = "accepted"
	EventRejected EventState = "rejected" // kept for inspection, never delivered
)

// Event is one received webhook request, stored byte for byte.
type Event struct {
	ID           string // assigned by the caller (random, url-safe)
	Seq          int64  // assigned by AppendEvent; strictly increasing across the store, in commit order
	ChannelID    string
	Method       string
	Path         string // sub-path after /h/{channel}, always starting with "/"
	RawQuery     string
	Headers      []Header
	Body         []byte
	Size         int // body length in bytes, set also when Body is not loaded // nil only when not loaded (ListEvents without WithBody); a loaded empty body is non-nil
	RemoteAddr   string
	ReceivedAt   time.Time
	State        EventState
	RejectReason string

	// Summary of delivery, maintained by RecordDelivery.
	LastStatus int // app's status of the latest delivery with a response; 0: none yet
	Attempts   int // delivery attempts over all groups
	// GroupAttempts is set by Pending only: the attempts already recorded
	// for the group asking, so a delivery cut off by a crash or restart is
	// numbered as a repeat.
	GroupAttempts int
	DeliveredAny  bool
}

// EventQuery selects events of one channel, newest first.
type EventQuery struct {
	ChannelID string    // "" selects events of every channel
	BeforeSeq int64     // only Seq < BeforeSeq (cursor for the next page); 0: no bound
	AfterSeq  int64     // only Seq > AfterSeq; 0: no bound
	Limit     int       // at most this many; <=0 means 50
	Method    string    // exactly this method; "": any
	Status    int       // LastStatus equals this; 0: any
	Since     time.Time // only ReceivedAt >= Since; zero: no bound
	Until     time.Time // only ReceivedAt < Until; zero: no bound
	// Text selects events with this substring in a header name, a header
	// value or the body, ignoring the case of ASCII letters.
	Text     string
	WithBody bool // load bodies too (else Body is nil)
}

// Group is a set of agents of one channel sharing a delivery cursor.
type Group struct {
	ID        int64
	ChannelID string
	Name      string
	// DoneThrough: every event of the channel with Seq <= DoneThrough is done
	// for this group (delivered, given up, or from before the group started).
	DoneThrough int64
	CreatedAt   time.Time
	LastSeenAt  time.Time
}

// From says where a newly connecting group starts.
type From string

// Starting points.
const (
	FromResume From = "resume" // a new group gets events still within retention; an existing one continues
	FromNow    From = "now"    // skip everything committed before this moment
)

// Delivery is one attempt to hand one event to one agent of a group.
type Delivery struct {
	ID              string
	EventID         string
	EventSeq        int64
	ChannelID       string
	GroupID         int64
	GroupName       string
	AgentID         string
	Attempt         int
	StartedAt       time.Time
	Duration        time.Duration
	Status          int    // the app's HTTP status; 0 when Error is set
	Error           string // why the attempt failed (target refused, timeout, agent gone)
	ResponseHeaders []Header
	ResponseBody    []byte // possibly truncated by the caller
	// Done marks the event finished for the group: delivered (a response
	// frame arrived) or given up after the attempt cap.
	Done bool
}

// Role is what a token may do.
type Role string

// Roles.
const (
	RoleAdmin  Role = "admin"  // everything, every team
	RoleMember Role = "member" // read, replay, connect, manage the team's channels
	RoleAgent  Role = "agent"  // connect and read the team's channels
)

// Team owns channels and tokens.
type Team struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

// Token is an API credential. Only the hash of its secret is stored.
type Token struct {
	ID         string
	TeamID     string // "" for relay-wide admin tokens
	Role       Role
	Name       string
	Hash       string // SHA-256 hex of the secret
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	LastUsedAt time.Time
	Revoked    bool
}

// PruneOptions says what the retention job deletes.
type PruneOptions struct {
	Now                 time.Time
	EventsBefore        time.Time // delete events received before this time
	MaxEventsPerChannel int       // keep at most this many newest events per channel; 0: no cap
	GroupsIdleBefore    time.Time // drop groups last seen before this time
}

// PruneResult counts what Prune deleted.
// Events and Groups include those deleted with an expired channel.
type PruneResult struct {
	Events   int
	Groups   int
	Channels int // expired (TTL) channels, deleted with their events
}

// Store is hookrelay's durable state. Every method is safe for concurrent
// use. Write failures, and every other failure of the database (a read on a
// closed store included), are wrapped with ErrUnavailable; ErrNotFound and
// ErrConflict are for what callers asked. Times are kept to the
// microsecond. A zero CreatedAt (channel, team, token) or ReceivedAt is set
// to the current time.
type Store interface {
	// Channels.
	CreateChannel(ctx context.Context, c Channel) error // ErrConflict if the id exists
	GetChannel(ctx context.Context, id string) (Channel, error)
	// UpdateChannel replaces every field but ID and CreatedAt; ErrNotFound
	// if the channel does not exist.
	UpdateChannel(ctx context.Context, c Channel) error
	// ListChannels lists channels of a team, oldest first; teamID "*" lists all.
	ListChannels(ctx context.Context, teamID string) ([]Channel, error)
	// DeleteChannel deletes the channel with its events, groups and
	// deliveries; ErrNotFound if it does not exist.
	DeleteChannel(ctx context.Context, id string) error

	// AppendEvent commits the event durably and sets e.Seq (and ReceivedAt
	// when zero, State to EventAccepted when empty). Concurrent calls are
	// batched into few transactions (group commit). When it returns nil the
	// event survives a crash of the process; when it returns an error the
	// event was not stored. ErrNotFound if the channel does not exist,
	// ErrConflict if the id does.
	AppendEvent(ctx context.Context, e *Event) error
	GetEvent(ctx context.Context, id string) (Event, error) // with body
	ListEvents(ctx context.Context, q EventQuery) ([]Event, error)
	// MaxSeq is the highest Seq committed so far (0 when none), even if
	// that event was deleted since.
	MaxSeq(ctx context.Context) (int64, error)

	// EnsureGroup returns the group of the channel with that name, creating
	// it when missing. A new group with FromNow starts after MaxSeq; a new
	// group with FromResume starts before the channel's oldest event. An
	// existing group with FromNow skips to MaxSeq; with FromResume it is
	// returned as is. Either way its LastSeenAt is set to now. ErrNotFound
	// if the channel does not exist.
	EnsureGroup(ctx context.Context, channelID, name string, from From) (Group, error)
	// ListGroups lists the channel's groups, oldest first.
	ListGroups(ctx context.Context, channelID string) ([]Group, error)
	// TouchGroup sets LastSeenAt (a group with a connected agent stays
	// alive). TouchGroup, AdvanceGroup and Pending return ErrNotFound for
	// an unknown group.
	TouchGroup(ctx context.Context, groupID int64, at time.Time) error
	// AdvanceGroup raises DoneThrough to seq (never lowers it).
	AdvanceGroup(ctx context.Context, groupID int64, seq int64) error
	// Pending returns accepted events of the group's channel with Seq >
	// max(afterSeq, DoneThrough) that are not done for the group, oldest
	// first, at most limit (<=0 means 100), with bodies.
	Pending(ctx context.Context, groupID int64, afterSeq int64, limit int) ([]Event, error)

	// RecordDelivery stores one attempt, updates the event's summary
	// (Attempts+1; LastStatus when Status > 0; DeliveredAny when Status > 0
	// or Done without Error), and, when d.Done, marks the event done for the
	// group. EventSeq and ChannelID are taken from the stored event.
	// ErrNotFound if the event does not exist, ErrConflict if the id does.
	RecordDelivery(ctx context.Context, d Delivery) error
	// Deliveries lists the attempts of one event, oldest (StartedAt) first;
	// none for an unknown event.
	Deliveries(ctx context.Context, eventID string) ([]Delivery, error)

	// Teams and tokens.
	CreateTeam(ctx context.Context, t Team) error // ErrConflict if id or name exists
	GetTeam(ctx context.Context, id string) (Team, error)
	TeamByName(ctx context.Context, name string) (Team, error)
	ListTeams(ctx context.Context) ([]Team, error)  // by name
	CreateToken(ctx context.Context, t Token) error // ErrConflict if the id or the hash exists
	// TokenByHash finds a token by the hash of its secret (revoked ones too;
	// the caller checks Revoked and ExpiresAt).
	TokenByHash(ctx context.Context, hash string) (Token, error)
	GetToken(ctx context.Context, id string) (Token, error)
	// ListTokens lists a team's tokens, oldest first; "" lists the
	// relay-wide ones, "*" all.
	ListTokens(ctx context.Context, teamID string) ([]Token, error)
	RevokeToken(ctx context.Context, id string) error
	TouchToken(ctx context.Context, id string, at time.Time) error

	// Prune applies retention and channel TTLs.
	Prune(ctx context.Context, o PruneOptions) (PruneResult, error)

	// Ping reports whether the store can be written now.
	Ping(ctx context.Context) error
	// Close releases the store; later calls fail with ErrUnavailable.
	// Calling Close again is harmless.
	Close() error
}
