package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookrelay/hookrelay/server/store"
)

// PostgresConfig configures a Postgres node. URL and NodeID are required.
type PostgresConfig struct {
	// URL is the database the relay's store uses (postgres://...).
	URL string
	// NodeID names this node among those sharing the database. Two live
	// processes must not share one: a node that finds its id taken over
	// by another process logs an error at each heartbeat.
	NodeID string
	// MaxConns is the size of the node's own connection pool (default 8);
	// the listening connection is apart from it.
	MaxConns int
	// QueryTimeout bounds each call (default 10s).
	QueryTimeout time.Duration
	// NodeTTL: a node not heard from for this long is dead; its agents
	// leave the lists (default 30s; nodes say they are alive every third
	// of it).
	NodeTTL time.Duration
	// AnswerTTL: answers nobody took are deleted after this (default 2m,
	// well past any response timeout).
	AnswerTTL time.Duration
	// ClaimRetention: claims are deleted this long after they were made
	// (default 7 days, the default event retention); set it to the relay's
	// retention, since a done claim must outlive its event.
	ClaimRetention time.Duration
	// MaxListenBackoff caps the wait between attempts to listen again
	// after the listening connection was lost (default 5s).
	MaxListenBackoff time.Duration
	Logger           *slog.Logger
}

func (c *PostgresConfig) setDefaults() error {
	if c.URL == "" {
		return errors.New("cluster: PostgresConfig.URL is required")
	}
	if c.NodeID == "" {
		return errors.New("cluster: PostgresConfig.NodeID is required")
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 8
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 10 * time.Second
	}
	if c.NodeTTL <= 0 {
		c.NodeTTL = 30 * time.Second
	}
	if c.AnswerTTL <= 0 {
		c.AnswerTTL = 2 * time.Minute
	}
	if c.ClaimRetention <= 0 {
		c.ClaimRetention = 7 * 24 * time.Hour
	}
	if c.MaxListenBackoff <= 0 {
		c.MaxListenBackoff = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Postgres is the Node of a relay sharing a PostgreSQL database with
// others. Create it with NewPostgres and end it with Close.
type Postgres struct {
	cfg      PostgresConfig
	pool     *pgxpool.Pool
	connCfg  *pgx.ConnConfig // for the listening connection
	instance string          // random, this process's claim on NodeID
	prefix   string          // of the node's PostgreSQL channels, per database and schema
	events   string          // the PostgreSQL channel every node listens on
	own      string          // this node's PostgreSQL channel
	log      *slog.Logger
	handlers handlers

	pubs chan *publishReq // PublishEvent → the publisher

	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // listener, publisher, maintainer

	closeOnce sync.Once
}

var _ Node = (*Postgres)(nil)

// NewPostgres connects to the database, creates the cluster's tables when
// they are missing, records the node and starts listening. It returns once
// the node listens, so that nothing published after it returns is missed.
func NewPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, errors.New("cluster: the database URL is not valid: want postgres://user:password@host:port/database?sslmode=...")
	}
	pcfg.MaxConns = int32(cfg.MaxConns)
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "hookrelay"
	}
	// The listening connection says what it is in pg_stat_activity.
	listenCfg := pcfg.ConnConfig.Copy()
	listenCfg.RuntimeParams["application_name"] = pcfg.ConnConfig.RuntimeParams["application_name"] + "-listen"
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect: %w", err)
	}
	var inst [8]byte
	_, _ = rand.Read(inst[:]) // never fails (crypto/rand)
	nctx, cancel := context.WithCancel(context.Background())
	n := &Postgres{
		cfg: cfg, pool: pool, connCfg: listenCfg, instance: hex.EncodeToString(inst[:]),
		log: cfg.Logger.With("node", cfg.NodeID), pubs: make(chan *publishReq, publishQueue),
		ctx: nctx, cancel: cancel,
	}
	if err := n.init(ctx); err != nil {
		cancel()
		pool.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	listening := make(chan error, 1)
	n.wg.Add(3)
	go n.listen(listening)
	go n.publisher()
	go n.maintain()
	select {
	case err = <-listening:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("cluster: listen: %w", err)
	}
	return n, nil
}

