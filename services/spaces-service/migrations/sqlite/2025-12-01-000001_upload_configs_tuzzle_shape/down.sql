-- Back to {max_file_size, allowed_formats: [..], signed_uploads, unsigned_uploads};
-- what only the new shape can say is dropped.
UPDATE upload_configs
SET config = json_object(
    'max_file_size', COALESCE(json_extract(config, '$.validation.max_file_size'), 52428800),
    'allowed_formats', json(COALESCE(
        '["' || replace(json_extract(config, '$.validation.allowed_formats'), ',', '","') || '"]',
        '["jpg","jpeg","png","gif","webp"]'
    )),
    'signed_uploads', json(CASE WHEN is_signed OR NOT allow_unsigned THEN 'true' ELSE 'false' END),
    'unsigned_uploads', json(CASE WHEN allow_unsigned THEN 'true' ELSE 'false' END)
);

ALTER TABLE upload_configs DROP COLUMN unsigned_restrictions;
ALTER TABLE upload_configs DROP COLUMN delivery_type;
ALTER TABLE upload_configs DROP COLUMN allow_unsigned;
ALTER TABLE upload_configs DROP COLUMN is_signed;
ALTER TABLE upload_configs DROP COLUMN description;
