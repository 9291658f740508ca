CREATE INDEX deliveries_event_idx ON deliveries (event_id);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_once;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_once UNIQUE (subscription_id, event_id);
