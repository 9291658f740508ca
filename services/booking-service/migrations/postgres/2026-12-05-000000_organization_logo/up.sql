-- SpaceOS organizations carry a logo (a URL), accepted, stored and returned.
ALTER TABLE organizations ADD COLUMN logo TEXT;
