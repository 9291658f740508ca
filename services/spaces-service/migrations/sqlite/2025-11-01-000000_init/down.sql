DROP TABLE space_api_keys;
DROP TABLE upload_configs;
DROP TABLE spaces;
