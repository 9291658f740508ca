-- Counts the changes that bear on booking a space: its own fields, its
-- business hours, its unavailability periods, and the time zone of its
-- organization or group. A booking is written only while the version it was
-- checked against is still the current one.
ALTER TABLE meeting_spaces ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
