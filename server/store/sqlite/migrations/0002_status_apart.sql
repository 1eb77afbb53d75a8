-- hookrelay schema version 2.
--
-- What changes per delivery (attempts, last status, delivered) moves out of
-- the row that holds the body into event_status, so recording a delivery
-- never rewrites a body (SQLite rewrites a whole row, overflow pages
-- included, when its size changes).
-- Header lists (events.headers, deliveries.response_headers) and the raw
-- query are kept as exact bytes: headers in the binary encoding of
-- store.AppendHeaders instead of JSON, whose strings cannot hold bytes that
-- are not UTF-8. hookrelay_headers_from_json (registered by the Go code)
-- converts the JSON of version 1; what it had already turned into U+FFFD
-- cannot be recovered.
-- Seqs are assigned by the writer from a counter (see writer.go), no longer
-- by AUTOINCREMENT, whose counter rolls back with a failed batch; every seq
-- handed out is at most seq_reserve.reserve.
-- done_marks no longer references events: a mark of a deleted event is
-- harmless and dropped when the group's done_through passes it, and
-- deleting an event no longer probes done_marks.
--
-- migrate runs this with foreign keys off and checks them before commit.

CREATE TABLE events_v2 (
    seq           INTEGER PRIMARY KEY, -- assigned by the writer; never reused
    id            TEXT NOT NULL UNIQUE,
    channel_id    TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    raw_query     BLOB NOT NULL,
    remote_addr   TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    state         TEXT NOT NULL,
    reject_reason TEXT NOT NULL DEFAULT '',
    size          INTEGER NOT NULL, -- length(body)
    headers       BLOB NOT NULL,    -- store.AppendHeaders, in received order
    -- The body is the last column: reading the columns before it never
    -- walks its overflow pages, so listing events without bodies is cheap.
    body          BLOB NOT NULL
) STRICT;

INSERT INTO events_v2 (seq, id, channel_id, method, path, raw_query, remote_addr, received_at,
        state, reject_reason, size, headers, body)
    SELECT seq, id, channel_id, method, path, CAST(raw_query AS BLOB), remote_addr, received_at,
        state, reject_reason, length(body), hookrelay_headers_from_json(headers), body
    FROM events;

-- One row per event that has had a delivery; none for the others.
CREATE TABLE event_status (
    seq           INTEGER PRIMARY KEY REFERENCES events (seq) ON DELETE CASCADE,
    attempts      INTEGER NOT NULL,
    last_status   INTEGER NOT NULL,
    delivered_any INTEGER NOT NULL
) STRICT;

INSERT INTO event_status (seq, attempts, last_status, delivered_any)
    SELECT seq, attempts, last_status, delivered_any FROM events
    WHERE attempts > 0 OR last_status <> 0 OR delivered_any <> 0;

CREATE TABLE seq_reserve (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    reserve INTEGER NOT NULL
) STRICT;

INSERT INTO seq_reserve (id, reserve) VALUES (1, max(
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
    coalesce((SELECT max(seq) FROM events), 0)));

CREATE TABLE deliveries_v2 (
    id               TEXT PRIMARY KEY,
    event_seq        INTEGER NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    event_id         TEXT NOT NULL,
    channel_id       TEXT NOT NULL,
    group_id         INTEGER NOT NULL,
    group_name       TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    duration_ns      INTEGER NOT NULL,
    status           INTEGER NOT NULL,
    error            TEXT NOT NULL,
    done             INTEGER NOT NULL,
    response_headers BLOB NOT NULL, -- store.AppendHeaders
    response_body    BLOB NOT NULL
) STRICT;

INSERT INTO deliveries_v2 (id, event_seq, event_id, channel_id, group_id, group_name, agent_id,
        attempt, started_at, duration_ns, status, error, done, response_headers, response_body)
    SELECT id, event_seq, event_id, channel_id, group_id, group_name, agent_id,
        attempt, started_at, duration_ns, status, error, done,
        hookrelay_headers_from_json(response_headers), response_body
    FROM deliveries ORDER BY rowid;

CREATE TABLE done_marks_v2 (
    group_id  INTEGER NOT NULL REFERENCES delivery_groups (id) ON DELETE CASCADE,
    event_seq INTEGER NOT NULL,
    PRIMARY KEY (group_id, event_seq)
) STRICT, WITHOUT ROWID;

INSERT INTO done_marks_v2 (group_id, event_seq) SELECT group_id, event_seq FROM done_marks;

DROP TABLE done_marks;
DROP TABLE deliveries;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
ALTER TABLE deliveries_v2 RENAME TO deliveries;
ALTER TABLE done_marks_v2 RENAME TO done_marks;

CREATE INDEX events_channel_seq ON events (channel_id, seq);
CREATE INDEX events_received ON events (received_at);
-- The rejected events of a channel, for the cap enforced on each append.
CREATE INDEX events_rejected ON events (channel_id, seq, size) WHERE state = 'rejected';
CREATE INDEX deliveries_event ON deliveries (event_seq, started_at);
