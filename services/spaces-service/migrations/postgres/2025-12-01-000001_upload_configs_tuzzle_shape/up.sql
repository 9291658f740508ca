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
-- A field missing from a stored document took the `starter` value when read;
-- it takes it here.
ALTER TABLE upload_configs
    ADD COLUMN description TEXT,
    ADD COLUMN is_signed BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN allow_unsigned BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN delivery_type TEXT NOT NULL DEFAULT 'upload',
    ADD COLUMN unsigned_restrictions TEXT,
    ADD CONSTRAINT upload_configs_delivery_type_check
        CHECK (delivery_type IN ('upload', 'private', 'authenticated'));

UPDATE upload_configs AS c
SET is_signed = COALESCE((old.doc ->> 'signed_uploads')::boolean, TRUE),
    allow_unsigned = COALESCE((old.doc ->> 'unsigned_uploads')::boolean, FALSE),
    unsigned_restrictions = CASE
        WHEN COALESCE((old.doc ->> 'unsigned_uploads')::boolean, FALSE)
        THEN '{"allowed_referrers":[],"require_https":false,"max_uploads_per_hour":null}'
    END,
    config = jsonb_build_object(
        'validation', jsonb_build_object(
            'max_file_size', COALESCE(old.doc -> 'max_file_size', '10485760'::jsonb),
            'allowed_formats', COALESCE(
                (SELECT to_jsonb(string_agg(f.format, ',' ORDER BY f.position))
                 FROM jsonb_array_elements_text(
                     CASE WHEN jsonb_typeof(old.doc -> 'allowed_formats') = 'array'
                          THEN old.doc -> 'allowed_formats'
                          ELSE '[]'::jsonb
                     END
                 ) WITH ORDINALITY AS f(format, position)),
                '"jpg,jpeg,png,gif,webp"'::jsonb
            )
        )
    )::text
FROM (SELECT id, config::jsonb AS doc FROM upload_configs) AS old
WHERE c.id = old.id;
