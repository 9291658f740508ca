-- PostgreSQL's `deliveries_once` now leads with the event and replaces
-- `deliveries_event_idx`, one index fewer per delivery written. SQLite cannot
-- change a table constraint in place, and its indexes cost little here: kept
-- as they are, so both backends' migrations stay in step.
SELECT 1;
