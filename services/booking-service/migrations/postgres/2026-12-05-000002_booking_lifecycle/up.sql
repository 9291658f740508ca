-- The time-driven booking lifecycle (src/lifecycle.rs): `booking.start` 15
-- minutes before a confirmed booking starts, `confirmed → active` at the start
-- on spaces without check-in, `active → completed` (`booking.end`) at the end.

-- When `booking.start` was recorded; NULL until then, and again after a
-- reschedule (the new start is announced).
ALTER TABLE bookings ADD COLUMN start_notified_at TIMESTAMP;

-- The lifecycle's scans, each over the few bookings it may move: confirmed
-- ones by start (the announcement and the start), active ones by end. The
-- queries repeat these predicates literally, so the planner can use the
-- partial indexes (a bound parameter could not prove them).
CREATE INDEX bookings_confirmed_start_idx ON bookings (start_time) WHERE status = 'confirmed';
CREATE INDEX bookings_active_end_idx ON bookings (end_time) WHERE status = 'active';

-- Bookings from before the lifecycle existed: their starts were never
-- announced and nothing ended them. Announcing and ending all of them now
-- would replay history into the new event stream, so what is past is settled
-- here, without events: starts already past count as announced, and bookings
-- that ended (not waiting for a check-in deadline) are completed.
UPDATE bookings SET start_notified_at = (now() AT TIME ZONE 'UTC')
    WHERE start_time <= (now() AT TIME ZONE 'UTC');
UPDATE bookings SET status = 'completed', updated_at = (now() AT TIME ZONE 'UTC')
    WHERE status IN ('confirmed', 'active') AND check_in_deadline IS NULL
      AND end_time <= (now() AT TIME ZONE 'UTC');
