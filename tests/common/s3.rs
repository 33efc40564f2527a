//! A real S3-compatible server for tests, and canary checks for what a client sends it.
//!
//! [`S3::start`] runs `moto_server` (from the venv that `packaging/moto-venv.sh` prepares,
//! found through `HOMEHUB_MOTO_VENV`, else `target/moto-venv`) on 127.0.0.1, and in front
//! of it a recording TCP proxy inside the test process. The client under test (the hub)
//! is given only [`S3::endpoint`], the proxy: every byte it sends and every byte moto
//! answers are kept for the life of the [`S3`], so a test can scan the complete request
//! log ([`S3::client_sent`], [`S3::requests`]) for what must never leave the house.
//! The test's own view of the bucket ([`S3::create_bucket`], [`S3::list`], [`S3::get`],
//! [`S3::download_all`], [`S3::boto3`]) talks to moto directly, so it does not show up
//! in that log.
//!
//! Outages: [`S3::refuse`] closes the proxy's port (new connections get ECONNREFUSED,
//! open ones are cut), as when the server or its host is down; [`S3::pause`] freezes
//! moto with SIGSTOP (connections are accepted, requests hang unanswered), as when the
//! server or the path to it is stuck.
//!
//! What moto (5.2.5) does and does not check, found by trying:
//! - any credentials and any signature are accepted, but GET of an object without an
//!   `Authorization` header is 403 (listing a bucket without one works);
//! - `Content-MD5` and `x-amz-content-sha256` are not verified: a wrong one is stored
//!   as if right;
//! - a body sent with `Content-Type: application/x-www-form-urlencoded` (curl's default
//!   for `--data`) is eaten as a form and the object is stored EMPTY, with status 200;
//! - the ETag of a plain PUT is the hex MD5 of the body, quoted;
//! - every response has `Connection: close`: one request per connection;
//! - bucket names are validated (3 to 63 characters, ...);
//! - a request that arrived while moto was paused is still carried out after
//!   [`S3::resume`], even when its client has given up meanwhile.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Proc, poll};

/// moto accepts any credentials; these are what the tests hand the client.
pub const ACCESS_KEY: &str = "AKIAHOMEHUBTEST00001";
pub const SECRET_KEY: &str = "homehub-test-secret-key-not-a-secret";
pub const REGION: &str = "us-east-1";

/// How long a direct call to moto (create_bucket, list, get) waits for an answer.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(20);

/// One HTTP request as the proxy saw it from the client.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// As sent: path and query, percent-encoded.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// After removing `Transfer-Encoding: chunked` framing (any aws-chunked content
    /// encoding is left as is).
    pub body: Vec<u8>,
    /// False when the connection ended before the whole body was sent.
    pub complete: bool,
    /// Index of the proxied connection it came on (accept order).
    pub connection: usize,
}

impl Request {
    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// The path without the query, percent-decoded (e.g. `/bucket/some key`).
    pub fn path(&self) -> String {
        let p = self.target.split('?').next().unwrap_or("");
        String::from_utf8_lossy(&percent_decode(p)).into_owned()
    }
}

pub struct S3 {
    moto: Proc,
    moto_port: u16,
    venv: PathBuf,
    log: PathBuf,
    proxy: Arc<Proxy>,
    accept_thread: Option<JoinHandle<()>>,
    _tmp: tempfile::TempDir,
}

