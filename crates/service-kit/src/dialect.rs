//! Each route family speaks its product's wire dialect (DESIGN §5): SpaceOS,
//! gospace or Tuzzle. The dialect is a property of the route, declared once in
//! a route table ([`Families`]); a middleware finds the family of each request
//! and every writer (success, list, error, the framework's own errors) asks
//! [`current`] which shape to write. Handlers never choose.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use serde::{Deserialize, Serialize};

/// A product's wire dialect.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// `{status, success, message?, data, timestamp, meta?}`; the platform's own
    /// envelope too (health, readiness, `/internal/*`).
    #[default]
    #[serde(rename = "spaceos")]
    SpaceOs,
    /// `{success, data}`, lists `{success, items, next_cursor, prev_cursor,
    /// pagination}`, errors `{success: false, error: {code, message, details,
    /// request_id}}`.
    Gospace,
    /// `{data}`, Laravel cursor lists, errors `{message, errors: {field: [..]}}`.
    Tuzzle,
}

impl Dialect {
    pub const ALL: [Dialect; 3] = [Dialect::SpaceOs, Dialect::Gospace, Dialect::Tuzzle];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::SpaceOs => "spaceos",
            Dialect::Gospace => "gospace",
            Dialect::Tuzzle => "tuzzle",
        }
    }
}

/// Which dialect each route speaks: `(dialect, path template)` pairs, where a
/// template is a route (`/api/v1/spaces/{id}`) or a prefix (`/v1/auth`). A path
/// belongs to the template that shares most of its leading segments with it
/// (`{…}` matches any one segment); on a tie, the one declared first. A path
/// that shares nothing speaks SpaceOS, the platform's own envelope.
#[derive(Debug, Clone, Default)]
pub struct Families {
    templates: Vec<(Dialect, Vec<Segment>)>,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    Any,
}

impl Families {
    pub fn new<'a>(table: impl IntoIterator<Item = (Dialect, &'a str)>) -> Families {
        Families {
            templates: table
                .into_iter()
                .map(|(dialect, template)| {
                    let segments = template
                        .split('/')
                        .filter(|s| !s.is_empty())
                        .map(|s| {
                            if s.starts_with('{') && s.ends_with('}') {
                                Segment::Any
                            } else {
                                Segment::Literal(s.to_owned())
                            }
                        })
                        .collect();
                    (dialect, segments)
                })
                .collect(),
        }
    }

    pub fn for_path(&self, path: &str) -> Dialect {
        let mut best = (0usize, Dialect::default());
        for (dialect, template) in &self.templates {
            let shared = template
                .iter()
                .zip(path.split('/').filter(|s| !s.is_empty()))
                .take_while(|(t, p)| match t {
                    Segment::Any => true,
                    Segment::Literal(l) => l == p,
                })
                .count();
            if shared > best.0 {
                best = (shared, *dialect);
            }
        }
        best.1
    }
}

/// What the writers of one request need to know.
#[derive(Debug, Clone)]
pub struct Context {
    pub dialect: Dialect,
    /// The request's path, without the query (Tuzzle lists name it).
    pub path: String,
    /// The raw query string (Tuzzle lists link their next page with it).
    pub query: String,
}

tokio::task_local! {
    static CURRENT: Context;
}

/// The dialect of the request being handled on this task (SpaceOS outside any).
pub fn current() -> Dialect {
    CURRENT.try_with(|c| c.dialect).unwrap_or_default()
}

/// The context of the request being handled on this task, if any.
pub fn context() -> Option<Context> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `fut` as a request of `dialect` (for answers made outside a server's
/// middleware, and for tests).
pub async fn scope<F: std::future::Future>(context: Context, fut: F) -> F::Output {
    CURRENT.scope(context, fut).await
}

pub(crate) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let dialect = req
        .app_data::<web::Data<crate::AppSpec>>()
        .map_or_else(Dialect::default, |spec| spec.families.for_path(req.path()));
    let context = Context {
        dialect,
        path: req.path().to_owned(),
        query: req.query_string().to_owned(),
    };
    CURRENT.scope(context, next.call(req)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_speaks_the_family_it_shares_most_with() {
        let families = Families::new([
            (Dialect::SpaceOs, "/api/v1/organizations"),
            (Dialect::SpaceOs, "/api/v1/organizations/{id}"),
            (Dialect::Tuzzle, "/api/v1/spaces"),
            (Dialect::Tuzzle, "/api/v1/spaces/{id}/api-keys/{key_id}"),
            (Dialect::Gospace, "/v1/auth"),
        ]);
        for (path, dialect) in [
            ("/api/v1/organizations", Dialect::SpaceOs),
            ("/api/v1/organizations/org_1/x", Dialect::SpaceOs),
            ("/api/v1/spaces", Dialect::Tuzzle),
            ("/api/v1/spaces/", Dialect::Tuzzle),
            ("/api/v1/spaces/spc_1/api-keys/3", Dialect::Tuzzle),
            ("/api/v1/spaces/spc_1/unknown", Dialect::Tuzzle),
            ("/v1/auth/token", Dialect::Gospace),
            ("/v1/nothing", Dialect::Gospace),
            // Shared only with SpaceOS and Tuzzle equally: the first declared.
            ("/api/v1/nothing", Dialect::SpaceOs),
            ("/", Dialect::SpaceOs),
            ("/healthz", Dialect::SpaceOs),
        ] {
            assert_eq!(families.for_path(path), dialect, "{path}");
        }
        assert_eq!(Families::default().for_path("/v1/x"), Dialect::SpaceOs);
    }
}