// init applies the migrations, names the node's PostgreSQL channels and
// records the node, dropping the agents an earlier process of the same id
// left.
func (n *Postgres) init(ctx context.Context) error {
	if err := migrate(ctx, n.pool); err != nil {
		return err
	}
	var db, schema string
	if err := n.pool.QueryRow(ctx, `SELECT current_database(), coalesce(current_schema(), '')`).Scan(&db, &schema); err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	// NOTIFY channels are per database, not per schema: name them after
	// the schema, so relays in other schemas of the database hear nothing.
	n.prefix = fmt.Sprintf("hookrelay_%08x", hash32(db+"\x00"+schema))
	n.events = n.prefix + "_events"
	n.own = n.nodeChannel(n.cfg.NodeID)
	_, err := n.pool.Exec(ctx, `INSERT INTO cluster_nodes (node, instance) VALUES ($1, $2)
		ON CONFLICT (node) DO UPDATE SET instance = excluded.instance, started_at = now(), last_seen = now()`,
		n.cfg.NodeID, n.instance)
	if err != nil {
		return fmt.Errorf("record node: %w", err)
	}
	if _, err := n.pool.Exec(ctx, `DELETE FROM cluster_agents WHERE node = $1`, n.cfg.NodeID); err != nil {
		return fmt.Errorf("drop agents of an earlier process: %w", err)
	}
	return nil
}

func hash32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// nodeChannel is the PostgreSQL channel of node id.
func (n *Postgres) nodeChannel(id string) string {
	return fmt.Sprintf("%s_node_%08x", n.prefix, hash32(id))
}

// ID returns the node's id.
func (n *Postgres) ID() string { return n.cfg.NodeID }

// Subscribe adds h to the handlers.
func (n *Postgres) Subscribe(h Handler) { n.handlers.add(h) }

// Close stops listening, publishing and the heartbeat, hands back the
// claims the node still holds, forgets its agents and closes the pool.
// Close it after the relay that uses it: whatever the relay did not finish
// by then is abandoned, and other nodes may take it at once rather than
// when its lease ends. Calling Close again is harmless.
func (n *Postgres) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		n.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		// Best effort, both: without them the claims expire with their
		// lease, and the agents leave the lists when the node is no longer
		// seen (NodeTTL).
		if tag, err := n.pool.Exec(ctx, `UPDATE cluster_claims SET lease_until = '-infinity'
			WHERE node = $1 AND NOT done AND lease_until > now()`, n.cfg.NodeID); err != nil {
			n.log.Warn("cluster: hand back this node's claims", "err", err)
		} else if tag.RowsAffected() > 0 {
			n.log.Info("cluster: handed back unfinished claims", "claims", tag.RowsAffected())
		}
		if _, err := n.pool.Exec(ctx, `DELETE FROM cluster_agents WHERE node = $1`, n.cfg.NodeID); err != nil {
			n.log.Warn("cluster: forget this node's agents", "err", err)
		}
		n.pool.Close()
	})
	return nil
}

// call runs fn bounded by QueryTimeout and the node's life, and wraps its
// error: the caller's own cancellation as it is, anything else with
// store.ErrUnavailable, so the relay answers 503 and tries again.
//
// A call whose connection broke (a backend terminated, a server restarted:
// the pool connects anew) runs again, up to maxTries times in all. Every
// statement of this package may: each is one statement, idempotent or
// harmless twice (a claim already this node's is won again; a finished or
// released claim stays so; a second notification is skipped by seq; an
// answer deleted by a call whose reply was lost is lost either way).
func (n *Postgres) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	if n.ctx.Err() != nil {
		return fmt.Errorf("cluster: %s: %w: %w", op, store.ErrUnavailable, ErrClosed)
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.QueryTimeout)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()
	err := fn(cctx)
	for try := 1; try < maxTries && err != nil && cctx.Err() == nil && connectionLost(err); try++ {
		// What broke one connection (a restart, pg_terminate_backend of
		// the node's backends) broke the idle ones too, most likely:
		// close them rather than try each.
		n.pool.Reset()
		err = fn(cctx)
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("cluster: %s: %w", op, ctx.Err())
	default:
		return fmt.Errorf("cluster: %s: %w: %v", op, store.ErrUnavailable, err)
	}
}

// maxTries bounds the runs of one call whose connection broke.
const maxTries = 3

