//! Where a paired device may point the hub: the host check of a camera's `config`.
//!
//! A device's `rtsp_url`/`substream_url` host must be an IP literal equal to an address the
//! device is connected from (its own address), or a private address the owner approved for
//! that device. Anything else (a hostname, the internet, another LAN host, the hub's own
//! loopback services) is refused before any connection is made: a compromised camera must
//! not turn the hub into its proxy.
//!
//! Pure: no store, no broker. The URL is read the strict way: exactly one authority, at
//! most one `@`, a port of digits only, so this parser and GStreamer's can never disagree
//! about which host a URL names (anything ambiguous is refused).

use std::net::IpAddr;

use crate::pairing::DeviceConfig;

/// The host of an `rtsp://` / `rtsps://` URL as an IP address, or why it is not one.
pub fn url_host(url: &str) -> Result<IpAddr, String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("rtsp://") {
        &url[7..]
    } else if lower.starts_with("rtsps://") {
        &url[8..]
    } else {
        return Err("not an rtsp:// or rtsps:// URL".into());
    };
    // GStreamer's own parser ends the authority at '/' or '?' only; a '#' inside it could
    // be read as part of a password there, so it is refused here.
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if authority.contains(['\\', '#']) || authority.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the URL's host part has characters no address has".into());
    }
    let hostport = match authority.matches('@').count() {
        0 => authority,
        1 => authority.split_once('@').map(|(_, h)| h).unwrap_or_default(),
        _ => return Err("the URL has more than one '@' before its path".into()),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed '[' in the URL's host")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after the URL's ']'")?),
        };
        (h, port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err())
    {
        return Err(format!("the URL's port {p:?} is not a port number"));
    }
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    // IPv6 zone ids ("fe80::1%eth0") are not accepted: the comparison is by address only.
    let ip: IpAddr = host.parse().map_err(|_| format!("host {host:?} is not an IP address (names are not accepted)"))?;
    Ok(canonical(ip))
}

/// An IPv4-mapped IPv6 address is the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A host the owner may approve for a device: a private, loopback, link-local or
/// unique-local address (the home network, as `crate::lan` has it). Returns it in the
/// form it is stored and compared in.
pub fn approvable(host: &str) -> Result<IpAddr, String> {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = h.parse().map_err(|_| format!("host: expected an IP address (like 192.168.1.20), got {:?}", shown(host)))?;
    let ip = canonical(ip);
    if ip.is_unspecified() || ip.is_multicast() || !crate::lan::is_lan(ip) {
        return Err(format!("host: only a private address on the home network may be approved, not {ip}"));
    }
    Ok(ip)
}

/// Checks both URLs of a config against the device's addresses now (`peers`) and the hosts
/// approved for it. Err is the reason, naming the key and the host (never the URL).
pub fn check(cfg: &DeviceConfig, peers: &[IpAddr], approved: &[String]) -> Result<(), String> {
    check_urls(&cfg.rtsp_url, cfg.substream_url.as_deref().unwrap_or(""), peers, approved)
}

/// [`check`] for a URL pair as stored in a camera row (`sub` may be empty).
pub fn check_urls(main: &str, sub: &str, peers: &[IpAddr], approved: &[String]) -> Result<(), String> {
    let peers: Vec<IpAddr> = peers.iter().copied().map(canonical).collect();
    let approved: Vec<IpAddr> = approved.iter().filter_map(|h| h.parse().ok()).map(canonical).collect();
    for (key, url) in [("rtsp_url", main), ("substream_url", sub)] {
        if url.is_empty() && key == "substream_url" {
            continue;
        }
        let ip = url_host(url).map_err(|e| format!("{key}: {e}"))?;
        if peers.contains(&ip) || approved.contains(&ip) {
            continue;
        }
        let from = if peers.is_empty() {
            "the device is not connected now".to_string()
        } else {
            let list: Vec<String> = peers.iter().map(IpAddr::to_string).collect();
            format!("the device connects from {}", list.join(", "))
        };
        let hint = if approvable(&ip.to_string()).is_ok() { "; the owner may allow it on the devices page" } else { "" };
        return Err(format!("{key}: host {ip} is not the device's own address ({from}) nor one approved for it{hint}"));
    }
    Ok(())
}

/// Whether a stored camera row of a paired device may be started before its device is
/// back (at the hub's start): only IP literals on the home network (what an accepted
/// config names unless public clients are allowed); anything else waits for the device's
/// retained config to be checked afresh.
pub fn startable(main: &str, sub: &str) -> Result<(), String> {
    for (key, url) in [("url", main), ("substream_url", sub)] {
        if url.is_empty() && key == "substream_url" {
            continue;
        }
        let ip = url_host(url).map_err(|e| format!("{key}: {e}"))?;
        if !crate::lan::is_lan(ip) {
            return Err(format!("{key}: host {ip} is not on the home network"));
        }
    }
    Ok(())
}

