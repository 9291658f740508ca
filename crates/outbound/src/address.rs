//! Which addresses and names an outbound call aimed by a client must never
//! reach: anything that is not a public unicast address on the internet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is internal: loopback, private, link-local (the cloud metadata
/// endpoints among them), carrier-grade NAT, unspecified, broadcast,
/// multicast, reserved or documentation space, or an IPv6 address that embeds
/// such an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

/// Azure's WireServer, which answers instance metadata on a public address.
const AZURE_WIRESERVER: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()                                // 127.0.0.0/8
        || ip.is_private()                          // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()                       // 169.254/16: metadata endpoints
        || ip.is_broadcast()
        || ip.is_multicast()                        // 224/4
        || a == 0                                   // 0/8, "this network"
        || a >= 240                                 // 240/4 reserved
        || (a == 100 && (64..128).contains(&b))     // 100.64/10 carrier-grade NAT
        || (a == 192 && b == 0 && c == 0)           // 192.0.0/24 protocol assignments
        || (a == 192 && b == 0 && c == 2)           // 192.0.2/24 documentation
        || (a == 192 && b == 88 && c == 99)         // 192.88.99/24 6to4 relays
        || (a == 198 && (b == 18 || b == 19))       // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100)        // 198.51.100/24 documentation
        || (a == 203 && b == 0 && c == 113)         // 203.0.113/24 documentation
        || ip == AZURE_WIRESERVER
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded = |high: u16, low: u16| {
        Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8)
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4); // ::ffff:a.b.c.d
    }
    match segments {
        // ::a.b.c.d (IPv4-compatible, deprecated), `::` and `::1` among them.
        [0, 0, 0, 0, 0, 0, high, low] => return internal_v4(embedded(high, low)),
        // 64:ff9b::/96, NAT64 to a.b.c.d.
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => return internal_v4(embedded(high, low)),
        // 2002:AABB:CCDD::/48, 6to4 to a.b.c.d.
        [0x2002, high, low, ..] => return internal_v4(embedded(high, low)),
        _ => {}
    }
    let first = segments[0];
    ip.is_multicast()                                       // ff00::/8
        || (first & 0xfe00) == 0xfc00                       // fc00::/7 unique local (AWS fd00:ec2::254)
        || (first & 0xffc0) == 0xfe80                       // fe80::/10 link-local
        || (first & 0xffc0) == 0xfec0                       // fec0::/10 site-local
        || (first == 0x0064 && segments[1] == 0xff9b)       // 64:ff9b:1::/48 local NAT64
        || (first == 0x0100 && segments[1..4] == [0, 0, 0]) // 100::/64 discard
        || (first == 0x2001 && segments[1] < 0x0200)        // 2001::/23 special purpose (Teredo…)
        || (first == 0x2001 && segments[1] == 0x0db8)       // 2001:db8::/32 documentation
        || (first == 0x3fff && segments[1] < 0x1000)        // 3fff::/20 documentation
        || first == 0 // the rest of ::/16: reserved
}

/// Whether a host name names the local machine or a private network by
/// itself: `localhost` and its subdomains, single-label names (resolved
/// through a search path, they reach the cluster's own services), and the
/// special-use suffixes of private networks.
pub fn is_internal_name(host: &str) -> bool {
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    const SUFFIXES: [&str; 6] = [
        "localhost",
        "local",
        "internal",
        "localdomain",
        "home.arpa",
        "lan",
    ];
    name.is_empty()
        || !name.contains('.')
        || SUFFIXES
            .iter()
            .any(|s| name == *s || name.ends_with(&format!(".{s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for internal in [
            "127.0.0.1",
            "127.255.1.2",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.170.2",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.0.192",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "168.63.129.16",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
        ] {
            let ip: IpAddr = internal.parse().unwrap();
            assert!(is_internal(ip), "{internal}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "169.255.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(!is_internal(ip), "{public}");
        }
    }

    #[test]
    fn internal_names() {
        for internal in [
            "localhost",
            "LOCALHOST.",
            "api.localhost",
            "metadata",
            "kubernetes",
            "redis",
            "printer.local",
            "my-svc.my-ns.svc.cluster.local",
            "metadata.google.internal",
            "box.localdomain",
            "nas.home.arpa",
            "router.lan",
            "",
        ] {
            assert!(is_internal_name(internal), "{internal:?}");
        }
        for public in ["hooks.example.com", "example.com.", "localhost.example.com"] {
            assert!(!is_internal_name(public), "{public}");
        }
    }
}
