-- Back to {max_file_size, allowed_formats: [..], signed_uploads, unsigned_uploads};
-- what only the new shape can say is dropped.
UPDATE upload_configs AS c
SET config = jsonb_build_object(
        'max_file_size', COALESCE(old.doc #> '{validation,max_file_size}', '52428800'::jsonb),
        'allowed_formats', COALESCE(
            (SELECT jsonb_agg(f.format ORDER BY f.position)
             FROM unnest(string_to_array(old.doc #>> '{validation,allowed_formats}', ','))
                  WITH ORDINALITY AS f(format, position)),
            '["jpg","jpeg","png","gif","webp"]'::jsonb
        ),
        'signed_uploads', c.is_signed OR NOT c.allow_unsigned,
        'unsigned_uploads', c.allow_unsigned
    )::text
FROM (SELECT id, config::jsonb AS doc FROM upload_configs) AS old
WHERE c.id = old.id;

ALTER TABLE upload_configs
    DROP CONSTRAINT upload_configs_delivery_type_check,
    DROP COLUMN unsigned_restrictions,
    DROP COLUMN delivery_type,
    DROP COLUMN allow_unsigned,
    DROP COLUMN is_signed,
    DROP COLUMN description;
