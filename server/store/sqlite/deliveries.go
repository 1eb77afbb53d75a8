package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

const deliveryColumns = `id, event_seq, event_id, channel_id, group_id, group_name, agent_id, attempt,
	started_at, duration_ns, status, error, done, response_headers, response_body`

// upsertStatus counts one attempt in the event's summary row, creating it
// on the event's first delivery. The row is small and apart from the body,
// so this never rewrites the body.
const upsertStatus = `INSERT INTO event_status (seq, attempts, last_status, delivered_any)
	VALUES (?1, 1, ?2, ?3)
	ON CONFLICT (seq) DO UPDATE SET attempts = attempts + 1,
		last_status = CASE WHEN ?2 > 0 THEN ?2 ELSE last_status END,
		delivered_any = delivered_any OR ?3`

// insertDeliveryOfSeq inserts a delivery record of event ?13 when that
// event has id ?14 and channel ?15; it inserts nothing otherwise.
const insertDeliveryOfSeq = `INSERT INTO deliveries (` + deliveryColumns + `)
	SELECT ?1, seq, id, channel_id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12
	FROM events WHERE seq = ?13 AND id = ?14 AND channel_id = ?15`

// RecordProgress writes the worker's report in one write job (one commit),
// as store.Store documents. The commit is lazy (see writer.go): it reaches
// the operating system before RecordProgress returns, and the disk with the
// next append's fsync.
func (s *Store) RecordProgress(ctx context.Context, p store.Progress) error {
	type record struct {
		d       store.Delivery
		headers []byte
		body    []byte
	}
	recs := make([]record, len(p.Deliveries))
	size := 0
	for i, d := range p.Deliveries {
		d.GroupID = p.GroupID
		body := d.ResponseBody
		if body == nil {
			body = []byte{}
		}
		recs[i] = record{d: d, headers: store.AppendHeaders([]byte{}, d.ResponseHeaders), body: body}
		size += len(body)
	}
	op := fmt.Sprintf("record progress of group %d", p.GroupID)
	err := s.writeLazy(ctx, size, func(w *writeConn) error {
		var (
			groupChannel string
			doneThrough  int64
		)
		err := w.row(`SELECT channel_id, done_through FROM delivery_groups WHERE id = ?`, p.GroupID).
			Scan(&groupChannel, &doneThrough)
		groupExists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		newDone := max(doneThrough, p.DoneThrough)
		var marks []int64
		for _, r := range recs {
			d := r.d
			var (
				seq       int64
				channelID string
			)
			if d.EventSeq > 0 && d.ChannelID != "" {
				// The worker knows the event's seq and channel: one
				// statement finds the event by its primary key (the id and
				// channel confirm it is that one) and inserts the record.
				res, err := w.exec(insertDeliveryOfSeq, d.ID, d.GroupID, d.GroupName, d.AgentID, d.Attempt,
					micros(nowOr(d.StartedAt)), int64(d.Duration), d.Status, d.Error, d.Done, r.headers, r.body,
					d.EventSeq, d.EventID, d.ChannelID)
				if err != nil {
					return constraintErr(err, "delivery id "+d.ID+" taken", "event "+d.EventID)
				}
				if n, err := res.RowsAffected(); err != nil {
					return err
				} else if n == 1 {
					seq, channelID = d.EventSeq, d.ChannelID
				}
			}
			if seq == 0 { // no seq given, or not that event's: by its id
				err := w.row(`SELECT seq, channel_id FROM events WHERE id = ?`, d.EventID).Scan(&seq, &channelID)
				if errors.Is(err, sql.ErrNoRows) {
					continue // deleted, or its append failed
				}
				if err != nil {
					return err
				}
				_, err = w.exec(`INSERT INTO deliveries (`+deliveryColumns+`)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
					d.ID, seq, d.EventID, channelID, d.GroupID, d.GroupName, d.AgentID, d.Attempt,
					micros(nowOr(d.StartedAt)), int64(d.Duration), d.Status, d.Error, d.Done, r.headers, r.body)
				if err != nil {
					return constraintErr(err, "delivery id "+d.ID+" taken", "event "+d.EventID)
				}
			}
			deliveredAny := d.Status > 0 || (d.Done && d.Error == "")
			if _, err := w.exec(upsertStatus, seq, d.Status, deliveredAny); err != nil {
				return err
			}
			// A mark at or below done_through would be redundant; only
			// Pending reads marks, and only for the group's own channel.
			if d.Done && groupExists && channelID == groupChannel && seq > newDone {
				marks = append(marks, seq)
			}
		}
		if !groupExists {
			return nil
		}
		if newDone > doneThrough || !p.SeenAt.IsZero() {
			if _, err := w.exec(`UPDATE delivery_groups SET done_through = ?,
					last_seen_at = coalesce(?, last_seen_at) WHERE id = ?`,
				newDone, nullMicros(p.SeenAt), p.GroupID); err != nil {
				return err
			}
		}
		if newDone > doneThrough {
			if _, err := w.exec(`DELETE FROM done_marks WHERE group_id = ? AND event_seq <= ?`,
				p.GroupID, newDone); err != nil {
				return err
			}
		}
		for _, seq := range marks {
			if _, err := w.exec(`INSERT OR IGNORE INTO done_marks (group_id, event_seq) VALUES (?, ?)`,
				p.GroupID, seq); err != nil {
				return err
			}
		}
		return nil
	})
	return wrapErr(op, err)
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
			headers    []byte
		)
		if err := rows.Scan(&d.ID, &d.EventSeq, &d.EventID, &d.ChannelID, &d.GroupID, &d.GroupName,
			&d.AgentID, &d.Attempt, &startedAt, &durationNS, &d.Status, &d.Error, &d.Done,
			&headers, &d.ResponseBody); err != nil {
			return nil, wrapErr(op, err)
		}
		d.StartedAt = fromMicros(startedAt)
		d.Duration = time.Duration(durationNS)
		if d.ResponseHeaders, err = store.ParseHeaders(headers); err != nil {
			return nil, wrapErr(op, fmt.Errorf("delivery %s: %w", d.ID, err))
		}
		if d.ResponseBody == nil {
			d.ResponseBody = []byte{}
		}
		ds = append(ds, d)
	}
	return ds, wrapErr(op, rows.Err())
}
