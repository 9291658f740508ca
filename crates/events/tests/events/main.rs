//! The event plumbing on every backend: the outbox on SQLite and PostgreSQL,
//! the stream in memory and on Redis, and the relay and consumer over each pair.

mod support;

mod consumer;
mod outbox;
mod relay;
mod stream;
