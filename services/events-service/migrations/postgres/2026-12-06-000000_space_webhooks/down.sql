DELETE FROM subscriptions WHERE family = 'tuzzle';
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_family_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_family_check
    CHECK (family IN ('spaceos', 'gospace'));
