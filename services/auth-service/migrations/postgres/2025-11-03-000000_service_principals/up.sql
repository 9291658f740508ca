-- Machine clients of a workspace (OAuth2 client credentials). Only a keyed hash
-- of the secret is stored.
CREATE TABLE service_principals (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    secret_rotated_at TIMESTAMP NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE INDEX service_principals_workspace_idx ON service_principals (workspace_id, created_at, id);
