DROP INDEX api_keys_creator_idx;
ALTER TABLE api_keys DROP COLUMN organization_id;
