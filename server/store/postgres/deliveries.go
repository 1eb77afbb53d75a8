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

// recordDelivery inserts one attempt and counts it in its event's summary;
// when done, and the event is of the group's channel and above its
// done_through, it marks the event done for the group. It inserts nothing
// when the event does not exist. FOR KEY SHARE keeps the event (and the
// group) from being deleted before the commit: an event deleted meanwhile
// counts as missing instead of failing the report on a foreign key.
const recordDelivery = `WITH ev AS (SELECT seq, channel_id FROM events WHERE id = $2 FOR KEY SHARE),
ins AS (
	INSERT INTO deliveries (id, event_seq, event_id, channel_id, group_id, group_name, agent_id,
		attempt, started_at, duration_ns, status, error, done, response_headers, response_body)
	SELECT $1, ev.seq, $2, ev.channel_id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM ev
	RETURNING event_seq, channel_id
),
st AS (
	INSERT INTO event_status AS s (event_seq, last_status, attempts, delivered_any)
	SELECT event_seq, $9, 1, $14 FROM ins
	ON CONFLICT (event_seq) DO UPDATE SET
		attempts = s.attempts + 1,
		last_status = CASE WHEN $9 > 0 THEN $9 ELSE s.last_status END,
		delivered_any = s.delivered_any OR excluded.delivered_any
),
g AS (SELECT id, channel_id, done_through FROM delivery_groups WHERE id = $3 FOR KEY SHARE)
INSERT INTO done_marks (group_id, event_seq)
SELECT g.id, ins.event_seq FROM ins JOIN g ON g.channel_id = ins.channel_id
WHERE $11 AND ins.event_seq > g.done_through
ON CONFLICT DO NOTHING`

const deliveryColumns = `id, event_seq, event_id, channel_id, group_id, group_name, agent_id, attempt,
	started_at, duration_ns, status, error, done, response_headers, response_body`

// RecordProgress writes the worker's report in one transaction, as
// store.Store documents: the group's watermark first, then each delivery,
// all sent in one pipeline (one round trip, one commit).
func (s *Store) RecordProgress(ctx context.Context, p store.Progress) error {
	op := fmt.Sprintf("record progress of group %d", p.GroupID)
	b := &pgx.Batch{}
	if p.DoneThrough > 0 || !p.SeenAt.IsZero() {
		b.Queue(advanceGroup, p.GroupID, p.DoneThrough, nullTime(p.SeenAt))
	}
	for _, d := range p.Deliveries {
		body := d.ResponseBody
		if body == nil {
			body = []byte{}
		}
		deliveredAny := d.Status > 0 || (d.Done && d.Error == "")
		b.Queue(recordDelivery, d.ID, d.EventID, p.GroupID, text(d.GroupName), text(d.AgentID), d.Attempt,
			nowOr(d.StartedAt), int64(d.Duration), d.Status, text(d.Error), d.Done,
			store.AppendHeaders([]byte{}, d.ResponseHeaders), body, deliveredAny)
	}
	if b.Len() == 0 {
		return s.call(ctx, op, func(context.Context) error { return nil })
	}
	return s.call(ctx, op, func(ctx context.Context) error {
		err := s.pool.SendBatch(ctx, b).Close()
		return constraintErr(err, "a delivery id is taken", "event")
	})
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
