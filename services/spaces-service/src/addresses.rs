//! Checks of the addresses a space names: its custom domain and its webhook
//! URL, the watermark image's URL, and the referrers its unsigned uploads
//! may come from.

const MAX_HOSTNAME: usize = 253;

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

/// A URL an image is fetched from (the watermark): `https`, no credentials,
/// a public host ([`outbound`]'s checks; the fetch goes through its guard).
/// With `allow_private` (`watermarks.allow_private_targets`, development and
/// tests), `http` and internal hosts too.
pub fn image_url(raw: &str, allow_private: bool) -> Result<String, String> {
    outbound::check_url(raw, outbound::Policy { allow_private })
        .map(String::from)
        .map_err(|refusal| refusal.to_string())
}

/// A webhook target: [`outbound`]'s checks — `https`, no credentials, and
/// unless `allow_private`, not `localhost` nor a loopback, private, link-local
/// or otherwise internal address, so that a tenant cannot point the platform
/// at its own network. With `allow_private` (development), `http` too.
pub fn webhook_url(raw: &str, allow_private: bool) -> Result<String, String> {
    outbound::check_url(raw, outbound::Policy { allow_private })
        .map(String::from)
        .map_err(|refusal| refusal.to_string())
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
        // Where private targets are allowed (development), plain http too.
        assert!(webhook_url("http://127.0.0.1/hook", true).is_ok());
        assert!(webhook_url("ftp://127.0.0.1/hook", true).is_err());
        assert!(image_url("https://cdn.example.com/mark.png", false).is_ok());
        assert!(image_url("https://169.254.169.254/latest", false).is_err());
        assert!(image_url("http://127.0.0.1:9000/mark.png", false).is_err());
        assert!(image_url("http://127.0.0.1:9000/mark.png", true).is_ok());
        assert!(webhook_url("https://93.184.216.34/hook", false).is_ok());
    }
}
