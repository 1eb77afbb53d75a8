package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/hookrelay/hookrelay/server/store"
)

// advanceGroup raises the group's done_through and sets its last_seen_at
// (each when given), dropping the done marks done_through now covers. It
// also locks the group's row until the commit, so the group cannot be
// deleted under the marks recordDelivery inserts after it.
const advanceGroup = `WITH g AS (
	UPDATE delivery_groups SET done_through = greatest(done_through, $2),
		last_seen_at = coalesce($3, last_seen_at)
	WHERE id = $1 RETURNING id, done_through
)
DELETE FROM done_marks AS m USING g WHERE m.group_id = g.id AND m.event_seq <= g.done_through`

// recordDeliveries inserts the attempts of a report ($2… as one array a
// field, in the order they finished), counts them in their events'
// summaries, and marks done for group $1 the events of its channel, above
// its done_through, that have a done attempt. Attempts of events that do
// not exist are left out. FOR KEY SHARE keeps the events and the group from
// being deleted before the commit: an event deleted meanwhile counts as
// missing instead of failing the report on a foreign key.
const recordDeliveries = `WITH d AS (
	SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::timestamptz[],
		$8::int8[], $9::int4[], $10::text[], $11::bool[], $12::bytea[], $13::bytea[])
		WITH ORDINALITY AS d (id, event_id, group_name, agent_id, attempt, started_at, duration_ns,
			status, error, done, response_headers, response_body, n)
),
ev AS (SELECT seq, id, channel_id FROM events WHERE id IN (SELECT event_id FROM d) FOR KEY SHARE),
dev AS (SELECT d.*, ev.seq, ev.channel_id FROM d JOIN ev ON ev.id = d.event_id),
ins AS (
	INSERT INTO deliveries (id, event_seq, event_id, channel_id, group_id, group_name, agent_id,
		attempt, started_at, duration_ns, status, error, done, response_headers, response_body)
	SELECT id, seq, event_id, channel_id, $1, group_name, agent_id, attempt, started_at, duration_ns,
		status, error, done, response_headers, response_body
	FROM dev ORDER BY n
),
st AS (
	INSERT INTO event_status AS s (event_seq, attempts, last_status, delivered_any)
	SELECT seq, count(*), coalesce((array_agg(status ORDER BY n DESC) FILTER (WHERE status > 0))[1], 0),
		bool_or(status > 0 OR (done AND error = ''))
	FROM dev GROUP BY seq
	ON CONFLICT (event_seq) DO UPDATE SET
		attempts = s.attempts + excluded.attempts,
		last_status = CASE WHEN excluded.last_status > 0 THEN excluded.last_status ELSE s.last_status END,
		delivered_any = s.delivered_any OR excluded.delivered_any
),
g AS (SELECT id, channel_id, done_through FROM delivery_groups WHERE id = $1 FOR KEY SHARE)
INSERT INTO done_marks (group_id, event_seq)
SELECT DISTINCT g.id, dev.seq FROM dev JOIN g ON g.channel_id = dev.channel_id
WHERE dev.done AND dev.seq > g.done_through
ON CONFLICT DO NOTHING`

const deliveryColumns = `id, event_seq, event_id, channel_id, group_id, group_name, agent_id, attempt,
	started_at, duration_ns, status, error, done, response_headers, response_body`

