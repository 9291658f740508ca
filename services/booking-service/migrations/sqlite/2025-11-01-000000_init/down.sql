DROP TABLE idempotency_keys;
DROP TABLE bookings;
DROP TABLE unavailability;
DROP TABLE business_hours;
DROP TABLE meeting_spaces;
DROP TABLE space_groups;
DROP TABLE organizations;
