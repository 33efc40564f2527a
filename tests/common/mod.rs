//! Test harness: real processes (camsim, `homehub serve`), real tools (curl, ffprobe),
//! all on 127.0.0.1.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const HUB: &str = env!("CARGO_BIN_EXE_homehub");
pub const CAMSIM: &str = env!("CARGO_BIN_EXE_homehub-camsim");
pub const PASSWORD: &str = "a long test password";
pub const EMAIL: &str = "owner@example.com";

/// A child process killed when the value drops.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn term(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let child = &mut self.child;
        poll_every(Duration::from_millis(100), Duration::from_secs(20), || child.try_wait().unwrap())
            .unwrap_or_else(|| panic!("{} did not stop within 20 s of SIGTERM", self.name))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A simulated camera and the RTSP port it reported.
pub struct Cam {
    pub proc: Proc,
    pub port: u16,
}

impl Cam {
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }
    pub fn pid(&self) -> i32 {
        self.proc.child.id() as i32
    }
}

/// Starts a simulated camera on any free port and waits for its ready line.
pub fn camsim(extra: &[&str]) -> Cam {
    camsim_lines(extra).0
}

/// Like [`camsim`], and hands on every stdout line after the ready line.
pub fn camsim_lines(extra: &[&str]) -> (Cam, std::sync::mpsc::Receiver<String>) {
    camsim_at(0, extra)
}

/// Starts a camera again on the port a camera of this test reported before (one that comes
/// back where it was).
pub fn camsim_on(port: u16, extra: &[&str]) -> Cam {
    camsim_at(port, extra).0
}

fn camsim_at(port: u16, extra: &[&str]) -> (Cam, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(CAMSIM)
        .args(["--rtsp", &format!("127.0.0.1:{port}"), "--size", "640x360", "--fps", "15", "--bitrate", "500"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start camsim");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        for l in lines.by_ref().map_while(|l| l.ok()) {
            if l.starts_with("camsim ready") {
                let _ = tx.send(l);
                break;
            }
        }
        for l in lines.map_while(|l| l.ok()) {
            let _ = line_tx.send(l);
        }
    });
    let mut proc = Proc { child, name: "camsim".into() };
    let ready = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(l) => l,
        Err(_) => panic!("no camsim ready line within 20 s ({:?})", proc.child.try_wait()),
    };
    // camsim ready rtsp://127.0.0.1:PORT/main rtsp://127.0.0.1:PORT/sub
    let bound = ready
        .split_whitespace()
        .nth(2)
        .and_then(|u| u.strip_prefix("rtsp://127.0.0.1:"))
        .and_then(|r| r.strip_suffix("/main"))
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("camsim ready line without a port: {ready}"));
    assert!(port == 0 || bound == port, "camsim asked for port {port}, bound {bound}");
    proc.name = format!("camsim:{bound}");
    (Cam { proc, port: bound }, line_rx)
}

/// Waits for a line containing `needle`; returns it.
pub fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(_) => panic!("no line containing {needle:?} within {timeout:?}"),
        }
    }
}

pub struct Hub {
    pub proc: Option<Proc>,
    pub dir: PathBuf,
    pub config: PathBuf,
    /// What the hub reported on its ready line: the ports it bound (0 in the config the
    /// first time), its id and its certificate's fingerprint (hex SHA-256, as devices pin it).
    pub port: u16,
    pub mqtt_tls: u16,
    pub mqtt_plain: u16,
    pub hub_id: String,
    pub fingerprint: String,
    pub log: PathBuf,
    /// The config after the listeners, as given to [`Hub::start`].
    extra: String,
}

pub fn cameras_toml(ports: &[u16]) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("[[camera]]\nname = \"Cam {i}\"\nurl = \"rtsp://127.0.0.1:{p}/main\"\n"))
        .collect()
}

/// The port of an `ADDRESS:PORT` on the ready line.
fn ready_port(ready: &serde_json::Value, key: &str) -> u16 {
    ready[key]
        .as_str()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.port())
        .unwrap_or_else(|| panic!("ready line without {key}: {ready}"))
}

impl Hub {
    /// Writes a config (`extra` is appended) into a fresh data dir and starts the hub; every
    /// listener on port 0, so the hub picks free ports and reports them.
    pub fn start(dir: &Path, extra: &str) -> Hub {
        let mut hub = Hub {
            proc: None,
            dir: dir.join("data"),
            config: dir.join("homehub.toml"),
            port: 0,
            mqtt_tls: 0,
            mqtt_plain: 0,
            hub_id: String::new(),
            fingerprint: String::new(),
            log: dir.join("hub.log"),
            extra: extra.to_string(),
        };
        hub.restart();
        hub
    }

