//! `homehub doctor`: a security and health self-check. Each finding is one line on
//! stdout; notes about what is fine go to stderr. Exit 0 = no findings.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::camera;
use crate::config::Config;
use crate::store::{DB_FILE, DirLock};
use crate::web::tls;

pub fn doctor(cfg: &Config) -> Vec<String> {
    let mut f = Vec::new();
    let dd = &cfg.data_dir;
    check_mode(&mut f, dd, 0o700, true);
    for suffix in ["", "-wal", "-shm"] {
        let p = dd.join(format!("{DB_FILE}{suffix}"));
        if suffix.is_empty() || p.exists() {
            check_mode(&mut f, &p, 0o600, false);
        }
    }
    let t = tls::paths(dd);
    check_mode(&mut f, &t.dir, 0o700, true);
    check_mode(&mut f, &t.key, 0o600, false);
    if t.cert.exists() {
        match tls::seconds_left(&t.cert) {
            Ok(s) if s <= 0 => f.push(format!("{}: certificate has expired", t.cert.display())),
            Ok(s) if s < 30 * 86_400 => f.push(format!("{}: certificate expires in {} days", t.cert.display(), s / 86_400)),
            Ok(s) => note(&format!("certificate valid for {} more days", s / 86_400)),
            Err(e) => f.push(e.to_string()),
        }
    } else {
        f.push(format!("{}: no TLS certificate (the hub makes one on first start)", t.cert.display()));
    }
    if cfg.web.allow_public_clients {
        f.push("web.allow_public_clients = true: the hub answers clients from outside the LAN".into());
    }
    if let Ok(a) = cfg.mqtt.listen_plain.parse::<std::net::SocketAddr>()
        && !a.ip().is_loopback()
    {
        f.push(format!("mqtt.listen_plain = {a}: plaintext MQTT reachable beyond this machine"));
    }
    for (i, c) in cfg.camera.iter().enumerate() {
        if c.url.starts_with("rtsp://") && c.url.contains('@') && !is_private_host(&c.url) {
            f.push(format!("camera[{i}].url: credentials sent in plaintext RTSP to a non-LAN host"));
        }
    }
    match camera::init() {
        Ok(()) => match camera::pick_decoder(&cfg.decode.prefer) {
            Some(d) => {
                let kind = if camera::decoder::is_hardware(&d) { "hardware" } else { "software" };
                for c in &cfg.camera {
                    note(&format!("camera {:?} would decode with {d} ({kind})", c.name));
                }
                if cfg.camera.is_empty() {
                    note(&format!("cameras would decode with {d} ({kind})"));
                }
            }
            None => f.push("no H.264 decoder element on this machine: install gstreamer1.0-libav".into()),
        },
        Err(e) => f.push(e.to_string()),
    }
    match DirLock::holder(dd) {
        Some(pid) => check_listeners(&mut f, cfg, pid),
        None => f.push(format!("no hub is running on data dir {}", dd.display())),
    }
    f
}

fn note(s: &str) {
    eprintln!("ok: {s}");
}

fn check_mode(f: &mut Vec<String>, p: &Path, want: u32, dir: bool) {
    match fs::metadata(p) {
        Ok(m) if m.is_dir() != dir => f.push(format!("{}: expected a {}", p.display(), if dir { "directory" } else { "file" })),
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            if mode & !want != 0 {
                f.push(format!("{}: mode {mode:04o}, should be {want:04o}", p.display()));
            }
        }
        Err(e) => f.push(format!("{}: {e}", p.display())),
    }
}

fn is_private_host(url: &str) -> bool {
    let host = url.split("://").nth(1).unwrap_or("").split('/').next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host).trim_matches(['[', ']']);
    host.parse::<std::net::IpAddr>().map(crate::lan::is_lan).unwrap_or(host.ends_with(".local"))
}

/// Every socket the hub process listens on must be one SPEC allows, or loopback-only.
fn check_listeners(f: &mut Vec<String>, cfg: &Config, pid: u32) {
    let inodes = socket_inodes(pid);
    if inodes.is_empty() {
        f.push(format!("cannot read the sockets of hub pid {pid} (run doctor as root or as the hub's user)"));
        return;
    }
    let port = |s: &str| s.parse::<std::net::SocketAddr>().map(|a| a.port()).unwrap_or(0);
    let allowed_tcp: HashSet<u16> = [port(&cfg.web.listen), port(&cfg.mqtt.listen_tls), port(&cfg.mqtt.listen_plain)].into();
    for (proto, listening) in [("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")] {
        let Ok(table) = fs::read_to_string(format!("/proc/net/{proto}")) else { continue };
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != listening || !inodes.contains(cols[9]) {
                continue;
            }
            // UDP sockets with a remote address are connected clients, not listeners.
            if proto.starts_with("udp") && !cols[2].trim_start_matches('0').starts_with(':') {
                continue;
            }
            let p = cols[1].rsplit(':').next().and_then(|h| u16::from_str_radix(h, 16).ok()).unwrap_or(0);
            let ok = if proto.starts_with("tcp") { allowed_tcp.contains(&p) } else { p == 5353 };
            if ok {
                note(&format!("hub listens on {proto} port {p}"));
            } else if cols[1].starts_with("0100007F:") {
                // The embedded broker behind the MQTT front end (and mDNS's wake-up socket)
                // listen on 127.0.0.1 only; the broker also wants an in-memory secret.
                note(&format!("hub has an internal socket on 127.0.0.1 port {p} ({proto}, loopback only)"));
            } else {
                f.push(format!("hub listens on {proto} port {p}, which SPEC does not allow"));
            }
        }
    }
}

fn socket_inodes(pid: u32) -> HashSet<String> {
    let mut out = HashSet::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else { return out };
    for e in dir.flatten() {
        if let Ok(t) = fs::read_link(e.path())
            && let Some(s) = t.to_str().and_then(|s| s.strip_prefix("socket:[")).and_then(|s| s.strip_suffix(']'))
        {
            out.insert(s.to_string());
        }
    }
    out
}
