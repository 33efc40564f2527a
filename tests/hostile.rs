//! Attacks from a hostile device on the LAN against a real `homehub serve` (issue 12), each
//! with a camsim camera recording throughout. The attacker speaks raw MQTT and raw HTTP
//! over TLS from loopback addresses other than 127.0.0.1, so the per-address caps do not
//! touch the test's own checks, which come from 127.0.0.1. Every test prints its figures on
//! `hostile:` lines before it asserts the bound.
//!
//! Sign-in attacks (long emails, concurrent wrong passwords, /metrics) are in tests/signin.rs.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::raw::{self, Connack, Connect, Will};
use common::*;

/// Segment length of the recording camera; a new segment file every `SEG` seconds.
const SEG: u64 = 2;
/// The longest a recording may go without a new segment file and still be "on schedule":
/// a segment is cut at the first keyframe after `SEG` (GOP 2 s), so 2 × SEG is normal.
const GAP_MAX: Duration = Duration::from_secs(4 * SEG);
const MIB_KB: u64 = 1024;
const CODE: &str = "24681357";
const JUNK: usize = 100 * 1024;
const TIMEOUT: Duration = Duration::from_secs(3);

/// A hub recording one camsim camera (continuous, short segments), and a watch on it.
struct Scene {
    watch: Watch,
    hub: Hub,
    _cam: Cam,
    _tmp: tempfile::TempDir,
}

fn scene(launch: Option<&Launch>) -> Scene {
    raise_own_nofile();
    let tmp = tempfile::tempdir().unwrap();
    let cam = camsim(&[]);
    let extra = format!("[recording]\nmode = \"continuous\"\nsegment_seconds = {SEG}\n{}", cameras_toml(&[cam.port]));
    let hub = match launch {
        Some(l) => Hub::start_with(tmp.path(), &extra, l),
        None => Hub::start(tmp.path(), &extra),
    };
    let watch = Watch::start(hub.pid(), hub.dir.join("recordings"));
    // Recording is under way before any attack: two segments cut.
    let t = Instant::now();
    wait_until("two segments before the attack", Duration::from_secs(30), || watch.segments_since(t) >= 3);
    Scene { watch, hub, _cam: cam, _tmp: tmp }
}

/// Waits for three more segments after the attack, then checks the recording never went
/// longer than [`GAP_MAX`] without a new segment from `from` to now.
fn recording_kept_on_schedule(s: &Scene, from: Instant, what: &str) {
    let after = Instant::now();
    let more = poll(GAP_MAX * 3 + Duration::from_secs(5), || (s.watch.segments_since(after) >= 3).then_some(()));
    let (gap, n) = s.watch.longest_gap(from, Instant::now());
    eprintln!(
        "hostile: {what}: recording: {n} new segments in {:.0?} from the attack's start, longest gap {gap:.1?} \
         (bound {GAP_MAX:?}); 3 more after it: {}",
        from.elapsed(),
        more.is_some()
    );
    assert!(more.is_some(), "{what}: recording stopped after the attack; log tail:\n{}", tail(&s.hub));
    assert!(gap <= GAP_MAX, "{what}: {gap:?} without a new segment (bound {GAP_MAX:?})");
}

fn tail(hub: &Hub) -> String {
    let log = hub.log_text();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn rss(pid: i32) -> u64 {
    proc_status_kb(pid, "VmRSS").expect("hub's VmRSS")
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Runs `n` jobs on `threads` threads (job `i` on thread `i % threads`, so a thread keeps
/// to one source address when the job picks it by `i % threads`); counts the outcomes.
fn run_jobs(threads: usize, n: usize, job: impl Fn(usize) -> String + Sync) -> BTreeMap<String, usize> {
    let mut all = BTreeMap::new();
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let job = &job;
                sc.spawn(move || (t..n).step_by(threads).map(job).collect::<Vec<_>>())
            })
            .collect();
        for h in hs {
            for o in h.join().unwrap() {
                *all.entry(o).or_insert(0) += 1;
            }
        }
    });
    all
}

fn connack_label(c: Connack) -> String {
    match c {
        Connack::Code(c) => format!("connack {c}"),
        Connack::Closed => "closed before connack".into(),
    }
}

