-- hookrelay schema version 1.
-- Times are Unix microseconds; a NULL time is "not set".

CREATE TABLE channels (
    id            TEXT PRIMARY KEY,
    team_id       TEXT NOT NULL DEFAULT '',
    async         INTEGER NOT NULL DEFAULT 0,
    expires_at    INTEGER,
    created_at    INTEGER NOT NULL,
    read_key_hash TEXT NOT NULL DEFAULT '',
    verify_scheme TEXT NOT NULL DEFAULT '',
    verify_secret TEXT NOT NULL DEFAULT '',
    verify_header TEXT NOT NULL DEFAULT '',
    allowed_cidrs TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    rate_limit    REAL NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX channels_team ON channels (team_id, created_at);
CREATE INDEX channels_expires ON channels (expires_at) WHERE expires_at IS NOT NULL;

-- AUTOINCREMENT: a seq is never reused, even after the newest events are
-- deleted, so cursors (DoneThrough, afterSeq, BeforeSeq) stay meaningful.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    channel_id    TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    raw_query     TEXT NOT NULL,
    remote_addr   TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    state         TEXT NOT NULL,
    reject_reason TEXT NOT NULL DEFAULT '',
    last_status   INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    delivered_any INTEGER NOT NULL DEFAULT 0,
    headers       TEXT NOT NULL, -- JSON array of {"name","value"}, in received order
    -- The body is the last column: reading the columns before it never
    -- walks its overflow pages, so listing events without bodies is cheap.
    body          BLOB NOT NULL
) STRICT;
CREATE INDEX events_channel_seq ON events (channel_id, seq);
CREATE INDEX events_received ON events (received_at);

-- AUTOINCREMENT: an agent holding the id of a dropped group must never
-- write into a newer group that reused it.
CREATE TABLE delivery_groups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id   TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    done_through INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    UNIQUE (channel_id, name)
) STRICT;
CREATE INDEX delivery_groups_last_seen ON delivery_groups (last_seen_at);

-- An event done for a group above the group's done_through. Marks at or
-- below done_through are deleted when it advances.
CREATE TABLE done_marks (
    group_id  INTEGER NOT NULL REFERENCES delivery_groups (id) ON DELETE CASCADE,
    event_seq INTEGER NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    PRIMARY KEY (group_id, event_seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX done_marks_event ON done_marks (event_seq);

-- Deliveries outlive their group (history), not their event.
CREATE TABLE deliveries (
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
    response_headers TEXT NOT NULL, -- JSON, like events.headers
    response_body    BLOB NOT NULL
) STRICT;
CREATE INDEX deliveries_event ON deliveries (event_seq, started_at);

CREATE TABLE teams (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    team_id      TEXT NOT NULL DEFAULT '',
    role         TEXT NOT NULL,
    name         TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX tokens_team ON tokens (team_id, created_at);

-- Written by Ping to prove the file can be written.
CREATE TABLE probe (
    id  INTEGER PRIMARY KEY,
    pad BLOB
) STRICT;
