//! End-to-end tests against real processes: camsim RTSP servers, `homehub serve`, curl,
//! ffprobe. One test binary so cargo runs them in parallel threads.

mod common;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn camera_status(hub: &Hub, cookie: &str, id: i64) -> serde_json::Value {
    let cams = hub.get_json("/api/cameras", cookie);
    cams["items"].as_array().unwrap().iter().find(|c| c["id"] == id).cloned().expect("camera listed")
}

#[test]
fn the_door_is_locked_without_a_session_and_shut_to_other_sites() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "[recording]\nmode = \"off\"\n");
    hub.add_user(EMAIL, "owner", PASSWORD);
    for path in
        ["/", "/api/cameras", "/api/recordings", "/api/recordings/1/media", "/api/me", "/api/openapi.json", "/nope", "/api/nope"]
    {
        assert_eq!(hub.get(path, None).0, 401, "GET {path} without a session");
    }
    assert_eq!(hub.get("/api/cameras", Some("homehub_session=forged")).0, 401);
    let (st, _, body) = hub.get("/healthz", None);
    assert_eq!((st, body.as_slice()), (200, b"ok".as_slice()));
    let (st, cookie) = hub.login(EMAIL, "not the password");
    assert_eq!(st, 401);
    assert!(cookie.is_none(), "no cookie for a wrong password");
    assert_eq!(hub.login("nobody@example.com", PASSWORD).0, 401);
    let (st, cookie) = hub.login(EMAIL, PASSWORD);
    assert_eq!(st, 200);
    let (cookie, set_cookie) = cookie.expect("session cookie");
    for flag in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set_cookie.split(';').any(|p| p.trim() == flag), "cookie lacks {flag}: {set_cookie}");
    }
    assert!(cookie.len() > "homehub_session=".len() + 40);
    assert_eq!(hub.get("/", Some(&cookie)).0, 200);
    // CSRF: a form post, or a foreign origin, is refused even with a session.
    let (st, _, _) = hub.curl(&["-X", "DELETE", "-H", &format!("cookie: {cookie}"), &hub.url("/api/session")]);
    assert_eq!(st, 403);
    let (st, _, _) = hub.curl(&[
        "-X",
        "DELETE",
        "-H",
        &format!("cookie: {cookie}"),
        "-H",
        "content-type: application/json",
        "-H",
        "origin: https://evil.example",
        &hub.url("/api/session"),
    ]);
    assert_eq!(st, 403);
    // Sessions are stored hashed: the token is nowhere in the database file.
    let token = cookie.split_once('=').unwrap().1.to_string();
    let db_bytes =
        [std::fs::read(hub.dir.join("homehub.db")).unwrap(), std::fs::read(hub.dir.join("homehub.db-wal")).unwrap_or_default()]
            .concat();
    assert!(!db_bytes.windows(token.len()).any(|w| w == token.as_bytes()), "raw session token stored");
}

