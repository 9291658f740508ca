//! The route table: longest matching prefix wins.

use crate::config::{GatewayConfig, RouteConfig};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: std::sync::Arc<str>,
    pub upstream: std::sync::Arc<str>,
    pub policy: crate::config::RoutePolicy,
    /// The service name identity tokens for this route are addressed to.
    pub audience: String,
    /// The upstream's replicas.
    pub replicas: std::sync::Arc<crate::upstreams::Replicas>,
    pub timeout: Duration,
    pub max_body_bytes: u64,
    /// Scopes the caller must hold (checked at the edge).
    pub scopes: Vec<identity::Scope>,
    /// The family's wire dialect.
    pub dialect: service_kit::Dialect,
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(config: &GatewayConfig, upstreams: &crate::upstreams::Pool) -> RouteTable {
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .map(|r: &RouteConfig| Route {
                prefix: r.prefix.trim_end_matches('/').into(),
                upstream: r.upstream.as_str().into(),
                policy: r.policy,
                audience: crate::config::Upstreams::audience(&r.upstream),
                // Validated with the config: the name is one of the pool's.
                replicas: upstreams
                    .get(&r.upstream)
                    .unwrap_or(&upstreams.booking)
                    .clone(),
                timeout: Duration::from_millis(r.timeout_ms.unwrap_or(config.proxy.timeout_ms)),
                max_body_bytes: r.max_body_bytes.unwrap_or(config.proxy.max_body_bytes),
                // Validated with the config: unknown names cannot reach here.
                scopes: r
                    .scopes
                    .iter()
                    .filter_map(|s| identity::Scope::parse(s))
                    .collect(),
                dialect: r.dialect,
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        RouteTable { routes }
    }

    /// The route serving `path`: equal to a prefix, or below it (`prefix/…`), so
    /// `/api/v1/spacesX` does not match `/api/v1/spaces`.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            path.strip_prefix(&*r.prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

/// `/internal/*` exists only for the gateway's own calls.
pub fn is_internal(path: &str) -> bool {
    path == "/internal" || path.starts_with("/internal/")
}

/// A path with `.` or `..` segments (plain or percent-encoded) could be read one
/// way here and another way upstream; such paths are refused, not normalised.
pub fn has_dot_segments(path: &str) -> bool {
    let encoded = |w: &[u8], c: u8| w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&c);
    path.split('/').any(is_dot_segment) || path.as_bytes().windows(3).any(|w| encoded(w, b'f'))
}

/// `.` or `..`, each dot plain or as `%2e` (either case).
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return false,
        };
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let mut config = GatewayConfig::defaults();
        config.routes.push(RouteConfig {
            timeout_ms: Some(5),
            ..RouteConfig::new("/api/v1/spaces/special", "booking")
        });
        let table = RouteTable::new(&config, &crate::upstreams::Pool::new(&config.upstreams));
        assert_eq!(
            table.find("/api/v1/spaces").unwrap().upstream.as_ref(),
            "spaces"
        );
        assert_eq!(
            table.find("/api/v1/spaces/abc").unwrap().upstream.as_ref(),
            "spaces"
        );
        assert_eq!(
            table
                .find("/api/v1/spaces/special/x")
                .unwrap()
                .upstream
                .as_ref(),
            "booking"
        );
        assert_eq!(
            table.find("/api/v1/spaces/special").unwrap().timeout,
            Duration::from_millis(5)
        );
        assert!(table.find("/api/v1/spacesX").is_none());
        assert_eq!(
            table
                .find("/v1/auth/token")
                .unwrap()
                .replicas
                .url("/x")
                .as_str(),
            "http://127.0.0.1:8081/x"
        );
        assert_eq!(
            table
                .find("/.well-known/jwks.json")
                .unwrap()
                .upstream
                .as_ref(),
            "auth"
        );
        assert!(table.find("/internal/keys").is_none());
        assert!(table.find("/").is_none());
    }

    #[test]
    fn internal_and_dot_segments() {
        assert!(is_internal("/internal"));
        assert!(is_internal("/internal/introspect"));
        assert!(!is_internal("/internals"));
        for bad in [
            "/api/v1/spaces/../internal",
            "/a/./b",
            "/a/%2e%2E/b",
            "/a/%2E",
            "/a%2Fb",
            "/a/%2e.",
            "/a/.%2E/",
            "/..",
        ] {
            assert!(has_dot_segments(bad), "{bad}");
        }
        for good in [
            "/api/v1/spaces/file.v2..txt",
            "/a/.../b",
            "/a/%2e%2e%2e",
            "/a/.b",
            "/a/%2",
            "/a/%2x",
            "/",
        ] {
            assert!(!has_dot_segments(good), "{good}");
        }
    }
}
