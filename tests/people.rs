//! People, against a real `homehub serve`: first-run setup with the one-time link, roles
//! and per-camera sharing (and a crawl of every API operation as a viewer), two-factor
//! sign-in, sessions, and "sign out everywhere" with device passwords rotated over their
//! live connections (camsim) and broker users removed (mosquitto's clients).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const VIEWER: &str = "viewer@example.com";
const MEMBER: &str = "member@example.com";

/// A JSON request without a session (the setup page's).
fn post_open(hub: &Hub, path: &str, body: &serde_json::Value) -> (u16, String, serde_json::Value) {
    let (st, head, b) =
        hub.curl(&["-X", "POST", "-H", "content-type: application/json", "--data", &body.to_string(), &hub.url(path)]);
    (st, head, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null))
}

fn cookie_of(head: &str) -> Option<String> {
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .map(|l| l.split_once(':').unwrap().1.trim().split(';').next().unwrap().to_string())
        .filter(|c| !c.ends_with('='))
}

fn users(hub: &Hub) -> i64 {
    hub.db().query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)).unwrap()
}

fn token_of(link: &str) -> String {
    link.split("#token=").nth(1).unwrap_or_else(|| panic!("no token in {link:?}")).split_whitespace().next().unwrap().to_string()
}

#[test]
fn a_fresh_hub_is_set_up_once_through_its_one_time_link() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    // Nothing but sign-in, health and the setup form without a session.
    assert_eq!(hub.get("/api/cameras", None).0, 401);
    assert_eq!(hub.get("/healthz", None).0, 200);
    let (st, _, body) = hub.get("/api/setup", None);
    assert_eq!((st, serde_json::from_slice::<serde_json::Value>(&body).unwrap()["needed"].as_bool()), (200, Some(true)));
    let (st, _, page) = hub.get("/setup", None);
    assert!(st == 401 && String::from_utf8_lossy(&page).contains("<div id=\"app\""), "the setup page is the app shell");

    // The link is logged once at start, with the token in the fragment.
    let logged =
        poll(Duration::from_secs(5), || hub.log_text().lines().find(|l| l.contains("/setup#token=")).map(|l| l.to_string()))
            .expect("setup link in the log");
    assert!(logged.contains(&format!("https://127.0.0.1:{}/setup#token=", hub.port)), "{logged}");
    let from_log = token_of(&logged);

    // Without the right token nothing is created.
    let owner = |token: &str| serde_json::json!({ "token": token, "email": EMAIL, "password": PASSWORD });
    for wrong in ["", "not-the-token", &from_log[..from_log.len() - 1]] {
        let (st, _, body) = post_open(&hub, "/api/setup", &owner(wrong));
        assert_eq!(st, 403, "token {wrong:?}: {body}");
    }
    let (st, _, body) =
        post_open(&hub, "/api/setup", &serde_json::json!({ "token": from_log, "email": EMAIL, "password": "short" }));
    assert_eq!(st, 400, "{body}");
    assert_eq!(users(&hub), 0);

    // `homehub setup-link` makes another; either works, once.
    let (ok, out, err) = hub.admin(&["setup-link"]);
    assert!(ok, "setup-link: {err}");
    let from_cli = token_of(out.trim());
    assert_ne!(from_cli, from_log);
    let (st, head, body) = post_open(&hub, "/api/setup", &owner(&from_cli));
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["role"], "owner");
    let cookie = cookie_of(&head).expect("the new owner is signed in");
    let me = hub.get_json("/api/me", &cookie);
    assert_eq!((me["email"].as_str(), me["role"].as_str()), (Some(EMAIL), Some("owner")));
    assert_eq!(users(&hub), 1);

    // Then every token is dead, and the link cannot be made again.
    for token in [&from_cli, &from_log] {
        let again = serde_json::json!({ "token": token, "email": "intruder@example.com", "password": PASSWORD });
        let (st, _, body) = post_open(&hub, "/api/setup", &again);
        assert_eq!(st, 409, "{body}");
    }
    let stored: i64 = hub.db().query_row("SELECT COUNT(*) FROM setup_tokens", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, 0);
    let (ok, _, err) = hub.admin(&["setup-link"]);
    assert!(!ok && err.contains("has its owner already"), "{err}");
    assert_eq!(users(&hub), 1);
    let (_, _, body) = hub.get("/api/setup", None);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["needed"], false);
    let audit = hub.get_json("/api/audit?action=setup", &cookie);
    assert_eq!(audit["items"][0]["action"], "setup.owner_created", "{audit}");

    // The Security page's self-check is doctor's, with the fix: a loosened database file.
    let before = hub.get_json("/api/doctor", &cookie)["findings"].as_array().unwrap().len();
    use std::os::unix::fs::PermissionsExt;
    let db = hub.dir.join("homehub.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let after = hub.get_json("/api/doctor", &cookie)["findings"].as_array().unwrap().clone();
    assert_eq!(after.len(), before + 1, "{after:?}");
    let f = after.iter().find(|f| f["message"].as_str().unwrap().contains("homehub.db: mode 0644")).expect("the finding");
    assert!(f["fix"].as_str().unwrap().contains("chmod 0600"), "{f}");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn guessing_setup_tokens_is_throttled_per_address() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    let guess = |i: usize| serde_json::json!({ "token": format!("guess-{i}"), "email": EMAIL, "password": PASSWORD });
    for i in 0..10 {
        let (st, _, body) = post_open(&hub, "/api/setup", &guess(i));
        assert_eq!(st, 403, "guess {i}: {body}");
    }
    let (st, _, body) = post_open(&hub, "/api/setup", &guess(10));
    assert_eq!(st, 429, "the eleventh guess from one address: {body}");
    assert_eq!(users(&hub), 0);
    let (_, _, body) = hub.get("/api/setup", None);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["needed"], true);
}

