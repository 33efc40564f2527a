//! The page in a real browser: each test starts a hub and the cameras its scenario needs,
//! then runs `node tests/browser/<scenario>.mjs` (playwright-core driving Debian's chromium,
//! axe-core for accessibility) with the hub's URL, an owner's credentials, the camsim ports
//! and an output dir (`target/browser/<scenario>/`: screenshots, downloads) in its
//! environment, streams its output and wants exit 0. `make browser-deps` installs the node
//! packages (`npm ci` in tests/browser).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

/// What one scenario may take at most, end to end (node's own deadline is a little shorter).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A hub with an owner (EMAIL / PASSWORD) and the cameras of one scenario.
struct Setup {
    hub: Hub,
    cams: Vec<Cam>,
    cookie: String,
    _tmp: tempfile::TempDir,
}

/// Starts the cameras (one camsim per entry of `cams`, each with its extra flags), a hub
/// with those cameras in its config (`Cam 0`, `Cam 1`, … = ids 1, 2, …) and `extra` TOML, an
/// owner, and waits until every camera streams and has a snapshot.
fn setup(cams: &[&[&str]], extra: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let cams: Vec<Cam> = cams.iter().map(|a| camsim(a)).collect();
    let ports: Vec<u16> = cams.iter().map(|c| c.port).collect();
    let hub = Hub::start(tmp.path(), &format!("{extra}\n{}", cameras_toml(&ports)));
    let cookie = hub.session("owner");
    wait_streaming(&hub, &cookie, cams.len());
    Setup { hub, cams, cookie, _tmp: tmp }
}

/// Waits until `n` cameras stream and their snapshots are there (a 503 while no frame has
/// come; any other answer counts: the page's own checks judge it).
fn wait_streaming(hub: &Hub, cookie: &str, n: usize) {
    wait_until(&format!("{n} camera(s) streaming"), Duration::from_secs(40), || {
        let v = hub.get_json("/api/cameras", cookie);
        let items = v["items"].as_array().unwrap();
        items.len() == n && items.iter().all(|c| c["status"] == "streaming")
    });
    for id in 1..=n {
        wait_until(&format!("a snapshot of camera {id}"), Duration::from_secs(20), || {
            hub.get(&format!("/api/cameras/{id}/snapshot.jpg"), Some(cookie)).0 != 503
        });
    }
}

/// Runs one scenario script against the setup; returns its stdout lines. Panics (with the
/// hub's log) when it does not exit 0 within [`SCENARIO_TIMEOUT`].
fn run(script: &str, s: &Setup, env: &[(&str, String)]) -> Vec<String> {
    let dir = root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir() && dir.join("node_modules/axe-core").is_dir(),
        "tests/browser/node_modules is missing: run `make browser-deps` (npm ci in tests/browser)"
    );
    let name = script.trim_end_matches(".mjs");
    let out = root().join("target/browser").join(env.iter().find(|(k, _)| *k == "OUT_NAME").map_or(name, |(_, v)| v));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let ports: Vec<String> = s.cams.iter().map(|c| c.port.to_string()).collect();
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("HUB_URL", s.hub.url(""))
        .env("HUB_EMAIL", EMAIL)
        .env("HUB_PASSWORD", PASSWORD)
        .env("CAMSIM_PORTS", ports.join(","))
        .env("OUT_DIR", &out)
        .env("SCENARIO_TIMEOUT_MS", (SCENARIO_TIMEOUT.as_millis() - 10_000).to_string())
        // datetime-local inputs and the day of the timeline are then UTC, like the API.
        .env("TZ", "UTC")
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (make deps installs nodejs)");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let lines = std::thread::spawn(move || {
        let mut all = Vec::new();
        for l in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            println!("{l}");
            all.push(l);
        }
        all
    });
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            eprintln!("{l}");
            let _ = tx.send(l);
        }
    });
    let status = poll(SCENARIO_TIMEOUT, || child.try_wait().unwrap());
    let status = match status {
        Some(st) => st,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} did not finish within {SCENARIO_TIMEOUT:?}; hub log:\n{}", tail(&s.hub.log_text()));
        }
    };
    let lines = lines.join().unwrap();
    let errors: Vec<String> = rx.try_iter().collect();
    println!("{script}: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        status.success(),
        "{script} failed ({status}):\n{}\nscreenshots in {}\nhub log:\n{}",
        errors.join("\n"),
        out.display(),
        tail(&s.hub.log_text())
    );
    lines
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// A port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn signin_shows_the_error_then_the_grid_with_a_tile_per_camera() {
    let s = setup(&[&[], &[]], "");
    run("signin.mjs", &s, &[]);
}

