// Package store holds hookrelay's durable state: channels, events, groups
// and their delivery progress, deliveries, teams and tokens. Store is the
// interface the relay uses; store/sqlite and store/postgres implement it,
// and storetest holds the contract every implementation must pass.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
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
// kept by storing a list of these, never a map. It is the wire's type, so a
// header list goes from ingress through the store to the agent without a
// copy. Value holds bytes, not text: a store keeps values that are not
// valid UTF-8 exactly (see AppendHeaders). Its JSON form is the wire's;
// the HTTP API has views of its own.
type Header = protocol.Header

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
	ID  string // assigned by the caller (random, url-safe)
	Seq int64  // assigned by the store when it takes the append (see StartAppend)
	// ChannelID, Method, Path, RawQuery, Headers and Body are kept as
	// given, byte for byte (RawQuery and header values need not be UTF-8).
	ChannelID string
	Method    string
	Path      string // sub-path after /h/{channel}, always starting with "/"
	RawQuery  string
	Headers   []Header
	// Body is nil only when not loaded (ListEvents without WithBody, Pending
	// above MaxBody); a loaded empty body is non-nil.
	Body         []byte
	Size         int // body length in bytes, set also when Body is not loaded
	RemoteAddr   string
	ReceivedAt   time.Time
	State        EventState
	RejectReason string
	// ReplayOf is the id of the event this one is an edited replay of (the
	// replay API with edits stores a new event); "" for a webhook received
	// at ingress. The original may have been deleted since.
	ReplayOf string
	// RepeatOf is set by ingress only, never stored: the id of an event
	// whose commit failed after its delivery had started and whose webhook
	// this one repeats. It rides on the attempts handed over in memory.
	RepeatOf string

	// Summary of delivery, maintained by RecordProgress. A store keeps it
	// apart from the body, so recording a delivery never rewrites the body.
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
	// value or the body, ignoring the case of ASCII letters (other bytes
	// compare as they are).
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

// PendingQuery selects a page of a group's backlog (Store.Pending).
type PendingQuery struct {
	GroupID int64
	// AfterSeq: only events with Seq > max(AfterSeq, the group's DoneThrough).
	AfterSeq int64
	Limit    int // at most this many events; <=0 means 100
	// MaxBody: bodies of at most this many bytes are loaded; a larger one
	// comes back with Body nil and Size set (load it with GetEvent when
	// sending it). <=0 loads every body.
	MaxBody int
}

// PendingPage is what Pending returns: a page of events and the horizon of
// the snapshot it was read from.
type PendingPage struct {
	// Events are accepted events of the group's channel that are not done
	// for the group, oldest first.
	Events []Event
	// Horizon is the highest seq among the channel's committed events (of
	// any state, done or not) in the snapshot the page was read from; 0
	// when the channel had none. By the visibility rule of Store, every
	// event of the channel that becomes visible after that snapshot has a
	// seq above Horizon: a worker that has read the backlog up to the end
	// can take every newer event from a hand-over in memory instead.
	Horizon int64
}