/// At most 64 characters of untrusted text, for an error message.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(64).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(main: &str, sub: Option<&str>) -> DeviceConfig {
        DeviceConfig { rtsp_url: main.into(), substream_url: sub.map(str::to_string), name: None }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_host_is_read_strictly() {
        assert_eq!(url_host("rtsp://192.168.1.20:554/main").unwrap(), ip("192.168.1.20"));
        assert_eq!(url_host("RTSP://admin:pw@192.168.1.20/main").unwrap(), ip("192.168.1.20"));
        assert_eq!(url_host("rtsps://[fd00::7]:322/s").unwrap(), ip("fd00::7"));
        assert_eq!(url_host("rtsp://[::ffff:10.0.0.2]/s").unwrap(), ip("10.0.0.2"));
        assert_eq!(url_host("rtsp://10.0.0.2?x").unwrap(), ip("10.0.0.2"));
        for bad in [
            "rtsp://camera.local/main",
            "rtsp://u:p@10.0.0.2@8.8.8.8/main",
            "rtsp://10.0.0.2:554:1/main",
            "rtsp://10.0.0.2:http/main",
            "rtsp://10.0.0.2:99999/main",
            "rtsp://10.0.0.2:/main",
            "rtsp://[fd00::7/main",
            "rtsp://[fd00::7]x/main",
            "rtsp:///main",
            "rtsp://u:p@/main",
            "rtsp://10.0.0.2\\@8.8.8.8/main",
            "rtsp://10.0.0.2:554#:x@8.8.8.8/main",
            "http://10.0.0.2/main",
            "rtsp://[fe80::1%25eth0]/main",
            "rtsp://0x0a000002/main",
            "rtsp://2130706433/main",
        ] {
            assert!(url_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_config_may_name_only_the_device_itself_or_an_approved_host() {
        let peers = [ip("192.168.1.20")];
        assert!(check(&cfg("rtsp://u:p@192.168.1.20/main", Some("rtsp://192.168.1.20/sub")), &peers, &[]).is_ok());
        assert!(check(&cfg("rtsp://[::ffff:192.168.1.20]/main", None), &peers, &[]).is_ok());
        // Another LAN host, the hub's loopback, the internet: refused, naming key and host.
        let e = check(&cfg("rtsp://192.168.1.20/main", Some("rtsp://192.168.1.30/sub")), &peers, &[]).unwrap_err();
        assert!(e.starts_with("substream_url: host 192.168.1.30 is not the device's own address"), "{e}");
        assert!(e.contains("connects from 192.168.1.20"), "{e}");
        assert!(e.contains("may allow it"), "{e}");
        let e = check(&cfg("rtsp://admin:hunter2@8.8.8.8/main", None), &peers, &[]).unwrap_err();
        assert!(e.starts_with("rtsp_url: host 8.8.8.8"), "{e}");
        assert!(!e.contains("hunter2") && !e.contains("may allow"), "{e}");
        assert!(check(&cfg("rtsp://127.0.0.1:8080/main", None), &peers, &[]).is_err());
        let e = check(&cfg("rtsp://192.168.1.20/main", None), &[], &[]).unwrap_err();
        assert!(e.contains("not connected now"), "{e}");
        // An approval lets that host in, for this check only.
        let approved = ["192.168.1.30".to_string()];
        assert!(check(&cfg("rtsp://192.168.1.20/main", Some("rtsp://192.168.1.30/sub")), &peers, &approved).is_ok());
        assert!(check(&cfg("rtsp://192.168.1.30/main", None), &[], &approved).is_ok());
        assert!(check(&cfg("rtsp://camera.local/main", None), &peers, &approved).unwrap_err().contains("not an IP address"));
    }

    #[test]
    fn only_private_addresses_may_be_approved() {
        assert_eq!(approvable("192.168.1.30").unwrap(), ip("192.168.1.30"));
        assert_eq!(approvable("[fd00::1]").unwrap(), ip("fd00::1"));
        assert_eq!(approvable("::ffff:10.1.2.3").unwrap(), ip("10.1.2.3"));
        assert_eq!(approvable("127.0.0.9").unwrap(), ip("127.0.0.9"));
        for bad in ["8.8.8.8", "0.0.0.0", "::", "224.0.0.251", "camera.local", "", "10.0.0.1/8"] {
            assert!(approvable(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_rows_start_only_on_the_home_network() {
        assert!(startable("rtsp://192.168.1.20/main", "").is_ok());
        assert!(startable("rtsp://192.168.1.20/main", "rtsp://8.8.8.8/sub").is_err());
        assert!(startable("rtsp://cam.example.com/main", "").is_err());
    }
}
