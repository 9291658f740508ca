CREATE TABLE space_api_keys_previous (
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

INSERT INTO space_api_keys_previous
SELECT id, space_id, workspace_id, name, key_hash, prefix, created_by, created_at, expires_at, last_used_at
FROM space_api_keys;

DROP TABLE space_api_keys;
ALTER TABLE space_api_keys_previous RENAME TO space_api_keys;
CREATE INDEX space_api_keys_space_idx ON space_api_keys (space_id, created_at, id);