/// Credentials printed by `homehub device add`.
fn creds(out: &str) -> (String, String) {
    let get = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim().to_string();
    (get("username:"), get("password:"))
}

#[test]
fn retained_junk_from_pair_logins_and_a_paired_device_stays_bounded() {
    let s = scene(None);
    let hub = &s.hub;
    // The device's credentials; the attack runs without them if `device add` fails (the
    // test fails at the end, after the figures).
    let (ok, out, add_err) = hub.admin(&["device", "add", "dev-j"]);
    let (user, pass) = if ok { creds(&out) } else { ("dev-j".to_string(), String::new()) };
    let pid = hub.pid();
    let plain = raw::v4("127.0.0.1", hub.mqtt_plain);
    let (base, hwm0) = (rss(pid), proc_status_kb(pid, "VmHWM").unwrap());
    s.watch.reset_peaks();
    let t0 = Instant::now();
    let junk = vec![b'j'; JUNK];

    // 300 `pair` logins, each publishing a retained 100 KiB message to its request topic.
    let pair = run_jobs(8, 300, |i| {
        let src = raw::attacker(0, i % 8, 1);
        let Ok(mut c) = raw::connect_from(src, plain, TIMEOUT) else { return "tcp refused".into() };
        let id = format!("junk-{i}");
        match raw::connect(&mut c, &Connect::login(&id, "pair", "pair", 30)) {
            Connack::Code(0) => {}
            other => return connack_label(other),
        }
        let r = raw::publish(&mut c, &format!("homehub/pair/{id}/request"), &junk, 1, true, 1);
        let _ = std::io::Write::write_all(&mut c, &raw::DISCONNECT);
        match r {
            Ok(true) => "accepted, puback".into(),
            Ok(false) => "accepted, closed at publish".into(),
            Err(e) => format!("accepted, publish failed: {:?}", e.kind()),
        }
    });
    // 100 more with a retained 60 KiB will (a will's length is 16 bits), dropped without
    // DISCONNECT so the will fires.
    let wills = run_jobs(8, 100, |i| {
        let src = raw::attacker(0, 8 + i % 8, 1);
        let Ok(mut c) = raw::connect_from(src, plain, TIMEOUT) else { return "tcp refused".into() };
        let id = format!("will-{i}");
        let topic = format!("homehub/pair/{id}/request");
        let mut login = Connect::login(&id, "pair", "pair", 30);
        login.will = Some(Will { topic: &topic, payload: &junk[..60 * 1024], qos: 0, retain: true });
        connack_label(raw::connect(&mut c, &login))
    });
    // 300 paired-device publishes of retained junk to unique subtopics (and its own state
    // leaf, oversized), over 30 connections.
    let device = run_jobs(3, 30, |k| {
        if !ok {
            return "no credentials".into();
        }
        let src = raw::attacker(0, 16 + k % 3, 1);
        let Ok(mut c) = raw::connect_from(src, plain, TIMEOUT) else { return "tcp refused".into() };
        let id = format!("dev-j-{k}");
        match raw::connect(&mut c, &Connect::login(&id, &user, &pass, 30)) {
            Connack::Code(0) => {}
            other => return connack_label(other),
        }
        let mut acked = 0;
        for j in 0..10 {
            let n = k * 10 + j;
            let topic = if n == 0 { "homehub/dev/dev-j/state".to_string() } else { format!("homehub/dev/dev-j/junk/{n}") };
            if let Ok(true) = raw::publish(&mut c, &topic, &junk, 1, true, 1 + j as u16) {
                acked += 1;
            }
        }
        let _ = std::io::Write::write_all(&mut c, &raw::DISCONNECT);
        format!("{acked} of 10 acked")
    });
    let attack = t0.elapsed();
    let after = rss(pid);
    let w = s.watch.get();
    let hwm1 = proc_status_kb(pid, "VmHWM").unwrap();
    let peak = if hwm1 > hwm0 { hwm1.max(w.peak_rss_kb) } else { w.peak_rss_kb };

    // A fresh subscriber with the device's own credentials: every retained leaf it gets.
    let mut c = raw::connect_from(Ipv4Addr::LOCALHOST, plain, TIMEOUT).unwrap();
    let check = raw::connect(&mut c, &Connect::login("dev-j-check", &user, &pass, 30));
    let _ = std::io::Write::write_all(&mut c, &raw::subscribe_bytes(&[("homehub/dev/dev-j/#", 0)], 7));
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut retained: Vec<(String, usize)> = Vec::new();
    let mut suback = false;
    // Until 2 s pass without a packet: retained messages come at once after the SUBACK.
    while let Ok(p) = raw::read_packet(&mut c) {
        if p.kind() == 9 {
            suback = true;
        }
        if let Some((topic, payload, true)) = p.publish() {
            retained.push((topic, payload.len()));
        }
    }
    let retained_bytes: usize = retained.iter().map(|r| r.1).sum();
    let mut leaves: Vec<&str> = retained.iter().map(|r| r.0.as_str()).take(5).collect();
    leaves.sort();

    eprintln!("hostile: retained: 300 pair logins with a retained 100 KiB publish: {pair:?}");
    eprintln!("hostile: retained: 100 pair logins with a retained 60 KiB will: {wills:?}");
    eprintln!("hostile: retained: device dev-j, 30 logins × 10 retained 100 KiB publishes: {device:?}");
    eprintln!(
        "hostile: retained: attack took {attack:.1?}; hub RSS {:.1} MB before, peak +{:.1} MB, after +{:.1} MB \
         (VmHWM {:.1} → {:.1} MB); bound +32 MB",
        mb(base),
        mb(peak.saturating_sub(base)),
        mb(after.saturating_sub(base)),
        mb(hwm0),
        mb(hwm1)
    );
    eprintln!(
        "hostile: retained: a fresh subscriber to homehub/dev/dev-j/# got {} retained messages ({retained_bytes} bytes), \
         first: {leaves:?}; bound 3 leaves of ≤ 4 KiB",
        retained.len()
    );

    assert!(ok, "homehub device add: {add_err}");
    assert!(check == Connack::Code(0) && suback, "the device's own subscription was answered ({check:?})");
    assert!(s.hub.log_text().lines().all(|l| !l.contains("GLib-ERROR")), "GLib abort");
    let accepted: usize = pair.iter().filter(|(k, _)| k.starts_with("accepted")).map(|(_, v)| v).sum();
    assert!(accepted >= 250, "the attack reached the hub: {accepted} of 300 pair logins accepted");
    assert_eq!(device.get("10 of 10 acked"), Some(&30), "every device publish acknowledged: {device:?}");
    assert!(peak < base + 32 * MIB_KB, "hub RSS grew {:.1} MB at peak (bound 32)", mb(peak - base));
    assert!(after < base + 32 * MIB_KB, "hub RSS grew {:.1} MB and kept it (bound 32)", mb(after - base));
    let allowed = ["config", "state", "availability"].map(|l| format!("homehub/dev/dev-j/{l}"));
    assert!(retained.len() <= 3, "{} retained messages for one device (at most its 3 leaves)", retained.len());
    for (topic, len) in &retained {
        assert!(allowed.contains(topic), "retained junk on {topic}");
        assert!(*len <= 4096, "{len} bytes retained on {topic}");
    }
    recording_kept_on_schedule(&s, t0, "retained");
}

