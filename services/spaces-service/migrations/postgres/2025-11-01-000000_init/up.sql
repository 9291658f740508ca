-- Content spaces of a workspace. name_key is the lowercased name, so names are
-- unique per workspace regardless of case; handles are globally unique.
CREATE TABLE spaces (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    description TEXT,
    handle TEXT NOT NULL UNIQUE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (workspace_id, name_key)
);

CREATE INDEX spaces_workspace_idx ON spaces (workspace_id, created_at, id);
