-- Where an edited replay came from (store.Event.ReplayOf).
--
-- The replay API with edits stores a new event; this table names the event
-- it was made from. It is a table of its own rather than a column of events:
-- a column added to events would come after body, and reading it would walk
-- each body's overflow pages (see the note on events.body in 0001 and 0002).
CREATE TABLE event_origins (
    event_seq INTEGER PRIMARY KEY REFERENCES events (seq) ON DELETE CASCADE,
    replay_of TEXT NOT NULL -- the original event's id; it may have been deleted since
) STRICT;
