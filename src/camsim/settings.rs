//! Turning the raw command-line strings into checked settings.
//!
//! Everything here is pure (no GStreamer, no I/O) so it can be unit-tested; each error is a
//! single line that names the flag and the offending value.

use std::net::SocketAddr;

use super::Args;

/// Size of the `/sub` stream (fixed by SPEC).
pub const SUB_WIDTH: u32 = 640;
pub const SUB_HEIGHT: u32 = 360;
/// Bit rate of the `/sub` stream in kbit/s.
pub const SUB_BITRATE_KBPS: u32 = 600;

const MIN_DIM: u32 = 16;
const MAX_WIDTH: u32 = 7680;
const MAX_HEIGHT: u32 = 4320;
const MAX_FPS: u32 = 120;
const MIN_BITRATE: u32 = 50;
const MAX_BITRATE: u32 = 100_000;
const MAX_GOP: u32 = 1000;
const MAX_NAME: usize = 64;

/// One encoded stream (`/main` or `/sub`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// Keyframe interval in frames.
    pub gop: u32,
}

/// A span of wall-clock seconds since start during which the scene moves: `start <= t < end`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub start: f64,
    pub end: f64,
}

impl Span {
    pub fn contains(&self, t: f64) -> bool {
        self.start <= t && t < self.end
    }
}

/// A hub given by address and certificate fingerprint (`--hub`, `--hub-fp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubTarget {
    pub host: String,
    pub port: u16,
    /// SHA-256 of the hub's TLS certificate (DER).
    pub fingerprint: [u8; 32],
}

/// RTSP credentials (`--user`, `--password`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

/// The checked settings of one camsim run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub rtsp: SocketAddr,
    pub main: StreamSpec,
    pub sub: StreamSpec,
    pub motion: Vec<Span>,
    pub name: String,
    pub device_id: String,
    pub setup_code: String,
    /// True when the setup code was made up here (not given with `--setup-code`).
    pub setup_code_generated: bool,
    pub pair: bool,
    pub mdns_interface: String,
    pub hub: Option<HubTarget>,
    pub credentials: Option<Credentials>,
    /// Wi-Fi network name reported in `state` (`--ssid`).
    pub ssid: String,
    /// Model sent when pairing (`--model`).
    pub model: String,
    /// Offer RTP over UDP only (`--udp-only`).
    pub udp_only: bool,
}

impl Settings {
    /// Checks what needs several flags at once (each value was checked by its parser).
    /// `random_code` supplies a setup code when none was given, and `random_suffix` a
    /// device-id suffix when neither `--device-id` nor a fixed port was given (both
    /// injected so tests stay deterministic).
    pub fn from_args(
        args: &Args,
        random_code: impl FnOnce() -> String,
        random_suffix: impl FnOnce() -> String,
    ) -> Result<Settings, String> {
        let rtsp = args.rtsp;
        let Size { width, height } = args.size;
        let fps = args.fps;
        let gop = args.gop.unwrap_or((2 * fps).min(MAX_GOP));
        let main = StreamSpec { width, height, fps, bitrate_kbps: args.bitrate, gop };
        let sub = StreamSpec { width: SUB_WIDTH, height: SUB_HEIGHT, fps, bitrate_kbps: SUB_BITRATE_KBPS, gop };
        let device_id = match &args.device_id {
            Some(id) => id.clone(),
            None if rtsp.port() != 0 => format!("camsim-{}", rtsp.port()),
            None => format!("camsim-{}", random_suffix()),
        };
        let (setup_code, setup_code_generated) = match &args.setup_code {
            Some(code) => (code.clone(), false),
            None => (random_code(), true),
        };
        let hub = match (&args.hub, &args.hub_fp) {
            (Some(HostPort { host, port }), Some(fp)) => Some(HubTarget { host: host.clone(), port: *port, fingerprint: *fp }),
            (None, None) => None,
            (Some(_), None) => return Err("--hub needs --hub-fp as well".into()),
            (None, Some(_)) => return Err("--hub-fp needs --hub as well".into()),
        };
        let credentials = match (&args.user, &args.password) {
            (Some(u), Some(p)) => Some(Credentials { user: u.clone(), password: p.clone() }),
            (None, None) => None,
            (Some(_), None) => return Err("--user needs --password as well".into()),
            (None, Some(_)) => return Err("--password needs --user as well".into()),
        };
        Ok(Settings {
            rtsp,
            main,
            sub,
            motion: args.motion.clone().map(|s| s.0).unwrap_or_default(),
            name: args.name.clone(),
            device_id,
            setup_code,
            setup_code_generated,
            pair: args.pair,
            mdns_interface: args.mdns_interface.clone(),
            hub,
            credentials,
            ssid: args.ssid.clone(),
            model: args.model.clone(),
            udp_only: args.udp_only,
        })
    }