#[test]
fn records_two_cameras_behind_a_login_and_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let c1 = camsim(&[]);
    let c2 = camsim(&[]);
    let (p1, p2) = (c1.port, c2.port);
    let t0 = Instant::now();
    let mut hub = Hub::start(
        tmp.path(),
        &format!(
            "[recording]\nmode = \"continuous\"\nsegment_seconds = 10\n{}substream_url = \"rtsp://127.0.0.1:{p2}/sub\"\n",
            cameras_toml(&[p1, p2])
        ),
    );
    let cookie = hub.session("owner");

    // --- recording ---
    let cams = hub.get_json("/api/cameras", &cookie);
    let items = cams["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for c in items {
        assert_eq!(c["source"], "config");
        assert!(c["name"].as_str().unwrap().starts_with("Cam "));
        assert_eq!(c["decoder"], "avdec_h264", "software decoder on this machine: {c}");
    }
    let ids: Vec<i64> = items.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    wait_until("both cameras streaming", Duration::from_secs(20), || {
        ids.iter().all(|id| camera_status(&hub, &cookie, *id)["status"] == "streaming")
    });
    // Both decode at motion.fps (5): camera 0 its main stream, camera 1 its substream.
    wait_until("decoded frames counted", Duration::from_secs(10), || {
        ids.iter().all(|id| camera_status(&hub, &cookie, *id)["decoded_fps"].as_f64().unwrap() > 0.0)
    });
    // Pacing a measurement: the rate is counted over 2 s windows, and the first one may
    // hold the start; this lets a whole window pass.
    std::thread::sleep(Duration::from_secs(3));
    for id in &ids {
        let fps = camera_status(&hub, &cookie, *id)["decoded_fps"].as_f64().unwrap();
        assert!((3.5..=6.5).contains(&fps), "camera {id} decodes {fps} frames/s, expected about 5");
    }
    // Two closed segments per camera within 41 s of the cameras' start.
    let closed = |rows: &[Seg], id: i64| rows.iter().filter(|r| r.camera_id == id && !r.partial).count();
    let rows = poll(Duration::from_secs(41).saturating_sub(t0.elapsed()), || {
        let rows = hub.segments(&cookie);
        ids.iter().all(|id| closed(&rows, *id) >= 2).then_some(rows)
    })
    .unwrap_or_else(|| hub.segments(&cookie));
    for id in &ids {
        let closed: Vec<_> = rows.iter().filter(|r| r.camera_id == *id && !r.partial).collect();
        assert!(closed.len() >= 2, "camera {id}: {} closed segments after 40 s; log:\n{}", closed.len(), hub.log_text());
        for r in closed {
            let d = ffprobe_duration(&hub.dir.join(&r.path)).expect("ffprobe reads the segment");
            assert!((8.5..=11.5).contains(&d), "{}: {d} s is not within 15 % of 10 s", r.path);
            let db_d = (r.end_ms - r.start_ms) as f64 / 1000.0;
            assert!((db_d - d).abs() < 0.5, "{}: row says {db_d} s, ffprobe {d} s", r.path);
        }
    }
    // Rows match files; the only files without rows are the segments being written.
    let files: HashMap<String, u64> = segment_files(&hub.dir).into_iter().collect();
    for r in &rows {
        assert_eq!(files.get(&r.path), Some(&r.bytes), "row {} must match its file", r.path);
    }
    let unindexed: Vec<_> = files.keys().filter(|f| !rows.iter().any(|r| &r.path == *f)).collect();
    assert!(unindexed.len() <= 2, "files without rows: {unindexed:?}");

    // The API lists them, and serves them with ranges.
    let recs = hub.get_json(&format!("/api/recordings?camera={}", ids[0]), &cookie);
    let recs = recs["items"].as_array().unwrap();
    assert!(recs.len() >= 2);
    assert!(recs.iter().all(|r| r["camera_id"] == ids[0]));
    let url = recs[0]["url"].as_str().unwrap();
    let (st, head, body) = hub.curl(&["-H", &format!("cookie: {cookie}"), "-r", "0-99", &hub.url(url)]);
    assert_eq!(st, 206, "{head}");
    assert_eq!(body.len(), 100);
    assert!(head.to_ascii_lowercase().contains(&format!("content-range: bytes 0-99/{}", recs[0]["bytes"])));
    assert_eq!(&body[4..8], b"ftyp");
    assert_eq!(hub.get(url, None).0, 401);
    assert_eq!(hub.get("/api/recordings?since=yesterday", Some(&cookie)).0, 400);

    // doctor is content with a healthy hub, and notices a loosened database file.
    let doctor = |h: &Hub| Command::new(HUB).args(["doctor", "--config", h.config.to_str().unwrap()]).output().unwrap();
    let out = doctor(&hub);
    assert!(out.status.success(), "doctor findings: {}", String::from_utf8_lossy(&out.stdout));
    std::fs::set_permissions(hub.dir.join("homehub.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = doctor(&hub);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("homehub.db: mode 0644, should be 0600"));
    std::fs::set_permissions(hub.dir.join("homehub.db"), std::fs::Permissions::from_mode(0o600)).unwrap();

    // --- SIGKILL mid-segment ---
    let n_before = hub.segments(&cookie).len();
    wait_until("a new segment to close", Duration::from_secs(15), || hub.segments(&cookie).len() > n_before);
    // Pacing: the kill comes 5 s into the segments now being written.
    std::thread::sleep(Duration::from_secs(5));
    let indexed: HashSet<String> = hub.segments(&cookie).into_iter().map(|r| r.path).collect();
    let open: Vec<String> = segment_files(&hub.dir).into_iter().map(|f| f.0).filter(|f| !indexed.contains(f)).collect();
    assert!(!open.is_empty(), "segments were being written");
    hub.proc.as_mut().unwrap().kill9();
    hub.restart();
    // The database file itself, which no API shows: SQLite's own check.
    let ok: String = hub.db().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let rows = hub.segments(&cookie);
    for f in &open {
        let r = rows
            .iter()
            .find(|r| &r.path == f)
            .unwrap_or_else(|| panic!("partial segment {f} not indexed; log:\n{}", hub.log_text()));
        assert!(r.partial, "{f} is marked partial");
        let d = ffprobe_duration(&hub.dir.join(f)).expect("partial segment is readable");
        assert!(d >= 3.0, "{f}: partial segment holds {d} s, expected most of the 5 s before the kill");
        assert!(plays(&hub.dir.join(f)), "{f} decodes without errors");
    }
    let files: HashMap<String, u64> = segment_files(&hub.dir).into_iter().collect();
    for r in &rows {
        assert_eq!(files.get(&r.path), Some(&r.bytes), "row {} has its file", r.path);
    }

    // --- orderly stop finishes the open segments ---
    let st = hub.proc.as_mut().unwrap().term();
    assert!(st.success(), "hub exit status after SIGTERM: {st}");
    // The hub is stopped, and with it its API; starting it again would let recovery index
    // what the stop left, which is what is checked here. So the rows are read from the file.
    let rows: Vec<(String, u64)> = {
        let db = hub.db();
        let mut st = db.prepare("SELECT path, bytes FROM segments").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))).unwrap().map(|r| r.unwrap()).collect()
    };
    let files = segment_files(&hub.dir);
    assert_eq!(files.len(), rows.len(), "after an orderly stop every file has a row");
    for (f, len) in files {
        assert!(rows.iter().any(|r| r.0 == f && r.1 == len), "{f}");
    }
}