#[test]
fn every_page_passes_axe_without_console_errors_and_with_the_security_headers() {
    let s = setup(&[&[]], "[recording]\nmode = \"continuous\"\nsegment_seconds = 4\n");
    run("pages.mjs", &s, &[]);
}

#[test]
fn live_view_plays_the_main_stream() {
    let s = setup(&[&[]], "");
    let out = run("live.mjs", &s, &[("CAMERA_ID", "1".into())]);
    assert!(out.iter().any(|l| l.starts_with("first frame after open: ")), "the scenario printed the first-frame time");
}

#[test]
fn timeline_shows_the_event_plays_it_and_downloads_a_range_across_segments() {
    // Spans again later: a loaded machine may start the hub after the first one.
    let s = setup(
        &[&["--motion", "10-16,45-51,80-86"]],
        "[recording]\nmode = \"continuous\"\nsegment_seconds = 4\n[motion]\npre_roll_seconds = 2\npost_roll_seconds = 3\n",
    );
    run("timeline.mjs", &s, &[("CAMERA_ID", "1".into()), ("GOP_SECONDS", "2".into())]);
}

/// Adds the camera through the page (a failed test first); returns its id.
fn add_camera(s: &Setup, script_env: &[(&str, String)]) -> i64 {
    let mut env = vec![
        ("WRONG_URL", format!("rtsp://127.0.0.1:{}/main", closed_port())),
        ("GOOD_URL", format!("rtsp://127.0.0.1:{}/main", s.cams[0].port)),
        ("EXPECT_SIZE", "640x360".into()),
    ];
    env.extend(script_env.iter().cloned());
    let out = run("addcamera.mjs", s, &env);
    out.iter()
        .find_map(|l| l.strip_prefix("added camera id="))
        .and_then(|id| id.trim().parse().ok())
        .expect("the scenario printed the new camera's id")
}

/// A hub with no camera in its config and a camsim to add through the page.
fn setup_to_add(cam: &[&str]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let cams = vec![camsim(cam)];
    let hub = Hub::start(tmp.path(), "[recording]\nmode = \"continuous\"\nsegment_seconds = 4\n");
    let cookie = hub.session("owner");
    Setup { hub, cams, cookie, _tmp: tmp }
}

#[test]
fn add_camera_refuses_a_dead_url_then_adds_the_camsim_which_streams() {
    let s = setup_to_add(&[]);
    let id = add_camera(&s, &[("CAMERA_NAME", "Garden".into())]);
    let v = s.hub.get_json("/api/cameras", &s.cookie);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "exactly the one camera added: {v}");
    assert_eq!(items[0]["id"], id);
    assert_eq!(items[0]["name"], "Garden");
}

#[test]
fn udp_only_camera_added_through_the_page_records_segments_that_play() {
    let s = setup_to_add(&["--udp-only"]);
    let id = add_camera(
        &s,
        &[("CAMERA_NAME", "Shed".into()), ("EXPECT_TRANSPORT", "udp".into()), ("OUT_NAME", "addcamera-udp".into())],
    );
    let seg = poll(Duration::from_secs(40), || {
        s.hub.segments(&s.cookie).into_iter().find(|g| g.camera_id == id && !g.partial && g.bytes > 0)
    })
    .unwrap_or_else(|| panic!("no finished segment of the UDP camera {id} within 40 s"));
    let file = s.hub.dir.join(&seg.path);
    assert!(plays(&file), "the UDP camera's segment {} plays", file.display());
    let secs = ffprobe_duration(&file).expect("ffprobe reads the segment");
    assert!(secs > 1.0, "the segment holds video ({secs} s)");
}