#[test]
fn two_thousand_unique_pair_client_ids_do_not_accumulate() {
    let s = scene(None);
    let pid = s.hub.pid();
    let plain = raw::v4("127.0.0.1", s.hub.mqtt_plain);
    let (base, hwm0) = (rss(pid), proc_status_kb(pid, "VmHWM").unwrap());
    s.watch.reset_peaks();
    let t0 = Instant::now();
    // One after another, over 8 source addresses in turn (so no address ever has more than
    // the one session the hub may still be closing).
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..2000 {
        let src = raw::attacker(0, i % 8, 1);
        let o = match raw::connect_from(src, plain, TIMEOUT) {
            Err(e) => format!("tcp: {:?}", e.kind()),
            Ok(mut c) => {
                let id = format!("u{i:05}-{:08x}", rand::random::<u32>());
                match raw::connect(&mut c, &Connect::login(&id, "pair", "pair", 30)) {
                    Connack::Code(0) => {
                        let sub = raw::subscribe(&mut c, &[(&format!("homehub/pair/{id}/response"), 1)], 1);
                        let _ = std::io::Write::write_all(&mut c, &raw::DISCONNECT);
                        match sub {
                            Ok(Some(codes)) => format!("accepted, suback {codes:?}"),
                            _ => "accepted, no suback".into(),
                        }
                    }
                    other => connack_label(other),
                }
            }
        };
        *outcomes.entry(o).or_insert(0) += 1;
    }
    let took = t0.elapsed();
    let after = rss(pid);
    let w = s.watch.get();
    let hwm1 = proc_status_kb(pid, "VmHWM").unwrap();
    let peak = if hwm1 > hwm0 { hwm1.max(w.peak_rss_kb) } else { w.peak_rss_kb };
    eprintln!("hostile: client ids: 2000 pair logins with unique client ids in {took:.1?}: {outcomes:?}");
    eprintln!(
        "hostile: client ids: hub RSS {:.1} MB before, peak +{:.1} MB, after +{:.1} MB (VmHWM {:.1} → {:.1} MB); bound +16 MB",
        mb(base),
        mb(peak.saturating_sub(base)),
        mb(after.saturating_sub(base)),
        mb(hwm0),
        mb(hwm1)
    );
    let accepted: usize = outcomes.iter().filter(|(k, _)| k.starts_with("accepted")).map(|(_, v)| v).sum();
    assert!(accepted >= 1900, "the logins reached the hub: {accepted} of 2000 accepted");
    assert!(peak < base + 16 * MIB_KB, "hub RSS grew {:.1} MB at peak (bound 16)", mb(peak - base));
    assert!(after < base + 16 * MIB_KB, "hub RSS grew {:.1} MB and kept it (bound 16)", mb(after - base));
    recording_kept_on_schedule(&s, t0, "client ids");
}