#[test]
fn a_camera_that_goes_away_shows_an_error_and_records_again_soon_after_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cam = camsim(&[]);
    let port = cam.port;
    let hub =
        Hub::start(tmp.path(), &format!("[recording]\nmode = \"continuous\"\nsegment_seconds = 10\n{}", cameras_toml(&[port])));
    hub.add_user(EMAIL, "owner", PASSWORD);
    let (_, cookie) = hub.login(EMAIL, PASSWORD);
    let cookie = cookie.unwrap().0;
    wait_until("streaming", Duration::from_secs(20), || camera_status(&hub, &cookie, 1)["status"] == "streaming");
    // Pacing: the camera records for 3 s (a few 1 s fragments) before it goes away.
    std::thread::sleep(Duration::from_secs(3));

    cam.kill9();
    let gone = Instant::now();
    wait_until("status error", Duration::from_secs(15), || camera_status(&hub, &cookie, 1)["status"] == "error");
    let s = camera_status(&hub, &cookie, 1);
    assert!(!s["reason"].as_str().unwrap_or("").is_empty(), "an error carries its reason: {s}");
    // It stays in error while the camera is away.
    while gone.elapsed() < Duration::from_secs(19) {
        assert_eq!(camera_status(&hub, &cookie, 1)["status"], "error");
        // Pacing: one look a second through the scripted 20 s outage.
        std::thread::sleep(Duration::from_secs(1));
    }
    // Pacing: the camera stays away 20 s.
    std::thread::sleep(Duration::from_secs(20).saturating_sub(gone.elapsed()));
    let before: HashSet<String> = segment_files(&hub.dir).into_iter().map(|f| f.0).collect();
    // It comes back where it was: on the port it reported before.
    let _cam = camsim_on(port, &[]);
    let back = Instant::now();
    wait_until("a new segment after the camera returned", Duration::from_secs(15), || {
        segment_files(&hub.dir).iter().any(|f| !before.contains(&f.0))
    });
    let took = back.elapsed();
    assert!(took <= Duration::from_secs(5), "recording resumed {took:?} after the camera was back");
    wait_until("streaming again", Duration::from_secs(5), || camera_status(&hub, &cookie, 1)["status"] == "streaming");
    // The segment cut short by the outage was indexed as partial and plays.
    let rows = hub.segments(&cookie);
    assert!(rows.iter().any(|r| r.partial), "the interrupted segment is indexed as partial; log:\n{}", hub.log_text());
    for r in rows.iter().filter(|r| r.partial) {
        assert!(plays(&hub.dir.join(&r.path)), "{} plays", r.path);
    }
}