impl S3 {
    /// Starts moto on a port of its choosing and the recording proxy; returns once moto
    /// answers.
    pub fn start() -> S3 {
        let venv = venv_dir();
        let moto_server = venv.join("bin/moto_server");
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("moto.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(&moto_server);
        // Port 0: werkzeug binds any free port and says which on stderr.
        cmd.args(["-H", "127.0.0.1", "-p", "0"])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(Stdio::piped());
        // Should the test process die without dropping S3 (killed, aborted), moto goes
        // with it. (The signal follows the exit of the thread that started moto, so an
        // S3 must not be started on a short-lived helper thread.)
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", moto_server.display()));
        let bound = moto_port_line(child.stderr.take().unwrap(), out);
        let mut moto = Proc { child, name: "moto_server".into() };
        let started = Instant::now();
        let moto_port = match bound.recv_timeout(Duration::from_secs(40)) {
            Ok(port) => port,
            Err(_) => {
                let st = poll(Duration::from_secs(2), || moto.child.try_wait().unwrap());
                let why = st.map_or("did not say which port it bound within 40 s".into(), |st| format!("exited at start ({st})"));
                panic!("moto_server {why}; its output:\n{}", read_tail(&log));
            }
        };
        moto.name = format!("moto_server:{moto_port}");
        // Listening, but its first answer can take a moment (backends load on first use).
        let left = Duration::from_secs(40).saturating_sub(started.elapsed());
        let answered = poll(left, || {
            if let Some(st) = moto.child.try_wait().unwrap() {
                panic!("moto_server exited at start ({st}); its output:\n{}", read_tail(&log));
            }
            matches!(http(moto_port, "GET", "/", &[], b"", Duration::from_secs(2)), Ok((200, _, _))).then_some(())
        });
        if answered.is_none() {
            panic!("moto_server not answering on 127.0.0.1:{moto_port} within 40 s; its output:\n{}", read_tail(&log));
        }

        let (listener, port) = bind_proxy_port();
        let proxy = Arc::new(Proxy {
            port,
            upstream: SocketAddr::from(([127, 0, 0, 1], moto_port)),
            listener: Mutex::new(Some(listener)),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let p = proxy.clone();
        let accept_thread = std::thread::Builder::new().name(format!("s3-proxy:{port}")).spawn(move || p.accept_loop()).unwrap();
        S3 { moto, moto_port, venv, log, proxy, accept_thread: Some(accept_thread), _tmp: tmp }
    }

    /// What the client under test is given: the recording proxy.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy.port)
    }

    pub fn proxy_port(&self) -> u16 {
        self.proxy.port
    }

    /// moto itself, bypassing the proxy (nothing sent here is recorded).
    pub fn direct_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.moto_port)
    }

    /// The venv moto runs from (its `bin/python` has boto3).
    pub fn venv(&self) -> &Path {
        &self.venv
    }

    /// Everything moto has printed (one line per request).
    pub fn moto_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Creates a bucket (directly on moto). Names must be 3..=63 characters.
    pub fn create_bucket(&self, name: &str) {
        let (st, _, body) = self.direct("PUT", &format!("/{name}"), &[], b"");
        assert_eq!(st, 200, "create bucket {name:?}: HTTP {st}: {}", String::from_utf8_lossy(&body));
    }

    /// Every object in the bucket as (key, size), sorted by key (directly on moto).
    pub fn list(&self, bucket: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut target = format!("/{bucket}?list-type=2&encoding-type=url");
            if let Some(t) = &token {
                target.push_str("&continuation-token=");
                target.push_str(&percent_encode(t.as_bytes(), false));
            }
            let (st, _, body) = self.direct("GET", &target, &[], b"");
            let xml = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(st, 200, "list {bucket:?}: HTTP {st}: {xml}");
            for item in xml.split("<Contents>").skip(1) {
                let key = xml_field(item, "Key").unwrap_or_else(|| panic!("list {bucket:?}: no <Key> in {item}"));
                let key = String::from_utf8(percent_decode(&key)).expect("key is UTF-8");
                let size = xml_field(item, "Size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("list {bucket:?}: no <Size> in {item}"));
                out.push((key, size));
            }
            match xml_field(&xml, "NextContinuationToken") {
                Some(t) if xml_field(&xml, "IsTruncated").as_deref() == Some("true") => token = Some(xml_unescape(&t)),
                _ => break,
            }
        }
        out.sort();
        out
    }

