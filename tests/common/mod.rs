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
    let out = Command::new("ffmpeg").args(["-v", "error", "-xerror", "-i"]).arg(path).args(["-f", "null", "-"]).output();
    let Ok(out) = out else { return false };
    if !out.status.success() {
        // What ffmpeg found, and a copy of the file to look at (the test's temp dir goes).
        let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("unplayable");
        let _ = std::fs::create_dir_all(&keep);
        let name =
            format!("{}-{}", std::process::id(), path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
        let _ = std::fs::copy(path, keep.join(&name));
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "ffmpeg cannot play {} (kept as {}): {}",
            path.display(),
            keep.join(&name).display(),
            err.lines().take(8).collect::<Vec<_>>().join(" | ")
        );
    }
    out.status.success()
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

    /// An owner (EMAIL) shares `cameras` with a viewer, who signs in; returns the viewer's
    /// session cookie.
    pub fn viewer_of(&self, cameras: &[i64]) -> String {
        let owner = self.session("owner");
        let body = serde_json::json!({ "email": "viewer@example.com", "role": "viewer", "password": PASSWORD });
        let (st, u) = self.send_json("POST", "/api/users", &owner, &body);
        assert_eq!(st, 201, "{u}");
        let (st, u) =
            self.send_json("PUT", &format!("/api/users/{}/cameras", u["id"]), &owner, &serde_json::json!({ "cameras": cameras }));
        assert_eq!(st, 200, "{u}");
        self.login("viewer@example.com", PASSWORD).1.expect("viewer session").0
    }

    /// Adds a user with `role` and signs in; returns the session cookie.
    pub fn session(&self, role: &str) -> String {
        self.add_user(EMAIL, role, PASSWORD);
        self.login(EMAIL, PASSWORD).1.expect("session cookie").0
    }
}
pub mod s3;

// --- Hostile clients (tests/hostile.rs): launching a hub under a limit or on another
// address, the process's figures from /proc, raw MQTT and raw HTTP over TLS from a chosen
// source address. ---

/// How [`Hub::start_with`] launches a hub beyond [`Hub::start`].
pub struct Launch<'a> {
    /// A command the hub runs under (`prlimit --nofile=1024:1024`); it must exec the hub, so
    /// the pid stays the hub's.
    pub prefix: &'a [&'a str],
    /// The address every listener binds.
    pub host: &'a str,
}

impl Hub {
    /// Like [`Hub::start`], launched as `launch` says. [`Hub::restart`] afterwards goes back
    /// to loopback and no prefix.
    pub fn start_with(dir: &Path, extra: &str, launch: &Launch) -> Hub {
        let data = dir.join("data");
        let config = dir.join("homehub.toml");
        let log = dir.join("hub.log");
        let h = launch.host;
        let text = format!(
            "data_dir = \"{}\"\n[web]\nlisten = \"{h}:0\"\n[mqtt]\nlisten_tls = \"{h}:0\"\n\
             listen_plain = \"{h}:0\"\n[mdns]\ninterfaces = [\"lo\"]\n{extra}",
            data.display(),
        );
        std::fs::write(&config, text).unwrap();
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let (cmd, pre) = match launch.prefix.split_first() {
            Some((c, rest)) => (c.to_string(), rest.iter().map(|s| s.to_string()).chain([HUB.to_string()]).collect()),
            None => (HUB.to_string(), Vec::new()),
        };
        let mut child = Command::new(cmd)
            .args(pre)
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("HOMEHUB_LOG", "info,homehub=debug,rumqttd=warn,rumqttd::server::broker=off")
            .stdout(Stdio::piped())
            .stderr(out)
            .spawn()
            .expect("start hub");
        let ready = ready_line(&mut child, "\"ready\"");
        let proc = Proc { child, name: "hub".into() };
        let mut hub = Hub {
            proc: Some(proc),
            dir: data,
            config,
            port: 0,
            mqtt_tls: 0,
            mqtt_plain: 0,
            hub_id: String::new(),
            fingerprint: String::new(),
            log,
            extra: extra.to_string(),
        };
        let Ok(ready) = ready.recv_timeout(Duration::from_secs(30)) else {
            panic!("hub launched with {:?} on {h}: no ready line within 30 s; log:\n{}", launch.prefix, hub.log_text());
        };
        let v: serde_json::Value = serde_json::from_str(&ready).unwrap_or_else(|e| panic!("ready line {ready:?}: {e}"));
        (hub.port, hub.mqtt_tls, hub.mqtt_plain) =
            (ready_port(&v, "web"), ready_port(&v, "mqtt_tls"), ready_port(&v, "mqtt_plain"));
        hub.hub_id = v["hub_id"].as_str().expect("hub_id").to_string();
        hub.fingerprint = v["fingerprint"].as_str().expect("fingerprint").to_string();
        hub
    }

