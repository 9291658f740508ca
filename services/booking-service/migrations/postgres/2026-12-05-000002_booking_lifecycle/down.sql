DROP INDEX bookings_active_end_idx;
DROP INDEX bookings_confirmed_start_idx;
ALTER TABLE bookings DROP COLUMN start_notified_at;