#[test]
fn an_exclude_zone_drawn_on_the_page_stops_events_without_a_restart() {
    // The first span shows the detector works; the zone goes on between the spans.
    let t0 = now_ms();
    let s = setup(
        &[&["--motion", "10-15,50-56"]],
        "[recording]\nmode = \"events\"\n[motion]\npre_roll_seconds = 2\npost_roll_seconds = 3\n",
    );
    run(
        "zones.mjs",
        &s,
        &[
            ("CAMERA_ID", "1".into()),
            ("CAMSIM_T0_MS", t0.to_string()),
            ("SPAN_BEFORE", "10-15".into()),
            ("SPAN_AFTER", "50-56".into()),
            ("POST_ROLL_SECONDS", "3".into()),
        ],
    );
    let events = s.hub.events(&s.cookie);
    assert_eq!(events.len(), 1, "one event, from the span before the zone: {events:?}");
}

#[test]
fn live_websocket_upgrade_without_a_session_is_401() {
    let s = setup(&[&[]], "");
    let (st, _, body) = s.hub.curl(&[
        "--http1.1",
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Sec-WebSocket-Version: 13",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        &s.hub.url("/api/cameras/1/live?stream=main"),
    ]);
    assert_eq!(st, 401, "unauthenticated upgrade: {}", String::from_utf8_lossy(&body));
    // With the session the same request is switched to the WebSocket protocol (101).
    let (st, head, _) = s.hub.curl(&[
        "--http1.1",
        "--max-time",
        "3",
        "-H",
        &format!("cookie: {}", s.cookie),
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Sec-WebSocket-Version: 13",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        &s.hub.url("/api/cameras/1/live?stream=main"),
    ]);
    assert_eq!(st, 101, "the upgrade with a session: {head}");
}

/// Pairing through the page: a camsim asks to pair (its RTSP server on 127.0.0.9, while it
/// connects to the hub from 127.0.0.1), the owner types a wrong code and then the right one;
/// the device's config names a host that is not its own address, so its camera is refused
/// until the owner presses "Allow this address", then it streams.
#[test]
fn a_camera_pairs_through_the_page_and_streams_once_its_address_is_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "[recording]\nmode = \"continuous\"\nsegment_seconds = 4\n");
    let cookie = hub.session("owner");
    let code = "20461735";
    let child = Command::new(CAMSIM)
        .args(["--rtsp", "127.0.0.9:0", "--size", "640x360", "--fps", "15", "--bitrate", "500"])
        .args(["--pair", "--hub", &format!("127.0.0.1:{}", hub.mqtt_tls), "--hub-fp", &hub.fingerprint])
        .args(["--device-id", "porch-cam", "--setup-code", code, "--name", "Porch", "--model", "Porch Cam 2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("camsim");
    let _cam = Proc { child, name: "camsim --pair".into() };
    let s = Setup { hub, cams: Vec::new(), cookie, _tmp: tmp };
    run(
        "pairing.mjs",
        &s,
        &[
            ("DEVICE_ID", "porch-cam".into()),
            ("SETUP_CODE", code.into()),
            ("WRONG_CODE", "11112222".into()),
            ("DEVICE_PEER", "127.0.0.1".into()),
            ("OTHER_HOST", "127.0.0.9".into()),
        ],
    );
    let v = s.hub.get_json("/api/cameras", &s.cookie);
    let cams = v["items"].as_array().unwrap();
    assert_eq!(cams.len(), 1, "the paired camera, once: {v}");
    assert_eq!((cams[0]["source"].as_str(), cams[0]["status"].as_str()), (Some("paired"), Some("streaming")), "{v}");
}

#[test]
fn two_factor_sharing_audit_and_sign_out_everywhere_through_the_page() {
    let s = setup(&[&[], &[]], "");
    run("people.mjs", &s, &[]);
    // The viewer the page added, the share and the big button are in the database as the
    // page said: the viewer has one camera, and no session survived but the one the owner
    // signed in with afterwards (this test's own cookie is gone too).
    let shares: i64 = s.hub.db().query_row("SELECT COUNT(*) FROM camera_shares", [], |r| r.get(0)).unwrap();
    assert_eq!(shares, 1);
    let sessions: i64 = s.hub.db().query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0)).unwrap();
    assert_eq!(sessions, 1, "sessions after sign out everywhere");
    assert_eq!(s.hub.get("/api/me", Some(&s.cookie)).0, 401);
}

