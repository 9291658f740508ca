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

#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use utoipa;
}

/// A string enum (`words! { Kind { A = "a", B = "b" } }`) whose unknown values
/// are refused naming the values it knows, with its OpenAPI schema.
/// (Its schema is written here: the derive does not see renames made by a
/// macro.)
#[macro_export]
macro_rules! words {
    ($(#[doc = $doc:literal])* $name:ident {
        $($(#[doc = $vdoc:literal])* $variant:ident = $text:literal),+ $(,)?
    }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, $crate::__private::serde::Serialize)]
        pub enum $name {
            $($(#[doc = $vdoc])* #[serde(rename = $text)] $variant),+
        }

        #[allow(dead_code)] // not every such enum is read or written as text
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub(crate) fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as $crate::__private::serde::Deserialize>::deserialize(d)?;
                $name::parse(&text).ok_or_else(|| {
                    $crate::__private::serde::de::Error::custom(format!(
                        "must be one of {}",
                        [$($text),+].join(", ")
                    ))
                })
            }
        }

        impl $crate::__private::utoipa::PartialSchema for $name {
            fn schema() -> $crate::__private::utoipa::openapi::RefOr<$crate::__private::utoipa::openapi::Schema> {
                let description = concat!(
                    $($doc, "\n",)*
                    $("\n- `", $text, "`:", $($vdoc,)*)+
                );
                $crate::__private::utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type($crate::__private::utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .description(Some(description.trim()))
                    .into()
            }
        }

        impl $crate::__private::utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }
    };
}