#[test]
fn retention_with_a_tiny_disk_budget_removes_the_oldest_segments_and_rows() {
    let tmp = tempfile::tempdir().unwrap();
    // Constant motion keeps the bit rate near --bitrate (a still scene needs far less).
    let cam = camsim(&["--gop", "15", "--motion", "0-600"]);
    // 500 kbit/s × 3 s ≈ 190 kB a segment: 0.0005 GB keeps two or three.
    let budget = 500_000u64;
    let hub = Hub::start(
        tmp.path(),
        &format!("[recording]\nmode = \"continuous\"\nsegment_seconds = 3\nmax_disk_gb = 0.0005\n{}", cameras_toml(&[cam.port])),
    );
    let cookie = hub.session("owner");
    let mut seen: Vec<(String, i64)> = Vec::new();
    let _ = poll(Duration::from_secs(60), || {
        for r in hub.segments(&cookie) {
            if !seen.iter().any(|s| s.0 == r.path) {
                seen.push((r.path.clone(), r.start_ms));
            }
        }
        (seen.len() >= 8).then_some(())
    });
    assert!(seen.len() >= 8, "only {} segments were indexed in 60 s; log:\n{}", seen.len(), hub.log_text());
    // Retention runs after indexing: wait for it to bring the total within the budget.
    let total = |rows: &[Seg]| rows.iter().map(|r| r.bytes).sum::<u64>();
    let rows = poll(Duration::from_secs(10), || Some(hub.segments(&cookie)).filter(|rows| total(rows) <= budget))
        .unwrap_or_else(|| hub.segments(&cookie));
    let total = total(&rows);
    assert!(total <= budget, "{total} bytes kept, budget {budget}");
    assert!(!rows.is_empty() && rows.len() < seen.len());
    seen.sort_by_key(|s| s.1);
    let kept: HashSet<&String> = rows.iter().map(|r| &r.path).collect();
    // What went is the oldest, and went with its file.
    let oldest_kept = rows.iter().map(|r| r.start_ms).min().unwrap();
    for (path, start) in &seen {
        if !kept.contains(path) {
            assert!(*start < oldest_kept, "{path} was removed though newer than a kept segment");
            assert!(!hub.dir.join(path).exists(), "{path} row is gone but its file is not");
        }
    }
    // The crash protocol's garbage list, which no API shows, is empty again.
    let garbage: i64 = hub.db().query_row("SELECT COUNT(*) FROM garbage", [], |r| r.get(0)).unwrap();
    assert_eq!(garbage, 0);
}

#[test]
fn config_mistakes_stop_start_up_with_one_line_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("[recording]\nsegment_secs = 10\n", "recording.segment_secs"),
        ("[recording]\nsegment_seconds = \"ten\"\n", "recording.segment_seconds"),
        ("[web]\nlisten = \"everywhere\"\n", "web.listen"),
        ("[recording]\nmode = \"sometimes\"\n", "recording.mode"),
        ("[[camera]]\nname = \"Porch\"\nurl = \"http://192.0.2.1/\"\n", "camera[0].url"),
    ];
    for (text, key) in cases {
        let cfg = tmp.path().join("bad.toml");
        std::fs::write(&cfg, format!("data_dir = \"{}\"\n{text}", tmp.path().join("d").display())).unwrap();
        for cmd in [vec!["serve"], vec!["doctor"]] {
            let out = Command::new(HUB).args(&cmd).args(["--config", cfg.to_str().unwrap()]).output().unwrap();
            assert!(!out.status.success(), "{cmd:?} accepted {text:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.trim_end().lines().count(), 1, "one line, got: {err}");
            assert!(err.contains(&format!("`{key}`")), "{err} should name {key}");
            assert!(err.contains("bad.toml"), "{err} should name the file");
        }
    }
    let out = Command::new(HUB).args(["serve", "--config", "/nonexistent/homehub.toml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/homehub.toml"));
}