    /// True when `t` seconds since start lies inside one of the motion spans.
    pub fn moving_at(&self, t: f64) -> bool {
        self.motion.iter().any(|s| s.contains(t))
    }
}

/// `ADDR:PORT` with an IP address (`127.0.0.1:8554`, `[::1]:8554`); port 0 picks a free port.
pub fn parse_rtsp_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse::<SocketAddr>().map_err(|_| format!("expected ADDR:PORT with an IP address (like 127.0.0.1:8554), got '{s}'"))
}

/// The size of `/main` (`--size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

/// `--size`: `WxH`, both even and within sane bounds.
pub fn parse_size(s: &str) -> Result<Size, String> {
    let (width, height) = parse_dims(s)?;
    Ok(Size { width, height })
}

/// `WxH`, both even and within sane bounds.
fn parse_dims(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected WxH (like 1920x1080), got '{s}'");
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = parse_plain_u32(w).ok_or_else(bad)?;
    let h: u32 = parse_plain_u32(h).ok_or_else(bad)?;
    if !(MIN_DIM..=MAX_WIDTH).contains(&w) || !(MIN_DIM..=MAX_HEIGHT).contains(&h) {
        return Err(format!("must be between {MIN_DIM}x{MIN_DIM} and {MAX_WIDTH}x{MAX_HEIGHT}, got '{s}'"));
    }
    if !w.is_multiple_of(2) || !h.is_multiple_of(2) {
        return Err(format!("width and height must be even, got '{s}'"));
    }
    Ok((w, h))
}

/// `--fps`.
pub fn parse_fps(s: &str) -> Result<u32, String> {
    parse_number(s, 1, MAX_FPS)
}

/// `--bitrate`, kbit/s.
pub fn parse_bitrate(s: &str) -> Result<u32, String> {
    parse_number(s, MIN_BITRATE, MAX_BITRATE)
}

/// `--gop`, frames.
pub fn parse_gop(s: &str) -> Result<u32, String> {
    parse_number(s, 1, MAX_GOP)
}

/// A whole number in `min..=max`.
pub fn parse_number(s: &str, min: u32, max: u32) -> Result<u32, String> {
    match parse_plain_u32(s) {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}, got '{s}'")),
    }
}

/// Digits only (no sign, no spaces inside), fits in u32.
fn parse_plain_u32(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Non-negative seconds, decimals allowed (`10`, `2.5`).
fn parse_seconds(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The motion spans of `--motion`, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Spans(pub Vec<Span>);

/// `--motion`: `START-END[,START-END...]` in seconds since start, e.g. `10-15,40-48`.
pub fn parse_spans(s: &str) -> Result<Spans, String> {
    parse_span_list(s).map(Spans)
}

fn parse_span_list(s: &str) -> Result<Vec<Span>, String> {
    if s.trim().is_empty() {
        return Err("expected spans like 10-15,40-48, got ''".into());
    }
    let mut spans = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let bad = || format!("expected START-END in seconds (like 10-15), got '{part}'");
        let (a, b) = part.split_once('-').ok_or_else(bad)?;
        let start = parse_seconds(a).ok_or_else(bad)?;
        let end = parse_seconds(b).ok_or_else(bad)?;
        if end < start {
            return Err(format!("'{part}' ends before it starts"));
        }
        if end == start {
            return Err(format!("'{part}' is empty (the end must come after the start)"));
        }
        spans.push(Span { start, end });
    }
    Ok(spans)
}

/// `--name`: trimmed, 1 to 64 characters, no control characters.
pub fn check_name(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("must not be empty".into());
    }
    if t.chars().count() > MAX_NAME {
        return Err(format!("at most {MAX_NAME} characters, got {}", t.chars().count()));
    }
    if t.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(t.to_string())
}

