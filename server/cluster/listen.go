package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// A note is one notification's payload, JSON with short keys: far below
// PostgreSQL's 8000-byte limit, since ids are short.
type note struct {
	Type      string          `json:"t"`
	ChannelID string          `json:"c,omitempty"`
	EventID   string          `json:"e,omitempty"`
	Seq       int64           `json:"s,omitempty"`
	Origin    string          `json:"o,omitempty"`
	Waiting   bool            `json:"w,omitempty"`
	Group     string          `json:"g,omitempty"`
	Name      string          `json:"n,omitempty"`
	Data      json.RawMessage `json:"d,omitempty"`
}

// Note types.
const (
	noteEvent  = "e" // on the events channel: Event
	noteAnswer = "a" // on a node's channel: an answer was posted
	noteReplay = "r" // on a node's channel: Replay
	noteStream = "l" // on the events channel: StreamMessage
)

// maxNote is PostgreSQL's limit on a payload, less a margin.
const maxNote = 7900

func encodeNote(n note) (string, error) {
	b, err := json.Marshal(n)
	if err != nil {
		return "", fmt.Errorf("cluster: encode notification: %w", err)
	}
	if len(b) > maxNote {
		return "", fmt.Errorf("cluster: notification of %d bytes is over PostgreSQL's limit: ids too long", len(b))
	}
	return string(b), nil
}

// publishQueue bounds the events waiting for the publisher; maxPublish is
// the most sent in one statement.
const (
	publishQueue = 1024
	maxPublish   = 256
)

// publishReq is one PublishEvent waiting for its notification to be sent,
// or one PublishStream (done is nil).
type publishReq struct {
	payload string
	done    chan error // capacity 1; nil: nobody waits
}

// PublishStream queues a stream message for the other nodes, unless the
// queue is full or the message too large; then it is dropped and logged.
func (n *Postgres) PublishStream(m StreamMessage) {
	if len(m.Data) > MaxStreamData {
		n.log.Warn("cluster: a stream message too large for a notification was not sent", "channel", m.ChannelID, "name", m.Name, "bytes", len(m.Data))
		return
	}
	payload, err := encodeNote(note{Type: noteStream, ChannelID: m.ChannelID, Origin: n.cfg.NodeID, Name: m.Name, Data: m.Data})
	if err != nil {
		n.log.Warn("cluster: stream message", "err", err)
		return
	}
	select {
	case n.pubs <- &publishReq{payload: payload}:
	default:
		n.log.Warn("cluster: a stream message was dropped: too many waiting to be sent", "channel", m.ChannelID, "name", m.Name)
	}
}

// PublishEvent notifies every node of ev. Events published at once go out
// together in one statement (the publisher), so a busy ingress costs the
// database one round trip per batch, not per event. It returns once the
// notification is sent, or with the error that prevented it.
func (n *Postgres) PublishEvent(ctx context.Context, ev Event) error {
	payload, err := encodeNote(note{Type: noteEvent, ChannelID: ev.ChannelID, EventID: ev.EventID, Seq: ev.Seq,
		Origin: n.cfg.NodeID, Waiting: ev.Waiting})
	if err != nil {
		return err
	}
	req := &publishReq{payload: payload, done: make(chan error, 1)}
	select {
	case n.pubs <- req:
	case <-ctx.Done():
		return fmt.Errorf("cluster: publish event: %w", ctx.Err())
	case <-n.ctx.Done():
		return fmt.Errorf("cluster: publish event: %w", ErrClosed)
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("cluster: publish event: %w", ctx.Err())
	}
}

// publisher sends what PublishEvent queues, in batches of what waits.
func (n *Postgres) publisher() {
	defer n.wg.Done()
	batch := make([]*publishReq, 0, maxPublish)
	payloads := make([]string, 0, maxPublish)
	for {
		batch, payloads = batch[:0], payloads[:0]
		select {
		case <-n.ctx.Done():
			n.failQueued()
			return
		case req := <-n.pubs:
			batch = append(batch, req)
		}
	more:
		for len(batch) < maxPublish {
			select {
			case req := <-n.pubs:
				batch = append(batch, req)
			default:
				break more
			}
		}
		for _, req := range batch {
			payloads = append(payloads, req.payload)
		}
		err := n.call(n.ctx, "publish events", func(ctx context.Context) error {
			_, err := n.pool.Exec(ctx, `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, n.events, payloads)
			return err
		})
		for _, req := range batch {
			if req.done != nil {
				req.done <- err
			}
		}
		if err != nil && n.ctx.Err() == nil {
			n.log.Warn("cluster: publish", "notifications", len(batch), "err", err)
		}
	}
}

// failQueued answers what is still queued when the node closes.
func (n *Postgres) failQueued() {
	for {
		select {
		case req := <-n.pubs:
			if req.done != nil {
				req.done <- fmt.Errorf("cluster: publish event: %w", ErrClosed)
			}
		default:
			return
		}
	}
}

// listen keeps a dedicated connection listening on the events channel and
// the node's own, and hands what it hears to the handlers. When the
// connection is lost it connects and listens again, waiting between
// attempts from 100ms doubling up to MaxListenBackoff, and then calls
// Resync: what was notified meanwhile is gone. The first outcome (listening,
// or the first attempt's error) goes to first.
func (n *Postgres) listen(first chan<- error) {
	defer n.wg.Done()
	backoff := 100 * time.Millisecond
	lost := false
	for n.ctx.Err() == nil {
		conn, err := n.listenConn()
		if first != nil {
			first <- err
			first = nil
			if err != nil {
				return
			}
		}
		if err != nil {
			n.log.Warn("cluster: listen again", "err", err, "retry_in", backoff)
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, n.cfg.MaxListenBackoff)
			continue
		}
		backoff = 100 * time.Millisecond
		if lost {
			n.log.Info("cluster: listening again; catching up from the store")
			n.handlers.resync()
		}
		err = n.receive(conn)
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(closeCtx) // the connection is broken or the node closes: nothing to report
		cancel()
		if n.ctx.Err() != nil {
			return
		}
		n.log.Warn("cluster: the listening connection was lost", "err", err)
		lost = true
	}
}

// listenConn connects and listens on the node's channels.
func (n *Postgres) listenConn() (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.QueryTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, n.connCfg)
	if err != nil {
		return nil, err
	}
	for _, ch := range []string{n.events, n.own} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			_ = conn.Close(ctx)
			return nil, err
		}
	}
	return conn, nil
}

// receive hands notifications to the handlers until the connection fails
// or the node closes.
func (n *Postgres) receive(conn *pgx.Conn) error {
	for {
		msg, err := conn.WaitForNotification(n.ctx)
		if err != nil {
			return err
		}
		var nt note
		if err := json.Unmarshal([]byte(msg.Payload), &nt); err != nil {
			n.log.Warn("cluster: a notification that is not ours", "channel", msg.Channel, "err", err)
			continue
		}
		switch nt.Type {
		case noteEvent:
			if nt.Origin != n.cfg.NodeID {
				n.handlers.event(Event{ChannelID: nt.ChannelID, EventID: nt.EventID, Seq: nt.Seq, Origin: nt.Origin, Waiting: nt.Waiting})
			}
		case noteAnswer:
			n.handlers.answer(nt.EventID)
		case noteStream:
			if nt.Origin != n.cfg.NodeID {
				n.handlers.stream(StreamMessage{ChannelID: nt.ChannelID, Name: nt.Name, Data: nt.Data})
			}
		case noteReplay:
			n.handlers.replay(Replay{ChannelID: nt.ChannelID, EventID: nt.EventID, Group: nt.Group})
		}
	}
}
