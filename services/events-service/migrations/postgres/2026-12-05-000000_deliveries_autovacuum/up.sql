-- Deliveries turn over fast (pending → succeeded within seconds), and every
-- row that leaves `pending` leaves a dead entry in the partial index
-- `deliveries_due_idx` until vacuum removes it; claims walk those entries.
-- Vacuum this table after ~1% of it changed (at least 500 rows) rather than
-- the default 20%, and without the cost-based throttling.
ALTER TABLE deliveries SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 500,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