    /// The object's bytes (directly on moto); panics when it is not there.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let target = format!("/{bucket}/{}", percent_encode(key.as_bytes(), true));
        let (st, _, body) = self.direct("GET", &target, &[], b"");
        assert_eq!(st, 200, "get {bucket}/{key}: HTTP {st}: {}", String::from_utf8_lossy(&body));
        body
    }

    /// Downloads every object into `dir`, a key's `/` making subdirectories; returns
    /// (key, file) sorted by key.
    pub fn download_all(&self, bucket: &str, dir: &Path) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for (key, size) in self.list(bucket) {
            assert!(
                !key.is_empty() && !key.starts_with('/') && key.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
                "key {key:?} cannot be mapped to a file under {}",
                dir.display()
            );
            let bytes = self.get(bucket, &key);
            assert_eq!(bytes.len() as u64, size, "{bucket}/{key}: listed size differs from the bytes got");
            let file = dir.join(&key);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, bytes).unwrap();
            out.push((key, file));
        }
        out
    }

    /// Runs Python with boto3 against moto directly: `s3` is a ready boto3 S3 client,
    /// `json` and `sys` are imported. Returns stdout; panics with stderr on failure.
    pub fn boto3(&self, code: &str) -> String {
        let prelude = format!(
            "import boto3, json, sys\n\
             s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{}', region_name='{REGION}', \
             aws_access_key_id='{ACCESS_KEY}', aws_secret_access_key='{SECRET_KEY}')\n",
            self.moto_port
        );
        let out = Command::new(self.venv.join("bin/python"))
            .arg("-c")
            .arg(format!("{prelude}{code}"))
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .output()
            .expect("run the venv's python");
        assert!(
            out.status.success(),
            "boto3 script failed ({}):\n{code}\n--- stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// All bytes clients sent through the proxy so far, connection after connection.
    pub fn client_sent(&self) -> Vec<u8> {
        self.proxy.conns.lock().unwrap().iter().flat_map(|c| c.client.lock().unwrap().clone()).collect()
    }

    /// All bytes moto answered through the proxy so far, connection after connection.
    pub fn server_sent(&self) -> Vec<u8> {
        self.proxy.conns.lock().unwrap().iter().flat_map(|c| c.server.lock().unwrap().clone()).collect()
    }

    /// (client bytes, server bytes) of each proxied connection, in accept order.
    pub fn connections(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.proxy
            .conns
            .lock()
            .unwrap()
            .iter()
            .map(|c| (c.client.lock().unwrap().clone(), c.server.lock().unwrap().clone()))
            .collect()
    }

    /// The HTTP requests clients sent through the proxy, parsed from [`Self::connections`];
    /// a request whose head never arrived whole is not listed (its bytes are still in
    /// [`Self::client_sent`]).
    pub fn requests(&self) -> Vec<Request> {
        let conns: Vec<Vec<u8>> = self.proxy.conns.lock().unwrap().iter().map(|c| c.client.lock().unwrap().clone()).collect();
        let mut out = Vec::new();
        for (i, bytes) in conns.iter().enumerate() {
            parse_requests(bytes, i, &mut out);
        }
        out
    }

    pub fn request_count(&self) -> usize {
        self.requests().len()
    }

    pub fn connection_count(&self) -> usize {
        self.proxy.conns.lock().unwrap().len()
    }

    /// `true`: the proxy stops listening, so connecting gets ECONNREFUSED, and every open
    /// proxied connection is cut (clients see the connection closed mid-request) — the
    /// server or its host is down. `false`: listens again on the same port. Returns once
    /// done.
    pub fn refuse(&self, on: bool) {
        self.proxy.refuse(on);
    }

    /// SIGSTOPs moto: connections are still accepted but nothing is answered, so requests
    /// hang until the client's own timeout — a stuck server or a black-holed path. Direct
    /// calls (list, get, ...) hang too (and panic after 20 s). Requests that arrive
    /// meanwhile are carried out after [`Self::resume`], even if their client gave up.
    pub fn pause(&self) {
        unsafe { libc::kill(self.moto.child.id() as i32, libc::SIGSTOP) };
    }

    /// SIGCONTs moto after [`Self::pause`].
    pub fn resume(&self) {
        unsafe { libc::kill(self.moto.child.id() as i32, libc::SIGCONT) };
    }

    /// The moto process id (for checks that nothing is left behind).
    pub fn moto_pid(&self) -> u32 {
        self.moto.child.id()
    }

    fn direct(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        http(self.moto_port, method, target, headers, body, DIRECT_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "{method} {target} directly on moto (127.0.0.1:{}): {e} (paused? exited?); moto's output:\n{}",
                self.moto_port,
                read_tail(&self.log)
            )
        })
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.proxy.stop.store(true, Ordering::SeqCst);
        self.proxy.refuse(true);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        RESERVED.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| *p != self.proxy.port);
        // SIGKILL ends a SIGSTOPped moto too; Proc's drop kills and reaps it.
        self.moto.kill9();
    }
}

fn venv_dir() -> PathBuf {
    let dir = match std::env::var_os("HOMEHUB_MOTO_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv"),
    };
    if !dir.join("bin/moto_server").exists() {
        panic!(
            "no moto_server in {}: run `bash packaging/moto-venv.sh target/moto-venv` (with the network), \
             or set HOMEHUB_MOTO_VENV to a venv made by that script",
            dir.display()
        );
    }
    dir
}

