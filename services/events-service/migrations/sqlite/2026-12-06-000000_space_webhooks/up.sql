-- A third family: a content space's (or its upload config's) `webhook_url`,
-- made by the intake for the `file.uploaded` events that name it.
-- SQLite cannot change a CHECK in place, and dropping `subscriptions` alone
-- would cascade to its deliveries: the three tables are copied aside, dropped
-- children first, made again as before (but for the CHECK) and filled back.
CREATE TEMP TABLE subscriptions_copy AS SELECT * FROM subscriptions;
CREATE TEMP TABLE deliveries_copy AS SELECT * FROM deliveries;
CREATE TEMP TABLE attempts_copy AS SELECT * FROM attempts;
DROP TABLE attempts;
DROP TABLE deliveries;
DROP TABLE subscriptions;

CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    -- The route family the subscription was made in: its body and signature.
    family TEXT NOT NULL CHECK (family IN ('spaceos', 'gospace', 'tuzzle')),
    -- SpaceOS subscriptions belong to one organization; gospace ones to the
    -- whole workspace.
    organization_id TEXT,
    url TEXT NOT NULL,
    -- A JSON array of event names from the catalog.
    events TEXT NOT NULL,
    -- AES-256-GCM under a key derived from the root secret, bound to the id.
    secret_sealed TEXT NOT NULL,
    secret_hint TEXT NOT NULL,
    notify_email TEXT,
    enabled BOOLEAN NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'failing')),
    failing_since TIMESTAMP,
    -- When the failure mail was sent; NULL until then.
    notified_at TIMESTAMP,
    -- A replica sending the failure mail holds it until then.
    notify_lease_until TIMESTAMP,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT subscriptions_organization_by_family
        CHECK ((family = 'spaceos') = (organization_id IS NOT NULL))
);
CREATE INDEX subscriptions_workspace_idx ON subscriptions (workspace_id, family, created_at, id);
CREATE INDEX subscriptions_failing_idx ON subscriptions (id) WHERE state = 'failing';

CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    -- A client's test or retry: one attempt, whatever the subscription's state.
    manual BOOLEAN NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP,
    -- The claim of the replica sending it, until `lease_until`.
    lease_owner TEXT,
    lease_until TIMESTAMP,
    last_attempt_at TIMESTAMP,
    last_status INTEGER,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT deliveries_once UNIQUE (subscription_id, event_id)
);
-- The workers' claim: pending deliveries, soonest due first.
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_log_idx ON deliveries (subscription_id, created_at, id);
CREATE INDEX deliveries_event_idx ON deliveries (event_id);

CREATE TABLE attempts (
    delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    started_at TIMESTAMP NOT NULL,
    duration_ms BIGINT NOT NULL,
    response_status INTEGER,
    -- At most 64 KiB of the receiver's answer.
    response_body TEXT,
    response_truncated BOOLEAN NOT NULL,
    error TEXT,
    outcome TEXT NOT NULL CHECK (outcome IN ('succeeded', 'retrying', 'failed')),
    next_attempt_at TIMESTAMP,
    PRIMARY KEY (delivery_id, number)
);

INSERT INTO subscriptions SELECT * FROM subscriptions_copy;
INSERT INTO deliveries SELECT * FROM deliveries_copy
    WHERE subscription_id IN (SELECT id FROM subscriptions);
INSERT INTO attempts SELECT * FROM attempts_copy
    WHERE delivery_id IN (SELECT id FROM deliveries);
DROP TABLE subscriptions_copy;
DROP TABLE deliveries_copy;
DROP TABLE attempts_copy;