    /// (Re)starts the hub and waits for its ready line. After the first start it comes
    /// back on the ports it reported then (cameras paired with it and the test hold those):
    /// ports this hub itself had bound, not guessed ones.
    pub fn restart(&mut self) {
        let text = format!(
            "data_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:{}\"\n[mqtt]\nlisten_tls = \"127.0.0.1:{}\"\n\
             listen_plain = \"127.0.0.1:{}\"\n[mdns]\ninterfaces = [\"lo\"]\n{}",
            self.dir.display(),
            self.port,
            self.mqtt_tls,
            self.mqtt_plain,
            self.extra
        );
        std::fs::write(&self.config, text).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut child = Command::new(HUB)
            .args(["serve", "--config", self.config.to_str().unwrap()])
            .env("HOMEHUB_LOG", "info,homehub=debug,rumqttd=warn,rumqttd::server::broker=off")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start hub");
        let ready = ready_line(&mut child, "\"ready\"");
        let mut proc = Proc { child, name: "hub".into() };
        let ready = match ready.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(e) => {
                // Closed without a ready line: the hub exited (its stdout went with it).
                let st = match e {
                    std::sync::mpsc::RecvTimeoutError::Disconnected => {
                        poll(Duration::from_secs(5), || proc.child.try_wait().unwrap()).map(|s| s.to_string())
                    }
                    std::sync::mpsc::RecvTimeoutError::Timeout => None,
                };
                let why = st.map_or("no ready line within 30 s".to_string(), |st| format!("hub exited early ({st})"));
                panic!("{why}; log:\n{}", self.log_text());
            }
        };
        let v: serde_json::Value = serde_json::from_str(&ready).unwrap_or_else(|e| panic!("ready line {ready:?}: {e}"));
        assert_eq!(v["ready"], true, "{v}");
        let ports = (ready_port(&v, "web"), ready_port(&v, "mqtt_tls"), ready_port(&v, "mqtt_plain"));
        if self.port != 0 {
            assert_eq!(ports, (self.port, self.mqtt_tls, self.mqtt_plain), "the hub came back on other ports");
        }
        (self.port, self.mqtt_tls, self.mqtt_plain) = ports;
        self.hub_id = v["hub_id"].as_str().expect("hub_id").to_string();
        self.fingerprint = v["fingerprint"].as_str().expect("fingerprint").to_string();
        self.proc = Some(proc);
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn add_user(&self, email: &str, role: &str, password: &str) {
        let mut child = Command::new(HUB)
            .args(["user", "add", email, "--role", role, "--config", self.config.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "user add failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// curl; returns (status, headers, body).
    pub fn curl(&self, args: &[&str]) -> (u16, String, Vec<u8>) {
        let out = Command::new("curl").args(["-k", "-s", "-S", "-D", "-", "--max-time", "20"]).args(args).output().expect("curl");
        let raw = out.stdout;
        let split = raw.windows(4).rposition(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(0);
        // With several header blocks (100-continue), the last one before the body counts.
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status = head
            .lines()
            .rfind(|l| l.starts_with("HTTP/"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head, raw[split..].to_vec())
    }

    pub fn get(&self, path: &str, cookie: Option<&str>) -> (u16, String, Vec<u8>) {
        let url = self.url(path);
        match cookie {
            Some(c) => self.curl(&["-H", &format!("cookie: {c}"), &url]),
            None => self.curl(&[&url]),
        }
    }

    pub fn get_json(&self, path: &str, cookie: &str) -> serde_json::Value {
        let (st, _, body) = self.get(path, Some(cookie));
        assert_eq!(st, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// Signs in; returns the `name=value` of the session cookie and the full header.
    pub fn login(&self, email: &str, password: &str) -> (u16, Option<(String, String)>) {
        let body = serde_json::json!({ "email": email, "password": password }).to_string();
        let (st, head, _) =
            self.curl(&["-X", "POST", "-H", "content-type: application/json", "--data", &body, &self.url("/api/session")]);
        let cookie = head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).map(|l| {
            let v = l.split_once(':').unwrap().1.trim().to_string();
            (v.split(';').next().unwrap().to_string(), v)
        });
        (st, cookie)
    }

    /// Hex SHA-256 of the certificate file (DER), computed by openssl: an independent check
    /// of the fingerprint the hub reports.
    pub fn cert_fingerprint(&self) -> String {
        let der = Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(self.dir.join("tls/cert.pem"))
            .output()
            .expect("openssl");
        assert!(der.status.success());
        let out = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let mut out = out;
        out.stdin.take().unwrap().write_all(&der.stdout).unwrap();
        let o = out.wait_with_output().unwrap();
        String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap().to_string()
    }

    /// Runs a homehub admin command against this hub's config; returns (ok, stdout, stderr).
    pub fn admin(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(HUB).args(args).args(["--config", self.config.to_str().unwrap()]).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    /// A JSON request with the session cookie; returns (status, body as JSON or null).
    pub fn send_json(&self, method: &str, path: &str, cookie: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let (st, _, b) = self.curl(&[
            "-X",
            method,
            "-H",
            &format!("cookie: {cookie}"),
            "-H",
            "content-type: application/json",
            "--data",
            &body.to_string(),
            &self.url(path),
        ]);
        (st, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null))
    }

    /// The database itself, for what no API or command shows: the file's integrity after a
    /// SIGKILL, the crash protocol's garbage list, how a secret is stored, the rows an orderly
    /// stop left (no API once stopped). Hub state is read through the API.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.join("homehub.db")).unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Every file under recordings/, relative to the data dir.
pub fn segment_files(data: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let root = data.join("recordings");
    if let Ok(cams) = std::fs::read_dir(&root) {
        for cam in cams.flatten() {
            for f in std::fs::read_dir(cam.path()).unwrap().flatten() {
                let rel = f.path().strip_prefix(data).unwrap().to_string_lossy().to_string();
                out.push((rel, f.metadata().unwrap().len()));
            }
        }
    }
    out.sort();
    out
}

/// Container duration in seconds as ffprobe reads it; None if it cannot read the file.
pub fn ffprobe_duration(path: &Path) -> Option<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"])
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Decodes the whole file with ffmpeg; true if it plays without errors.
pub fn plays(path: &Path) -> bool {
    Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Reads `child`'s stdout on a thread: the first line containing `needle` comes out of the
/// receiver; every other line goes on to the test's stderr, so the pipe never fills. The
/// sender goes when stdout closes (the process exited), so a receiver sees that at once.
pub fn ready_line(child: &mut Child, needle: &str) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout piped");
    let needle = needle.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for l in BufReader::new(out).lines().map_while(|l| l.ok()) {
            match &tx {
                Some(t) if l.contains(&needle) => {
                    let _ = t.send(l);
                    tx = None;
                }
                _ => eprintln!("{l}"),
            }
        }
    });
    rx
}

/// Calls `f` until it returns `Some`, every `every`, for at most `timeout`; `None` if it
/// never did.
pub fn poll_every<T>(every: Duration, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // The poll interval: every wait on a condition in these tests goes through here.
        std::thread::sleep(every);
    }
}

/// [`poll_every`] 200 ms.
pub fn poll<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(Duration::from_millis(200), timeout, f)
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    if poll(timeout, || f().then_some(())).is_none() {
        panic!("timed out waiting for {what}");
    }
}

/// Milliseconds since the epoch of an RFC 3339 time in the API's JSON.
pub fn api_ms(v: &serde_json::Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).timestamp_millis()
}

/// A recording as `/api/recordings` lists it.
#[derive(Debug, Clone)]
pub struct Seg {
    /// Relative to the data dir.
    pub path: String,
    pub bytes: u64,
    pub partial: bool,
    pub camera_id: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Hub {
    /// Every recording the hub lists, oldest first.
    pub fn segments(&self, cookie: &str) -> Vec<Seg> {
        let v = self.get_json("/api/recordings?limit=1000", cookie);
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Seg {
                path: r["path"].as_str().expect("path").to_string(),
                bytes: r["bytes"].as_u64().expect("bytes"),
                partial: r["partial"].as_bool().expect("partial"),
                camera_id: r["camera_id"].as_i64().expect("camera_id"),
                start_ms: api_ms(&r["start"]),
                end_ms: api_ms(&r["end"]),
            })
            .collect()
    }

    /// Every event the hub lists, oldest first.
    pub fn events(&self, cookie: &str) -> Vec<serde_json::Value> {
        // The API lists events newest first.
        let mut evs = self.get_json("/api/events?limit=1000", cookie)["items"].as_array().unwrap().clone();
        evs.reverse();
        evs
    }

    /// Adds a user with `role` and signs in; returns the session cookie.
    pub fn session(&self, role: &str) -> String {
        self.add_user(EMAIL, role, PASSWORD);
        self.login(EMAIL, PASSWORD).1.expect("session cookie").0
    }
}
pub mod s3;