/// A plausible network interface name (Linux: at most 15 bytes, no '/' or whitespace).
pub fn check_interface_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 15 || s.bytes().any(|b| b == b'/' || b == b':' || !b.is_ascii_graphic()) {
        return Err(format!("expected an interface name like lo or eth0, got '{s}'"));
    }
    Ok(s.to_string())
}

/// A hub's address as given with `--hub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

/// `--hub`: `HOST:PORT` where HOST is a name or an IP address (`[v6]:port` for IPv6).
pub fn parse_host_port(s: &str) -> Result<HostPort, String> {
    split_host_port(s).map(|(host, port)| HostPort { host, port })
}

fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("expected HOST:PORT, got '{s}'");
    if let Ok(addr) = s.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(bad());
        }
        return Ok((addr.ip().to_string(), addr.port()));
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port = parse_plain_u32(port).filter(|p| (1..=65535).contains(p)).ok_or_else(bad)? as u16;
    let host_ok =
        !host.is_empty() && host.len() <= 253 && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !host_ok {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// 64 hex digits (SHA-256), upper or lower case, optional ':' separators.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let cleaned: String = s.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&cleaned).ok().filter(|b| b.len() == 32);
    match bytes {
        Some(b) => {
            let mut out = [0u8; 32];
            out.copy_from_slice(&b);
            Ok(out)
        }
        None => Err(format!("expected 64 hex digits (SHA-256), got '{s}'")),
    }
}

/// A model name: 1 to 64 bytes, no control characters (the hub refuses longer ones).
pub fn check_model(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || s.chars().any(char::is_control) {
        return Err(format!("expected 1 to 64 bytes without control characters, got '{}'", s.escape_debug()));
    }
    Ok(s.to_string())
}

/// A Wi-Fi network name: 1 to 32 bytes, no control characters.
pub fn check_ssid(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 32 || s.chars().any(char::is_control) {
        return Err(format!("expected 1 to 32 bytes without control characters, got '{}'", s.escape_debug()));
    }
    Ok(s.to_string())
}

/// `--user`: not empty, no ':' or control characters.
pub fn check_user(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.contains(':') || s.chars().any(char::is_control) {
        return Err(format!("must not contain ':' or control characters, got '{s}'"));
    }
    Ok(s.to_string())
}

/// `--password`: not empty.
pub fn check_password(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.to_string())
}

/// `--device-id`: as the pairing protocol wants it.
pub fn check_device_id(s: &str) -> Result<String, String> {
    crate::pairing::check_device_id(s).map(|_| s.to_string()).map_err(|e| e.to_string())
}

