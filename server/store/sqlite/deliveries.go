package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

const deliveryColumns = `id, event_seq, event_id, channel_id, group_id, group_name, agent_id, attempt,
	started_at, duration_ns, status, error, done, response_headers, response_body`

// RecordDelivery stores one attempt in the next group-commit batch, updates
// the event's summary and, when d.Done, marks the event done for the group.
// The event's seq and channel are taken from the stored event (d.EventSeq
// and d.ChannelID may be left zero). It fails with store.ErrNotFound when
// the event is gone and store.ErrConflict for a duplicate delivery id; a
// done mark for a group deleted meanwhile is skipped.
func (s *Store) RecordDelivery(ctx context.Context, d store.Delivery) error {
	headers, err := marshalHeaders(d.ResponseHeaders)
	if err != nil {
		return fmt.Errorf("record delivery %s: %w", d.ID, err)
	}
	body := d.ResponseBody
	if body == nil {
		body = []byte{}
	}
	deliveredAny := d.Status > 0 || (d.Done && d.Error == "")
	err = s.write(ctx, len(body), func(w *writeConn) error {
		var seq int64
		var channelID string
		if err := w.row(`SELECT seq, channel_id FROM events WHERE id = ?`, d.EventID).
			Scan(&seq, &channelID); err != nil {
			return notFound(err, "event "+d.EventID)
		}
		_, err := w.exec(`INSERT INTO deliveries (`+deliveryColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			d.ID, seq, d.EventID, channelID, d.GroupID, d.GroupName, d.AgentID, d.Attempt,
			micros(nowOr(d.StartedAt)), int64(d.Duration), d.Status, d.Error, d.Done, headers, body)
		if err != nil {
			return constraintErr(err, "delivery id taken", "event "+d.EventID)
		}
		if _, err := w.exec(`UPDATE events SET attempts = attempts + 1,
				last_status = CASE WHEN ?1 > 0 THEN ?1 ELSE last_status END,
				delivered_any = delivered_any OR ?2
			WHERE seq = ?3`, d.Status, deliveredAny, seq); err != nil {
			return err
		}
		if !d.Done {
			return nil
		}
		// A mark at or below done_through would be redundant; a group that
		// is gone needs none.
		_, err = w.exec(`INSERT OR IGNORE INTO done_marks (group_id, event_seq)
			SELECT id, ? FROM delivery_groups WHERE id = ? AND done_through < ?`, seq, d.GroupID, seq)
		return err
	})
	return wrapErr("record delivery "+d.ID, err)
}

// Deliveries lists the attempts of one event, oldest first; none for an
// unknown event.
func (s *Store) Deliveries(ctx context.Context, eventID string) ([]store.Delivery, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	op := "deliveries of event " + eventID
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+deliveryColumns+` FROM deliveries
		WHERE event_seq = (SELECT seq FROM events WHERE id = ?)
		ORDER BY started_at, rowid`, eventID)
	if err != nil {
		return nil, wrapErr(op, err)
	}
	defer rows.Close()
	var ds []store.Delivery
	for rows.Next() {
		var (
			d          store.Delivery
			startedAt  int64
			durationNS int64
			headers    string
		)
		if err := rows.Scan(&d.ID, &d.EventSeq, &d.EventID, &d.ChannelID, &d.GroupID, &d.GroupName,
			&d.AgentID, &d.Attempt, &startedAt, &durationNS, &d.Status, &d.Error, &d.Done,
			&headers, &d.ResponseBody); err != nil {
			return nil, wrapErr(op, err)
		}
		d.StartedAt = fromMicros(startedAt)
		d.Duration = time.Duration(durationNS)
		if d.ResponseHeaders, err = unmarshalHeaders(headers); err != nil {
			return nil, wrapErr(op, fmt.Errorf("delivery %s: %w", d.ID, err))
		}
		if d.ResponseBody == nil {
			d.ResponseBody = []byte{}
		}
		ds = append(ds, d)
	}
	return ds, wrapErr(op, rows.Err())
}
