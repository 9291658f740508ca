ALTER TABLE organizations DROP COLUMN logo;
