//! Where a paired device may point the hub, and revocation beside a running hub, against a
//! real `homehub serve`: a device's config naming another host is refused and that host
//! never sees a connection; the device's own address is accepted; a private host the owner
//! allows starts the camera, and withdrawing it stops the camera; `mqtt-user remove` drops
//! a live connection within seconds.
//!
//! The device is provisioned with `homehub device add` and speaks through mosquitto's
//! tools from 127.0.0.1 (a `mosquitto_sub` holds its connection, `mosquitto_pub` sends
//! its retained config); the other host is 127.0.0.9.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

const DEVICE: &str = "cam-fence";
const SECRET: &str = "trapsecret";

/// A TCP listener that counts the connections made to it (accepting them in a thread).
struct Trap {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Trap {
    fn bind(ip: &str) -> Trap {
        let l = TcpListener::bind((ip, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                n.fetch_add(1, Ordering::SeqCst);
                // Held open a moment then dropped: the camera sees a failed stream.
                drop(c);
            }
        });
        Trap { port, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// `homehub device add` (or `mqtt-user add`) output: (username, password).
fn credentials(out: &str) -> (String, String) {
    let get = |k: &str| {
        out.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string()).unwrap_or_else(|| panic!("no {k} in {out:?}"))
    };
    (get("username:"), get("password:"))
}

fn mosquitto_sub(hub: &Hub, user: &str, password: &str, client_id: &str, topic: &str) -> Proc {
    let child = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &hub.mqtt_plain.to_string(), "-u", user, "-P", password, "-i", client_id])
        .args(["-t", topic, "-k", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    Proc { child, name: format!("mosquitto_sub {user}") }
}

fn publish_config(hub: &Hub, password: &str, url: &str) {
    let payload = serde_json::json!({ "rtsp_url": url }).to_string();
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &hub.mqtt_plain.to_string(), "-u", DEVICE, "-P", password, "-i", "cam-fence-pub"])
        .args(["-t", &format!("homehub/dev/{DEVICE}/config"), "-r", "-q", "1", "-m", &payload])
        .output()
        .expect("mosquitto_pub");
    assert!(out.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
}

fn device(hub: &Hub, cookie: &str) -> serde_json::Value {
    let v = hub.get_json("/api/devices", cookie);
    v["items"].as_array().unwrap().iter().find(|d| d["id"] == DEVICE).cloned().unwrap_or_else(|| panic!("no {DEVICE} in {v}"))
}

/// The device's camera as `/api/cameras` lists it (running cameras only).
fn camera(hub: &Hub, cookie: &str) -> Option<serde_json::Value> {
    let id = device(hub, cookie)["camera_id"].as_i64()?;
    let v = hub.get_json("/api/cameras", cookie);
    v["items"].as_array().unwrap().iter().find(|c| c["id"] == id).cloned()
}

fn refusals(hub: &Hub) -> usize {
    hub.log_text().matches("device config refused: no camera started").count()
}

/// A camsim serving RTSP on 127.0.0.9 (any free port); its port.
fn camsim_on_other_host() -> (Proc, u16) {
    let mut child = Command::new(CAMSIM)
        .args(["--rtsp", "127.0.0.9:0", "--size", "320x180", "--fps", "10", "--bitrate", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("camsim");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(|l| l.ok()) {
            if l.starts_with("camsim ready") {
                let _ = tx.send(l);
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("camsim ready line");
    let port = line
        .split_whitespace()
        .nth(2)
        .and_then(|u| u.strip_prefix("rtsp://127.0.0.9:"))
        .and_then(|r| r.strip_suffix("/main"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("camsim ready line: {line}"));
    (Proc { child, name: "camsim 127.0.0.9".into() }, port)
}

fn exited(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_some()
}

#[test]
fn a_config_naming_another_host_is_refused_until_the_owner_allows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "[recording]\nmode = \"continuous\"\nsegment_seconds = 2\n");
    let cookie = hub.session("owner");
    let (ok, out, err) = hub.admin(&["device", "add", DEVICE]);
    assert!(ok, "device add: {err}");
    let (user, password) = credentials(&out);
    assert_eq!(user, DEVICE);
    // A broker user may not take a device's name.
    let (ok, _, err) = hub.admin(&["mqtt-user", "add", DEVICE]);
    assert!(!ok && err.contains("a device is called"), "{err}");

    // The device is connected from 127.0.0.1 throughout.
    let mut held = mosquitto_sub(&hub, DEVICE, &password, DEVICE, &format!("homehub/dev/{DEVICE}/cmd"));
    wait_until("the device's connection", Duration::from_secs(10), || device(&hub, &cookie)["connections"].as_i64() >= Some(1));

    // 1. Its config names another host: refused, and that host never sees a connection.
    let trap = Trap::bind("127.0.0.9");
    publish_config(&hub, &password, &format!("rtsp://admin:{SECRET}@127.0.0.9:{}/main", trap.port));
    wait_until("the refusal", Duration::from_secs(10), || !device(&hub, &cookie)["config_refused"].is_null());
    let d = device(&hub, &cookie);
    let reason = d["config_refused"].as_str().unwrap();
    assert!(reason.starts_with("rtsp_url: host 127.0.0.9 is not the device's own address"), "{reason}");
    assert!(reason.contains("connects from 127.0.0.1"), "{reason}");
    assert!(d["camera_id"].is_null(), "no camera for a refused config: {d}");
    assert_eq!(d["approved_hosts"], serde_json::json!([]));
    assert_eq!(refusals(&hub), 1);

    // 2. Its own address is accepted: the camera starts and connects there.
    let own = Trap::bind("127.0.0.1");
    publish_config(&hub, &password, &format!("rtsp://127.0.0.1:{}/main", own.port));
    wait_until("a connection to the device's own address", Duration::from_secs(20), || own.accepted() > 0);
    assert!(device(&hub, &cookie)["config_refused"].is_null(), "an accepted config clears the refusal");

    // 3. Its camera on 127.0.0.9: refused again, until the owner allows that address.
    let (_cam, cam_port) = camsim_on_other_host();
    publish_config(&hub, &password, &format!("rtsp://127.0.0.9:{cam_port}/main"));
    wait_until("the second refusal", Duration::from_secs(10), || refusals(&hub) == 2);
    assert!(!device(&hub, &cookie)["config_refused"].is_null());
    assert_ne!(camera(&hub, &cookie).map(|c| c["url"].clone()), Some(format!("rtsp://127.0.0.9:{cam_port}/main").into()));

    // Only the owner approves, and only a private address.
    hub.add_user("member@example.com", "member", PASSWORD);
    let member = hub.login("member@example.com", PASSWORD).1.unwrap().0;
    let path = format!("/api/devices/{DEVICE}/hosts");
    let (st, _) = hub.send_json("POST", &path, &member, &serde_json::json!({ "host": "127.0.0.9" }));
    assert_eq!(st, 403);
    let (st, body) = hub.send_json("POST", &path, &cookie, &serde_json::json!({ "host": "8.8.8.8" }));
    assert_eq!(st, 400, "{body}");
    let (st, body) = hub.send_json("POST", "/api/devices/nope/hosts", &cookie, &serde_json::json!({ "host": "10.0.0.2" }));
    assert_eq!(st, 404, "{body}");
    let (st, body) = hub.send_json("POST", &path, &cookie, &serde_json::json!({ "host": "127.0.0.9" }));
    assert_eq!((st, &body["approved"]), (200, &serde_json::json!("127.0.0.9")), "{body}");

    // The refused config, kept by the hub, starts without the device sending it again.
    wait_until("the camera on the allowed address streaming", Duration::from_secs(30), || {
        camera(&hub, &cookie)
            .is_some_and(|c| c["status"] == "streaming" && c["url"] == format!("rtsp://127.0.0.9:{cam_port}/main"))
    });
    let d = device(&hub, &cookie);
    assert!(d["config_refused"].is_null(), "{d}");
    assert_eq!(d["approved_hosts"], serde_json::json!(["127.0.0.9"]));

    // 4. Withdrawn, the camera stops and the config is refused again.
    let (st, body) = hub.send_json("DELETE", &format!("{path}/127.0.0.9"), &cookie, &serde_json::json!({}));
    assert_eq!(st, 200, "{body}");
    wait_until("the camera stopping", Duration::from_secs(20), || camera(&hub, &cookie).is_none_or(|c| c["status"] == "stopped"));
    let d = device(&hub, &cookie);
    assert!(!d["config_refused"].is_null(), "{d}");
    assert_eq!(d["approved_hosts"], serde_json::json!([]));

    // Throughout: no connection to the other host's trap, no password in the log.
    assert_eq!(trap.accepted(), 0, "the refused host saw a connection");
    let log = hub.log_text();
    assert!(!log.contains(SECRET), "the camera password reached the log");
    assert!(log.contains(&format!("rtsp://admin:***@127.0.0.9:{}/main", trap.port)), "the refusal names the redacted URL");
    assert!(!exited(&mut held.child), "the device's own connection stays up");
}

#[test]
fn removing_a_broker_user_drops_its_live_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    let (ok, out, err) = hub.admin(&["mqtt-user", "add", "ha"]);
    assert!(ok, "mqtt-user add: {err}");
    let (user, password) = credentials(&out);
    let mut sub = mosquitto_sub(&hub, &user, &password, "ha-1", "homehub/status");
    // Logged in: the broker edge counts it live (a refused login would exit at once).
    let cookie = hub.session("owner");
    wait_until("the user's connection", Duration::from_secs(10), || {
        let (st, _, body) = hub.get("/metrics", Some(&cookie));
        st == 200 && String::from_utf8_lossy(&body).lines().any(|l| l.starts_with("homehub_mqtt_live") && !l.ends_with(" 0"))
    });
    assert!(!exited(&mut sub.child), "the user's connection is up before the removal");
    let (ok, _, err) = hub.admin(&["mqtt-user", "remove", "ha"]);
    assert!(ok, "mqtt-user remove: {err}");
    let started = std::time::Instant::now();
    wait_until("mosquitto_sub to be dropped", Duration::from_secs(8), || exited(&mut sub.child));
    eprintln!("fence: mqtt-user remove dropped the live connection in {} ms", started.elapsed().as_millis());
    assert!(hub.log_text().contains("broker user removed: its connections are dropped"));
}