#[test]
fn two_hubs_cannot_share_a_data_dir_and_short_passwords_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "[recording]\nmode = \"off\"\n");
    // Same data dir, another port.
    let cfg2 = tmp.path().join("second.toml");
    std::fs::write(&cfg2, format!("data_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n", hub.dir.display())).unwrap();
    let out = Command::new(HUB).args(["serve", "--config", cfg2.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another homehub"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = Command::new(HUB)
        .args(["user", "add", "a@example.com", "--role", "owner", "--config", hub.config.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "short").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12"));

    // Files and folders are private.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&hub.dir), 0o700);
    assert_eq!(mode(&hub.dir.join("homehub.db")), 0o600);
    assert_eq!(mode(&hub.dir.join("tls")), 0o700);
    assert_eq!(mode(&hub.dir.join("tls/key.pem")), 0o600);
}

#[test]
fn a_stalled_stream_is_restarted_and_a_malformed_one_is_an_error_on_that_camera_only() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let cam = camsim(&[]);
    let port = cam.port;
    // A "camera" that answers RTSP with garbage.
    let junk = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let junk_port = junk.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in junk.incoming().flatten().take(200) {
            let mut conn = conn;
            let mut buf = [0u8; 512];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"RTSP/9.9 ???\r\n\xff\xfe\x00garbage: \x01\r\n\r\n\x00\x00\x00\x10junkjunkjunkjunk");
        }
    });
    // A camera that wants a password, given the right one and a wrong one.
    let locked_cam = camsim(&["--user", "cam", "--password", "s3cret pass"]);
    let locked = locked_cam.port;
    let hub = Hub::start(
        tmp.path(),
        &format!(
            "[recording]\nmode = \"continuous\"\nsegment_seconds = 10\n{}\
             [[camera]]\nname = \"Broken\"\nurl = \"rtsp://127.0.0.1:{junk_port}/main\"\n\
             [[camera]]\nname = \"Locked\"\nurl = \"rtsp://cam:s3cret%20pass@127.0.0.1:{locked}/main\"\n\
             [[camera]]\nname = \"Wrong password\"\nurl = \"rtsp://cam:nope@127.0.0.1:{locked}/main\"\n",
            cameras_toml(&[port])
        ),
    );
    // A member, with the four cameras shared: they read, the owner changes.
    let owner = hub.session("owner");
    let body = serde_json::json!({ "email": "member@example.com", "role": "member", "password": PASSWORD });
    let (st, u) = hub.send_json("POST", "/api/users", &owner, &body);
    assert_eq!(st, 201, "{u}");
    let (st, u) =
        hub.send_json("PUT", &format!("/api/users/{}/cameras", u["id"]), &owner, &serde_json::json!({ "cameras": [1, 2, 3, 4] }));
    assert_eq!(st, 200, "{u}");
    let cookie = hub.login("member@example.com", PASSWORD).1.unwrap().0;
    wait_until("the good camera streaming", Duration::from_secs(20), || camera_status(&hub, &cookie, 1)["status"] == "streaming");
    let broken = camera_status(&hub, &cookie, 2);
    assert_eq!(broken["status"], "error", "{broken}");
    assert!(!broken["reason"].as_str().unwrap_or("").is_empty());
    wait_until("the camera with credentials streaming", Duration::from_secs(20), || {
        camera_status(&hub, &cookie, 3)["status"] == "streaming"
    });
    // A member may look but not change motion settings.
    let (st, _, _) = hub.curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("cookie: {cookie}"),
        "-H",
        "content-type: application/json",
        "--data",
        "{}",
        &hub.url("/api/cameras/1/motion"),
    ]);
    assert_eq!(st, 403);
    assert_eq!(hub.get("/api/cameras/1/motion", Some(&cookie)).0, 200);
    let wrong = camera_status(&hub, &cookie, 4);
    assert_eq!(wrong["status"], "error", "{wrong}");
    // The password never shows in the API.
    let (_, _, body) = hub.get("/api/cameras", Some(&cookie));
    assert!(!String::from_utf8_lossy(&body).contains("s3cret"));

    // Freeze the camera: its connection stays open but no data comes.
    unsafe { libc::kill(cam.pid(), libc::SIGSTOP) };
    let frozen = Instant::now();
    wait_until("the stall to be noticed", Duration::from_secs(20), || camera_status(&hub, &cookie, 1)["status"] == "error");
    assert!(frozen.elapsed() >= Duration::from_secs(9), "stall reported after {:?}, before 10 s of silence", frozen.elapsed());
    let s = camera_status(&hub, &cookie, 1);
    assert!(s["reason"].as_str().unwrap().contains("no data"), "{s}");
    unsafe { libc::kill(cam.pid(), libc::SIGCONT) };
    wait_until("streaming again after the stall", Duration::from_secs(20), || {
        camera_status(&hub, &cookie, 1)["status"] == "streaming"
    });
    // The hub stayed up throughout, and the broken camera is still only an error.
    assert_eq!(hub.get("/healthz", None).0, 200);
    assert_eq!(camera_status(&hub, &cookie, 2)["status"], "error");
    drop(cam);
    drop(locked_cam);
}

