//! What counts as "the home network": the one answer the web guard, the MQTT front end,
//! mDNS and `doctor` share.

use std::net::IpAddr;

/// Loopback, private (RFC 1918), link-local (IPv4 and IPv6) and IPv6 unique-local
/// addresses; an IPv4-mapped IPv6 address counts as the IPv4 address it carries.
pub fn is_lan(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_lan(IpAddr::V4(v4)),
            None => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "172.16.4.4",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.2",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_lan(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "192.0.2.5", "2001:db8::1", "::ffff:8.8.8.8", "172.32.0.1", "0.0.0.0", "::"] {
            assert!(!is_lan(a.parse().unwrap()), "{a}");
        }
    }
}