// Progress is what a group's worker reports in one RecordProgress call:
// the attempts it finished since its last report and how far the group got.
type Progress struct {
	GroupID int64
	// Deliveries are finished attempts, in the order they finished. Their
	// GroupID is taken from Progress.
	Deliveries []Delivery
	// DoneThrough raises the group's DoneThrough to this seq (never lowers
	// it); 0 leaves it as it is.
	DoneThrough int64
	// SeenAt sets the group's LastSeenAt (a group with a connected agent
	// stays alive); zero leaves it as it is.
	SeenAt time.Time
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

// Limits bound what a store keeps of its own accord; each implementation
// takes them when it is opened. The zero value means the defaults.
type Limits struct {
	// RejectedEvents and RejectedBytes cap, per channel, the rejected
	// events kept (their count, and the sum of their body sizes). Appending
	// a rejected event drops the channel's oldest rejected events, in the
	// same transaction, until both caps hold again; the event just appended
	// is always kept, even when its body alone is over RejectedBytes.
	// Accepted events do not count. 0 means the default; <0: no cap.
	RejectedEvents int
	RejectedBytes  int64
}

// Default caps on rejected events per channel.
const (
	DefaultRejectedEvents = 100
	DefaultRejectedBytes  = 10 << 20
)

// WithDefaults returns l with zero fields set to their defaults.
func (l Limits) WithDefaults() Limits {
	if l.RejectedEvents == 0 {
		l.RejectedEvents = DefaultRejectedEvents
	}
	if l.RejectedBytes == 0 {
		l.RejectedBytes = DefaultRejectedBytes
	}
	return l
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
//
// Seqs and visibility. Every append gets a seq when the store takes it,
// before its commit: seqs are strictly increasing in the order appends are
// taken and never reused, not even when an append fails or its transaction
// rolls back (seqs may therefore have gaps). An event is visible to readers
// once its commit succeeded. Per channel, events become visible in seq
// order: a reader that sees the event with seq N of channel C also sees
// every event of C with a lower seq whose commit succeeded, and no event of
// C with a seq below N becomes visible later. (SQLite, with one writer,
// gives this for the whole store; a store with several writers needs it
// only per channel, by serialising the appends of a channel.) The group
// workers rely on it: it is what makes PendingPage.Horizon a safe point to
// switch from reading the store to taking events handed over in memory.
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

	// StartAppend hands the event to the store and returns as soon as the
	// store has taken it and assigned e.Seq, before the commit. It also
	// sets ReceivedAt when zero, State to EventAccepted when empty, and
	// Size. The returned Commit reports the commit's outcome: nil means the
	// event is durable (it survives a crash of the process) and visible;
	// an error means it was not stored and never will be, and its seq is
	// not reused: ErrNotFound if the channel does not exist, ErrConflict if
	// the id does, ErrUnavailable when the write failed. Appending a
	// rejected event enforces the store's Limits in the same transaction.
	//
	// StartAppend itself fails (and e is left as it was) only when the
	// store did not take the event: ctx ended first, the store is closed,
	// or (ErrUnavailable) a store whose seqs come from a database server
	// could not get one from it. ctx bounds only that wait: once taken, the append runs to its
	// end whatever happens to ctx. The store reads e (its Body and Headers
	// too) until the commit is done: the caller must not change them
	// before. Concurrent appends are committed together (group commit).
	StartAppend(ctx context.Context, e *Event) (*Commit, error)
	// AppendEvent is StartAppend followed by waiting for the commit: when
	// it returns nil the event is durable; when it returns an error the
	// event was not stored and e is left as it was.
	AppendEvent(ctx context.Context, e *Event) error
	GetEvent(ctx context.Context, id string) (Event, error) // with body
	ListEvents(ctx context.Context, q EventQuery) ([]Event, error)
	// MaxSeq is the highest seq the store has assigned so far (0 when
	// none): every seq ever handed out is at most MaxSeq and every later
	// one is above it. It counts appends still in flight or failed and
	// events deleted since; a store may also count seqs it reserved and
	// skipped (after a restart, say).
	MaxSeq(ctx context.Context) (int64, error)

	// EnsureGroup returns the group of the channel with that name, creating
	// it when missing. A new group with FromNow starts after MaxSeq (it
	// skips every append taken before); a new group with FromResume starts
	// before the channel's oldest event. An existing group with FromNow
	// skips to MaxSeq; with FromResume it is returned as is. Either way its
	// LastSeenAt is set to now. ErrNotFound if the channel does not exist.
	EnsureGroup(ctx context.Context, channelID, name string, from From) (Group, error)
	// ListGroups lists the channel's groups, oldest first.
	ListGroups(ctx context.Context, channelID string) ([]Group, error)
	// Pending reads one page of the group's backlog from one snapshot:
	// accepted events of the group's channel with Seq > max(q.AfterSeq,
	// DoneThrough) that are not done for the group (no Done delivery
	// recorded for it by this group), oldest first, at most q.Limit, with
	// bodies up to q.MaxBody, each with GroupAttempts set; and the
	// snapshot's Horizon (see PendingPage). ErrNotFound for an unknown
	// group.
	Pending(ctx context.Context, q PendingQuery) (PendingPage, error)

	// RecordProgress writes a group worker's report in one transaction
	// (one commit, however many deliveries it holds):
	//   - each delivery is stored, with EventSeq and ChannelID taken from
	//     the stored event (found by EventID), and updates the event's
	//     summary: Attempts+1; LastStatus when Status > 0; DeliveredAny
	//     when Status > 0 or Done without Error. A delivery whose event no
	//     longer exists (deleted, or its commit failed) is skipped, not an
	//     error;
	//   - the group's DoneThrough is raised to p.DoneThrough and its
	//     LastSeenAt set to p.SeenAt (each when set);
	//   - an event with a Done delivery in p and a seq above the group's
	//     DoneThrough (after raising it) is marked done for the group, so
	//     Pending leaves it out; events at or below DoneThrough need no mark.
	// A group that no longer exists is skipped likewise: its deliveries are
	// still stored (history outlives groups). ErrConflict if a delivery id
	// is already stored; nothing of p is written then. A delivery may be
	// reported while its event's commit is still in flight (a relay
	// forwards before the commit is done): the store writes its record
	// after that commit (SQLite: its one writer takes the append first;
	// PostgreSQL: it waits for the appends of this Store), and skips it
	// when the commit failed.
	RecordProgress(ctx context.Context, p Progress) error
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
