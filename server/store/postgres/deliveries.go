package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookrelay/hookrelay/server/store"
)

// recordDelivery inserts one attempt, updates the event's summary and,
// when done, marks the event done for the group, in one statement; it
// returns no row when the event does not exist. A done mark at or below
// the group's done_through would be redundant, and a group that is gone
// needs none.
const recordDelivery = `WITH ev AS (SELECT seq, channel_id FROM events WHERE id = $2),
ins AS (
	INSERT INTO deliveries (id, event_seq, event_id, channel_id, group_id, group_name, agent_id,
		attempt, started_at, duration_ns, status, error, done, response_header_names,
		response_header_values, response_body)
	SELECT $1, ev.seq, $2, ev.channel_id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM ev
	RETURNING event_seq
),
st AS (
	INSERT INTO event_status AS s (event_seq, last_status, attempts, delivered_any)
	SELECT event_seq, $9, 1, $15 FROM ins
	ON CONFLICT (event_seq) DO UPDATE SET
		attempts = s.attempts + 1,
		last_status = CASE WHEN $9 > 0 THEN $9 ELSE s.last_status END,
		delivered_any = s.delivered_any OR excluded.delivered_any
),
mark AS (
	INSERT INTO done_marks (group_id, event_seq)
	SELECT g.id, ins.event_seq FROM ins JOIN delivery_groups AS g ON g.id = $3
	WHERE $11 AND g.done_through < ins.event_seq
	ON CONFLICT DO NOTHING
)
SELECT FROM ins`

const deliveryColumns = `id, event_seq, event_id, channel_id, group_id, group_name, agent_id, attempt,
	started_at, duration_ns, status, error, done, response_header_names, response_header_values, response_body`

// RecordDelivery stores one attempt, updates the event's summary and, when
// d.Done, marks the event done for the group. The event's seq and channel
// are taken from the stored event (d.EventSeq and d.ChannelID may be left
// zero). It fails with store.ErrNotFound when the event is gone and
// store.ErrConflict for a duplicate delivery id.
func (s *Store) RecordDelivery(ctx context.Context, d store.Delivery) error {
	op := "record delivery " + d.ID
	names, values := splitHeaders(d.ResponseHeaders)
	body := d.ResponseBody
	if body == nil {
		body = []byte{}
	}
	deliveredAny := d.Status > 0 || (d.Done && d.Error == "")
	var n int64
	err := s.call(ctx, op, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, recordDelivery, d.ID, d.EventID, d.GroupID, d.GroupName, d.AgentID,
			d.Attempt, nowOr(d.StartedAt), int64(d.Duration), d.Status, d.Error, d.Done, names, values, body,
			deliveredAny)
		n = tag.RowsAffected()
		return constraintErr(err, "delivery id taken", "event "+d.EventID)
	})
	return oneRow(n, err, op, "event "+d.EventID)
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
		names           []string
		values          [][]byte
	)
	if err := r.Scan(&d.ID, &d.EventSeq, &d.EventID, &d.ChannelID, &d.GroupID, &d.GroupName,
		&d.AgentID, &attempt, &d.StartedAt, &durationNS, &status, &d.Error, &d.Done,
		&names, &values, &d.ResponseBody); err != nil {
		return store.Delivery{}, err
	}
	d.Attempt, d.Status = int(attempt), int(status)
	d.StartedAt = d.StartedAt.UTC()
	d.Duration = time.Duration(durationNS)
	var err error
	if d.ResponseHeaders, err = joinHeaders(names, values); err != nil {
		return store.Delivery{}, err
	}
	if d.ResponseBody == nil {
		d.ResponseBody = []byte{}
	}
	return d, nil
}
