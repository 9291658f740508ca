ALTER TABLE space_api_keys DROP COLUMN kind;
ALTER TABLE space_api_keys DROP COLUMN number;
