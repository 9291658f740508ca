-- PostgreSQL's autovacuum storage parameters for `deliveries`: SQLite has no
-- such thing. Kept so both backends' migrations stay in step.
SELECT 1;
