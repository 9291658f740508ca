-- Space API keys get Tuzzle's integer id (`number`: AUTOINCREMENT, so never
-- reused; existing keys numbered in the order they were made) beside the
-- internal `spk_…` id that introspection and revocations name; and a type:
-- `space` (one space) or `account` (every space of the workspace). SQLite
-- cannot add such a column, so the table is rebuilt.
CREATE TABLE space_api_keys_next (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'space',
    space_id TEXT NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    prefix TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    last_used_at TIMESTAMP,
    CONSTRAINT space_api_keys_id_unique UNIQUE (id),
    CONSTRAINT space_api_keys_hash_unique UNIQUE (key_hash),
    CONSTRAINT space_api_keys_kind_check CHECK (kind IN ('space', 'account'))
);

INSERT INTO space_api_keys_next
    (id, space_id, workspace_id, name, key_hash, prefix, created_by, created_at, expires_at, last_used_at)
SELECT id, space_id, workspace_id, name, key_hash, prefix, created_by, created_at, expires_at, last_used_at
FROM space_api_keys
ORDER BY created_at, id;

DROP TABLE space_api_keys;
ALTER TABLE space_api_keys_next RENAME TO space_api_keys;
CREATE INDEX space_api_keys_space_idx ON space_api_keys (space_id, created_at, id);
