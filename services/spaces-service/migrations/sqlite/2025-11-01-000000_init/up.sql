-- Content spaces of a workspace. name_key is the name folded to lowercase (by
-- the service, the same on both backends), so names are unique per workspace
-- regardless of case; handles and custom domains are unique across workspaces.
-- access_control and security are JSON documents. The active upload config is
-- one of the space's own, and cannot be deleted while active.
CREATE TABLE spaces (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    description TEXT,
    handle TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    folder_mode TEXT NOT NULL DEFAULT 'dynamic',
    custom_domain TEXT,
    webhook_url TEXT,
    access_control TEXT NOT NULL,
    security TEXT NOT NULL,
    active_upload_config_id TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT spaces_handle_unique UNIQUE (handle),
    CONSTRAINT spaces_name_unique UNIQUE (workspace_id, name_key),
    CONSTRAINT spaces_custom_domain_unique UNIQUE (custom_domain),
    CONSTRAINT spaces_folder_mode_check CHECK (folder_mode IN ('dynamic', 'fixed')),
    CONSTRAINT spaces_active_upload_config_fk
        FOREIGN KEY (active_upload_config_id, id) REFERENCES upload_configs (id, space_id)
);

CREATE INDEX spaces_workspace_idx ON spaces (workspace_id, created_at, id);

-- Upload configs belong to one space; (id, space_id) is unique so that the
-- space's active config can refer to it.
CREATE TABLE upload_configs (
    id TEXT PRIMARY KEY,
    space_id TEXT NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT upload_configs_name_unique UNIQUE (space_id, name_key),
    CONSTRAINT upload_configs_of_space UNIQUE (id, space_id)
);

CREATE INDEX upload_configs_space_idx ON upload_configs (space_id, created_at, id);
CREATE INDEX upload_configs_workspace_idx ON upload_configs (workspace_id, created_at, id);

-- Space API keys: only a keyed hash of the key is stored.
CREATE TABLE space_api_keys (
    id TEXT PRIMARY KEY,
    space_id TEXT NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    prefix TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    last_used_at TIMESTAMP,
    CONSTRAINT space_api_keys_hash_unique UNIQUE (key_hash)
);

CREATE INDEX space_api_keys_space_idx ON space_api_keys (space_id, created_at, id);
