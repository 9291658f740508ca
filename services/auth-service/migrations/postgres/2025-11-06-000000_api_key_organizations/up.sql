-- A workspace API key may be bound to one SpaceOS organization (`org_…`, owned
-- by booking-service): it then reaches that organization only. Members list the
-- keys they created, hence the second index.
ALTER TABLE api_keys ADD COLUMN organization_id TEXT;

CREATE INDEX api_keys_creator_idx ON api_keys (workspace_id, created_by, created_at, id);