#[test]
fn a_new_hub_greets_its_first_visitor_and_the_setup_link_creates_the_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    let (ok, link, err) = hub.admin(&["setup-link"]);
    assert!(ok, "setup-link: {err}");
    // The link names the configured address (port 0 in a test's config): the path is what counts.
    let path = link.trim().find("/setup#token=").map(|i| link.trim()[i..].to_string()).expect("a setup link");
    let s = Setup { hub, cams: Vec::new(), cookie: String::new(), _tmp: tmp };
    run("setup.mjs", &s, &[("SETUP_PATH", path)]);
    let owners: i64 = s.hub.db().query_row("SELECT COUNT(*) FROM users WHERE role = 'owner'", [], |r| r.get(0)).unwrap();
    assert_eq!(owners, 1);
    let (ok, _, err) = s.hub.admin(&["setup-link"]);
    assert!(!ok && err.contains("owner already"), "{err}");
}

#[test]
fn what_leaves_this_house_counts_the_buckets_objects_and_insight_draws_the_hubs_figures() {
    let s3 = common::s3::S3::start();
    s3.create_bucket("homehub-cloud");
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("owner.key");
    let out = Command::new(HUB).args(["keys", "new"]).output().unwrap();
    std::fs::write(&key, &out.stdout).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let recipient = text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().trim().to_string();
    let cloud = format!(
        "[recording]\nmode = \"events\"\n[motion]\npre_roll_seconds = 1\npost_roll_seconds = 1\n\
         [cloud]\nstore = \"s3://homehub-cloud/home\"\nendpoint = \"{}\"\nrecipients = [\"{recipient}\"]\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
        s3.endpoint(),
        common::s3::ACCESS_KEY,
        common::s3::SECRET_KEY
    );
    let s = setup(&[&["--motion", "4-8"]], &cloud);
    // The event over, its clip and index sent: nothing more goes up while the page is read.
    wait_until("the event's clip in the bucket", Duration::from_secs(60), || {
        let ended = s.hub.events(&s.cookie).iter().any(|e| !e["end"].is_null() && e["clip_url"].is_string());
        let c = s.hub.get_json("/api/cloud", &s.cookie);
        ended && c["queue_length"] == 0 && c["uploaded"].as_u64() >= Some(2)
    });
    let objects = s3.list("homehub-cloud").iter().filter(|(k, _)| k.starts_with(&format!("home/{}/", s.hub.hub_id))).count();
    run("leaves.mjs", &s, &[("EXPECT_OBJECTS", objects.to_string()), ("RECIPIENT", recipient), ("HUB_ID", s.hub.hub_id.clone())]);
}

