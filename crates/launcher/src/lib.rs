//! Spaceport's parts as separate processes, the way they are deployed: each its
//! own binary, configured by its environment variables only, on a scratch
//! PostgreSQL database of its own.
//!
//! Used by the benchmarks and by the distributed rehearsal (`make
//! run-distributed`), which need real processes to measure memory, to kill one
//! replica, or to send SIGTERM under load.

pub mod outbox;
mod postgres;
mod process;

pub use postgres::ScratchDatabase;
pub use process::{Memory, PartProcess, free_port, spawn_logged};