/// Idle `pair` sessions with keepalive 0, held open by the attacker.
fn idle_pair_sessions(plain: SocketAddrV4, n: usize, deadline: Instant) -> (BTreeMap<String, usize>, Vec<TcpStream>) {
    let mut held = Vec::new();
    let mut out = BTreeMap::new();
    for i in 0..n {
        let o = if Instant::now() > deadline {
            "not tried (deadline)".to_string()
        } else {
            // Four a source address: 127.1.0.2 … 127.1.0.151.
            match raw::connect_from(raw::attacker(1, i, 4), plain, Duration::from_secs(2)) {
                Err(e) => format!("tcp: {:?}", e.kind()),
                Ok(mut c) => {
                    let id = format!("idle-{i}");
                    let o = connack_label(raw::connect(&mut c, &Connect::login(&id, "pair", "pair", 0)));
                    held.push(c);
                    o
                }
            }
        };
        *out.entry(o).or_insert(0) += 1;
    }
    (out, held)
}

/// TLS connections to the web port sending `POST /api/session` headers a byte a second
/// until `stop`; (how they went, how many were still open at 5, 15, 30 s).
fn trickled_requests(
    web: SocketAddrV4,
    fp: [u8; 32],
    n: usize,
    stop: &AtomicBool,
) -> (BTreeMap<String, usize>, Vec<(u64, usize)>) {
    let head = b"POST /api/session HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
                 content-length: 64\r\n\r\n{\"email\":\"owner@example.com\",\"password\":\"x\"}";
    let mut out = BTreeMap::new();
    let mut conns = Vec::new();
    for i in 0..n {
        // Thirty a source address: 127.2.0.2 … 127.2.0.11.
        let r = raw::connect_from(raw::attacker(2, i, 30), web, Duration::from_secs(2)).and_then(|t| raw::tls(t, fp));
        match r {
            Ok(c) => conns.push(Some(c)),
            Err(e) => *out.entry(format!("tls: {:?}", e.kind())).or_insert(0) += 1,
        }
    }
    *out.entry("opened".into()).or_insert(0) += conns.len();
    let t0 = Instant::now();
    let mut alive_at = Vec::new();
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        for c in conns.iter_mut() {
            if let Some(s) = c {
                use std::io::Write;
                let b = &head[sent % head.len()..sent % head.len() + 1];
                if s.write_all(b).and_then(|_| s.flush()).is_err() {
                    *c = None;
                }
            }
        }
        sent += 1;
        let alive = conns.iter().filter(|c| c.is_some()).count();
        let secs = t0.elapsed().as_secs();
        if [5, 15, 30].contains(&secs) && !alive_at.iter().any(|(s, _)| *s == secs) {
            alive_at.push((secs, alive));
        }
        // The trickle: one byte a second on every connection.
        std::thread::sleep(Duration::from_secs(1));
    }
    *out.entry("closed by the hub".into()).or_insert(0) += conns.iter().filter(|c| c.is_none()).count();
    (out, alive_at)
}