// connectionLost reports whether err is the end of the connection rather
// than the statement's own failure: a network error, or PostgreSQL's
// connection exception (class 08) or operator intervention (class 57:
// pg_terminate_backend, a shutdown).
func connectionLost(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57")
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// leaseSeconds is a lease for SQL (make_interval's secs).
func leaseSeconds(d time.Duration) float64 { return d.Seconds() }

// Claim claims seqs of a group in one statement: a new claim is inserted,
// in seq order whatever the order asked, so that nodes claiming
// overlapping batches take row locks in the same order and never deadlock;
// an existing one is taken over when it is not done and its lease ended
// (or it is this node's). The outer query reads the claims not won as the
// statement's snapshot saw them; one committed by another node while the
// insert waited for it is not in that snapshot and comes back as held for
// a second, after which the caller asks again.
func (n *Postgres) Claim(ctx context.Context, groupID int64, seqs []int64, lease time.Duration) ([]Claim, error) {
	if len(seqs) == 0 {
		return nil, nil
	}
	out := make([]Claim, 0, len(seqs))
	err := n.call(ctx, "claim", func(ctx context.Context) error {
		rows, _ := n.pool.Query(ctx, `WITH won AS (
			INSERT INTO cluster_claims AS c (group_id, seq, node, lease_until)
			SELECT $1, s, $2, now() + make_interval(secs => $3) FROM unnest($4::bigint[]) AS s ORDER BY s
			ON CONFLICT (group_id, seq) DO UPDATE SET node = excluded.node, lease_until = excluded.lease_until
			WHERE NOT c.done AND (c.lease_until < now() OR c.node = excluded.node)
			RETURNING c.seq, c.lease_until
		)
		SELECT s.seq, won.lease_until, c.lease_until, coalesce(c.done, false), now()
		FROM unnest($4::bigint[]) WITH ORDINALITY AS s(seq, i)
		LEFT JOIN won ON won.seq = s.seq
		LEFT JOIN cluster_claims c ON won.seq IS NULL AND c.group_id = $1 AND c.seq = s.seq
		ORDER BY s.i`, groupID, n.cfg.NodeID, leaseSeconds(lease), seqs)
		out = out[:0]
		var seq int64
		var wonUntil, heldUntil *time.Time
		var done bool
		var now time.Time
		_, err := pgx.ForEachRow(rows, []any{&seq, &wonUntil, &heldUntil, &done, &now}, func() error {
			c := Claim{Seq: seq}
			switch {
			case wonUntil != nil:
				c.State, c.Until = ClaimWon, localUntil(*wonUntil, now)
			case done:
				c.State = ClaimDone
			case heldUntil != nil:
				c.State, c.Until = ClaimHeld, localUntil(*heldUntil, now)
			default: // committed by another node during the statement
				c.State, c.Until = ClaimHeld, time.Now().Add(time.Second)
			}
			out = append(out, c)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// localUntil turns a lease end in the database's clock into this
// process's, so that clocks that differ between machines do not matter.
func localUntil(until, dbNow time.Time) time.Time {
	return time.Now().Add(until.Sub(dbNow))
}

// Renew extends this node's claims of seqs. Those another node holds or
// finished now come back in a *LostError; those this node finished are
// not lost.
func (n *Postgres) Renew(ctx context.Context, groupID int64, seqs []int64, lease time.Duration) error {
	if len(seqs) == 0 {
		return nil
	}
	var lost []int64
	err := n.call(ctx, "renew claims", func(ctx context.Context) error {
		// The outer query reads the statement's snapshot: the rows the
		// update does not touch are the same in it.
		rows, _ := n.pool.Query(ctx, `WITH renewed AS (
			UPDATE cluster_claims SET lease_until = now() + make_interval(secs => $4)
			WHERE group_id = $1 AND seq = ANY($2::bigint[]) AND node = $3 AND NOT done
		)
		SELECT seq FROM cluster_claims WHERE group_id = $1 AND seq = ANY($2::bigint[]) AND node <> $3`,
			groupID, seqs, n.cfg.NodeID, leaseSeconds(lease))
		var err error
		lost, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err != nil {
		return err
	}
	if len(lost) == 0 {
		return nil
	}
	return &LostError{GroupID: groupID, Seqs: lost}
}

// Finish marks seqs done for the group, whoever holds them, creating the
// claims that do not exist.
func (n *Postgres) Finish(ctx context.Context, groupID int64, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	return n.call(ctx, "finish claims", func(ctx context.Context) error {
		_, err := n.pool.Exec(ctx, `INSERT INTO cluster_claims AS c (group_id, seq, node, lease_until, done)
			SELECT $1, s, $2, now(), true FROM unnest($3::bigint[]) AS s ORDER BY s
			ON CONFLICT (group_id, seq) DO UPDATE SET done = true, lease_until = now()
			WHERE NOT c.done`, groupID, n.cfg.NodeID, seqs)
		return err
	})
}

// Release ends this node's leases on seqs, so any node may claim them.
func (n *Postgres) Release(ctx context.Context, groupID int64, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	return n.call(ctx, "release claims", func(ctx context.Context) error {
		_, err := n.pool.Exec(ctx, `UPDATE cluster_claims SET lease_until = '-infinity'
			WHERE group_id = $1 AND seq = ANY($2::bigint[]) AND node = $3 AND NOT done`, groupID, seqs, n.cfg.NodeID)
		return err
	})
}

// PostAnswer stores the answer whole and notifies node toNode in the same
// statement (the notification is sent when it commits). An answer already
// posted for the event wins.
func (n *Postgres) PostAnswer(ctx context.Context, toNode, eventID string, a Answer) error {
	payload, err := encodeNote(note{Type: noteAnswer, EventID: eventID})
	if err != nil {
		return err
	}
	body := a.Body
	if body == nil {
		body = []byte{}
	}
	return n.call(ctx, "post answer", func(ctx context.Context) error {
		_, err := n.pool.Exec(ctx, `WITH ins AS (
			INSERT INTO cluster_answers (event_id, to_node, status, headers, body, err_code, err_msg)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING RETURNING event_id
		) SELECT pg_notify($8, $9) FROM ins`,
			eventID, toNode, a.Status, store.AppendHeaders([]byte{}, a.Headers), body, a.ErrCode, a.ErrMsg,
			n.nodeChannel(toNode), payload)
		return err
	})
}

// TakeAnswer reads and deletes the answer posted for eventID.
func (n *Postgres) TakeAnswer(ctx context.Context, eventID string) (Answer, bool, error) {
	var a Answer
	found := false
	err := n.call(ctx, "take answer", func(ctx context.Context) error {
		var headers []byte
		err := n.pool.QueryRow(ctx, `DELETE FROM cluster_answers WHERE event_id = $1
			RETURNING status, headers, body, err_code, err_msg`, eventID).
			Scan(&a.Status, &headers, &a.Body, &a.ErrCode, &a.ErrMsg)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		a.Headers, err = store.ParseHeaders(headers)
		return err
	})
	if err != nil || !found {
		return Answer{}, false, err
	}
	return a, true, nil
}

// RequestReplay notifies node toNode of a replay to make.
func (n *Postgres) RequestReplay(ctx context.Context, toNode string, r Replay) error {
	payload, err := encodeNote(note{Type: noteReplay, ChannelID: r.ChannelID, EventID: r.EventID, Group: r.Group})
	if err != nil {
		return err
	}
	return n.call(ctx, "request replay", func(ctx context.Context) error {
		_, err := n.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, n.nodeChannel(toNode), payload)
		return err
	})
}

// RegisterAgent records a subscription of a session on this node.
func (n *Postgres) RegisterAgent(ctx context.Context, a AgentRecord) error {
	info := a.Info
	if len(info) == 0 {
		info = []byte("{}")
	}
	return n.call(ctx, "register agent", func(ctx context.Context) error {
		_, err := n.pool.Exec(ctx, `INSERT INTO cluster_agents (session_id, channel_id, group_name, node, info)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (session_id, channel_id, group_name) DO UPDATE SET node = excluded.node, info = excluded.info`,
			a.SessionID, a.ChannelID, a.Group, n.cfg.NodeID, string(info))
		return err
	})
}

// UnregisterAgent removes every record of a session.
func (n *Postgres) UnregisterAgent(ctx context.Context, sessionID string) error {
	return n.call(ctx, "unregister agent", func(ctx context.Context) error {
		_, err := n.pool.Exec(ctx, `DELETE FROM cluster_agents WHERE session_id = $1`, sessionID)
		return err
	})
}

// Agents lists a channel's agents on the nodes seen within NodeTTL; each
// record's LastSeen is when its node last said it is alive.
func (n *Postgres) Agents(ctx context.Context, channelID string) ([]AgentRecord, error) {
	var out []AgentRecord
	err := n.call(ctx, "list agents", func(ctx context.Context) error {
		rows, _ := n.pool.Query(ctx, `SELECT a.session_id, a.node, a.channel_id, a.group_name, a.info::text, n.last_seen
			FROM cluster_agents a JOIN cluster_nodes n ON n.node = a.node
			WHERE a.channel_id = $1 AND n.last_seen > now() - make_interval(secs => $2)
			ORDER BY a.session_id, a.group_name`, channelID, n.cfg.NodeTTL.Seconds())
		var err error
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (AgentRecord, error) {
			var a AgentRecord
			var info string
			err := row.Scan(&a.SessionID, &a.Node, &a.ChannelID, &a.Group, &info, &a.LastSeen)
			a.Info, a.LastSeen = []byte(info), a.LastSeen.UTC()
			return a, err
		})
		return err
	})
	return out, err
}

// AgentCounts counts the agents of live nodes per channel and node.
func (n *Postgres) AgentCounts(ctx context.Context, channelIDs []string) ([]AgentCount, error) {
	if len(channelIDs) == 0 {
		return nil, nil
	}
	var out []AgentCount
	err := n.call(ctx, "count agents", func(ctx context.Context) error {
		rows, _ := n.pool.Query(ctx, `SELECT a.channel_id, a.node, count(*)
			FROM cluster_agents a JOIN cluster_nodes n ON n.node = a.node
			WHERE a.channel_id = ANY($1::text[]) AND n.last_seen > now() - make_interval(secs => $2)
			GROUP BY a.channel_id, a.node ORDER BY a.channel_id, a.node`, channelIDs, n.cfg.NodeTTL.Seconds())
		var err error
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (AgentCount, error) {
			var c AgentCount
			err := row.Scan(&c.ChannelID, &c.Node, &c.Count)
			return c, err
		})
		return err
	})
	return out, err
}

// maintain says the node is alive every third of NodeTTL and prunes what
// outlived its use: answers nobody took, agents of dead nodes, expired
// sessions, old claims.
func (n *Postgres) maintain() {
	defer n.wg.Done()
	tick := time.NewTicker(n.cfg.NodeTTL / 3)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		n.heartbeat()
		n.prune(i%30 == 0) // claims are many: every 30 heartbeats (5 minutes by default)
	}
}

// heartbeat updates the node's last_seen, and says so when another process
// took over the node's id.
func (n *Postgres) heartbeat() {
	err := n.call(n.ctx, "heartbeat", func(ctx context.Context) error {
		tag, err := n.pool.Exec(ctx, `UPDATE cluster_nodes SET last_seen = now() WHERE node = $1 AND instance = $2`,
			n.cfg.NodeID, n.instance)
		if err == nil && tag.RowsAffected() == 0 {
			n.log.Error("cluster: another process uses this node id; give each relay node its own --node-id", "node_id", n.cfg.NodeID)
			_, err = n.pool.Exec(ctx, `INSERT INTO cluster_nodes (node, instance) VALUES ($1, $2)
				ON CONFLICT (node) DO NOTHING`, n.cfg.NodeID, n.instance)
		}
		return err
	})
	if err != nil && n.ctx.Err() == nil {
		n.log.Warn("cluster: heartbeat", "err", err)
	}
}

func (n *Postgres) prune(claims bool) {
	err := n.call(n.ctx, "prune", func(ctx context.Context) error {
		if _, err := n.pool.Exec(ctx, `DELETE FROM cluster_answers WHERE created_at < now() - make_interval(secs => $1)`,
			n.cfg.AnswerTTL.Seconds()); err != nil {
			return err
		}
		if _, err := n.pool.Exec(ctx, `DELETE FROM cluster_agents a WHERE NOT EXISTS (
			SELECT 1 FROM cluster_nodes n WHERE n.node = a.node AND n.last_seen > now() - make_interval(secs => $1))`,
			n.cfg.NodeTTL.Seconds()); err != nil {
			return err
		}
		if _, err := n.pool.Exec(ctx, `DELETE FROM cluster_nodes WHERE last_seen < now() - make_interval(secs => $1)`,
			(10 * n.cfg.NodeTTL).Seconds()); err != nil {
			return err
		}
		if _, err := n.pool.Exec(ctx, `DELETE FROM cluster_sessions WHERE expires < now()`); err != nil {
			return err
		}
		if claims {
			if _, err := n.pool.Exec(ctx, `DELETE FROM cluster_claims WHERE created_at < now() - make_interval(secs => $1)`,
				n.cfg.ClaimRetention.Seconds()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && n.ctx.Err() == nil {
		n.log.Warn("cluster: prune", "err", err)
	}
}