/// Copies moto's stderr into its log, and hands on the port from werkzeug's
/// ` * Running on http://127.0.0.1:PORT` line.
fn moto_port_line(stderr: std::process::ChildStderr, mut log: std::fs::File) -> std::sync::mpsc::Receiver<u16> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        const AT: &str = "Running on http://127.0.0.1:";
        for line in std::io::BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            let _ = writeln!(log, "{line}");
            if let Some(rest) = line.split_once(AT).map(|(_, r)| r) {
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                if let Ok(port) = digits.parse::<u16>() {
                    let _ = tx.send(port);
                }
            }
        }
    });
    rx
}

fn read_tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// The recording proxy

struct Proxy {
    port: u16,
    upstream: SocketAddr,
    /// None while refusing.
    listener: Mutex<Option<TcpListener>>,
    stop: AtomicBool,
    /// Every connection ever accepted, in order; kept for the log.
    conns: Mutex<Vec<Arc<Conn>>>,
}

#[derive(Default)]
struct Conn {
    client: Mutex<Vec<u8>>,
    server: Mutex<Vec<u8>>,
    /// The live sockets (client side, moto side), to cut; emptied when both pumps end.
    sockets: Mutex<Vec<TcpStream>>,
    cut: AtomicBool,
    pumps_done: AtomicUsize,
}

impl Conn {
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.sockets.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    /// Registers a socket, or cuts it at once if the connection was cut already.
    fn add_socket(&self, s: &TcpStream) {
        let mut socks = self.sockets.lock().unwrap();
        if self.cut.load(Ordering::SeqCst) {
            let _ = s.shutdown(Shutdown::Both);
        }
        socks.push(s.try_clone().unwrap());
    }
    fn pump_done(&self) {
        if self.pumps_done.fetch_add(1, Ordering::SeqCst) == 1 {
            self.sockets.lock().unwrap().clear();
        }
    }
}

impl Proxy {
    fn accept_loop(self: Arc<Self>) {
        while !self.stop.load(Ordering::SeqCst) {
            let accepted = {
                let guard = self.listener.lock().unwrap();
                match guard.as_ref().map(|l| l.accept()) {
                    Some(Ok((client, _))) => {
                        // Registered while the listener is locked, so refuse(true) sees it.
                        let conn = Arc::new(Conn::default());
                        conn.add_socket(&client);
                        self.conns.lock().unwrap().push(conn.clone());
                        let up = self.upstream;
                        std::thread::Builder::new().name("s3-proxy-conn".into()).spawn(move || serve(conn, client, up)).unwrap();
                        true
                    }
                    _ => false,
                }
            };
            if !accepted {
                // The idle tick of a non-blocking accept loop (refuse() must be able to take
                // the listener away): not a test waiting on anything.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn refuse(&self, on: bool) {
        let mut guard = self.listener.lock().unwrap();
        if on {
            // Closing the only listening socket: the kernel now answers SYNs with RST
            // (ECONNREFUSED) and resets connections still waiting in the backlog.
            drop(guard.take());
            for c in self.conns.lock().unwrap().iter() {
                c.cut();
            }
        } else if guard.is_none() {
            // std sets SO_REUSEADDR on listeners, so TIME_WAIT leftovers do not block this.
            let mut last = None;
            let l = super::poll_every(Duration::from_millis(50), Duration::from_secs(10), || {
                TcpListener::bind(("127.0.0.1", self.port)).map_err(|e| last = Some(e)).ok()
            })
            .unwrap_or_else(|| panic!("S3 proxy: cannot listen again on 127.0.0.1:{}: {last:?}", self.port));
            l.set_nonblocking(true).unwrap();
            *guard = Some(l);
        }
    }
}

fn serve(conn: Arc<Conn>, client: TcpStream, upstream: SocketAddr) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_nodelay(true);
    let server = match TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(_) => {
            let _ = client.shutdown(Shutdown::Both);
            conn.pump_done();
            conn.pump_done();
            return;
        }
    };
    let _ = server.set_nodelay(true);
    conn.add_socket(&server);
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let conn2 = conn.clone();
    std::thread::Builder::new()
        .name("s3-proxy-down".into())
        .spawn(move || {
            pump(s2, c2, &conn2.server);
            conn2.pump_done();
        })
        .unwrap();
    pump(client, server, &conn.client);
    conn.pump_done();
}