#[test]
fn idle_pair_sessions_and_trickled_requests_under_1024_descriptors_leave_recording_alone() {
    let launch = Launch { prefix: &["prlimit", "--nofile=1024:1024"], host: "127.0.0.1" };
    let mut s = scene(Some(&launch));
    let pid = s.hub.pid();
    let limit = 1024u64;
    let slots = limit - homehub::limits::RESERVE;
    let base_fds = proc_fds(pid).unwrap();
    s.watch.reset_peaks();
    let plain = raw::v4("127.0.0.1", s.hub.mqtt_plain);
    let web = raw::v4("127.0.0.1", s.hub.port);
    let fp = s.hub.fingerprint_bytes();
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let mut health: BTreeMap<u16, usize> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    let hub = &s.hub;
    let ((pairs, held), (web_out, alive_at), w) = std::thread::scope(|sc| {
        let pair = sc.spawn(|| idle_pair_sessions(plain, 600, t0 + Duration::from_secs(90)));
        let trickle = sc.spawn(|| trickled_requests(web, fp, 300, &stop));
        // The owner's view from 127.0.0.1 while the attack holds: /healthz every 2 s for 35 s.
        while t0.elapsed() < Duration::from_secs(35) {
            let t = Instant::now();
            let (st, _, _) = hub.curl(&["--max-time", "5", &hub.url("/healthz")]);
            slowest = slowest.max(t.elapsed());
            *health.entry(st).or_insert(0) += 1;
            // Pacing of the owner's checks.
            std::thread::sleep(Duration::from_secs(2));
        }
        let w = s.watch.get();
        stop.store(true, Ordering::Relaxed);
        (pair.join().unwrap(), trickle.join().unwrap(), w)
    });
    let log = s.hub.log_text();
    let alive = s.hub.alive();
    let emfile = log.lines().filter(|l| l.contains("Too many open files")).count();
    let glib = log.lines().find(|l| l.contains("GLib-ERROR")).map(str::to_string);
    eprintln!("hostile: descriptors: 600 idle pair sessions (keepalive 0), 4 an address: {pairs:?}");
    eprintln!(
        "hostile: descriptors: 300 trickled POST /api/session over TLS, 30 an address: {web_out:?}; still open at (s, n): {alive_at:?}"
    );
    eprintln!("hostile: descriptors: /healthz from 127.0.0.1 during the attack: {health:?}, slowest {slowest:.2?}");
    eprintln!(
        "hostile: descriptors: limit {limit}, reserve {}, hub fds {base_fds} before, peak {} (clients +{}, slots {slots}); \
         free at peak {}",
        homehub::limits::RESERVE,
        w.peak_fds,
        w.peak_fds.saturating_sub(base_fds),
        limit.saturating_sub(w.peak_fds)
    );
    eprintln!("hostile: descriptors: hub alive {alive}; log lines with EMFILE {emfile}; GLib abort: {glib:?}");
    assert!(alive && w.gone.is_none(), "the hub died under the attack; log tail:\n{}", tail(&s.hub));
    assert!(glib.is_none(), "GLib aborted: {glib:?}");
    assert_eq!(health.keys().collect::<Vec<_>>(), [&200], "/healthz during the attack: {health:?}");
    assert!(w.peak_fds < limit, "descriptors reached the limit: {}", w.peak_fds);
    assert!(
        w.peak_fds - base_fds <= slots,
        "clients took {} descriptors, beyond the {slots} slots: the reserve was eaten into",
        w.peak_fds - base_fds
    );
    recording_kept_on_schedule(&s, t0, "descriptors");
    drop(held);
}

/// The pending requests the owner sees, or what the API answered instead.
fn pending(hub: &Hub, cookie: &str) -> Result<Vec<serde_json::Value>, String> {
    let (st, _, body) = hub.get("/api/pairing", Some(cookie));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match v["items"].as_array() {
        Some(items) if st == 200 => Ok(items.clone()),
        _ => Err(format!("{st} {}", String::from_utf8_lossy(&body))),
    }
}