/// A session for a user the owner adds through the API.
fn person(hub: &Hub, owner: &str, email: &str, role: &str) -> (i64, String) {
    let (st, u) =
        hub.send_json("POST", "/api/users", owner, &serde_json::json!({ "email": email, "role": role, "password": PASSWORD }));
    assert_eq!(st, 201, "{u}");
    let cookie = hub.login(email, PASSWORD).1.expect("session").0;
    (u["id"].as_i64().unwrap(), cookie)
}

fn ids(v: &serde_json::Value, key: &str) -> Vec<i64> {
    let mut out: Vec<i64> = v["items"].as_array().unwrap().iter().map(|x| x[key].as_i64().unwrap()).collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn status(hub: &Hub, method: &str, path: &str, cookie: &str) -> u16 {
    let url = hub.url(path);
    let c = format!("cookie: {cookie}");
    match method {
        "get" => hub.curl(&["-H", &c, &url]).0,
        m => hub.curl(&["-X", &m.to_uppercase(), "-H", &c, "-H", "content-type: application/json", "--data", "{}", &url]).0,
    }
}

#[test]
fn a_viewer_sees_only_the_cameras_shared_with_them_and_a_crawl_of_the_api_finds_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    // Cam 0 moves early (an event with a clip); Cam 1 never does.
    let cams = [camsim(&["--motion", "6-12"]), camsim(&[])];
    let extra = format!(
        "[recording]\nmode = \"continuous\"\nsegment_seconds = 2\n[motion]\npre_roll_seconds = 1\npost_roll_seconds = 1\n{}",
        cameras_toml(&[cams[0].port, cams[1].port])
    );
    let hub = Hub::start(tmp.path(), &extra);
    hub.add_user(EMAIL, "owner", PASSWORD);
    let owner = hub.login(EMAIL, PASSWORD).1.expect("owner").0;
    let cam_ids = ids(&hub.get_json("/api/cameras", &owner), "id");
    assert_eq!(cam_ids.len(), 2);
    let (shared, unshared) = (cam_ids[0], cam_ids[1]);
    // Footage of both, and an event with a clip on the first.
    wait_until("recordings of both cameras", Duration::from_secs(30), || {
        ids(&hub.get_json("/api/recordings?limit=1000", &owner), "camera_id") == cam_ids
    });
    let event = poll(Duration::from_secs(40), || {
        hub.events(&owner).into_iter().find(|e| e["clip_url"].is_string() && e["camera_id"] == shared)
    })
    .expect("an event with a clip on the first camera");
    let recs = hub.get_json("/api/recordings?limit=1000", &owner)["items"].as_array().unwrap().clone();
    let rec_of = |cam: i64| recs.iter().find(|r| r["camera_id"] == cam).unwrap()["id"].as_i64().unwrap();
    let (shared_rec, unshared_rec) = (rec_of(shared), rec_of(unshared));

    let (viewer_id, viewer) = person(&hub, &owner, VIEWER, "viewer");
    let (member_id, member) = person(&hub, &owner, MEMBER, "member");

    // Nothing shared: no trace of either camera.
    for who in [&viewer, &member] {
        assert!(hub.get_json("/api/cameras", who)["items"].as_array().unwrap().is_empty());
        for path in [
            format!("/api/cameras/{shared}/snapshot.jpg"),
            format!("/api/cameras/{shared}/live"),
            format!("/api/cameras/{shared}/export?start=2026-01-01T00:00:00Z&end=2026-01-01T00:01:00Z"),
            format!("/api/cameras/{shared}/motion"),
            format!("/api/events/{}/clip", event["id"]),
            format!("/api/events/{}/thumbnail", event["id"]),
            format!("/api/recordings/{shared_rec}/media"),
            format!("/api/recordings?camera={shared}"),
        ] {
            assert_eq!(hub.get(&path, Some(who)).0, 404, "{path} before sharing");
        }
    }
    assert!(hub.get_json("/api/events", &member)["items"].as_array().unwrap().is_empty());
    assert!(hub.get_json("/api/recordings", &member)["items"].as_array().unwrap().is_empty());

    // The owner shares the first camera with both.
    for id in [viewer_id, member_id] {
        let (st, u) =
            hub.send_json("PUT", &format!("/api/users/{id}/cameras"), &owner, &serde_json::json!({ "cameras": [shared] }));
        assert_eq!((st, u["cameras"].clone()), (200, serde_json::json!([shared])), "{u}");
    }
    // The viewer sees it, live only; the other camera stays invisible.
    let seen = hub.get_json("/api/cameras", &viewer);
    assert_eq!(ids(&seen, "id"), vec![shared]);
    assert_eq!(seen["items"][0]["url"], "", "where a camera is stays the owner's business");
    let (st, head, jpeg) = hub.get(&format!("/api/cameras/{shared}/snapshot.jpg"), Some(&viewer));
    assert!(st == 200 && head.contains("image/jpeg") && jpeg.starts_with(&[0xff, 0xd8]), "viewer snapshot: {st}");
    assert_eq!(hub.get(&format!("/api/cameras/{unshared}/snapshot.jpg"), Some(&viewer)).0, 404);
    assert_eq!(hub.get(&format!("/api/events/{}/clip", event["id"]), Some(&viewer)).0, 403, "viewers only watch live");
    assert_eq!(hub.get(&format!("/api/recordings/{shared_rec}/media"), Some(&viewer)).0, 403);
    // The member plays it, and only it.
    assert_eq!(ids(&hub.get_json("/api/recordings?limit=1000", &member), "camera_id"), vec![shared]);
    assert_eq!(ids(&hub.get_json("/api/events?limit=1000", &member), "camera_id"), vec![shared]);
    assert_eq!(hub.get(&format!("/api/events/{}/clip", event["id"]), Some(&member)).0, 200);
    assert_eq!(hub.get(&format!("/api/recordings/{shared_rec}/media"), Some(&member)).0, 200);
    assert_eq!(hub.get(&format!("/api/recordings/{unshared_rec}/media"), Some(&member)).0, 404);
    assert_eq!(hub.get(&format!("/api/recordings?camera={unshared}"), Some(&member)).0, 404);
    let storage = hub.get_json("/api/storage", &member);
    assert_eq!(ids(&serde_json::json!({ "items": storage["cameras"] }), "camera_id"), vec![shared]);
    let (st, _, metrics) = hub.get("/metrics", Some(&member));
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    assert_eq!(st, 200);
    assert!(metrics.contains(&format!("camera_id=\"{shared}\"")), "{metrics}");
    assert!(!metrics.contains(&format!("camera_id=\"{unshared}\"")), "an unshared camera in a member's metrics");
    assert!(!metrics.contains("homehub_devices_paired"), "devices are the owner's");

    // Every operation of the API, as the viewer: the owner's and the unshared camera's
    // answer 403 or 404. Only their own account and the shared camera's live view are theirs.
    let spec: serde_json::Value = serde_json::from_slice(&hub.get("/api/openapi.json", Some(&viewer)).2).unwrap();
    let theirs = [
        ("get", "/api/cameras"),
        ("get", "/api/me"),
        ("get", "/api/openapi.json"),
        ("get", "/api/sessions"),
        ("post", "/api/me/password"),
        ("post", "/api/me/totp"),
        ("post", "/api/me/totp/confirm"),
        ("post", "/api/me/totp/disable"),
        ("delete", "/api/sessions/{id}"),
        ("post", "/api/session"),
        ("delete", "/api/session"),
        ("get", "/api/setup"),
        ("post", "/api/setup"),
        ("get", "/healthz"),
    ];
    let (mut crawled, mut skipped) = (0, 0);
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            if theirs.contains(&(method.as_str(), path.as_str())) {
                skipped += 1;
                continue;
            }
            let concrete = path
                .replace("/api/cameras/{id}", &format!("/api/cameras/{unshared}"))
                .replace("/api/recordings/{id}", &format!("/api/recordings/{unshared_rec}"))
                .replace("/api/events/{id}", &format!("/api/events/{}", event["id"]))
                .replace("/api/users/{id}", &format!("/api/users/{viewer_id}"))
                .replace("{id}", "cam-x")
                .replace("{device_id}", "cam-x")
                .replace("{host}", "192.168.1.9");
            let st = status(&hub, method, &concrete, &viewer);
            assert!(st == 403 || st == 404, "viewer {} {concrete}: {st}", method.to_uppercase());
            crawled += 1;
        }
    }
    // Every operation the viewer may use is in the spec (no typo above let one through).
    assert_eq!(skipped, theirs.len(), "operations of the viewer's own missing from the spec");
    assert!(crawled >= 30, "only {crawled} operations crawled");
    eprintln!("crawl: {crawled} operations refused to a viewer (403/404), {skipped} of their own");
    // The viewer's session survived the crawl (sign-out is theirs, and was skipped).
    assert_eq!(hub.get_json("/api/me", &viewer)["role"], "viewer");
    drop(cams);
}