#[test]
fn a_key_made_in_the_browser_opens_the_next_clip_and_the_store_test_tells_up_from_down() {
    let s3 = common::s3::S3::start();
    s3.create_bucket("homehub-cloud");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(HUB).args(["keys", "new"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let first = text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().trim().to_string();
    let cloud = format!(
        "[recording]\nmode = \"events\"\n[motion]\npre_roll_seconds = 1\npost_roll_seconds = 1\n\
         [cloud]\nstore = \"s3://homehub-cloud/home\"\nendpoint = \"{}\"\nrecipients = [\"{first}\"]\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
        s3.endpoint(),
        common::s3::ACCESS_KEY,
        common::s3::SECRET_KEY
    );
    // The movement comes after the page has added its key (the scenario takes a few seconds).
    let s = setup(&[&["--motion", "40-44"]], &cloud);
    let lines = run("recipients.mjs", &s, &[]);
    let get = |k: &str| lines.iter().find_map(|l| l.strip_prefix(k)).map(str::to_string).unwrap_or_else(|| panic!("no {k} line"));
    let (key, recipient) = (PathBuf::from(get("key file=")), get("recipient="));
    let changed_at = now_ms();
    let r = s.hub.get_json("/api/cloud/recipients", &s.cookie);
    assert_eq!(r["recipients"], serde_json::json!([first, recipient]), "{r}");
    // The secret is in the downloaded file and nowhere on the hub: not its log, not its files.
    let secret = std::fs::read_to_string(&key).unwrap().lines().find(|l| l.starts_with("AGE-SECRET-KEY-1")).unwrap().to_string();
    assert!(!s.hub.log_text().contains(&secret));
    let grep = Command::new("grep").args(["-rqF", &secret]).arg(&s.hub.dir).status().unwrap();
    assert!(!grep.success(), "the secret key is in the hub's data dir");
    // The next clip opens with Debian's age and the browser's key.
    let ev = poll(Duration::from_secs(90), || {
        s.hub.events(&s.cookie).into_iter().find(|e| !e["end"].is_null() && e["clip_url"].is_string())
    })
    .expect("an event after the key was added");
    assert!(api_ms(&ev["start"]) > changed_at, "the movement came after the page added its key");
    wait_until("its clip uploaded", Duration::from_secs(30), || {
        let c = s.hub.get_json("/api/cloud", &s.cookie);
        c["queue_length"] == 0 && c["uploaded"].as_u64() >= Some(2)
    });
    let mut opened = 0;
    for (k, _) in s3.list("homehub-cloud") {
        let raw = s3.get("homehub-cloud", &k);
        let f = tmp.path().join("clip.age");
        std::fs::write(&f, &raw).unwrap();
        let plain = tmp.path().join("clip.mp4");
        let st = Command::new("age").args(["-d", "-i"]).arg(&key).arg("-o").arg(&plain).arg(&f).status().unwrap();
        assert!(st.success(), "{k} does not open with the browser's key");
        if std::fs::read(&plain).unwrap().get(4..8) == Some(b"ftyp") {
            assert!(plays(&plain), "{k} opens but does not play");
            opened += 1;
        }
    }
    assert!(opened >= 1, "no clip opened with the browser's key");
    // The store down: the test button says so.
    s3.refuse(true);
    run("recipients.mjs", &s, &[("STORE_DOWN", "1".into()), ("OUT_NAME", "recipients-down".into())]);
    s3.refuse(false);
}

#[test]
fn the_owner_sets_up_the_cloud_in_the_page_and_puts_the_away_page_in_the_bucket() {
    let s3 = common::s3::S3::start();
    s3.create_bucket("homehub-cloud");
    let out = Command::new(HUB).args(["keys", "new"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let recipient = text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().trim().to_string();
    // No [cloud] in the config: everything through the page.
    let s = setup(&[&[]], "");
    let env = [
        ("S3_ENDPOINT", s3.endpoint()),
        ("S3_BUCKET", "homehub-cloud".to_string()),
        ("S3_ACCESS_KEY", common::s3::ACCESS_KEY.to_string()),
        ("S3_SECRET_KEY", common::s3::SECRET_KEY.to_string()),
        ("RECIPIENT", recipient.clone()),
    ];
    let lines = run("cloudsetup.mjs", &s, &env);
    assert!(lines.iter().any(|l| l == "saved=1"), "the scenario saved the settings");
    let v = s.hub.get_json("/api/cloud/settings", &s.cookie);
    assert_eq!(
        (v["store"].as_str(), v["from"].as_str(), v["active"].as_bool(), v["secret_set"].as_bool()),
        (Some("s3://homehub-cloud/home"), Some("hub"), Some(true), Some(true)),
        "{v}"
    );
    let r = s.hub.get_json("/api/cloud/recipients", &s.cookie);
    assert_eq!(r["recipients"], serde_json::json!([recipient]), "{r}");
    let url = lines.iter().find_map(|l| l.strip_prefix("away url=")).expect("an away url line").to_string();
    assert!(url.starts_with(&format!("{}/homehub-cloud/home/homehub-away.html?", s3.endpoint())), "{url}");
    let (code, _, page) = s.hub.get("/api/cloud/away.html", Some(&s.cookie));
    assert_eq!((code, s3.get("homehub-cloud", "home/homehub-away.html")), (200, page));
    // The secret went to the hub (it signs the uploads) and is kept only sealed.
    let grep = Command::new("grep").args(["-rqF", common::s3::SECRET_KEY]).arg(&s.hub.dir).status().unwrap();
    assert!(!grep.success(), "the store's secret is in the hub's data dir in plaintext");
    // The store down: the page's test says so.
    s3.refuse(true);
    let mut down = env.to_vec();
    down.push(("STORE_DOWN", "1".into()));
    down.push(("OUT_NAME", "cloudsetup-down".into()));
    run("cloudsetup.mjs", &s, &down);
    s3.refuse(false);
}

#[test]
fn the_away_page_served_from_the_bucket_lists_the_clips_and_plays_one() {
    let s3 = common::s3::S3::start();
    s3.create_bucket("homehub-cloud");
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("owner.key");
    let out = Command::new(HUB).args(["keys", "new"]).output().unwrap();
    std::fs::write(&key, &out.stdout).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let recipient = text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().trim().to_string();
    let cloud = format!(
        "[recording]\nmode = \"events\"\n[motion]\npre_roll_seconds = 1\npost_roll_seconds = 1\n\
         [cloud]\nstore = \"s3://homehub-cloud/home\"\nendpoint = \"{}\"\nrecipients = [\"{recipient}\"]\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
        s3.endpoint(),
        common::s3::ACCESS_KEY,
        common::s3::SECRET_KEY
    );
    let s = setup(&[&["--motion", "4-8"]], &cloud);
    wait_until("the event's clip in the bucket", Duration::from_secs(60), || {
        let ended = s.hub.events(&s.cookie).iter().any(|e| !e["end"].is_null() && e["clip_url"].is_string());
        let c = s.hub.get_json("/api/cloud", &s.cookie);
        ended && c["queue_length"] == 0 && c["uploaded"].as_u64() >= Some(2)
    });
    let clips = s.hub.events(&s.cookie).iter().filter(|e| !e["end"].is_null() && e["clip_url"].is_string()).count();
    let (st, a) = s.hub.send_json("POST", "/api/cloud/away", &s.cookie, &serde_json::json!({}));
    assert_eq!(st, 200, "{a}");
    // Objects are private: the link is presigned (a week), the address plain.
    let plain = format!("{}/homehub-cloud/home/homehub-away.html", s3.endpoint());
    assert_eq!(a["address"], plain.as_str(), "{a}");
    let away = a["url"].as_str().unwrap().to_string();
    assert!(
        away.starts_with(&format!("{plain}?")) && away.contains("X-Amz-Signature=") && away.contains("X-Amz-Expires=604800"),
        "{a}"
    );
    assert!(a["expires"].is_string(), "{a}");
    run(
        "away.mjs",
        &s,
        &[
            ("AWAY_URL", away),
            ("S3_ACCESS_KEY", common::s3::ACCESS_KEY.to_string()),
            ("S3_SECRET_KEY", common::s3::SECRET_KEY.to_string()),
            ("S3_REGION", common::s3::REGION.to_string()),
            ("IDENTITY_FILE", key.display().to_string()),
            ("EXPECT_CLIPS", clips.to_string()),
        ],
    );
    // The page read the bucket itself, with signed requests: a listing and the objects.
    let reqs = s3.requests();
    let signed = |r: &common::s3::Request| {
        r.header("user-agent").is_some_and(|u| u.contains("Chrome"))
            && r.header("authorization")
                .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=") && a.contains(common::s3::ACCESS_KEY))
    };
    assert!(
        reqs.iter().any(|r| r.method == "GET" && r.target.contains("list-type=2") && signed(r)),
        "no signed listing from the page"
    );
    assert!(
        reqs.iter().any(|r| r.method == "GET" && r.target.contains(&format!("/home/{}/", s.hub.hub_id)) && signed(r)),
        "no signed object read from the page"
    );
}
