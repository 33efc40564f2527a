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

/// One thing doctor found wrong, and how to put it right.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub message: String,
    pub fix: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.fix.is_empty() { write!(f, "{}", self.message) } else { write!(f, "{} (fix: {})", self.message, self.fix) }
    }
}

fn finding(message: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { message: message.into(), fix: fix.into() }
}

thread_local! {
    /// Set while the running hub checks itself for its Security page: no notes on stderr.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The findings alone, for the hub's own Security page (run on a blocking thread).
pub fn findings(cfg: &Config) -> Vec<Finding> {
    QUIET.with(|q| q.set(true));
    let f = doctor(cfg);
    QUIET.with(|q| q.set(false));
    f
}

pub fn doctor(cfg: &Config) -> Vec<Finding> {
    let mut f = Vec::new();
    let dd = &cfg.data_dir;
    let t = tls::paths(dd);
    let db_files: Vec<_> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| dd.join(format!("{DB_FILE}{suffix}")))
        .enumerate()
        .filter(|(i, p)| *i == 0 || p.exists())
        .map(|(_, p)| p)
        .collect();
    let totp_key = dd.join(crate::web::totp::KEY_FILE);
    let mut checks: Vec<(&Path, u32, bool)> = vec![(dd.as_path(), 0o700, true)];
    checks.extend(db_files.iter().map(|p| (p.as_path(), 0o600, false)));
    checks.extend([(t.dir.as_path(), 0o700, true), (t.key.as_path(), 0o600, false)]);
    if totp_key.exists() {
        checks.push((totp_key.as_path(), 0o600, false));
    }
    check_modes(&mut f, &checks);
    if t.cert.exists() {
        match tls::seconds_left(&t.cert) {
            Ok(s) if s <= 0 => f.push(finding(format!("{}: certificate has expired", t.cert.display()), RENEW)),
            Ok(s) if s < 30 * 86_400 => {
                f.push(finding(format!("{}: certificate expires in {} days", t.cert.display(), s / 86_400), RENEW))
            }
            Ok(s) => note(&format!("certificate valid for {} more days", s / 86_400)),
            Err(e) => f.push(finding(e.to_string(), RENEW)),
        }
    } else {
        f.push(finding(
            format!("{}: no TLS certificate (the hub makes one on first start)", t.cert.display()),
            "start the hub once",
        ));
    }
    if cfg.web.allow_public_clients {
        f.push(finding(
            "web.allow_public_clients = true: the hub answers clients from outside the LAN",
            "set web.allow_public_clients = false in the config and restart the hub; to watch clips away from home use the encrypted cloud instead",
        ));
    }
    f.extend(listener_findings(cfg));
    for (i, c) in cfg.camera.iter().enumerate() {
        if c.url.starts_with("rtsp://") && c.url.contains('@') && !is_private_host(&c.url) {
            f.push(finding(
                format!("camera[{i}].url: credentials sent in plaintext RTSP to a non-LAN host"),
                "use a camera on the home network, or rtsps:// if the camera offers it",
            ));
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
            None => f.push(finding("no H.264 decoder element on this machine", "install gstreamer1.0-libav")),
        },
        Err(e) => f.push(finding(e.to_string(), "install GStreamer (the package's dependencies)")),
    }
    let hub = DirLock::holder(dd);
    let (what, limits) = match hub {
        // The running hub's own limits are what count (a shell's may differ from the unit's).
        Some(pid) => (format!("hub pid {pid}"), proc_nofile(pid)),
        None => ("this shell (no hub running)".to_string(), crate::limits::nofile()),
    };
    match limits {
        Some((soft, hard)) => {
            note(&format!("{what}: descriptor limit soft {soft}, hard {hard}"));
            f.extend(descriptor_findings(&what, soft, hard, hub.is_some()));
        }
        None => f.push(finding(format!("{what}: cannot read the descriptor limit"), "run doctor as root or as the hub's user")),
    }
    match hub {
        Some(pid) => check_listeners(&mut f, cfg, pid),
        None => f.push(finding(format!("no hub is running on data dir {}", dd.display()), "sudo systemctl start homehub")),
    }
    f
}

const RENEW: &str = "stop the hub, move tls/ in the data dir aside and start it again (a new certificate; devices pair again)";

/// The fewest descriptors a hub should have: cameras, the database and a house of
/// clients (see `crate::limits`); the unit sets `LimitNOFILE=8192`.
const MIN_NOFILE: u64 = 4096;

/// A finding when the soft descriptor limit is below [`MIN_NOFILE`] even after the hub
/// raises it to the hard limit (which it does at start; a running hub has done so).
fn descriptor_findings(what: &str, soft: u64, hard: u64, running: bool) -> Option<Finding> {
    let reachable = if running { soft } else { soft.max(hard.min(crate::limits::RAISE_TO)) };
    (reachable < MIN_NOFILE).then(|| {
        finding(
            format!("{what}: descriptor limit {reachable} (soft {soft}, hard {hard}) is below {MIN_NOFILE}"),
            "set LimitNOFILE=8192 in the unit (packaging/homehub.service) or raise the hard limit",
        )
    })
}

/// (soft, hard) `Max open files` of a process, from /proc/PID/limits.
fn proc_nofile(pid: u32) -> Option<(u64, u64)> {
    parse_nofile(&fs::read_to_string(format!("/proc/{pid}/limits")).ok()?)
}

fn parse_nofile(limits: &str) -> Option<(u64, u64)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut cols = line["Max open files".len()..].split_whitespace();
    let num = |s: Option<&str>| s.map(|s| if s == "unlimited" { Some(u64::MAX) } else { s.parse().ok() });
    Some((num(cols.next())??, num(cols.next())??))
}