/// The database's logical size (pages, WAL included, as a reader sees it) and its files' bytes.
fn db_size(hub: &Hub) -> (u64, u64) {
    let db = hub.db();
    let pages: u64 = db.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    let size: u64 = db.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    let files =
        ["homehub.db", "homehub.db-wal"].iter().map(|f| std::fs::metadata(hub.dir.join(f)).map(|m| m.len()).unwrap_or(0)).sum();
    (pages * size, files)
}

/// A v2 pairing request (SPEC) for `device_id`, with a genuine SPAKE2 A message.
fn v2_request(device_id: &str, fingerprint: &str) -> Vec<u8> {
    use base64::Engine;
    use spake2::{Ed25519Group, Identity, Password, Spake2};
    let code = format!("{:08}", rand::random::<u32>() % 100_000_000);
    let (_, pake) = Spake2::<Ed25519Group>::start_a(
        &Password::new(code.as_bytes()),
        &Identity::new(device_id.as_bytes()),
        &Identity::new(format!("homehub:{fingerprint}").as_bytes()),
    );
    serde_json::json!({
        "v": 2, "device_id": device_id, "kind": "camera", "model": "flood", "firmware": "1",
        "pake": base64::engine::general_purpose::STANDARD.encode(pake),
    })
    .to_string()
    .into_bytes()
}

#[test]
fn a_flood_of_pairing_requests_stays_bounded_and_a_real_camera_still_pairs() {
    let s = scene(None);
    let hub = &s.hub;
    let cookie = hub.session("owner");
    let plain = raw::v4("127.0.0.1", hub.mqtt_plain);
    let (db0, files0) = db_size(hub);
    let t0 = Instant::now();
    // 1 000 requests from 8 addresses (127.3.0.2 … 127.3.0.9), each its own session and a
    // random device id; each address keeps its last four sessions open (their requests stay
    // pending: nothing expires them early).
    let held = std::sync::Mutex::new(Vec::new());
    let flood = run_jobs(8, 1000, |i| {
        let src = raw::attacker(3, i % 8, 1);
        let Ok(mut c) = raw::connect_from(src, plain, TIMEOUT) else { return "tcp refused".into() };
        let id = format!("flood-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let o = match raw::connect(&mut c, &Connect::login(&id, "pair", "pair", 120)) {
            Connack::Code(0) => {
                match raw::publish(&mut c, &format!("homehub/pair/{id}/request"), &v2_request(&id, &hub.fingerprint), 1, false, 1)
                {
                    Ok(true) => "requested".to_string(),
                    Ok(false) => "closed at publish".into(),
                    Err(e) => format!("publish: {:?}", e.kind()),
                }
            }
            other => return connack_label(other),
        };
        let mut h = held.lock().unwrap();
        h.push((i % 8, c));
        // Keep three an address open; the fourth slot is the next session's.
        let mine: Vec<usize> = h.iter().enumerate().filter(|(_, (a, _))| *a == i % 8).map(|(k, _)| k).collect();
        if mine.len() > 3 {
            let (_, mut old) = h.remove(mine[0]);
            let _ = std::io::Write::write_all(&mut old, &raw::DISCONNECT);
        }
        o
    });
    let took = t0.elapsed();
    let listed = pending(hub, &cookie);
    let (db1, files1) = db_size(hub);
    let audit_rows: i64 = hub.db().query_row("SELECT count(*) FROM audit", [], |r| r.get(0)).unwrap_or(-1);
    eprintln!("hostile: flood: 1000 v2 pairing requests from 8 addresses in {took:.1?}: {flood:?}");
    eprintln!(
        "hostile: flood: pending list {:?} entries (bound 32); database {:.1} → {:.1} KiB logical (+{:.1}), files {:.1} → {:.1} KiB; \
         audit rows {audit_rows}",
        listed.as_ref().map(|l| l.len()),
        db0 as f64 / 1024.0,
        db1 as f64 / 1024.0,
        (db1.saturating_sub(db0)) as f64 / 1024.0,
        files0 as f64 / 1024.0,
        files1 as f64 / 1024.0
    );

    // A real camera from 127.0.0.1 asks while the attacker's sessions are still open.
    let hub_addr = format!("127.0.0.1:{}", hub.mqtt_tls);
    let (_real, lines) = camsim_lines(&[
        "--pair",
        "--hub",
        &hub_addr,
        "--hub-fp",
        &hub.fingerprint,
        "--device-id",
        "cam-real",
        "--setup-code",
        CODE,
        "--name",
        "Real",
    ]);
    let t_ask = Instant::now();
    let got = poll(Duration::from_secs(20), || pending(hub, &cookie).ok()?.into_iter().find(|p| p["device_id"] == "cam-real"));
    eprintln!("hostile: flood: the real camera's request listed after {:.1?}: {got:?}", t_ask.elapsed());
    let (st, body) = if got.is_some() {
        hub.send_json("POST", "/api/pairing/cam-real", &cookie, &serde_json::json!({ "setup_code": CODE }))
    } else {
        (0, serde_json::Value::Null)
    };
    eprintln!("hostile: flood: owner types the code: {st} {body}");
    let requested = flood.get("requested").copied().unwrap_or(0);
    assert!(requested >= 100, "the flood reached the hub: {requested} requests acknowledged");
    let listed = listed.expect("GET /api/pairing");
    assert!(listed.len() <= 32, "{} pending requests listed (bound 32)", listed.len());
    assert!(db1 < db0 + 1024 * 1024, "the database grew {} bytes (bound 1 MiB)", db1 - db0);
    assert!(got.is_some(), "the real camera's request never showed: {:?}", pending(hub, &cookie).map(|l| l.len()));
    assert_eq!(st, 200, "{body}");
    wait_line(&lines, "camsim paired cam-real", Duration::from_secs(15));
    let devices = hub.get_json("/api/devices", &cookie);
    assert!(devices["items"].as_array().unwrap().iter().any(|d| d["id"] == "cam-real"), "{devices}");
    drop(held);
    recording_kept_on_schedule(&s, t0, "flood");
}

