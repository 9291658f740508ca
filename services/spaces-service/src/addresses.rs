//! Checks of the addresses a space names: its custom domain and its webhook
//! URL, the watermark image's URL, and the referrers its unsigned uploads
//! may come from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

const MAX_HOSTNAME: usize = 253;
const MAX_URL: usize = 2048;

/// A custom domain, lowercased: a DNS name of two or more labels (letters,
/// digits, inner hyphens, 1–63 characters each), not an IP address.
pub fn hostname(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim().to_ascii_lowercase();
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let labels: Vec<&str> = name.split('.').collect();
    let ok = !name.is_empty()
        && name.len() <= MAX_HOSTNAME
        && labels.len() >= 2
        && labels.iter().all(|l| valid_label(l))
        // A numeric top-level label would make it an IPv4 address or nonsense.
        && !labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(name)
    } else {
        Err("must be a hostname such as media.example.com")
    }
}

/// A referrer an unsigned upload may come from, lowercased: a domain
/// (`example.com`, or `localhost`), all its subdomains (`*.example.com`), with
/// an optional port (`localhost:3000`).
pub fn referrer_pattern(raw: &str) -> Result<String, &'static str> {
    const MESSAGE: &str =
        "must be a domain such as example.com or *.example.com, with an optional port";
    let pattern = raw.trim().to_ascii_lowercase();
    let (host, port) = match pattern.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (pattern.as_str(), None),
    };
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0) || p.starts_with('0')) {
        return Err(MESSAGE);
    }
    let domain = host.strip_prefix("*.").unwrap_or(host);
    let valid = domain == "localhost" || hostname(domain).is_ok();
    if valid && !(host.starts_with("*.") && domain == "localhost") {
        Ok(pattern)
    } else {
        Err(MESSAGE)
    }
}

/// An `https` URL with a host and no credentials, normalised.
fn https_url(raw: &str) -> Result<Url, &'static str> {
    if raw.len() > MAX_URL {
        return Err("must be at most 2048 characters");
    }
    let url = Url::parse(raw.trim()).map_err(|_| "must be an absolute https URL")?;
    if url.scheme() != "https" || url.host().is_none() {
        return Err("must be an absolute https URL");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials");
    }
    Ok(url)
}

/// A URL an image is fetched from (the watermark).
pub fn image_url(raw: &str) -> Result<String, &'static str> {
    https_url(raw).map(String::from)
}

/// A webhook target: `https`, no credentials, and unless `allow_private`, not
/// `localhost` nor a loopback, private, link-local or otherwise internal IP
/// address, so that a tenant cannot point the platform at its own network.
pub fn webhook_url(raw: &str, allow_private: bool) -> Result<String, &'static str> {
    let url = https_url(raw)?;
    if !allow_private {
        let internal = match url.host() {
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.');
                name == "localhost" || name.ends_with(".localhost")
            }
            Some(Host::Ipv4(ip)) => internal_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => internal_ip(IpAddr::V6(ip)),
            None => true,
        };
        if internal {
            return Err("must not point to localhost or a private, loopback or link-local address");
        }
    }
    Ok(url.into())
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        // Carrier-grade NAT, 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local fc00::/7 and link-local fe80::/10.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

fn internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert_eq!(hostname("Media.Example.COM").unwrap(), "media.example.com");
        for good in ["a.io", "x-1.example.co.uk", "xn--bcher-kva.example"] {
            assert!(hostname(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "localhost",
            "-a.example.com",
            "a-.example.com",
            "a..example.com",
            "example.com.",
            "10.0.0.1",
            "exa mple.com",
            "ex_ample.com",
            "https://example.com",
            &format!("{}.com", "a".repeat(64)),
            &format!("{}com", "a.".repeat(127)),
        ] {
            assert!(hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn referrer_patterns() {
        for (raw, pattern) in [
            ("Example.com", "example.com"),
            (" *.example.com ", "*.example.com"),
            ("localhost:3000", "localhost:3000"),
            ("app.example.com:8443", "app.example.com:8443"),
        ] {
            assert_eq!(referrer_pattern(raw).unwrap(), pattern);
        }
        for bad in [
            "",
            "*",
            "*.",
            "*.com.",
            "https://example.com",
            "example.com/path",
            "*.localhost",
            "ex*ample.com",
            "example.com:0",
            "example.com:99999",
            "example.com:",
            "10.0.0.1",
        ] {
            assert!(referrer_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn webhook_targets() {
        assert_eq!(
            webhook_url("https://hooks.example.com/in?x=1", false).unwrap(),
            "https://hooks.example.com/in?x=1"
        );
        for bad in [
            "http://hooks.example.com/in",
            "https://user:pw@hooks.example.com/",
            "https://user@hooks.example.com/",
            "https://localhost/x",
            "https://api.localhost/x",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://172.16.0.1/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest",
            "https://0.0.0.0/",
            "https://100.64.0.1/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://2130706433/",
            "https://0x7f.1/",
            "not a url",
            "/relative",
        ] {
            assert!(webhook_url(bad, false).is_err(), "{bad}");
        }
        assert!(webhook_url("https://127.0.0.1:8443/hook", true).is_ok());
        assert!(webhook_url("http://127.0.0.1/hook", true).is_err());
        assert!(webhook_url("https://93.184.216.34/hook", false).is_ok());
    }
}