#[test]
fn the_hub_tells_systemd_when_it_is_ready_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let cfg = tmp.path().join("homehub.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nlisten_tls = \"127.0.0.1:0\"\nlisten_plain = \"127.0.0.1:0\"\n\
             [recording]\nmode = \"off\"\n",
            tmp.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(HUB)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = ready_line(&mut child, "\"ready\"");
    let mut hub = Proc { child, name: "hub".into() };
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a notification");
    // sd_notify(3) messages are newline-separated assignments; the sd-notify crate ends each with one.
    assert_eq!(buf[..n].trim_ascii_end(), b"READY=1");
    // The port it bound, from the line it prints (just after telling systemd).
    let line = ready.recv_timeout(Duration::from_secs(5)).expect("the ready line");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let port = v["web"].as_str().unwrap().parse::<std::net::SocketAddr>().unwrap().port();
    // Ready means serving.
    let out = Command::new("curl").args(["-k", "-s", &format!("https://127.0.0.1:{port}/healthz")]).output().unwrap();
    assert_eq!(out.stdout, b"ok");
    let st = hub.term();
    assert!(st.success(), "{st}");
    let n = sock.recv(&mut buf).expect("a stopping notification");
    assert_eq!(buf[..n].trim_ascii_end(), b"STOPPING=1");
}

/// `make demo`'s hub: its simulated cameras pair through the real protocol (the demo plays
/// the owner and types their codes) and record; Ctrl-C ends it cleanly.
#[test]
fn the_demo_pairs_its_simulated_cameras_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let mut child = Command::new(HUB)
        .args(["demo", "--cameras", "2", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("homehub demo");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(|l| l.ok()) {
            let _ = tx.send(l);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(lines.iter().any(|l: &String| l == "demo: paired demo-cam-1 with its setup code")
        && lines.iter().any(|l| l == "demo: paired demo-cam-2 with its setup code"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("the demo's cameras did not both pair within 90 s:\n{}", lines.join("\n"));
            }
        }
    }
    assert!(!lines.iter().any(|l| l.contains("pairing") && l.contains("failed")), "{}", lines.join("\n"));
    // Both paired cameras record into the demo's data dir.
    let segments = |cam: u32| std::fs::read_dir(data.join("recordings").join(cam.to_string())).map(|d| d.count()).unwrap_or(0);
    wait_until("both demo cameras writing segments", Duration::from_secs(30), || segments(1) > 0 && segments(2) > 0);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = poll(Duration::from_secs(30), || child.try_wait().unwrap());
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the demo did not stop within 30 s of Ctrl-C");
    };
    assert!(status.success(), "the demo exits 0 on Ctrl-C: {status}");
}
