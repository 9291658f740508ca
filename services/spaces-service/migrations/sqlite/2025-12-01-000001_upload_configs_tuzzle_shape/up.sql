-- Upload configs in Tuzzle's shape. The top-level fields get columns; `config`
-- becomes Tuzzle's document ({storage, validation, transformations, metadata,
-- notifications}; sections and fields it leaves out read as their defaults).
-- Today's settings move over without loss:
--   max_file_size      -> config.validation.max_file_size
--   allowed_formats    -> config.validation.allowed_formats ("jpg,png": the
--                         same extensions, in the same order, comma-separated)
--   signed_uploads     -> is_signed
--   unsigned_uploads   -> allow_unsigned, with unsigned_restrictions that
--                         restrict nothing (any referrer, http allowed, no
--                         hourly cap), as such uploads were accepted until now.
-- A field missing from a stored document (or a document that is not JSON)
-- took the `starter` value when read; it takes it here.
ALTER TABLE upload_configs ADD COLUMN description TEXT;
ALTER TABLE upload_configs ADD COLUMN is_signed BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE upload_configs ADD COLUMN allow_unsigned BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE upload_configs ADD COLUMN delivery_type TEXT NOT NULL DEFAULT 'upload'
    CONSTRAINT upload_configs_delivery_type_check
    CHECK (delivery_type IN ('upload', 'private', 'authenticated'));
ALTER TABLE upload_configs ADD COLUMN unsigned_restrictions TEXT;

UPDATE upload_configs
SET config = '{}'
WHERE NOT json_valid(config) OR json_type(config) != 'object';

UPDATE upload_configs
SET is_signed = COALESCE(json_extract(config, '$.signed_uploads'), 1),
    allow_unsigned = COALESCE(json_extract(config, '$.unsigned_uploads'), 0),
    unsigned_restrictions = CASE
        WHEN COALESCE(json_extract(config, '$.unsigned_uploads'), 0)
        THEN '{"allowed_referrers":[],"require_https":false,"max_uploads_per_hour":null}'
    END,
    config = json_object(
        'validation', json_object(
            'max_file_size', COALESCE(json_extract(config, '$.max_file_size'), 10485760),
            'allowed_formats', COALESCE(
                (SELECT group_concat(f.value, ',')
                 FROM json_each(config, '$.allowed_formats') AS f
                 WHERE json_type(config, '$.allowed_formats') = 'array'),
                'jpg,jpeg,png,gif,webp'
            )
        )
    );
