//! Database failures and their one mapping to HTTP (modelled on crates.io's:
//! missing rows are 404, constraint violations 409, an unreachable database 503,
//! anything else an opaque 500).

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use service_kit::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("row not found")]
    NotFound,
    #[error("unique constraint violated ({})", constraint.as_deref().unwrap_or("unnamed"))]
    UniqueViolation { constraint: Option<String> },
    /// PostgreSQL exclusion constraints (SQLSTATE 23P01), foreign keys and checks.
    #[error("constraint violated ({})", constraint.as_deref().unwrap_or("unnamed"))]
    ConstraintViolation { constraint: Option<String> },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("{0}")]
    Config(String),
    #[error("query failed: {0}")]
    Query(#[source] DieselError),
}

impl StoreError {
    pub fn constraint(&self) -> Option<&str> {
        match self {
            StoreError::UniqueViolation { constraint }
            | StoreError::ConstraintViolation { constraint } => constraint.as_deref(),
            _ => None,
        }
    }
}

impl From<DieselError> for StoreError {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::NotFound => StoreError::NotFound,
            DieselError::DatabaseError(kind, info) => {
                let constraint = info.constraint_name().map(str::to_owned);
                match kind {
                    DatabaseErrorKind::UniqueViolation => {
                        StoreError::UniqueViolation { constraint }
                    }
                    DatabaseErrorKind::ForeignKeyViolation
                    | DatabaseErrorKind::CheckViolation
                    | DatabaseErrorKind::NotNullViolation => {
                        StoreError::ConstraintViolation { constraint }
                    }
                    DatabaseErrorKind::ClosedConnection => {
                        StoreError::Unavailable(info.message().to_owned())
                    }
                    // SQLite reports a lock it could not get within busy_timeout as
                    // "database is locked": a transient unavailability, not a bug.
                    _ if info.message().contains("database is locked") => {
                        StoreError::Unavailable(info.message().to_owned())
                    }
                    _ if info
                        .message()
                        .contains("conflicting key value violates exclusion constraint") =>
                    {
                        StoreError::ConstraintViolation { constraint }
                    }
                    _ => StoreError::Query(DieselError::DatabaseError(kind, info)),
                }
            }
            other => StoreError::Query(other),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(err: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::new(ErrorCode::NotFound, "resource not found"),
            StoreError::UniqueViolation { .. } | StoreError::ConstraintViolation { .. } => {
                ApiError::conflict("the request conflicts with the current state").with_source(err)
            }
            StoreError::Unavailable(_) => ApiError::service_unavailable("database unavailable")
                .with_retry_after(1)
                .with_source(err),
            other => ApiError::internal(other),
        }
    }
}
