//! The client's address: the peer of the connection, unless that peer is a
//! trusted proxy, in which case `X-Forwarded-For` is read from the right, skipping
//! trusted hops. A client cannot choose its own address by sending the header.

use hyper::header::{HeaderMap, HeaderName};
use ipnet::IpNet;
use std::net::IpAddr;

pub fn parse_net(entry: &str) -> Option<IpNet> {
    entry
        .parse::<IpNet>()
        .ok()
        .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
}

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(entries: &[String]) -> TrustedProxies {
        TrustedProxies(entries.iter().filter_map(|e| parse_net(e)).collect())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn client_of(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let hops: Vec<IpAddr> = forwarded_for
            .unwrap_or_default()
            .split(',')
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        // The rightmost hop not added by a proxy we trust is the client.
        Some(
            hops.into_iter()
                .rev()
                .find(|ip| !self.trusts(*ip))
                .unwrap_or(peer),
        )
    }

    /// The scheme the client used: `https` only when a trusted proxy (the
    /// ingress that ended TLS) says so in `X-Forwarded-Proto`; the gateway's
    /// own listener is plain HTTP.
    pub fn scheme(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> &'static str {
        const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
        let said_https = || {
            headers
                .get(FORWARDED_PROTO)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
        };
        if peer.is_some_and(|ip| self.trusts(ip)) && said_https() {
            "https"
        } else {
            "http"
        }
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
        // The header is read only from a proxy we trust.
        if peer.is_some_and(|ip| !self.trusts(ip)) {
            return peer;
        }
        let forwarded = headers.get(FORWARDED_FOR).and_then(|v| v.to_str().ok());
        self.client_of(peer, forwarded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_of(Some(ip("203.0.113.9")), Some("1.2.3.4")),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let trusted = TrustedProxies::new(&["10.0.0.0/8".into(), "192.0.2.7".into()]);
        // client -> (spoofed 1.2.3.4) -> 198.51.100.5 -> 192.0.2.7 -> 10.1.1.1 (peer)
        let chain = "1.2.3.4, 198.51.100.5, 192.0.2.7";
        assert_eq!(
            trusted.client_of(Some(ip("10.1.1.1")), Some(chain)),
            Some(ip("198.51.100.5"))
        );
        // Only trusted hops: the leftmost is the best we know.
        assert_eq!(
            trusted.client_of(Some(ip("10.1.1.1")), Some("10.2.2.2")),
            Some(ip("10.1.1.1"))
        );
        assert_eq!(
            trusted.client_of(Some(ip("10.1.1.1")), Some("garbage")),
            Some(ip("10.1.1.1"))
        );
        assert!(parse_net("not an ip").is_none());
    }
}
