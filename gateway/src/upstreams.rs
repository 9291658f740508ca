//! The replicas behind each upstream name.
//!
//! In a cluster an upstream is one Service address and the platform balances
//! behind it. Where there is no such balancer (several processes on one
//! machine), `upstreams.<name>` may list several base URLs, comma-separated; the
//! gateway then takes them in turn. A replica that refuses connections is not
//! retried elsewhere: the request's body may already be on its way, so the
//! client gets 503 and decides.

use crate::config::Upstreams;
use hyper::Uri;
use hyper::http::uri::{Authority, Scheme};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Replicas {
    name: String,
    /// The base URLs as scheme and authority, parsed once (the configuration
    /// checks they are base URLs): a request only adds its path and query.
    bases: Vec<(Scheme, Authority)>,
    next: AtomicUsize,
}

impl Replicas {
    pub fn new(name: &str, list: &str) -> Replicas {
        Replicas {
            name: name.to_owned(),
            bases: crate::config::base_urls(list)
                .filter_map(|u| {
                    let uri = u.parse::<Uri>().ok()?;
                    Some((uri.scheme()?.clone(), uri.authority()?.clone()))
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// `path_and_query` (as the client sent it) at the next replica, for the
    /// proxy; `None` if it is not a valid request target.
    pub fn uri(&self, path_and_query: &str) -> Option<Uri> {
        let i = match self.bases.len() {
            0 | 1 => 0,
            n => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        let (scheme, authority) = self.bases.get(i)?;
        Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query(path_and_query)
            .build()
            .ok()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `path_and_query` (which starts with `/`) at the next replica, for the
    /// gateway's own calls; empty (a URL reqwest refuses) if it is not valid.
    pub fn url(&self, path_and_query: &str) -> String {
        self.uri(path_and_query)
            .map(|uri| uri.to_string())
            .unwrap_or_default()
    }
}

/// One `Replicas` per upstream name, shared by the routes and the gateway's
/// own calls.
#[derive(Debug, Clone)]
pub struct Pool {
    pub auth: Arc<Replicas>,
    pub booking: Arc<Replicas>,
    pub spaces: Arc<Replicas>,
    pub events: Arc<Replicas>,
}

impl Pool {
    pub fn new(upstreams: &Upstreams) -> Pool {
        Pool {
            auth: Arc::new(Replicas::new("auth", &upstreams.auth)),
            booking: Arc::new(Replicas::new("booking", &upstreams.booking)),
            spaces: Arc::new(Replicas::new("spaces", &upstreams.spaces)),
            events: Arc::new(Replicas::new("events", &upstreams.events)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Replicas>> {
        match name {
            "auth" => Some(&self.auth),
            "booking" => Some(&self.booking),
            "spaces" => Some(&self.spaces),
            "events" => Some(&self.events),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_take_turns() {
        let replicas = Replicas::new("booking", "http://a:1/, http://b:2");
        let urls: Vec<String> = (0..4).map(|_| replicas.url("/x?y=1")).collect();
        assert_eq!(
            urls,
            [
                "http://a:1/x?y=1",
                "http://b:2/x?y=1",
                "http://a:1/x?y=1",
                "http://b:2/x?y=1"
            ]
        );
        assert_eq!(
            Replicas::new("auth", "http://a:1").url("/p").as_str(),
            "http://a:1/p"
        );
        let uris: Vec<String> = (0..4)
            .map(|_| replicas.uri("/x?y=1").unwrap().to_string())
            .collect();
        assert_eq!(
            uris,
            [
                "http://a:1/x?y=1",
                "http://b:2/x?y=1",
                "http://a:1/x?y=1",
                "http://b:2/x?y=1"
            ]
        );
        assert_eq!(
            Replicas::new("spaces", "https://s.internal:8443/")
                .uri("/a%20b/c?q=%2F&r")
                .unwrap()
                .to_string(),
            "https://s.internal:8443/a%20b/c?q=%2F&r"
        );
        assert!(Replicas::new("auth", "http://a:1").uri("/a b").is_none());
        // Query and path as sent, percent-encoding included.
        assert_eq!(
            Replicas::new("auth", "http://a:1")
                .url("/a%20b/c?q=%2F&r")
                .as_str(),
            "http://a:1/a%20b/c?q=%2F&r"
        );
    }
}
