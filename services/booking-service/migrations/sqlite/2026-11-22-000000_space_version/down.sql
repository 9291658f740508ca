ALTER TABLE meeting_spaces DROP COLUMN version;