/// A network namespace with a veth pair to the host: the host end has a public-range
/// (TEST-NET-2, never routed) and a private address, the namespace end one of each too.
/// Made with `unshare -n` (a holder process) and entered with `setns`/`nsenter`, which
/// work on the host as root and inside `make test`'s own user+network namespace alike;
/// everything goes with the holder (and the link is deleted) on drop.
struct NetNs {
    holder: std::process::Child,
    link: String,
    public_host: Ipv4Addr,
    public_ns: Ipv4Addr,
    private_ns: Ipv4Addr,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if o.status.success() { Ok(()) } else { Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim())) }
}

impl NetNs {
    fn new() -> Result<NetNs, String> {
        let k = (std::process::id() % 60) as u8;
        let mut holder = Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        let pid = holder.id();
        let own = std::fs::read_link("/proc/self/ns/net").ok();
        let entered = poll(Duration::from_secs(5), || {
            if let Ok(Some(st)) = holder.try_wait() {
                return Some(Err(format!("unshare -n exited ({st})")));
            }
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
            (theirs.is_some() && theirs != own).then_some(Ok(()))
        });
        match entered {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(holder.stderr.as_mut().unwrap(), &mut err);
                return Err(format!("{e}: {}", err.trim()));
            }
            None => return Err("unshare -n did not make a namespace within 5 s".into()),
        }
        let ns = NetNs {
            holder,
            link: format!("hh{pid}h"),
            public_host: Ipv4Addr::new(198, 51, 100, 4 * k + 1),
            public_ns: Ipv4Addr::new(198, 51, 100, 4 * k + 2),
            private_ns: Ipv4Addr::new(10, 251, k, 2),
        };
        let peer = format!("hh{pid}n");
        ip(&["link", "add", &ns.link, "type", "veth", "peer", "name", &peer, "netns", &pid.to_string()])?;
        ip(&["addr", "add", &format!("{}/30", ns.public_host), "dev", &ns.link])?;
        ip(&["addr", "add", &format!("10.251.{k}.1/30"), "dev", &ns.link])?;
        ip(&["link", "set", &ns.link, "up"])?;
        let inside = format!(
            "ip link set lo up && ip addr add {}/30 dev {peer} && ip addr add {}/30 dev {peer} && ip link set {peer} up",
            ns.public_ns, ns.private_ns
        );
        let o = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "sh", "-c", &inside])
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!("nsenter: {}", String::from_utf8_lossy(&o.stderr)));
        }
        Ok(ns)
    }

    /// Runs `f` on a thread that has entered the namespace (sockets it makes live there).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/proc/{}/ns/net", self.holder.id());
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let fd = std::fs::File::open(&path).expect("the namespace's handle");
                // SAFETY: setns on this thread only, with a descriptor we hold open.
                let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    fn exec(&self, cmd: &[&str]) -> std::process::Output {
        Command::new("nsenter").args(["-t", &self.holder.id().to_string(), "-n"]).args(cmd).output().expect("nsenter")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.link]).output();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// How a login from `src` to `dst` ends (over TLS when `fp` is given).
