-- A third family: a content space's (or its upload config's) `webhook_url`,
-- made by the intake for the `file.uploaded` events that name it.
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_family_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_family_check
    CHECK (family IN ('spaceos', 'gospace', 'tuzzle'));
