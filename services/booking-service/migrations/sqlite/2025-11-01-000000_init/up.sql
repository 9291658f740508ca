-- Every table carries the workspace it belongs to: each query of tenant data
-- filters by the caller's workspace.

-- Organizations live inside a workspace; slugs are globally unique (public URLs).
CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    timezone TEXT NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX organizations_workspace_idx ON organizations (workspace_id, created_at);

CREATE TABLE space_groups (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- NULL: the organization's time zone.
    timezone TEXT,
    address TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX space_groups_org_idx ON space_groups (workspace_id, organization_id, created_at);

CREATE TABLE meeting_spaces (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    space_group_id TEXT REFERENCES space_groups (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    -- NULL: the group's, else the organization's time zone.
    timezone TEXT,
    capacity INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- JSON array of strings.
    amenities TEXT NOT NULL DEFAULT '[]',
    booking_increment INTEGER NOT NULL,
    min_duration INTEGER NOT NULL,
    max_duration INTEGER NOT NULL,
    buffer_before INTEGER NOT NULL,
    buffer_after INTEGER NOT NULL,
    public_booking BOOLEAN NOT NULL,
    requires_check_in BOOLEAN NOT NULL,
    check_in_grace_minutes INTEGER NOT NULL,
    -- The latest end of the space's unavailability periods (NULL: none), so
    -- that bookings after it skip looking them up.
    unavailable_until TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX meeting_spaces_org_idx ON meeting_spaces (workspace_id, organization_id, created_at);

-- Opening hours in the space's time zone, minutes after local midnight; a space
-- without any row is open around the clock.
CREATE TABLE business_hours (
    meeting_space_id TEXT NOT NULL REFERENCES meeting_spaces (id) ON DELETE CASCADE,
    -- ISO weekday: 1 = Monday … 7 = Sunday.
    weekday INTEGER NOT NULL,
    open_minute INTEGER NOT NULL,
    close_minute INTEGER NOT NULL,
    PRIMARY KEY (meeting_space_id, weekday, open_minute)
);

CREATE TABLE unavailability (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    meeting_space_id TEXT NOT NULL REFERENCES meeting_spaces (id) ON DELETE CASCADE,
    start_time TIMESTAMP NOT NULL,
    end_time TIMESTAMP NOT NULL,
    reason TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX unavailability_space_idx ON unavailability (meeting_space_id, start_time);

CREATE TABLE bookings (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    meeting_space_id TEXT NOT NULL REFERENCES meeting_spaces (id) ON DELETE CASCADE,
    start_time TIMESTAMP NOT NULL,
    end_time TIMESTAMP NOT NULL,
    -- start − buffer_before .. end + buffer_after: what the booking keeps others from.
    blocked_start TIMESTAMP NOT NULL,
    blocked_end TIMESTAMP NOT NULL,
    organizer_name TEXT NOT NULL,
    organizer_email TEXT NOT NULL,
    notes TEXT,
    status TEXT NOT NULL,
    cancel_reason TEXT,
    -- Set when the space requires check-in: released as a no-show after it.
    check_in_deadline TIMESTAMP,
    checked_in_at TIMESTAMP,
    checked_out_at TIMESTAMP,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT bookings_interval_check CHECK (end_time > start_time AND blocked_end > blocked_start)
);
-- SQLite has no exclusion constraints: the overlap check runs in the write-locked
-- transaction that inserts or moves a booking.
CREATE INDEX bookings_space_idx ON bookings (meeting_space_id, blocked_start);
CREATE INDEX bookings_workspace_idx ON bookings (workspace_id, start_time);
-- Only open bookings keep a deadline (it is cleared when they are checked in
-- or cancelled), so the no-show sweep scans just those.
CREATE INDEX bookings_no_show_idx ON bookings (check_in_deadline) WHERE check_in_deadline IS NOT NULL;

-- Idempotency-Key of POSTs: the first answer, replayed for 24 hours.
CREATE TABLE idempotency_keys (
    -- The workspace, or `anonymous:<client address>`.
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
