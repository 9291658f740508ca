DROP TABLE space_api_keys;
ALTER TABLE spaces DROP CONSTRAINT spaces_active_upload_config_fk;
DROP TABLE upload_configs;
DROP TABLE spaces;
