//! The replicas behind each upstream name.
//!
//! In a cluster an upstream is one Service address and the platform balances
//! behind it. Where there is no such balancer (several processes on one
//! machine), `upstreams.<name>` may list several base URLs, comma-separated; the
//! gateway then takes them in turn. A replica that refuses connections is not
//! retried elsewhere: the request's body may already be on its way, so the
//! client gets 503 and decides.

use crate::config::Upstreams;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Replicas {
    name: String,
    base_urls: Vec<String>,
    next: AtomicUsize,
}

impl Replicas {
    pub fn new(name: &str, list: &str) -> Replicas {
        Replicas {
            name: name.to_owned(),
            base_urls: split(list)
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `path_and_query` at the next replica.
    pub fn url(&self, path_and_query: &str) -> String {
        let i = match self.base_urls.len() {
            0 | 1 => 0,
            n => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        let base = self.base_urls.get(i).map_or("", String::as_str);
        format!("{base}{path_and_query}")
    }
}

/// The entries of a comma-separated list of base URLs.
pub fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|u| !u.is_empty())
}

/// One `Replicas` per upstream name, shared by the routes and the gateway's
/// own calls.
#[derive(Debug, Clone)]
pub struct Pool {
    pub auth: Arc<Replicas>,
    pub booking: Arc<Replicas>,
    pub spaces: Arc<Replicas>,
}

impl Pool {
    pub fn new(upstreams: &Upstreams) -> Pool {
        Pool {
            auth: Arc::new(Replicas::new("auth", &upstreams.auth)),
            booking: Arc::new(Replicas::new("booking", &upstreams.booking)),
            spaces: Arc::new(Replicas::new("spaces", &upstreams.spaces)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Replicas>> {
        match name {
            "auth" => Some(&self.auth),
            "booking" => Some(&self.booking),
            "spaces" => Some(&self.spaces),
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
            Replicas::new("auth", "http://a:1").url("/p"),
            "http://a:1/p"
        );
    }
}
