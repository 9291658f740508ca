-- One index fewer to maintain on every delivery written: the uniqueness of
-- (subscription, event) led by the event serves what `deliveries_event_idx`
-- served (an event's deliveries, the cascade when events are pruned); a
-- subscription's deliveries are found by `deliveries_log_idx`.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_once;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_once UNIQUE (event_id, subscription_id);
DROP INDEX deliveries_event_idx;