    /// The hub's process id (the process `/proc` figures are read from).
    pub fn pid(&self) -> i32 {
        self.proc.as_ref().expect("hub running").child.id() as i32
    }

    /// Whether the hub process is still running (false once it exited or was killed).
    pub fn alive(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.child.try_wait().ok().flatten().is_none())
    }

    /// The certificate fingerprint as bytes, for [`raw::tls`].
    pub fn fingerprint_bytes(&self) -> [u8; 32] {
        hex::decode(&self.fingerprint).ok().and_then(|b| b.try_into().ok()).expect("hex SHA-256 fingerprint")
    }
}

/// A `kB` figure of /proc/PID/status (`VmRSS`, `VmHWM`); None once the process is gone.
pub fn proc_status_kb(pid: i32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// Descriptors open in process `pid` (/proc/PID/fd); None once it is gone.
pub fn proc_fds(pid: i32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count() as u64)
}

/// Raises this test process's soft descriptor limit to its hard one (attacks hold many sockets).
pub fn raise_own_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// What a [`Watch`] saw of the hub process.
#[derive(Default, Clone)]
pub struct Watched {
    /// Highest VmRSS / descriptor count sampled since the last [`Watch::reset_peaks`].
    pub peak_rss_kb: u64,
    pub peak_fds: u64,
    /// Every segment file that appeared under recordings/, with when it was first seen.
    pub segments: Vec<(Instant, String)>,
    /// When /proc stopped answering for the pid (the process exited).
    pub gone: Option<Instant>,
}

/// Samples the hub process (VmRSS, descriptors) and its recordings/ directory every 100 ms
/// on a thread, for as long as it lives.
pub struct Watch {
    state: std::sync::Arc<std::sync::Mutex<Watched>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    pub fn start(pid: i32, recordings: PathBuf) -> Watch {
        use std::sync::atomic::Ordering;
        let state = std::sync::Arc::new(std::sync::Mutex::new(Watched::default()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = std::collections::HashSet::new();
            while !sp.load(Ordering::Relaxed) {
                let rss = proc_status_kb(pid, "VmRSS");
                let fds = proc_fds(pid);
                let mut new = Vec::new();
                if let Ok(cams) = std::fs::read_dir(&recordings) {
                    for f in cams.flatten().filter_map(|c| std::fs::read_dir(c.path()).ok()).flatten().flatten() {
                        let name = f.path().to_string_lossy().to_string();
                        if seen.insert(name.clone()) {
                            new.push(name);
                        }
                    }
                }
                let now = Instant::now();
                {
                    let mut s = st.lock().unwrap();
                    match (rss, fds) {
                        (Some(r), Some(f)) => {
                            s.peak_rss_kb = s.peak_rss_kb.max(r);
                            s.peak_fds = s.peak_fds.max(f);
                        }
                        _ => {
                            s.gone.get_or_insert(now);
                        }
                    }
                    new.sort();
                    s.segments.extend(new.into_iter().map(|n| (now, n)));
                }
                // The sampling interval of the watch.
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Watch { state, stop, thread: Some(thread) }
    }

    pub fn get(&self) -> Watched {
        self.state.lock().unwrap().clone()
    }

    pub fn reset_peaks(&self) {
        let mut s = self.state.lock().unwrap();
        (s.peak_rss_kb, s.peak_fds) = (0, 0);
    }

    /// Segment files first seen at or after `t`.
    pub fn segments_since(&self, t: Instant) -> usize {
        self.state.lock().unwrap().segments.iter().filter(|(at, _)| *at >= t).count()
    }

    /// The longest stretch within `from..to` with no new segment file (the ends count as
    /// edges), and how many appeared in it.
    pub fn longest_gap(&self, from: Instant, to: Instant) -> (Duration, usize) {
        let s = self.state.lock().unwrap();
        let times: Vec<Instant> = s.segments.iter().map(|(t, _)| *t).filter(|t| *t >= from && *t <= to).collect();
        let mut edges = vec![from];
        edges.extend(&times);
        edges.push(to);
        (edges.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default(), times.len())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Raw clients, no library: TCP from a chosen source address, MQTT 3.1.1 packets, TLS
/// pinned to the hub's certificate.
pub mod raw {
    use std::io::{self, Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
    use std::os::fd::FromRawFd;
    use std::time::Duration;

    /// A TCP connection from `src` (port chosen by the kernel) to `dst`, within `timeout`.
    pub fn connect_from(src: Ipv4Addr, dst: SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
        fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
            libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
                sin_zero: [0; 8],
            }
        }
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: plain socket calls on a descriptor this function owns; the sockaddr
        // structs live on the stack for the calls' duration.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let stream = TcpStream::from_raw_fd(fd);
            let s = sockaddr(SocketAddrV4::new(src, 0));
            if libc::bind(fd, &s as *const _ as *const libc::sockaddr, len) != 0 {
                return Err(io::Error::last_os_error());
            }
            let d = sockaddr(dst);
            if libc::connect(fd, &d as *const _ as *const libc::sockaddr, len) != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINPROGRESS) {
                    return Err(e);
                }
                let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                let n = libc::poll(&mut p, 1, timeout.as_millis() as i32);
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect to {dst} from {src}")));
                }
                if let Some(e) = stream.take_error()? {
                    return Err(e);
                }
            }
            stream.set_nonblocking(false)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            Ok(stream)
        }
    }

