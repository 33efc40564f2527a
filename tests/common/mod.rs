//! Test harness: real processes (camsim, `homehub serve`), real tools (curl, ffprobe),
//! all on 127.0.0.1.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const HUB: &str = env!("CARGO_BIN_EXE_homehub");
pub const CAMSIM: &str = env!("CARGO_BIN_EXE_homehub-camsim");
pub const PASSWORD: &str = "a long test password";
pub const EMAIL: &str = "owner@example.com";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

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
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "{} did not stop within 20 s of SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a simulated camera and waits for its ready line.
pub fn camsim(port: u16, extra: &[&str]) -> Proc {
    camsim_lines(port, extra).0
}

/// Like [`camsim`], and hands on every stdout line after the ready line.
pub fn camsim_lines(port: u16, extra: &[&str]) -> (Proc, std::sync::mpsc::Receiver<String>) {
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
                let _ = tx.send(());
                break;
            }
        }
        for l in lines.map_while(|l| l.ok()) {
            let _ = line_tx.send(l);
        }
    });
    rx.recv_timeout(Duration::from_secs(20)).expect("camsim ready line");
    (Proc { child, name: format!("camsim:{port}") }, line_rx)
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
    pub port: u16,
    pub mqtt_tls: u16,
    pub mqtt_plain: u16,
    pub log: PathBuf,
}

pub fn cameras_toml(ports: &[u16]) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("[[camera]]\nname = \"Cam {i}\"\nurl = \"rtsp://127.0.0.1:{p}/main\"\n"))
        .collect()
}

impl Hub {
    /// Writes a config (`extra` is appended) into a fresh data dir and starts the hub.
    pub fn start(dir: &Path, extra: &str) -> Hub {
        let (port, mqtt_tls, mqtt_plain) = (free_port(), free_port(), free_port());
        let data = dir.join("data");
        let config = dir.join("homehub.toml");
        let text = format!(
            "data_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:{port}\"\n[mqtt]\nlisten_tls = \"127.0.0.1:{mqtt_tls}\"\n\
             listen_plain = \"127.0.0.1:{mqtt_plain}\"\n[mdns]\ninterfaces = [\"lo\"]\n{extra}",
            data.display()
        );
        std::fs::write(&config, text).unwrap();
        let mut hub = Hub { proc: None, dir: data, config, port, mqtt_tls, mqtt_plain, log: dir.join("hub.log") };
        hub.restart();
        hub
    }

    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(HUB)
            .args(["serve", "--config", self.config.to_str().unwrap()])
            .env("HOMEHUB_LOG", "info,homehub=debug,rumqttd=warn,rumqttd::server::broker=off")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start hub");
        self.proc = Some(Proc { child, name: "hub".into() });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.proc.as_mut().unwrap().child.try_wait().unwrap() {
                panic!("hub exited early ({st}); log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            if self.get("/healthz", None).0 == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "hub not healthy within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
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
        let out = Command::new("curl")
            .args(["-k", "-s", "-S", "-D", "-", "--max-time", "20"])
            .args(args)
            .output()
            .expect("curl");
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
        let cookie = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .map(|l| {
                let v = l.split_once(':').unwrap().1.trim().to_string();
                (v.split(';').next().unwrap().to_string(), v)
            });
        (st, cookie)
    }

    /// Hex SHA-256 of the served certificate (DER), as devices pin it.
    pub fn fingerprint(&self) -> String {
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
            "-X", method, "-H", &format!("cookie: {cookie}"), "-H", "content-type: application/json",
            "--data", &body.to_string(), &self.url(path),
        ]);
        (st, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null))
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.join("homehub.db")).unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// (path relative to data dir, bytes, partial) of every segment row.
pub fn segment_rows(conn: &rusqlite::Connection) -> Vec<(String, u64, bool, i64, i64, i64)> {
    let mut st = conn.prepare("SELECT path, bytes, partial, camera_id, start_ms, end_ms FROM segments ORDER BY start_ms").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
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

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
pub mod s3;