fn mqtt_login_from(src: Ipv4Addr, dst: SocketAddrV4, fp: Option<[u8; 32]>) -> String {
    let tcp = match raw::connect_from(src, dst, TIMEOUT) {
        Ok(t) => t,
        Err(e) => return format!("tcp: {:?}", e.kind()),
    };
    let login = Connect::login("probe", "pair", "pair", 30);
    match fp {
        None => {
            let mut t = tcp;
            connack_label(raw::connect(&mut t, &login))
        }
        Some(fp) => match raw::tls(tcp, fp) {
            Err(e) => format!("tcp ok, tls closed ({:?})", e.kind()),
            Ok(mut s) => connack_label(raw::connect(&mut s, &login)),
        },
    }
}

fn web_from(src: Ipv4Addr, dst: SocketAddrV4, fp: [u8; 32]) -> String {
    match raw::connect_from(src, dst, TIMEOUT).and_then(|t| raw::tls(t, fp)) {
        Err(e) => format!("closed ({:?})", e.kind()),
        Ok(mut s) => match raw::http(&mut s, "GET", "/healthz", "") {
            Ok(st) => format!("http {st}"),
            Err(e) => format!("no answer ({:?})", e.kind()),
        },
    }
}

#[test]
fn mqtt_and_web_refuse_a_client_with_a_public_address() {
    // The tests run as root in a namespace of their own (packaging/in-netns.sh): a veth pair
    // can always be made there, so failing to is a failure, not a skip.
    let ns = NetNs::new().unwrap_or_else(|why| panic!("cannot make a network namespace with a veth pair: {why}"));
    let host = ns.public_host.to_string();
    let launch = Launch { prefix: &[], host: &host };
    let s = scene(Some(&launch));
    let fp = s.hub.fingerprint_bytes();
    let (plain, tls, web) = (raw::v4(&host, s.hub.mqtt_plain), raw::v4(&host, s.hub.mqtt_tls), raw::v4(&host, s.hub.port));
    let t0 = Instant::now();
    let (public, private) = ns.run(|| {
        let probe = |src| (mqtt_login_from(src, plain, None), mqtt_login_from(src, tls, Some(fp)), web_from(src, web, fp));
        (probe(ns.public_ns), probe(ns.private_ns))
    });
    let curl = ns.exec(&[
        "curl",
        "-k",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
        "--interface",
        &ns.public_ns.to_string(),
        &format!("https://{host}:{}/healthz", s.hub.port),
    ]);
    let curl = String::from_utf8_lossy(&curl.stdout).to_string();
    eprintln!(
        "hostile: netns: hub on {host}; from {} (public): plain MQTT {}, TLS MQTT {}, web {}; curl {curl}",
        ns.public_ns, public.0, public.1, public.2
    );
    eprintln!(
        "hostile: netns: from {} (private, the control): plain MQTT {}, TLS MQTT {}, web {}",
        ns.private_ns, private.0, private.1, private.2
    );
    assert_eq!(
        (private.0.as_str(), private.1.as_str(), private.2.as_str()),
        ("connack 0", "connack 0", "http 200"),
        "a private address in the namespace is served (the path works)"
    );
    for (what, got) in [("plain MQTT", &public.0), ("TLS MQTT", &public.1)] {
        assert!(!got.starts_with("tcp:"), "{what}: the public-range client did not even reach the listener: {got}");
        assert!(got != "connack 0", "{what} served a public-range client");
    }
    assert_eq!(public.2, "http 403", "the web answers a public-range client");
    assert_eq!(curl, "403", "curl from the public-range address");
    recording_kept_on_schedule(&s, t0, "netns");
}