/// Copies `from` to `to`, recording; passes a half-close on.
fn pump(mut from: TcpStream, mut to: TcpStream, record: &Mutex<Vec<u8>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                record.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Ports the proxy has in use (also while refusing), so another S3 of this process
/// never picks one up.
static RESERVED: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Binds the proxy on a port outside the kernel's ephemeral range, so that while it is
/// closed (refusing) no outgoing connection or port-0 listener can be handed that port and
/// block listening again.
fn bind_proxy_port() -> (TcpListener, u16) {
    let (lo, hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    let (from, to) = if lo >= 12000 {
        (10000, lo)
    } else if hi <= 64000 {
        (hi + 1, 65536)
    } else {
        (0, 0)
    };
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        ^ ((std::process::id() as u64) << 32);
    if to > from {
        for _ in 0..1000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let port = (from + ((seed >> 33) as u32) % (to - from)) as u16;
            let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
            if reserved.contains(&port) {
                continue;
            }
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                reserved.push(port);
                l.set_nonblocking(true).unwrap();
                return (l, port);
            }
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    RESERVED.lock().unwrap_or_else(|e| e.into_inner()).push(port);
    l.set_nonblocking(true).unwrap();
    (l, port)
}

// ---------------------------------------------------------------------------------------
// Minimal HTTP/1.1, for talking to moto directly and for reading the proxy's log

/// (status, headers, body) of a response.
type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// One request on a fresh connection; returns (status, headers, body).
fn http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Response> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    // moto checks no signature, but answers object GETs without one with 403.
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/{REGION}/s3/aws4_request, \
         SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = |m: &str| std::io::Error::new(ErrorKind::InvalidData, format!("{m}: {:?}", String::from_utf8_lossy(&raw)));
    let end = find(&raw, b"\r\n\r\n").ok_or_else(|| bad("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status"))?;
    let hdrs: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let get = |n: &str| hdrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let rest = &raw[end + 4..];
    let body = if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        dechunk(rest).0
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if method == "HEAD" { Vec::new() } else { rest.get(..n).ok_or_else(|| bad("body shorter than Content-Length"))?.to_vec() }
    } else {
        rest.to_vec()
    };
    Ok((status, hdrs, body))
}

/// Parses consecutive HTTP/1 requests from one connection's client bytes.
fn parse_requests(bytes: &[u8], connection: usize, out: &mut Vec<Request>) {
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(end) = find(&bytes[pos..], b"\r\n\r\n") else { return };
        let head = String::from_utf8_lossy(&bytes[pos..pos + end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_string();
        let target = first.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> =
            lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
        let mut req = Request { method, target, headers, body: Vec::new(), complete: true, connection };
        let rest = &bytes[pos + end + 4..];
        let used = if req.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            let (body, used, complete) = dechunk(rest);
            req.body = body;
            req.complete = complete;
            used
        } else {
            let n = req.header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            let n_have = n.min(rest.len());
            req.body = rest[..n_have].to_vec();
            req.complete = n_have == n;
            n_have
        };
        let complete = req.complete;
        out.push(req);
        if !complete {
            return;
        }
        pos += end + 4 + used;
    }
}

/// Removes chunked framing; returns (body, bytes consumed, complete).
fn dechunk(mut b: &[u8]) -> (Vec<u8>, usize, bool) {
    let total = b.len();
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(b, b"\r\n") else { return (body, total, false) };
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16) else {
            return (body, total, false);
        };
        b = &b[eol + 2..];
        if size == 0 {
            // Trailers (if any) end with an empty line.
            let done = total - b.len();
            if b.starts_with(b"\r\n") {
                return (body, done + 2, true);
            }
            return match find(b, b"\r\n\r\n") {
                Some(t) => (body, done + t + 4, true),
                None => (body, total, false),
            };
        }
        if b.len() < size + 2 {
            body.extend_from_slice(&b[..size.min(b.len())]);
            return (body, total, false);
        }
        body.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..start + len].to_string())
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    // glibc's memmem: fast even in an unoptimised test build, on megabytes of log.
    let p = unsafe {
        libc::memmem(hay.as_ptr() as *const libc::c_void, hay.len(), needle.as_ptr() as *const libc::c_void, needle.len())
    };
    if p.is_null() { None } else { Some(p as usize - hay.as_ptr() as usize) }
}

/// Percent-encodes all but the RFC 3986 unreserved characters (and `/` if `keep_slash`),
/// upper-case hex, as S3 (SigV4) wants keys encoded.
pub fn percent_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut s = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------
// Canaries