/// `--setup-code`: 8 digits.
pub fn check_setup_code(s: &str) -> Result<String, String> {
    crate::pairing::check_setup_code(s).map(|_| s.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &[&str]) -> Result<Settings, String> {
        let mut v = vec!["homehub-camsim"];
        v.extend_from_slice(extra);
        let args = super::super::parse_args(v).map_err(|e| e.line)?;
        Settings::from_args(&args, || "12345678".into(), || "abcd".into())
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_dims("1920x1080"), Ok((1920, 1080)));
        assert_eq!(parse_dims("640X360"), Ok((640, 360)));
        assert_eq!(parse_dims(" 640x360 "), Ok((640, 360)));
        assert_eq!(parse_dims("abc").unwrap_err(), "expected WxH (like 1920x1080), got 'abc'");
        assert!(parse_dims("640x").is_err());
        assert!(parse_dims("x360").is_err());
        assert!(parse_dims("-640x360").is_err());
        assert!(parse_dims("+640x360").is_err());
        assert!(parse_dims("640x360x2").is_err());
        assert!(parse_dims("8x8").unwrap_err().contains("between"));
        assert!(parse_dims("100000x360").unwrap_err().contains("between"));
        assert_eq!(parse_dims("641x360").unwrap_err(), "width and height must be even, got '641x360'");
    }

    #[test]
    fn spans() {
        assert_eq!(parse_span_list("10-15,40-48"), Ok(vec![Span { start: 10.0, end: 15.0 }, Span { start: 40.0, end: 48.0 }]));
        assert_eq!(parse_span_list(" 0-2.5 , 3-4 "), Ok(vec![Span { start: 0.0, end: 2.5 }, Span { start: 3.0, end: 4.0 }]));
        assert_eq!(parse_span_list("15-10").unwrap_err(), "'15-10' ends before it starts");
        assert!(parse_span_list("5-5").unwrap_err().contains("empty"));
        assert_eq!(parse_span_list("abc").unwrap_err(), "expected START-END in seconds (like 10-15), got 'abc'");
        assert!(parse_span_list("").is_err());
        assert!(parse_span_list("10-15,").is_err());
        assert!(parse_span_list("10").is_err());
        assert!(parse_span_list("-1-5").is_err());
        assert!(parse_span_list("1-x").is_err());
        assert!(parse_span_list("1-2-3").is_err());
        assert!(parse_span_list("inf-5").is_err());
        assert!(parse_span_list("1..2-3").is_err());
    }

    #[test]
    fn span_contains_is_half_open() {
        let s = Span { start: 3.0, end: 6.0 };
        assert!(!s.contains(2.999));
        assert!(s.contains(3.0));
        assert!(s.contains(5.999));
        assert!(!s.contains(6.0));
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.rtsp, "127.0.0.1:8554".parse().unwrap());
        assert_eq!(s.main, StreamSpec { width: 1920, height: 1080, fps: 30, bitrate_kbps: 4000, gop: 60 });
        assert_eq!(s.sub, StreamSpec { width: 640, height: 360, fps: 30, bitrate_kbps: 600, gop: 60 });
        assert!(s.motion.is_empty());
        assert!(!s.moving_at(1.0));
        assert_eq!(s.device_id, "camsim-8554");
        assert_eq!(s.setup_code, "12345678");
        assert!(s.setup_code_generated);
        assert_eq!(s.mdns_interface, "lo");
        assert!(s.hub.is_none());
        assert!(s.credentials.is_none());
        assert!(!s.pair);
        assert_eq!(s.ssid, "homehub-sim");
    }

    #[test]
    fn stream_flags() {
        let s = settings(&["--size", "640x360", "--fps", "15", "--motion", "3-6"]).unwrap();
        assert_eq!(s.main.gop, 30);
        assert_eq!(s.sub.fps, 15);
        assert!(s.moving_at(4.0));
        assert!(!s.moving_at(1.0));
        let s = settings(&["--gop", "7", "--bitrate", "900"]).unwrap();
        assert_eq!(s.main.gop, 7);
        assert_eq!(s.sub.gop, 7);
        assert_eq!(s.main.bitrate_kbps, 900);
        assert_eq!(settings(&["--fps", "0"]).unwrap_err(), "--fps: expected a whole number from 1 to 120, got '0'");
        assert!(settings(&["--fps", "abc"]).unwrap_err().starts_with("--fps: "));
        assert!(settings(&["--bitrate", "-5"]).unwrap_err().starts_with("--bitrate: "));
        assert!(settings(&["--gop", "0"]).unwrap_err().starts_with("--gop: "));
        assert_eq!(settings(&["--size", "abc"]).unwrap_err(), "--size: expected WxH (like 1920x1080), got 'abc'");
        assert_eq!(settings(&["--motion", "15-10"]).unwrap_err(), "--motion: '15-10' ends before it starts");
    }

    #[test]
    fn rtsp_addresses() {
        assert_eq!(settings(&["--rtsp", "[::1]:9000"]).unwrap().rtsp.port(), 9000);
        let s = settings(&["--rtsp", "127.0.0.1:0"]).unwrap();
        assert_eq!(s.device_id, "camsim-abcd");
        assert!(settings(&["--rtsp", "localhost:8554"]).unwrap_err().starts_with("--rtsp: "));
        assert!(settings(&["--rtsp", "127.0.0.1"]).is_err());
    }

    #[test]
    fn identity_flags() {
        let s = settings(&["--device-id", "cam-01", "--setup-code", "00001234", "--name", "Porch"]).unwrap();
        assert_eq!(s.device_id, "cam-01");
        assert_eq!(s.setup_code, "00001234");
        assert!(!s.setup_code_generated);
        assert_eq!(s.name, "Porch");
        assert!(settings(&["--device-id", "Cam"]).unwrap_err().starts_with("--device-id: "));
        assert!(settings(&["--device-id", &"a".repeat(65)]).is_err());
        assert!(settings(&["--device-id", &"a".repeat(64)]).is_ok());
        assert!(settings(&["--device-id", "cam_1"]).is_err());
        assert_eq!(settings(&["--setup-code", "1234"]).unwrap_err(), "--setup-code: expected exactly 8 digits, got '1234'");
        assert!(settings(&["--setup-code", "1234567a"]).is_err());
        assert!(settings(&["--name", " "]).is_err());
        assert!(settings(&["--mdns-interface", "eth0"]).is_ok());
        assert!(settings(&["--mdns-interface", "a/b"]).is_err());
        assert!(settings(&["--mdns-interface", ""]).is_err());
    }

    #[test]
    fn hub_flags() {
        let fp = "ab".repeat(32);
        let s = settings(&["--hub", "127.0.0.1:8883", "--hub-fp", &fp]).unwrap();
        let hub = s.hub.unwrap();
        assert_eq!(hub.host, "127.0.0.1");
        assert_eq!(hub.port, 8883);
        assert_eq!(hub.fingerprint, [0xab; 32]);
        // v2 pairing binds the hub by its fingerprint alone: there is no --hub-id any more.
        assert!(settings(&["--hub", "127.0.0.1:8883", "--hub-fp", &fp, "--hub-id", "0a1b"]).is_err());
        let s = settings(&["--hub", "hub.local:8883", "--hub-fp", &fp.to_uppercase()]).unwrap();
        assert_eq!(s.hub.unwrap().host, "hub.local");
        assert!(settings(&["--hub", "[::1]:8883", "--hub-fp", &fp]).is_ok());
        assert_eq!(settings(&["--hub", "127.0.0.1:8883"]).unwrap_err(), "--hub needs --hub-fp as well");
        assert_eq!(settings(&["--hub-fp", &fp]).unwrap_err(), "--hub-fp needs --hub as well");
        assert!(settings(&["--hub", "nohost", "--hub-fp", &fp]).unwrap_err().starts_with("--hub: "));
        assert!(settings(&["--hub", "h:0", "--hub-fp", &fp]).is_err());
        assert!(settings(&["--hub", "h:70000", "--hub-fp", &fp]).is_err());
        assert!(settings(&["--hub", "h:1", "--hub-fp", "abcd"]).unwrap_err().starts_with("--hub-fp: "));
        assert!(settings(&["--hub", "h:1", "--hub-fp", &"zz".repeat(32)]).is_err());
    }

    #[test]
    fn credential_flags() {
        let s = settings(&["--user", "u", "--password", "p"]).unwrap();
        let c = s.credentials.unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("u", "p"));
        assert!(!format!("{c:?}").contains("\"p\""));
        assert_eq!(settings(&["--user", "u"]).unwrap_err(), "--user needs --password as well");
        assert_eq!(settings(&["--password", "p"]).unwrap_err(), "--password needs --user as well");
        assert!(settings(&["--user", "a:b", "--password", "p"]).is_err());
        assert!(settings(&["--user", "u", "--password", ""]).is_err());
    }

    #[test]
    fn ssid_flag() {
        assert_eq!(settings(&["--ssid", "Home 5G"]).unwrap().ssid, "Home 5G");
        assert!(settings(&["--ssid", ""]).unwrap_err().starts_with("--ssid: "));
        assert!(settings(&["--ssid", &"s".repeat(33)]).is_err());
        assert!(settings(&["--ssid", "a\nb"]).is_err());
        assert!(settings(&["--ssid", "a\u{7}b"]).is_err());
    }
}