/// RFC 6238's code of a base32 secret at a Unix time step (the test's own implementation).
fn totp(secret_b32: &str, step: i64) -> String {
    let mut bits = 0u32;
    let mut acc = 0u64;
    let mut key = Vec::new();
    for c in secret_b32.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {secret_b32}"),
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            key.push((acc >> bits) as u8);
        }
    }
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key);
    let mac = ring::hmac::sign(&k, &step.to_be_bytes());
    let d = mac.as_ref();
    let o = usize::from(d[19] & 0xf);
    let n = u32::from_be_bytes([d[o] & 0x7f, d[o + 1], d[o + 2], d[o + 3]]) % 1_000_000;
    format!("{n:06}")
}

fn step_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 / 30
}

fn sign_in(hub: &Hub, email: &str, totp: Option<&str>) -> (u16, Option<String>, serde_json::Value) {
    let mut body = serde_json::json!({ "email": email, "password": PASSWORD });
    if let Some(t) = totp {
        body["totp"] = t.into();
    }
    let (st, head, v) = post_open(hub, "/api/session", &body);
    (st, cookie_of(&head), v)
}

#[test]
fn two_factor_needs_a_fresh_code_each_time_and_a_recovery_code_works_once() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    hub.add_user(EMAIL, "owner", PASSWORD);
    let owner = hub.login(EMAIL, PASSWORD).1.unwrap().0;
    let (st, e) = hub.send_json("POST", "/api/me/totp", &owner, &serde_json::json!({}));
    assert_eq!(st, 200, "{e}");
    let secret = e["secret"].as_str().unwrap().to_string();
    assert!(e["uri"].as_str().unwrap().starts_with("otpauth://totp/homehub%3Aowner@example.com?secret="), "{e}");
    assert!(e["qr_svg"].as_str().unwrap().starts_with("<svg"), "the QR code is drawn by the hub");
    // At rest the secret is sealed: its base32 and its bytes are nowhere in the database.
    let sealed: Vec<u8> = hub.db().query_row("SELECT totp_sealed FROM users", [], |r| r.get(0)).unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains(&secret));
    // Not on until a code confirms it: sign-in still needs no code.
    assert_eq!(sign_in(&hub, EMAIL, None).0, 200);
    let (st, _) = hub.send_json("POST", "/api/me/totp/confirm", &owner, &serde_json::json!({ "code": "000000" }));
    assert_eq!(st, 403);
    // Codes near a step boundary could straddle it: take a fresh step.
    while std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 30 > 25 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let step = step_now();
    let (st, r) = hub.send_json("POST", "/api/me/totp/confirm", &owner, &serde_json::json!({ "code": totp(&secret, step) }));
    assert_eq!(st, 200, "{r}");
    let codes: Vec<String> = r["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert_eq!(codes.len(), 10);
    assert!(hub.get_json("/api/me", &owner)["totp"].as_bool().unwrap());

    // Now sign-in asks for the code.
    let (st, c, v) = sign_in(&hub, EMAIL, None);
    assert_eq!((st, c.is_none(), v["totp_required"].as_bool()), (401, true, Some(true)), "{v}");
    let (st, c, v) = sign_in(&hub, EMAIL, Some("123456"));
    assert_eq!((st, c.is_none(), v["totp_required"].as_bool()), (401, true, Some(true)), "wrong code: {v}");
    // The enrolment's code is used; the next step's works once.
    assert_eq!(sign_in(&hub, EMAIL, Some(&totp(&secret, step))).0, 401, "a used code again");
    let (st, c, _) = sign_in(&hub, EMAIL, Some(&totp(&secret, step + 1)));
    assert!(st == 200 && c.is_some());
    assert_eq!(sign_in(&hub, EMAIL, Some(&totp(&secret, step + 1))).0, 401, "a reused code");
    // A recovery code, typed any way, works once.
    let shouted = codes[0].to_uppercase().replace('-', " ");
    assert_eq!(sign_in(&hub, EMAIL, Some(&shouted)).0, 200);
    assert_eq!(sign_in(&hub, EMAIL, Some(&codes[0])).0, 401, "a recovery code twice");
    assert_eq!(sign_in(&hub, EMAIL, Some(&codes[1])).0, 200);
    let stored: Vec<Vec<u8>> = {
        let db = hub.db();
        let mut st = db.prepare("SELECT code_hash FROM recovery_codes").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    };
    assert_eq!(stored.len(), 10);
    assert!(stored.iter().all(|h| h.len() == 32 && !String::from_utf8_lossy(h).contains(&codes[2][..5])), "hashed at rest");

    // The owner requires 2FA of everyone: a member without it may only enrol.
    let (st, s) = hub.send_json("PATCH", "/api/settings", &owner, &serde_json::json!({ "require_totp": true }));
    assert_eq!((st, s["require_totp"].as_bool()), (200, Some(true)), "{s}");
    let (_, member) = person(&hub, &owner, MEMBER, "member");
    let me = hub.get_json("/api/me", &member);
    assert_eq!(me["must_enrol"], true, "{me}");
    let (st, _, body) = hub.get("/api/cameras", Some(&member));
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("must_enrol"));
    let (st, e) = hub.send_json("POST", "/api/me/totp", &member, &serde_json::json!({}));
    assert_eq!(st, 200, "enrolment stays open: {e}");
    let (st, _) = hub.send_json("POST", "/api/me/totp/disable", &owner, &serde_json::json!({ "password": PASSWORD }));
    assert_eq!(st, 409, "2FA cannot be turned off while required");

    // Sessions: the owner's list shows this browser's; revoking one ends it; changing the
    // password ends all the others.
    let list = hub.get_json("/api/sessions", &owner);
    let items = list["items"].as_array().unwrap();
    assert!(items.len() >= 4, "{list}");
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(items.iter().all(|s| s["address"] == "127.0.0.1" && s["agent"].as_str().unwrap().starts_with("curl/")), "{list}");
    let (_, other, _) = sign_in(&hub, EMAIL, Some(&codes[3]));
    let other = other.unwrap();
    let other_id =
        hub.get_json("/api/sessions", &other)["items"].as_array().unwrap().iter().find(|s| s["current"] == true).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    assert_eq!(status(&hub, "delete", &format!("/api/sessions/{other_id}"), &owner), 204);
    assert_eq!(hub.get("/api/me", Some(&other)).0, 401);
    let (_, third, _) = sign_in(&hub, EMAIL, Some(&codes[4]));
    let new_password = "another long password";
    let (st, r) =
        hub.send_json("POST", "/api/me/password", &owner, &serde_json::json!({ "current": PASSWORD, "new": new_password }));
    assert_eq!(st, 200, "{r}");
    assert!(r["revoked"].as_i64().unwrap() >= 3, "{r}");
    assert_eq!(hub.get("/api/me", Some(&third.unwrap())).0, 401, "other sessions end with a new password");
    assert_eq!(hub.get("/api/me", Some(&owner)).0, 200, "this one stays");
    let actions: Vec<String> = hub.get_json("/api/audit?limit=200", &owner)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    for a in ["totp.enabled", "settings.changed", "session.revoked", "password.changed", "user.added", "login.failed"] {
        assert!(actions.iter().any(|x| x == a), "{a} not audited: {actions:?}");
    }
}