/// Ways a canary string can appear in bytes on the wire, as (label, bytes), without
/// duplicates: raw; hex (lower, upper); base64 and base64url whole (padded and not) and,
/// for each alignment k in 0..3 of the canary inside a longer encoded string, only the
/// characters that the canary's bytes alone determine; UTF-16LE and UTF-16BE; and
/// percent-encoded (upper- and lower-case hex, and form style with `+` for space).
/// Panics for canaries under 8 bytes (their encoded fragments would match by chance).
pub fn canary_forms(canary: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let raw = canary.as_bytes();
    assert!(raw.len() >= 8, "canary {canary:?} is too short: use at least 8 bytes, better 12 or more");
    let n = raw.len();
    let mut forms: Vec<(String, Vec<u8>)> = vec![
        ("raw".into(), raw.to_vec()),
        ("hex".into(), hex::encode(raw).into_bytes()),
        ("HEX".into(), hex::encode_upper(raw).into_bytes()),
        ("base64".into(), STANDARD.encode(raw).into_bytes()),
        ("base64 unpadded".into(), STANDARD_NO_PAD.encode(raw).into_bytes()),
        ("base64url".into(), URL_SAFE.encode(raw).into_bytes()),
        ("base64url unpadded".into(), URL_SAFE_NO_PAD.encode(raw).into_bytes()),
    ];
    for (name, engine) in [("base64", &STANDARD_NO_PAD), ("base64url", &URL_SAFE_NO_PAD)] {
        for k in 0..3 {
            // Output character i carries input bits [6i, 6i+6); the canary has bits
            // [8k, 8k+8n). Keep the characters made of canary bits only.
            let mut input = vec![0u8; k];
            input.extend_from_slice(raw);
            let enc = engine.encode(&input).into_bytes();
            let (from, to) = ((8 * k).div_ceil(6), 8 * (k + n) / 6);
            forms.push((format!("{name} at offset {k} mod 3"), enc[from..to].to_vec()));
        }
    }
    let utf16: Vec<u16> = canary.encode_utf16().collect();
    forms.push(("UTF-16LE".into(), utf16.iter().flat_map(|u| u.to_le_bytes()).collect()));
    forms.push(("UTF-16BE".into(), utf16.iter().flat_map(|u| u.to_be_bytes()).collect()));
    let pct = percent_encode(raw, false);
    forms.push(("percent-encoded".into(), pct.clone().into_bytes()));
    forms.push(("percent-encoded, lower-case hex".into(), lower_hex_escapes(&pct).into_bytes()));
    forms.push(("form-encoded".into(), pct.replace("%20", "+").into_bytes()));
    let mut seen: Vec<Vec<u8>> = Vec::new();
    forms.retain(|(_, b)| {
        if seen.contains(b) {
            false
        } else {
            seen.push(b.clone());
            true
        }
    });
    forms
}

fn lower_hex_escapes(pct: &str) -> String {
    let mut out = String::new();
    let mut chars = pct.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            out.extend(chars.by_ref().take(2).map(|h| h.to_ascii_lowercase()));
        }
    }
    out
}

/// The first canary found in `haystack`, in any of its [`canary_forms`]:
/// (canary, form label, byte offset).
pub fn find_canary(haystack: &[u8], canaries: &[&str]) -> Option<(String, String, usize)> {
    for c in canaries {
        for (label, bytes) in canary_forms(c) {
            if let Some(off) = find(haystack, &bytes) {
                return Some((c.to_string(), label, off));
            }
        }
    }
    None
}

/// Panics if any canary appears in `haystack` in any of its [`canary_forms`], naming the
/// canary, the form, the byte offset, and showing the bytes around it.
pub fn assert_no_canary(what: &str, haystack: &[u8], canaries: &[&str]) {
    if let Some((canary, label, off)) = find_canary(haystack, canaries) {
        let len = canary_forms(&canary).into_iter().find(|(l, _)| *l == label).map(|(_, b)| b.len()).unwrap_or(0);
        let from = off.saturating_sub(60);
        let to = (off + len + 60).min(haystack.len());
        panic!(
            "{what}: canary {canary:?} found as {label} at byte {off} of {}: ...{}[[{}]]{}...",
            haystack.len(),
            haystack[from..off].escape_ascii(),
            haystack[off..off + len].escape_ascii(),
            haystack[off + len..to].escape_ascii(),
        );
    }
}
