//! Pairing and the broker edge, end to end: camsim `--pair` against `homehub serve`,
//! Debian's mosquitto clients as third parties, curl for the owner's side.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;

const CODE: &str = "24681357";

fn owner(hub: &Hub) -> String {
    hub.add_user(EMAIL, "owner", PASSWORD);
    hub.login(EMAIL, PASSWORD).1.expect("session").0
}

fn pending_ids(hub: &Hub, cookie: &str) -> Vec<String> {
    let v = hub.get_json("/api/pairing", cookie);
    v["items"].as_array().unwrap().iter().map(|r| r["device_id"].as_str().unwrap().to_string()).collect()
}

fn device(hub: &Hub, cookie: &str, id: &str) -> Option<serde_json::Value> {
    let v = hub.get_json("/api/devices", cookie);
    v["items"].as_array().unwrap().iter().find(|d| d["id"] == id).cloned()
}

/// A mosquitto tool against the hub's plaintext loopback listener (or TLS with `--cafile`).
fn mosq(tool: &str, args: &[&str]) -> Output {
    Command::new(tool).args(["-h", "127.0.0.1"]).args(args).output().expect(tool)
}

/// A `mosquitto_sub -d` in the background, its stdout read line by line as it comes (line
/// buffered by coreutils' stdbuf: mosquitto_sub flushes only its messages, not -d's lines).
struct Sub {
    child: Child,
    lines: Receiver<String>,
    out: Vec<String>,
}

