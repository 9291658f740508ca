-- The transactional outbox (crates/events): each domain event is written here in
-- the same transaction as the change it describes; the relay moves it to the
-- event stream and marks it published.
CREATE TABLE outbox (
    -- Outbox order: assigned at insert, so an event written after another
    -- transaction's committed change sorts after that change's events.
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    workspace_id TEXT,
    organization_id TEXT,
    subject_id TEXT NOT NULL,
    -- The event's `data`, as JSON.
    data TEXT NOT NULL,
    producer TEXT NOT NULL,
    request_id TEXT,
    -- NULL until the stream has the event.
    published_at TIMESTAMP
);
-- The relay's scan: unpublished rows, oldest first.
CREATE INDEX outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;
-- Pruning: rows published before a cut-off.
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