    /// `127.0.0.N`-style addresses for attackers: the `i`th of `127.0.B.(1 + i / per)`.
    pub fn attacker(b: u8, i: usize, per: usize) -> Ipv4Addr {
        let n = 1 + i / per.max(1);
        Ipv4Addr::new(127, b + (n / 250) as u8, 0, (n % 250) as u8 + 1)
    }

    /// The hub's address as seen by a client: `host:port`.
    pub fn v4(host: &str, port: u16) -> SocketAddrV4 {
        match format!("{host}:{port}").parse::<SocketAddr>().expect("address") {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => panic!("IPv4 only"),
        }
    }

    /// TLS over `tcp`, pinned to `fingerprint`; the handshake is done before it returns.
    pub fn tls(
        mut tcp: TcpStream,
        fingerprint: [u8; 32],
    ) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        let cfg = homehub::camsim::pair::pin::client_config(fingerprint).map_err(io::Error::other)?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap().to_owned();
        let mut conn = rustls::ClientConnection::new(cfg, name).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(rustls::StreamOwned::new(conn, tcp))
    }

    /// One HTTP/1.1 request (`Connection: close`); the status of the answer (0 if none came).
    pub fn http(stream: &mut impl ReadWrite, method: &str, path: &str, body: &str) -> io::Result<u16> {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes())?;
        stream.flush()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if buf.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        let line = String::from_utf8_lossy(&buf);
        Ok(line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    pub trait ReadWrite: Read + Write {}
    impl<T: Read + Write> ReadWrite for T {}

    fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let mut b = (n % 128) as u8;
            n /= 128;
            if n > 0 {
                b |= 0x80;
            }
            out.push(b);
            if n == 0 {
                break;
            }
        }
    }

    fn packet(header: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![header];
        remaining_length(body.len(), &mut out);
        out.extend_from_slice(body);
        out
    }

    fn string(s: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }

    /// A will message at CONNECT.
    pub struct Will<'a> {
        pub topic: &'a str,
        pub payload: &'a [u8],
        pub qos: u8,
        pub retain: bool,
    }

    /// What a CONNECT carries.
    pub struct Connect<'a> {
        pub client_id: &'a str,
        pub user: Option<&'a str>,
        pub pass: Option<&'a str>,
        pub keepalive: u16,
        pub clean: bool,
        pub will: Option<Will<'a>>,
    }

    impl<'a> Connect<'a> {
        /// A clean-session login.
        pub fn login(client_id: &'a str, user: &'a str, pass: &'a str, keepalive: u16) -> Connect<'a> {
            Connect { client_id, user: Some(user), pass: Some(pass), keepalive, clean: true, will: None }
        }

        pub fn bytes(&self) -> Vec<u8> {
            let mut b = Vec::new();
            string(b"MQTT", &mut b);
            b.push(4);
            let mut flags = 0u8;
            if self.user.is_some() {
                flags |= 0x80;
            }
            if self.pass.is_some() {
                flags |= 0x40;
            }
            if let Some(w) = &self.will {
                flags |= 0x04 | (w.qos << 3) | if w.retain { 0x20 } else { 0 };
            }
            if self.clean {
                flags |= 0x02;
            }
            b.push(flags);
            b.extend_from_slice(&self.keepalive.to_be_bytes());
            string(self.client_id.as_bytes(), &mut b);
            if let Some(w) = &self.will {
                string(w.topic.as_bytes(), &mut b);
                string(w.payload, &mut b);
            }
            if let Some(u) = self.user {
                string(u.as_bytes(), &mut b);
            }
            if let Some(p) = self.pass {
                string(p.as_bytes(), &mut b);
            }
            packet(0x10, &b)
        }
    }

    pub fn publish_bytes(topic: &str, payload: &[u8], qos: u8, retain: bool, id: u16) -> Vec<u8> {
        let mut b = Vec::new();
        string(topic.as_bytes(), &mut b);
        if qos > 0 {
            b.extend_from_slice(&id.to_be_bytes());
        }
        b.extend_from_slice(payload);
        packet(0x30 | (qos << 1) | retain as u8, &b)
    }

    pub fn subscribe_bytes(filters: &[(&str, u8)], id: u16) -> Vec<u8> {
        let mut b = id.to_be_bytes().to_vec();
        for (f, q) in filters {
            string(f.as_bytes(), &mut b);
            b.push(*q);
        }
        packet(0x82, &b)
    }

    pub const DISCONNECT: [u8; 2] = [0xE0, 0];
    pub const PINGREQ: [u8; 2] = [0xC0, 0];

    /// One packet from the server.
    #[derive(Debug)]
    pub struct Packet {
        /// The fixed header's first byte (type in the high nibble, flags in the low).
        pub header: u8,
        pub body: Vec<u8>,
    }

    impl Packet {
        pub fn kind(&self) -> u8 {
            self.header >> 4
        }

        /// A PUBLISH's (topic, payload, retain flag).
        pub fn publish(&self) -> Option<(String, &[u8], bool)> {
            if self.kind() != 3 || self.body.len() < 2 {
                return None;
            }
            let tl = u16::from_be_bytes([self.body[0], self.body[1]]) as usize;
            let topic = String::from_utf8_lossy(self.body.get(2..2 + tl)?).to_string();
            let qos = (self.header >> 1) & 3;
            let start = 2 + tl + if qos > 0 { 2 } else { 0 };
            Some((topic, self.body.get(start..)?, self.header & 1 == 1))
        }
    }

    /// Reads one packet; Err(UnexpectedEof) when the server closed the connection.
    pub fn read_packet(s: &mut impl Read) -> io::Result<Packet> {
        let mut h = [0u8; 1];
        s.read_exact(&mut h)?;
        let (mut len, mut mul) = (0usize, 1usize);
        for _ in 0..4 {
            let mut b = [0u8; 1];
            s.read_exact(&mut b)?;
            len += (b[0] & 0x7f) as usize * mul;
            mul *= 128;
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body)?;
        Ok(Packet { header: h[0], body })
    }

    /// How a CONNECT ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Connack {
        /// CONNACK with this return code (0 = accepted).
        Code(u8),
        /// Closed (or reset, or silent past the read timeout) with no CONNACK.
        Closed,
    }

    /// Sends CONNECT and reads the answer.
    pub fn connect(s: &mut impl ReadWrite, c: &Connect) -> Connack {
        if s.write_all(&c.bytes()).and_then(|_| s.flush()).is_err() {
            return Connack::Closed;
        }
        match read_packet(s) {
            Ok(p) if p.kind() == 2 && p.body.len() == 2 => Connack::Code(p.body[1]),
            _ => Connack::Closed,
        }
    }

    /// Publishes; at QoS 1 waits for the PUBACK (other packets are skipped). Ok(false) if
    /// the connection closed before that.
    pub fn publish(s: &mut impl ReadWrite, topic: &str, payload: &[u8], qos: u8, retain: bool, id: u16) -> io::Result<bool> {
        s.write_all(&publish_bytes(topic, payload, qos, retain, id))?;
        s.flush()?;
        if qos == 0 {
            return Ok(true);
        }
        loop {
            match read_packet(s) {
                Ok(p) if p.kind() == 4 && p.body == id.to_be_bytes() => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Subscribes; the SUBACK's return codes (None if the connection closed first).
    pub fn subscribe(s: &mut impl ReadWrite, filters: &[(&str, u8)], id: u16) -> io::Result<Option<Vec<u8>>> {
        s.write_all(&subscribe_bytes(filters, id))?;
        s.flush()?;
        loop {
            match read_packet(s) {
                Ok(p) if p.kind() == 9 && p.body.get(..2) == Some(&id.to_be_bytes()) => return Ok(Some(p.body[2..].to_vec())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }
}