// RecordProgress writes the worker's report in one transaction, as
// store.Store documents: the group's watermark first, then every delivery
// in one statement, both sent in one pipeline (one round trip, one commit).
//
// A delivery of an event appended through this Store whose commit is still
// in flight (a relay forwards while the commit runs) waits for that commit
// first: RecordProgress runs on a connection of its own, which would not
// see the event yet and skip the record, and the event, once committed,
// would be delivered again. After a failed commit the record is skipped.
func (s *Store) RecordProgress(ctx context.Context, p store.Progress) error {
	op := fmt.Sprintf("record progress of group %d", p.GroupID)
	for _, d := range p.Deliveries {
		if c, ok := s.appending.Load(d.EventID); ok {
			if err := c.(*store.Commit).Wait(ctx); err != nil && ctx.Err() != nil {
				return fmt.Errorf("%s: wait for the commit of event %s: %w", op, d.EventID, err)
			}
		}
	}
	b := &pgx.Batch{}
	if p.DoneThrough > 0 || !p.SeenAt.IsZero() {
		b.Queue(advanceGroup, p.GroupID, p.DoneThrough, nullTime(p.SeenAt))
	}
	if len(p.Deliveries) > 0 {
		b.Queue(recordDeliveries, append([]any{p.GroupID}, deliveryArrays(p.Deliveries)...)...)
	}
	return s.call(ctx, op, func(ctx context.Context) error {
		if b.Len() == 0 {
			return nil
		}
		err := s.pool.SendBatch(ctx, b).Close()
		return constraintErr(err, "a delivery id is taken", "event")
	})
}

// deliveryArrays returns the arrays recordDeliveries takes as $2…$13.
func deliveryArrays(ds []store.Delivery) []any {
	n := len(ds)
	ids, eventIDs, groupNames, agentIDs, errs := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n)
	attempts, statuses := make([]int32, n), make([]int32, n)
	startedAt, durations, done := make([]time.Time, n), make([]int64, n), make([]bool, n)
	headers, bodies := make([][]byte, n), make([][]byte, n)
	for i, d := range ds {
		ids[i], eventIDs[i], groupNames[i], agentIDs[i] = d.ID, d.EventID, text(d.GroupName), text(d.AgentID)
		attempts[i], statuses[i], errs[i], done[i] = int32(d.Attempt), int32(d.Status), text(d.Error), d.Done
		startedAt[i], durations[i] = nowOr(d.StartedAt), int64(d.Duration)
		headers[i] = store.AppendHeaders([]byte{}, d.ResponseHeaders)
		if bodies[i] = d.ResponseBody; bodies[i] == nil {
			bodies[i] = []byte{}
		}
	}
	return []any{ids, eventIDs, groupNames, agentIDs, attempts, startedAt, durations, statuses, errs, done,
		headers, bodies}
}

// text makes s storable in a text column: PostgreSQL's text holds neither
// NUL nor bytes that are not UTF-8, and one such string would fail a whole
// report. It is for free text that comes from outside (an agent's error
// message), which is shown to people, not compared.
func text(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// Deliveries lists the attempts of one event, oldest first; none for an
// unknown event.
func (s *Store) Deliveries(ctx context.Context, eventID string) ([]store.Delivery, error) {
	return queryRows(ctx, s, "deliveries of event "+eventID, scanDelivery, `SELECT `+deliveryColumns+` FROM deliveries
		WHERE event_seq = (SELECT seq FROM events WHERE id = $1)
		ORDER BY started_at, n`, eventID)
}

func scanDelivery(r pgx.CollectableRow) (store.Delivery, error) {
	var (
		d               store.Delivery
		attempt, status int32
		durationNS      int64
		headers         []byte
	)
	if err := r.Scan(&d.ID, &d.EventSeq, &d.EventID, &d.ChannelID, &d.GroupID, &d.GroupName,
		&d.AgentID, &attempt, &d.StartedAt, &durationNS, &status, &d.Error, &d.Done,
		&headers, &d.ResponseBody); err != nil {
		return store.Delivery{}, err
	}
	d.Attempt, d.Status = int(attempt), int(status)
	d.StartedAt = d.StartedAt.UTC()
	d.Duration = time.Duration(durationNS)
	var err error
	if d.ResponseHeaders, err = store.ParseHeaders(headers); err != nil {
		return store.Delivery{}, fmt.Errorf("delivery %s: %w", d.ID, err)
	}
	if d.ResponseBody == nil {
		d.ResponseBody = []byte{}
	}
	return d, nil
}