/// Listeners configured beyond the LAN: web and MQTT over TLS on a public address of
/// their own (unless public clients are allowed, which is a finding of its own), and
/// plaintext MQTT anywhere but loopback. An unspecified address (0.0.0.0, ::) is fine:
/// the hub refuses clients from beyond the LAN itself.
fn listener_findings(cfg: &Config) -> Vec<Finding> {
    let mut f = Vec::new();
    let addr = |s: &str| s.parse::<std::net::SocketAddr>().ok();
    for (key, value) in [("web.listen", &cfg.web.listen), ("mqtt.listen_tls", &cfg.mqtt.listen_tls)] {
        if let Some(a) = addr(value)
            && !cfg.web.allow_public_clients
            && !a.ip().is_unspecified()
            && !crate::lan::is_lan(a.ip())
        {
            f.push(finding(
                format!("{key} = {a}: bound to a public address, beyond the LAN"),
                format!("set {key} to a home-network address (or 0.0.0.0:{}) and restart the hub", a.port()),
            ));
        }
    }
    if let Some(a) = addr(&cfg.mqtt.listen_plain)
        && !a.ip().is_loopback()
    {
        f.push(finding(
            format!("mqtt.listen_plain = {a}: plaintext MQTT reachable beyond this machine"),
            format!("set mqtt.listen_plain = \"127.0.0.1:{}\"; devices use MQTT over TLS", a.port()),
        ));
    }
    f
}

fn note(s: &str) {
    if !QUIET.with(|q| q.get()) {
        eprintln!("ok: {s}");
    }
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

/// [`check_mode`]'s findings, with the command that fixes them.
fn check_modes(f: &mut Vec<Finding>, checks: &[(&Path, u32, bool)]) {
    for &(p, want, dir) in checks {
        let mut found = Vec::new();
        check_mode(&mut found, p, want, dir);
        for m in found {
            f.push(finding(m, format!("sudo chmod {want:04o} {} (and chown it to the hub's user)", p.display())));
        }
    }
}

fn is_private_host(url: &str) -> bool {
    let host = url.split("://").nth(1).unwrap_or("").split('/').next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host).trim_matches(['[', ']']);
    host.parse::<std::net::IpAddr>().map(crate::lan::is_lan).unwrap_or(host.ends_with(".local"))
}

/// Every socket the hub process listens on must be one SPEC allows, or loopback-only.
fn check_listeners(f: &mut Vec<Finding>, cfg: &Config, pid: u32) {
    let inodes = socket_inodes(pid);
    if inodes.is_empty() {
        f.push(finding(format!("cannot read the sockets of hub pid {pid}"), "run doctor as root or as the hub's user"));
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
                f.push(finding(
                    format!("hub listens on {proto} port {p}, which SPEC does not allow"),
                    "report this: the hub should listen only on its web, MQTT and mDNS ports",
                ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_low_descriptor_limit_is_a_finding() {
        // The unit's 8192, or a hard limit the hub can raise to: fine.
        assert_eq!(descriptor_findings("hub", 8192, 8192, true), None);
        assert_eq!(descriptor_findings("shell", 1024, 524_288, false), None);
        // A running hub still at 1024, or a hard limit too low to raise to 4096: findings.
        let f = descriptor_findings("hub pid 7", 1024, 524_288, true).unwrap().to_string();
        assert!(f.starts_with("hub pid 7: descriptor limit 1024 (soft 1024, hard 524288) is below 4096"), "{f}");
        assert!(f.contains("LimitNOFILE=8192"), "{f}");
        assert!(descriptor_findings("shell", 1024, 2048, false).unwrap().message.contains("limit 2048"));
    }

    #[test]
    fn proc_limits_are_read() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_nofile(text), Some((1024, 524_288)));
        assert_eq!(parse_nofile("Max open files  unlimited unlimited files"), Some((u64::MAX, u64::MAX)));
        assert_eq!(parse_nofile("nothing"), None);
        // The hard limit (the soft one may be raised meanwhile by another test).
        let own = proc_nofile(std::process::id()).unwrap();
        assert_eq!(Some(own.1), crate::limits::nofile().map(|l| l.1));
    }

    fn cfg(web: &str, tls: &str, plain: &str, public: bool) -> Config {
        let mut c = Config::default();
        c.web.listen = web.into();
        c.web.allow_public_clients = public;
        c.mqtt.listen_tls = tls.into();
        c.mqtt.listen_plain = plain.into();
        c
    }

    #[test]
    fn listeners_beyond_the_lan_are_findings() {
        assert!(listener_findings(&Config::default()).is_empty(), "the defaults are fine");
        assert!(listener_findings(&cfg("192.168.1.5:8443", "[fd00::5]:8883", "127.0.0.1:1883", false)).is_empty());
        assert!(listener_findings(&cfg("[::]:8443", "0.0.0.0:8883", "[::1]:1883", false)).is_empty());
        let f: Vec<String> = listener_findings(&cfg("203.0.113.5:8443", "203.0.113.5:8883", "192.168.1.5:1883", false))
            .iter()
            .map(|f| f.message.clone())
            .collect();
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f[0].starts_with("web.listen = 203.0.113.5:8443: bound to a public address"), "{f:?}");
        assert!(f[1].starts_with("mqtt.listen_tls = 203.0.113.5:8883"), "{f:?}");
        assert!(f[2].starts_with("mqtt.listen_plain = 192.168.1.5:1883: plaintext MQTT"), "{f:?}");
        // With public clients allowed that is the owner's choice (a finding of its own).
        let f = listener_findings(&cfg("203.0.113.5:8443", "203.0.113.5:8883", "127.0.0.1:1883", true));
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(listener_findings(&cfg("0.0.0.0:8443", "0.0.0.0:8883", "0.0.0.0:1883", false)).len(), 1);
    }
}
