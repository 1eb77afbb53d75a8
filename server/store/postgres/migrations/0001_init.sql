-- hookrelay schema version 1 for PostgreSQL.
-- Bytes that arrive from outside (paths, queries, header values, bodies)
-- are bytea, never text: PostgreSQL's text cannot hold a NUL or bytes that
-- are not valid in the database's encoding, and the relay forwards them
-- unchanged.

CREATE TABLE channels (
    id            text PRIMARY KEY,
    team_id       text NOT NULL DEFAULT '',
    async         boolean NOT NULL DEFAULT false,
    expires_at    timestamptz,
    created_at    timestamptz NOT NULL,
    read_key_hash text NOT NULL DEFAULT '',
    verify_scheme text NOT NULL DEFAULT '',
    verify_secret bytea NOT NULL DEFAULT '',  -- the provider secret, any bytes
    verify_header text NOT NULL DEFAULT '',
    allowed_cidrs text[] NOT NULL DEFAULT '{}',
    rate_limit    double precision NOT NULL DEFAULT 0
);
CREATE INDEX channels_team ON channels (team_id, created_at);
CREATE INDEX channels_expires ON channels (expires_at) WHERE expires_at IS NOT NULL;

-- Seqs come from this sequence, taken by the append writer while its
-- transaction holds the channel's advisory lock (see writer.go). A sequence
-- never hands out a value twice, even after the newest events are deleted
-- or a transaction rolls back, so cursors (done_through, AfterSeq,
-- BeforeSeq) stay meaningful. CACHE 1 (the default) matters: with a
-- per-session cache, a session could take a seq lower than one another
-- session took earlier, and seq order within a channel would no longer
-- follow the order of the channel's lock.
CREATE SEQUENCE event_seq CACHE 1;

-- One row per received webhook, written once and never updated: what
-- changes per delivery lives in event_status, so a delivery never rewrites
-- the row (or the TOAST chunks) holding the body.
-- Header names and values are bytea, like every byte that arrives from
-- outside: text would refuse a NUL or bytes that are not UTF-8, and one
-- such event would fail the whole batch it was committed with. They are two
-- parallel arrays rather than store.AppendHeaders' encoding so that the
-- inspector's search can test each name and value on its own.
CREATE TABLE events (
    seq           bigint PRIMARY KEY,
    id            text NOT NULL UNIQUE,
    channel_id    text NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    method        text NOT NULL,
    path          bytea NOT NULL,
    raw_query     bytea NOT NULL,
    remote_addr   text NOT NULL,
    received_at   timestamptz NOT NULL,
    state         text NOT NULL,
    reject_reason text NOT NULL DEFAULT '',
    header_names  bytea[] NOT NULL,  -- in received order, case and repeats kept
    header_values bytea[] NOT NULL,  -- header_values[i] belongs to header_names[i]
    -- The id of the event this one is an edited replay of (store.Event.ReplayOf),
    -- '' for a webhook received at ingress; the original may be gone since. A
    -- column, not a table as in SQLite: bodies of more than a few KiB live out
    -- of line (TOAST), so reading the other columns never reads them.
    replay_of     text NOT NULL DEFAULT '',
    body_size     integer NOT NULL,
    body          bytea NOT NULL
);
ALTER SEQUENCE event_seq OWNED BY events.seq;
-- Bodies are stored out of line and uncompressed: compressing every body
-- on the hot path costs more CPU than the disk it saves is worth, and the
-- rest of the row stays small for listing.
ALTER TABLE events ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE INDEX events_channel_seq ON events (channel_id, seq);
CREATE INDEX events_received ON events (received_at);
-- The rejected events of a channel, for the cap enforced on each append.
CREATE INDEX events_rejected ON events (channel_id, seq) INCLUDE (body_size) WHERE state = 'rejected';

-- contains_fold reports whether needle occurs in haystack, ignoring the
-- case of ASCII letters only (the search of the inspector). PostgreSQL has
-- no case folding for bytea, so both go through encode(…, 'escape'), which
-- keeps bytes 1 to 127, doubles backslashes and writes NUL and bytes above
-- 127 as \ooo: only ASCII letters remain to fold, and ~* folds them. The
-- pattern's prefix consumes whole escape tokens, so a match starts on a
-- byte boundary (the digits of an escaped byte never match on their own).
CREATE FUNCTION contains_fold(haystack bytea, needle bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
  SELECT encode(haystack, 'escape') ~* ('^(?:\\\\|\\[0-7]{3}|[^\\])*?'
    || regexp_replace(encode(needle, 'escape'), '([.^$*+?()\[\]{}|\\])', '\\\1', 'g'))
$fn$;

-- The delivery summary of an event, created with its first delivery.
CREATE TABLE event_status (
    event_seq     bigint PRIMARY KEY REFERENCES events (seq) ON DELETE CASCADE,
    last_status   integer NOT NULL DEFAULT 0,
    attempts      integer NOT NULL DEFAULT 0,
    delivered_any boolean NOT NULL DEFAULT false
);

-- An identity never reuses an id: an agent holding the id of a dropped
-- group must never write into a newer group that reused it.
CREATE TABLE delivery_groups (
    id           bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    channel_id   text NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    name         text NOT NULL,
    done_through bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    UNIQUE (channel_id, name)
);
CREATE INDEX delivery_groups_last_seen ON delivery_groups (last_seen_at);

-- An event done for a group above the group's done_through. Marks at or
-- below done_through are deleted when it advances. A mark does not
-- reference its event: one left by a deleted event is harmless (Pending
-- joins events first) and goes when done_through passes it, and deleting
-- events does not have to probe this table.
CREATE TABLE done_marks (
    group_id  bigint NOT NULL REFERENCES delivery_groups (id) ON DELETE CASCADE,
    event_seq bigint NOT NULL,
    PRIMARY KEY (group_id, event_seq)
);

-- Deliveries outlive their group (history), not their event. n keeps the
-- order of insertion for attempts started in the same microsecond.
CREATE TABLE deliveries (
    id               text PRIMARY KEY,
    n                bigint GENERATED ALWAYS AS IDENTITY,
    event_seq        bigint NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    event_id         text NOT NULL,
    channel_id       text NOT NULL,
    group_id         bigint NOT NULL,
    group_name       text NOT NULL,
    agent_id         text NOT NULL,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ns      bigint NOT NULL,
    status           integer NOT NULL,
    error            text NOT NULL,
    done             boolean NOT NULL,
    response_headers bytea NOT NULL, -- store.AppendHeaders
    response_body    bytea NOT NULL
);
CREATE INDEX deliveries_event ON deliveries (event_seq, started_at, n);

CREATE TABLE teams (
    id         text PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL
);

CREATE TABLE tokens (
    id           text PRIMARY KEY,
    team_id      text NOT NULL DEFAULT '',
    role         text NOT NULL,
    name         text NOT NULL,
    hash         text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked      boolean NOT NULL DEFAULT false
);
CREATE INDEX tokens_team ON tokens (team_id, created_at);

-- The relay's secret (see Store.Secret), one row, written by the first node
-- that needs it.
CREATE TABLE relay_secret (
    id     integer PRIMARY KEY CHECK (id = 1),
    secret bytea NOT NULL
);

-- Updated by Ping to prove the database can be written.
CREATE TABLE probe (
    id integer PRIMARY KEY,
    at timestamptz NOT NULL
);
INSERT INTO probe (id, at) VALUES (1, now());
