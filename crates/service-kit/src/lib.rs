//! Plumbing shared by every Spaceport server: layered configuration, telemetry, the
//! response envelope and error catalog, ids, pagination, the common HTTP middleware
//! (request ids, metrics, error normalisation), health/readiness/metrics routes,
//! server start-up with graceful shutdown, and the command line every binary shares.
//!
//! Business rules of one service never live here.

pub mod app;
pub mod cli;
pub mod config;
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
pub use envelope::ApiResponse;
pub use error::{ApiError, ErrorCode, FieldError};
pub use extract::{Json, Query};