/// A background `mosquitto_sub` (line-buffered), its lines as they come.
fn mosquitto_sub(args: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
            let _ = tx.send(l);
        }
    });
    (child, rx)
}

/// One message on `topic` with these credentials, or the client's complaint.
fn mosquitto_once(port: u16, user: &str, pass: &str, topic: &str) -> (bool, String) {
    let o = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-u", user, "-P", pass, "-t", topic, "-C", "1", "-W", "3"])
        .output()
        .unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

fn creds(out: &str) -> (String, String) {
    let get = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim().to_string();
    (get("username:"), get("password:"))
}

fn device(hub: &Hub, cookie: &str, id: &str) -> Option<serde_json::Value> {
    hub.get_json("/api/devices", cookie)["items"].as_array().unwrap().iter().find(|d| d["id"] == id).cloned()
}

#[test]
fn signing_out_everywhere_ends_every_session_rotates_device_passwords_and_removes_broker_users() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "[recording]\nmode = \"continuous\"\nsegment_seconds = 2\n");
    hub.add_user(EMAIL, "owner", PASSWORD);
    let owner = hub.login(EMAIL, PASSWORD).1.unwrap().0;
    let laptop = hub.login(EMAIL, PASSWORD).1.unwrap().0;
    let (_, viewer) = person(&hub, &owner, VIEWER, "viewer");

    // A camera paired the usual way.
    let mqtt = format!("127.0.0.1:{}", hub.mqtt_tls);
    let args = ["--pair", "--hub", &mqtt, "--hub-fp", &hub.fingerprint, "--device-id", "cam-r", "--setup-code", "13572468"];
    let (cam, lines) = camsim_lines(&args);
    wait_until("pairing request", Duration::from_secs(15), || {
        !hub.get_json("/api/pairing", &owner)["items"].as_array().unwrap().is_empty()
    });
    let (st, b) = hub.send_json("POST", "/api/pairing/cam-r", &owner, &serde_json::json!({ "setup_code": "13572468" }));
    assert_eq!(st, 200, "{b}");
    let streaming = |hub: &Hub, cookie: &str| {
        hub.get_json("/api/cameras", cookie)["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["source"] == "paired" && c["status"] == "streaming")
            .cloned()
    };
    let camera = poll(Duration::from_secs(20), || streaming(&hub, &owner)).expect("paired camera streaming");
    wait_until("cam-r online", Duration::from_secs(10), || {
        device(&hub, &owner, "cam-r").is_some_and(|d| d["availability"] == "online")
    });
    let connections = device(&hub, &owner, "cam-r").unwrap()["connections"].as_i64().unwrap();
    let digest = |hub: &Hub| -> Vec<u8> {
        hub.db().query_row("SELECT password_hash FROM devices WHERE id = 'cam-r'", [], |r| r.get(0)).unwrap()
    };
    let before = digest(&hub);

    // A device provisioned by hand, connected, that cannot confirm a rotation; and Home
    // Assistant's broker login.
    let (ok, out, err) = hub.admin(&["device", "add", "raw-1"]);
    assert!(ok, "{err}");
    let (raw_user, raw_pass) = creds(&out);
    let plain = hub.mqtt_plain;
    let (mut raw, raw_lines) = mosquitto_sub(&[
        "-p",
        &plain.to_string(),
        "-u",
        &raw_user,
        "-P",
        &raw_pass,
        "-i",
        "raw-1",
        "-t",
        "homehub/dev/raw-1/rotate",
    ]);
    let (ok, out, err) = hub.admin(&["mqtt-user", "add", "home-assistant"]);
    assert!(ok, "{err}");
    let (ha_user, ha_pass) = creds(&out);
    assert!(mosquitto_once(plain, &ha_user, &ha_pass, "homehub/status").0, "the broker user works before");
    wait_until("raw-1 connected", Duration::from_secs(10), || {
        device(&hub, &owner, "raw-1").is_some_and(|d| d["connections"].as_i64() >= Some(1))
    });

    // The button needs its confirmation, and the owner.
    let confirm = serde_json::json!({ "confirm": "sign out everywhere" });
    assert_eq!(hub.send_json("POST", "/api/signout-everywhere", &viewer, &confirm).0, 403);
    assert_eq!(hub.send_json("POST", "/api/signout-everywhere", &owner, &serde_json::json!({ "confirm": "yes" })).0, 400);
    let t = Instant::now();
    let (st, r) = hub.send_json("POST", "/api/signout-everywhere", &owner, &confirm);
    assert_eq!(st, 200, "{r}");
    eprintln!("sign out everywhere took {:?}: {r}", t.elapsed());
    assert_eq!(r["devices_rotated"], serde_json::json!(["cam-r"]), "{r}");
    assert_eq!(r["devices_offline"], serde_json::json!(["raw-1"]), "{r}");
    assert_eq!((r["sessions"].as_i64(), r["broker_users"].as_i64()), (Some(3), Some(1)), "{r}");

    // Every browser session is gone, the caller's too.
    for c in [&owner, &laptop, &viewer] {
        assert_eq!(hub.get("/api/me", Some(c)).0, 401);
    }
    // camsim got its new password over its connection and came back with it; its camera
    // never stopped streaming.
    wait_line(&lines, "camsim cam-r: the hub rotated our password", Duration::from_secs(5));
    assert_ne!(digest(&hub), before, "a new password digest");
    let owner = hub.login(EMAIL, PASSWORD).1.unwrap().0;
    wait_until("cam-r logged in again with its new password", Duration::from_secs(15), || {
        device(&hub, &owner, "cam-r").is_some_and(|d| {
            d["availability"] == "online" && d["connections"].as_i64() > Some(connections) && d["paired"] == true
        })
    });
    let after = streaming(&hub, &owner).expect("the paired camera still streams");
    assert_eq!(
        (after["id"].clone(), after["connects"].clone()),
        (camera["id"].clone(), camera["connects"].clone()),
        "no reconnect"
    );
    // The device that could not confirm heard its new password, but is unpaired: neither
    // password works, and it must pair again.
    let heard = raw_lines.recv_timeout(Duration::from_secs(5)).expect("raw-1 heard the rotate message");
    assert!(heard.contains("\"password\""), "{heard}");
    let (ok, why) = mosquitto_once(plain, &raw_user, &raw_pass, "homehub/dev/raw-1/cmd");
    assert!(!ok && why.contains("bad user name or password"), "raw-1's old password: {why}");
    assert_eq!(device(&hub, &owner, "raw-1").unwrap()["paired"], false);
    let _ = raw.kill();
    let _ = raw.wait();
    // The broker user is gone.
    let (ok, why) = mosquitto_once(plain, &ha_user, &ha_pass, "homehub/status");
    assert!(!ok && why.contains("bad user name or password"), "home-assistant's old password: {why}");
    // And the audit trail says who did it.
    let audit = hub.get_json("/api/audit?action=security", &owner);
    let row = &audit["items"][0];
    assert_eq!((row["action"].as_str(), row["actor"].as_str()), (Some("security.signed_out_everywhere"), Some(EMAIL)), "{audit}");
    assert!(row["detail"].as_str().unwrap().contains("must pair again (raw-1)"), "{row}");
    drop(cam);
}