impl Sub {
    fn spawn(args: &[&str]) -> Sub {
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-d", "-h", "127.0.0.1"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("stdbuf mosquitto_sub");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                let _ = tx.send(l);
            }
        });
        Sub { child, lines, out: Vec::new() }
    }

    /// Reads lines until `done` holds for the lines so far; false if it did not within `timeout`.
    fn wait_for(&mut self, timeout: Duration, done: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.out) {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => self.out.push(l),
                Err(_) => return false,
            }
        }
        true
    }

    /// Waits for the broker's SUBACK: from here on the subscription is in place.
    fn subscribed(&mut self) {
        let ok = self.wait_for(Duration::from_secs(10), |out| out.iter().any(|l| l.contains("received SUBACK")));
        assert!(ok, "mosquitto_sub: no SUBACK within 10 s: {:?}", self.out);
    }

    /// Waits for it to exit; (the messages it printed, everything it printed).
    fn finish(mut self) -> (String, String) {
        let o = self.child.wait_with_output().unwrap();
        self.out.extend(self.lines.iter());
        // -d's own lines: "Client … sending/received …" and "Subscribed (mid: …): …".
        let msgs: Vec<&String> =
            self.out.iter().filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed (mid:")).collect();
        let msgs = msgs.iter().map(|l| format!("{l}\n")).collect::<String>();
        (msgs, format!("{}\n{}", self.out.join("\n"), String::from_utf8_lossy(&o.stderr)))
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Credentials printed by `homehub device add` / `mqtt-user add`.
fn creds(out: &str) -> (String, String) {
    let get = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim().to_string();
    (get("username:"), get("password:"))
}

fn pair_args<'a>(hub_addr: &'a str, fp: &'a str, id: &'a str, code: &'a str) -> Vec<&'a str> {
    vec!["--pair", "--hub", hub_addr, "--hub-fp", fp, "--device-id", id, "--setup-code", code, "--name", "Garden"]
}

#[test]
fn a_camera_pairs_with_its_code_gets_its_own_topics_and_is_revoked_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(tmp.path(), "[recording]\nmode = \"continuous\"\nsegment_seconds = 4\n");
    let cookie = owner(&hub);
    let fp = hub.fingerprint.clone();
    let hub_addr = format!("127.0.0.1:{}", hub.mqtt_tls);
    let plain = hub.mqtt_plain.to_string();
    let (mut cam, lines) = camsim_lines(&pair_args(&hub_addr, &fp, "cam-a", CODE));

    // The request shows up for the owner; a wrong code is refused, the right one pairs.
    wait_until("pairing request listed", Duration::from_secs(15), || pending_ids(&hub, &cookie) == ["cam-a"]);
    let (st, body) = hub.send_json("POST", "/api/pairing/cam-a", &cookie, &serde_json::json!({ "setup_code": "11111111" }));
    assert_eq!(st, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("wrong setup code"), "{body}");
    assert!(device(&hub, &cookie, "cam-a").is_none(), "no device before the right code");
    let accepted = Instant::now();
    let (st, body) = hub.send_json("POST", "/api/pairing/cam-a", &cookie, &serde_json::json!({ "setup_code": CODE }));
    assert_eq!(st, 200, "{body}");
    wait_line(&lines, "camsim paired cam-a", Duration::from_secs(10));
    assert!(pending_ids(&hub, &cookie).is_empty());

    // Within 10 s the hub records the camera the device announced in its config.
    let paired_streaming = || {
        let cams = hub.get_json("/api/cameras", &cookie);
        cams["items"].as_array().unwrap().iter().find(|c| c["source"] == "paired" && c["status"] == "streaming").cloned()
    };
    let c = poll(Duration::from_secs(10).saturating_sub(accepted.elapsed()), paired_streaming)
        .unwrap_or_else(|| panic!("paired camera not streaming within 10 s: {}", hub.get_json("/api/cameras", &cookie)));
    assert_eq!(c["name"], "Garden");
    let cam_id = c["id"].as_i64().unwrap();
    let rec_dir = hub.dir.join(format!("recordings/{cam_id}"));
    wait_until("recording files of the paired camera", Duration::from_secs(10), || {
        std::fs::read_dir(&rec_dir)
            .map(|d| d.flatten().any(|f| f.metadata().map(|m| m.len() > 0).unwrap_or(false)))
            .unwrap_or(false)
    });
    wait_until("device online", Duration::from_secs(10), || {
        device(&hub, &cookie, "cam-a").is_some_and(|d| d["availability"] == "online" && d["connections"].as_i64() >= Some(1))
    });
    let d = device(&hub, &cookie, "cam-a").unwrap();
    assert_eq!((d["paired"].as_bool(), d["camera_id"].as_i64()), (Some(true), Some(cam_id)));
    // A restart keeps the pairing: the camera comes back from the database and the
    // device logs in again with its credentials.
    hub.proc.as_mut().unwrap().term();
    hub.restart();
    let streaming = |hub: &Hub| {
        hub.get_json("/api/cameras", &cookie)["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == cam_id && c["status"] == "streaming")
    };
    wait_until("paired camera streaming after a restart", Duration::from_secs(15), || streaming(&hub));
    wait_until("device online after a restart", Duration::from_secs(15), || {
        device(&hub, &cookie, "cam-a").is_some_and(|d| d["availability"] == "online" && d["connections"].as_i64() >= Some(2))
    });
    // The stored secret is a digest, not the password: only the database shows how it is kept.
    let hash: Vec<u8> = hub.db().query_row("SELECT password_hash FROM devices WHERE id = 'cam-a'", [], |r| r.get(0)).unwrap();
    assert_eq!(hash.len(), 32);

    // --- third parties with mosquitto's tools ---
    // Anonymous: refused with a reason code, not dropped.
    let o = mosq("mosquitto_sub", &["-p", &plain, "-t", "#", "-C", "1", "-W", "3"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not authorised"), "anonymous: {}", text(&o));
    let o = mosq("mosquitto_sub", &["-p", &plain, "-u", "cam-a", "-P", "guess", "-t", "#", "-C", "1", "-W", "3"]);
    assert!(text(&o).contains("bad user name or password"), "wrong password: {}", text(&o));
    // pair/pair reaches nothing but its own pairing topics.
    for filter in ["homehub/dev/#", "#", "homehub/pair/+/response", "homehub/pair/cam-a/response"] {
        let o = mosq(
            "mosquitto_sub",
            &["-p", &plain, "-u", "pair", "-P", "pair", "-i", "intruder", "-t", filter, "-C", "1", "-W", "3"],
        );
        assert!(text(&o).contains("denied"), "pair subscribing {filter}: {}", text(&o));
    }
    let o = mosq(
        "mosquitto_sub",
        &[
            "-p",
            &plain,
            "-u",
            "pair",
            "-P",
            "pair",
            "-i",
            "intruder",
            "-t",
            "homehub/pair/intruder/response",
            "-C",
            "1",
            "-W",
            "2",
        ],
    );
    assert!(!text(&o).contains("denied"), "pair may read its own response topic: {}", text(&o));

    // Device B (provisioned by hand) and a read-write integration user.
    let (ok, out, err) = hub.admin(&["device", "add", "dev-b"]);
    assert!(ok, "{err}");
    let (b_user, b_pass) = creds(&out);
    let (ok, out, err) = hub.admin(&["mqtt-user", "add", "watcher"]);
    assert!(ok, "{err}");
    let (w_user, w_pass) = creds(&out);
    // B over TLS, by IP address, pinned to the hub's certificate: its own topics work.
    let cafile = hub.dir.join("tls/cert.pem");
    let tls = hub.mqtt_tls.to_string();
    let mut own = Sub::spawn(&[
        "-p",
        &tls,
        "--cafile",
        cafile.to_str().unwrap(),
        "-u",
        &b_user,
        "-P",
        &b_pass,
        "-t",
        "homehub/dev/dev-b/#",
        "-C",
        "1",
        "-W",
        "10",
    ]);
    own.subscribed();
    let o = mosq(
        "mosquitto_pub",
        &[
            "-p",
            &tls,
            "--cafile",
            cafile.to_str().unwrap(),
            "-u",
            &b_user,
            "-P",
            &b_pass,
            "-t",
            "homehub/dev/dev-b/state",
            "-m",
            "{\"ok\":1}",
        ],
    );
    assert!(o.status.success(), "B publishes its own state over TLS by IP: {}", text(&o));
    let (got, all) = own.finish();
    assert_eq!(got.trim(), "{\"ok\":1}", "B reads its own topic: {all}");
    // B can neither read nor write A's topics.
    for filter in ["homehub/dev/cam-a/#", "homehub/dev/+/state", "homehub/#", "#"] {
        let o = mosq("mosquitto_sub", &["-p", &plain, "-u", &b_user, "-P", &b_pass, "-t", filter, "-C", "1", "-W", "3"]);
        assert!(text(&o).contains("denied"), "B subscribing {filter}: {}", text(&o));
    }
    let mut watcher = Sub::spawn(&["-p", &plain, "-u", &w_user, "-P", &w_pass, "-t", "homehub/dev/+/state", "-v", "-W", "4"]);
    watcher.subscribed();
    let o = mosq(
        "mosquitto_pub",
        &["-p", &plain, "-u", &b_user, "-P", &b_pass, "-t", "homehub/dev/cam-a/state", "-m", "forged", "-q", "1"],
    );
    assert!(o.status.success(), "a denied publish is dropped, not an error: {}", text(&o));
    let (seen, _) = watcher.finish();
    assert!(seen.contains("homehub/dev/cam-a/state {"), "the watcher sees A's real state: {seen}");
    assert!(!seen.contains("forged"), "B wrote into A's topic: {seen}");
    // Home Assistant discovery for the camera's motion sensor, retained.
    let (ok, out, err) = hub.admin(&["mqtt-user", "add", "ha", "--read-only"]);
    assert!(ok, "{err}");
    let (ha_user, ha_pass) = creds(&out);
    let o = mosq("mosquitto_sub", &["-p", &plain, "-u", &ha_user, "-P", &ha_pass, "-t", "homeassistant/#", "-v", "-W", "3"]);
    let disc = text(&o);
    assert!(disc.contains(&format!("_camera_{cam_id}/motion/config")) && disc.contains("\"device_class\":\"motion\""), "{disc}");
    let o =
        mosq("mosquitto_sub", &["-p", &plain, "-u", &ha_user, "-P", &ha_pass, "-t", "homehub/dev/+/state", "-C", "1", "-W", "3"]);
    assert!(text(&o).contains("denied"), "read-only user reading device state: {}", text(&o));

    // --- unpairing drops the live connection and the password stops working ---
    // -W: never outlives a failed run.
    let mut live = Sub::spawn(&["-p", &plain, "-u", &b_user, "-P", &b_pass, "-t", "homehub/dev/dev-b/#", "-W", "30"]);
    live.subscribed();
    assert!(live.child.try_wait().unwrap().is_none(), "B's subscriber is connected");
    let (st, body) = hub.send_json("DELETE", "/api/devices/dev-b", &cookie, &serde_json::json!({}));
    assert_eq!(
        st,
        200,
        "{body}\n{}",
        hub.log_text().lines().filter(|l| !l.contains("rumqttd")).collect::<Vec<_>>()[..].join("\n")
    );
    let t = Instant::now();
    let exited = poll_every(Duration::from_millis(50), Duration::from_secs(3), || live.child.try_wait().unwrap());
    assert!(exited.is_some(), "B's connection still open {:?} after unpairing", t.elapsed());
    let o =
        mosq("mosquitto_sub", &["-p", &plain, "-u", &b_user, "-P", &b_pass, "-t", "homehub/dev/dev-b/#", "-C", "1", "-W", "3"]);
    assert!(text(&o).contains("bad user name or password"), "B's old password: {}", text(&o));

    // --- a killed camera turns offline within 1.5 × keepalive (camsim uses 5 s) ---
    let killed = Instant::now();
    cam.kill9();
    wait_until("cam-a offline", Duration::from_millis(7500), || {
        device(&hub, &cookie, "cam-a").is_some_and(|d| d["availability"] == "offline")
    });
    eprintln!("offline {:?} after SIGKILL", killed.elapsed());

    // Unpairing A stops its camera; the audit trail has it all.
    let (st, _) = hub.send_json("DELETE", "/api/devices/cam-a", &cookie, &serde_json::json!({}));
    assert_eq!(st, 200);
    wait_until("paired camera stopped", Duration::from_secs(10), || {
        hub.get_json("/api/cameras", &cookie)["items"].as_array().unwrap().iter().all(|c| c["id"] != cam_id)
    });
    let audit = hub.get_json("/api/audit", &cookie).to_string();
    for action in
        ["pairing.requested", "pairing.wrong_code", "pairing.accepted", "device.unpaired", "device.add", "mqtt_user.add"]
    {
        assert!(audit.contains(action), "audit lacks {action}: {audit}");
    }
    let metrics = String::from_utf8(hub.get("/metrics", Some(&cookie)).2).unwrap();
    assert!(metrics.contains("homehub_device_connections_total{device=\"cam-a\"}"), "{metrics}");
    // cam-a: the wrong password tried above. dev-b: the dropped subscriber's automatic
    // reconnect, and the old password tried after unpairing.
    assert!(metrics.contains("homehub_device_failed_connections_total{device=\"cam-a\"} 1"), "{metrics}");
    assert!(metrics.contains("homehub_device_failed_connections_total{device=\"dev-b\"} 2"), "{metrics}");
}

#[test]
fn five_wrong_codes_lock_the_device_id_and_issue_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    let cookie = owner(&hub);
    let fp = hub.fingerprint.clone();
    let hub_addr = format!("127.0.0.1:{}", hub.mqtt_tls);
    let (_cam, lines) = camsim_lines(&pair_args(&hub_addr, &fp, "cam-l", CODE));
    wait_until("pairing request listed", Duration::from_secs(15), || pending_ids(&hub, &cookie) == ["cam-l"]);
    for i in 1..=5 {
        let (st, body) = hub.send_json("POST", "/api/pairing/cam-l", &cookie, &serde_json::json!({ "setup_code": "99999999" }));
        assert_eq!(st, 403, "attempt {i}: {body}");
        if i == 5 {
            assert!(body["error"].as_str().unwrap().contains("locked"), "{body}");
        }
    }
    wait_line(&lines, "rejected", Duration::from_secs(5));
    // Locked: even the right code does nothing now.
    let (st, body) = hub.send_json("POST", "/api/pairing/cam-l", &cookie, &serde_json::json!({ "setup_code": CODE }));
    assert_eq!(st, 403, "{body}");
    assert!(pending_ids(&hub, &cookie).is_empty());
    assert!(device(&hub, &cookie, "cam-l").is_none(), "no credentials issued");
    let devices = hub.get_json("/api/devices", &cookie);
    assert_eq!(devices["items"].as_array().unwrap().len(), 0, "{devices}");
    let audit = hub.get_json("/api/audit", &cookie).to_string();
    assert!(audit.contains("pairing.locked"), "{audit}");
}

#[test]
fn malformed_pairing_payloads_are_refused_with_a_reason_and_the_hub_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    let cookie = owner(&hub);
    let plain = hub.mqtt_plain.to_string();
    // placeholder until desk lands: a v2 request instead of v1's build_request.
    let (_, valid) = homehub::pairing::DeviceExchange::start("cam-m", "camera", "sim", "1", CODE);
    let valid = String::from_utf8(valid).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&valid).unwrap();
    v["extra"] = serde_json::json!(1);
    let unknown_field = v.to_string();
    let mut v: serde_json::Value = serde_json::from_str(&valid).unwrap();
    v["nonce"] = serde_json::json!(42);
    let wrong_type = v.to_string();
    let oversized = format!("{{\"v\":1,\"model\":\"{}\"}}", "x".repeat(5000));
    let cases: Vec<(&str, String)> = vec![
        ("not json", "not json".into()),
        ("unknown field", unknown_field),
        ("wrong type", wrong_type),
        ("oversized", oversized),
        ("valid", valid.clone()),
        ("replayed nonce", valid),
    ];
    // Another client id may not ask on cam-m's behalf: the front end drops it.
    let o = mosq(
        "mosquitto_pub",
        &[
            "-p",
            &plain,
            "-u",
            "pair",
            "-P",
            "pair",
            "-i",
            "cam-x",
            "-t",
            "homehub/pair/cam-m/request",
            "-q",
            "1",
            "-m",
            &cases[4].1,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    wait_until("the front end to deny cam-x's publish", Duration::from_secs(5), || {
        hub.log_text().lines().any(|l| l.contains("MQTT publish denied") && l.contains("cam-x"))
    });
    assert!(pending_ids(&hub, &cookie).is_empty(), "a client id asked for another device");

    // cam-m's own session sends every case, one message a line.
    let mut publisher = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &plain,
            "-u",
            "pair",
            "-P",
            "pair",
            "-i",
            "cam-m",
            "-t",
            "homehub/pair/cam-m/request",
            "-q",
            "1",
            "-l",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = publisher.stdin.take().unwrap();
        for (_, payload) in &cases {
            writeln!(stdin, "{payload}").unwrap();
            stdin.flush().unwrap();
            // Pacing: one message at a time.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert!(publisher.wait().unwrap().success());
    wait_until("the valid request", Duration::from_secs(5), || pending_ids(&hub, &cookie) == ["cam-m"]);
    let refusals = |log: &str| log.lines().filter(|l| l.contains("pairing request refused")).count();
    wait_until("five refusals logged", Duration::from_secs(5), || refusals(&hub.log_text()) >= 5);
    let log = hub.log_text();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("pairing request refused")).collect();
    assert_eq!(refused.len(), 5, "every bad payload refused with a logged reason:\n{}", refused.join("\n"));
    for (reason, line) in ["payload", "extra", "nonce", "payload", "replayed nonce"].iter().zip(&refused) {
        assert!(line.contains(reason), "expected {reason:?} in {line}");
    }
    assert_eq!(pending_ids(&hub, &cookie), ["cam-m"], "the one valid request waits for the owner");
    // Oversized MQTT packet: the connection is closed, the broker keeps serving.
    let big = tmp.path().join("big");
    std::fs::write(&big, "x".repeat(600 * 1024)).unwrap();
    let _ = mosq(
        "mosquitto_pub",
        &[
            "-p",
            &plain,
            "-u",
            "pair",
            "-P",
            "pair",
            "-i",
            "cam-m",
            "-t",
            "homehub/pair/cam-m/request",
            "-f",
            big.to_str().unwrap(),
        ],
    );
    wait_until("the oversized packet refused and logged", Duration::from_secs(5), || {
        hub.log_text().lines().any(|l| l.contains("MQTT client dropped") && l.contains("over the limit"))
    });
    assert_eq!(hub.get("/healthz", None).0, 200);
    let o = mosq(
        "mosquitto_sub",
        &["-p", &plain, "-u", "pair", "-P", "pair", "-i", "cam-z", "-t", "homehub/pair/cam-z/response", "-W", "1"],
    );
    assert!(!text(&o).contains("refused") && !text(&o).contains("denied"), "broker still serves: {}", text(&o));
}

#[test]
fn mdns_advertises_the_hub_with_its_certificate_fingerprint() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    let fp = hub.fingerprint.clone();
    // What the hub reports is the SHA-256 of its certificate, by openssl's reckoning too.
    assert_eq!(fp, hub.cert_fingerprint());
    let out = Command::new(HUB).args(["discover", "--interface", "lo", "--timeout", "4"]).output().unwrap();
    let s = text(&out);
    assert!(out.status.success(), "{s}");
    let line = s.lines().find(|l| l.contains(&fp)).unwrap_or_else(|| panic!("no hub with fp {fp} found:\n{s}"));
    assert!(line.contains(&format!("mqtt={}", hub.mqtt_tls)), "{line}");
}

#[test]
fn home_assistant_sees_a_paired_cameras_motion_sensor_turn_on_and_off() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "[motion]\npost_roll_seconds = 2\n");
    let cookie = owner(&hub);
    let fp = hub.fingerprint.clone();
    let hub_addr = format!("127.0.0.1:{}", hub.mqtt_tls);
    let mut args = pair_args(&hub_addr, &fp, "cam-h", CODE);
    args.extend(["--motion", "14-20"]);
    let (_cam, lines) = camsim_lines(&args);
    wait_until("pairing request listed", Duration::from_secs(15), || pending_ids(&hub, &cookie) == ["cam-h"]);
    let (st, body) = hub.send_json("POST", "/api/pairing/cam-h", &cookie, &serde_json::json!({ "setup_code": CODE }));
    assert_eq!(st, 200, "{body}");
    wait_line(&lines, "camsim paired cam-h", Duration::from_secs(10));
    let (ok, out, err) = hub.admin(&["mqtt-user", "add", "home-assistant", "--read-only"]);
    assert!(ok, "{err}");
    let (user, pass) = creds(&out);
    // Home Assistant's view: discovery, then the sensor's state going ON and back OFF.
    let mut ha = Sub::spawn(&[
        "-p",
        &hub.mqtt_plain.to_string(),
        "-u",
        &user,
        "-P",
        &pass,
        "-t",
        "homeassistant/#",
        "-t",
        "homehub/camera/+/motion",
        "-t",
        "homehub/status",
        "-v",
        "-W",
        "40",
    ]);
    let t = Instant::now();
    wait_until("a motion event", Duration::from_secs(40), || {
        hub.get_json("/api/events", &cookie)["items"].as_array().is_some_and(|e| e.iter().any(|e| !e["end"].is_null()))
    });
    eprintln!("event ended {:?} after subscribing", t.elapsed());
    let cam_id = hub.get_json("/api/cameras", &cookie)["items"][0]["id"].as_i64().unwrap();
    let topic = format!("homehub/camera/{cam_id}/motion");
    // The event's end reaches Home Assistant as the sensor going back OFF (judged below).
    let (on, off) = (format!("{topic} ON"), format!("{topic} OFF"));
    ha.wait_for(Duration::from_secs(5), |out| out.iter().position(|l| *l == on).is_some_and(|i| out[i..].contains(&off)));
    unsafe { libc::kill(ha.child.id() as i32, libc::SIGTERM) };
    let (seen, _) = ha.finish();
    let states: Vec<&str> = seen.lines().filter_map(|l| l.strip_prefix(&format!("{topic} "))).collect();
    assert!(seen.contains("homehub/status online"), "{seen}");
    let config = seen.lines().find(|l| l.contains("/motion/config ")).unwrap_or_else(|| panic!("no discovery: {seen}"));
    let config: serde_json::Value = serde_json::from_str(config.split_once(' ').unwrap().1).unwrap();
    assert_eq!(config["state_topic"], topic);
    assert_eq!(config["device"]["name"], "Garden");
    assert_eq!(states.first(), Some(&"OFF"), "retained state first: {seen}");
    let on = states.iter().position(|s| *s == "ON").unwrap_or_else(|| panic!("never ON: {seen}"));
    assert!(states[on..].contains(&"OFF"), "never back OFF: {seen}");
}
