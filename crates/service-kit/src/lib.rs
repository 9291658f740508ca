//! Plumbing shared by every Spaceport server: layered configuration, telemetry, the
//! response envelope and error catalog, ids, pagination, the common HTTP middleware
//! (request ids, metrics, error normalisation), health/readiness/metrics routes,
//! server start-up with graceful shutdown, and the command line every binary shares.
//!
//! Business rules of one service never live here.

pub mod app;
pub mod cli;
pub mod config;
pub mod dialect;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod files;
pub mod ids;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod request_id;
pub mod secrets;
pub mod server;
pub mod telemetry;
pub mod time;
pub mod tls;

pub use app::{AppSpec, ReadinessCheck, RequestGuard, build_app};
pub use dialect::Dialect;
pub use envelope::ApiResponse;
pub use error::{ApiError, ErrorCode, FieldError};
pub use extract::{Json, Query};

/// The allocator of every server binary (each `main.rs` declares it as its
/// `#[global_allocator]`): mimalloc keeps per-thread free lists, where glibc's
/// malloc spent a tenth of the gateway's CPU on a proxied request.
pub use mimalloc::MiMalloc as Allocator;

/// The environment the servers run with (the image sets it; so does the
/// launcher). mimalloc reads it before `main`. Without it, on Linux, mimalloc
/// commits its whole arena up front and cannot give freed pages back, which
/// raised the gateway's peak RSS at 256 connections from 41 to 58 MB.
pub const ALLOCATOR_ENV: [(&str, &str); 1] = [("MIMALLOC_ARENA_EAGER_COMMIT", "0")];

#[cfg(test)]
mod allocator_env {
    /// The image runs the servers with the allocator's environment.
    #[test]
    fn the_image_sets_it() {
        let dockerfile = include_str!("../../../deploy/Dockerfile");
        for (name, value) in super::ALLOCATOR_ENV {
            let line = format!("ENV {name}={value}");
            assert!(
                dockerfile.lines().any(|l| l.trim() == line),
                "deploy/Dockerfile lacks `{line}`"
            );
        }
    }
}
