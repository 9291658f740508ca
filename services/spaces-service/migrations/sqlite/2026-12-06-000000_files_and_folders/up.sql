-- Folders of a space: a tree. `path` is the folder's full path with a
-- trailing slash (`photos/vacation/`), unique per space; renaming or moving a
-- folder rewrites its descendants' paths in the same transaction.
-- `access_control` is the folder's own setting (JSON), NULL when it inherits.
-- Folders and files have no foreign key to their space: they outlive a
-- deleted space until its purge (space_purges) has removed them and their
-- objects.
CREATE TABLE folders (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    space_id TEXT NOT NULL,
    parent_id TEXT REFERENCES folders (id),
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    access_control TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT folders_path_unique UNIQUE (space_id, path)
);

CREATE INDEX folders_space_idx ON folders (space_id, created_at, id);
CREATE INDEX folders_parent_idx ON folders (parent_id);

-- Files. `object_key` is where the bytes are (`{handle}/{id}`), fixed for the
-- file's life; `storage_path` (`{handle}/{name}`) is its public address,
-- unique across the platform (handles are). `status` is `pending` from a
-- presign until its confirmation (`expires_at`: when its PUT URL expires),
-- then `active`. `access_type` is Tuzzle's `type` (the upload config's
-- delivery type); `access_control` the file's own setting, NULL when it
-- inherits (folder, then space).
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    space_id TEXT NOT NULL,
    folder_id TEXT REFERENCES folders (id),
    upload_config_id TEXT,
    status TEXT NOT NULL,
    name TEXT NOT NULL,
    original_name TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    extension TEXT,
    size BIGINT NOT NULL,
    object_key TEXT NOT NULL,
    storage_path TEXT NOT NULL,
    sha256 TEXT,
    reference TEXT,
    access_type TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    blur_hash TEXT,
    access_control TEXT,
    expires_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT files_object_key_unique UNIQUE (object_key),
    CONSTRAINT files_storage_path_unique UNIQUE (storage_path),
    CONSTRAINT files_reference_unique UNIQUE (space_id, reference),
    CONSTRAINT files_status_check CHECK (status IN ('active', 'pending')),
    CONSTRAINT files_access_type_check
        CHECK (access_type IN ('upload', 'private', 'authenticated')),
    CONSTRAINT files_resource_type_check
        CHECK (resource_type IN ('image', 'video', 'audio', 'text', 'document', 'archive', 'other')),
    CONSTRAINT files_size_check CHECK (size >= 0)
);

CREATE INDEX files_space_idx ON files (space_id, created_at, id);
CREATE INDEX files_folder_idx ON files (folder_id);
CREATE INDEX files_pending_idx ON files (expires_at) WHERE status = 'pending';

-- Deleted spaces whose files, folders and objects are still being removed,
-- worked by a background task (at start-up and after each deletion) until
-- done; a failed pass is retried later (`next_attempt_at`). The handle stays
-- taken until the purge is over, so no new space can reuse it (and its
-- object prefix) meanwhile.
CREATE TABLE space_purges (
    space_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    handle TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    last_error TEXT,
    CONSTRAINT space_purges_handle_unique UNIQUE (handle)
);
