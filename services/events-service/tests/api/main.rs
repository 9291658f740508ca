//! events-service over HTTP on port 0, on SQLite and PostgreSQL, with the
//! in-process stream and Redis Streams.

use events_service::EventsService;

mod helpers;

mod delivery;
mod intake;
mod openapi;
mod replicas;
mod ssrf;
mod webhooks;

testkit::service_part_tests!(
    EventsService,
    env!("CARGO_BIN_EXE_events-service"),
    "EVENTS",
    "deploy/config/events-service.example.toml",
    helpers::isolate
);
