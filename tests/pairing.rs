//! Pairing (SPEC v2) and the broker edge, end to end: camsim `--pair` against `homehub
//! serve`, Debian's mosquitto clients and hand-made `pair` sessions (rumqttc) as third
//! parties, a TLS relay as an impostor hub on the path, curl for the owner's side.

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

    // The request shows up for the owner, with where it came from; a wrong code is
    // refused (the device refuses the hub's challenge), the right one then pairs (the
    // device has started a fresh exchange on its session meanwhile).
    wait_until("pairing request listed", Duration::from_secs(15), || pending_ids(&hub, &cookie) == ["cam-a"]);
    let listed = hub.get_json("/api/pairing", &cookie)["items"][0].clone();
    assert_eq!((listed["peer"].as_str(), listed["competing"].as_bool()), (Some("127.0.0.1"), Some(false)), "{listed}");
    assert!(listed["request_id"].is_string() && listed["received"].is_string() && listed["expires"].is_string(), "{listed}");
    let (st, body) = hub.send_json("POST", "/api/pairing/cam-a", &cookie, &serde_json::json!({ "setup_code": "11111111" }));
    assert_eq!(st, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("wrong setup code for cam-a (1 of 5)"), "{body}");
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

/// A `pair` session made by hand (rumqttc, plaintext loopback listener): subscribed to its
/// response topic before it publishes, so it hears every answer of the hub.
struct PairClient {
    client: rumqttc::Client,
    id: String,
    answers: Receiver<Vec<u8>>,
    ended: Receiver<()>,
}

impl PairClient {
    fn connect(port: u16, id: &str) -> PairClient {
        let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        o.set_credentials("pair", "pair");
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = rumqttc::Client::new(o, 16);
        client.subscribe(homehub::pairing::response_topic(id), rumqttc::QoS::AtLeastOnce).unwrap();
        let (tx, answers) = std::sync::mpsc::channel();
        let (sub_tx, subscribed) = std::sync::mpsc::channel();
        let (end_tx, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a))) => {
                        let _ = sub_tx.send(a.return_codes);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let _ = tx.send(p.payload.to_vec());
                    }
                    Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = end_tx.send(());
        });
        let codes = subscribed.recv_timeout(Duration::from_secs(10)).expect("SUBACK within 10 s");
        assert!(matches!(codes[..], [rumqttc::SubscribeReasonCode::Success(_)]), "{id}: own response topic: {codes:?}");
        PairClient { client, id: id.to_string(), answers, ended }
    }

    fn publish_to(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).unwrap();
    }

    fn publish(&self, payload: impl Into<Vec<u8>>) {
        self.publish_to(&homehub::pairing::request_topic(&self.id), payload);
    }

    /// The hub's next answer, parsed as JSON.
    fn answer(&self, timeout: Duration) -> serde_json::Value {
        let bytes = self.answers.recv_timeout(timeout).unwrap_or_else(|_| panic!("{}: no answer within {timeout:?}", self.id));
        serde_json::from_slice(&bytes).unwrap()
    }

    fn rejected(&self) -> String {
        let a = self.answer(Duration::from_secs(5));
        assert_eq!((a["v"].as_u64(), a["status"].as_str()), (Some(2), Some("rejected")), "{}: {a}", self.id);
        a["reason"].as_str().unwrap().to_string()
    }

    fn close(self) {
        let _ = self.client.disconnect();
        let _ = self.ended.recv_timeout(Duration::from_secs(5));
    }
}

/// A v2 request for `id` as a device makes it (SPAKE2 side A with `code`), and its exchange.
fn v2_request(id: &str, code: &str) -> (homehub::pairing::DeviceExchange, serde_json::Value) {
    let (x, bytes) = homehub::pairing::DeviceExchange::start(id, "camera", "sim", "1", code);
    (x, serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn malformed_pairing_payloads_are_refused_with_a_reason_and_the_hub_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    let cookie = owner(&hub);
    let (_, valid) = v2_request("cam-m", CODE);
    assert_eq!(valid["v"], 2);
    let with = |key: &str, value: serde_json::Value| {
        let mut v = valid.clone();
        v[key] = value;
        v.to_string()
    };
    // v1's request: a nonce, a recipient and a proof where v2 has its exchange message.
    let v1 = serde_json::json!({
        "v": 1, "device_id": "cam-m", "kind": "camera", "model": "sim", "firmware": "1",
        "nonce": "00".repeat(16), "recipient": "age1qqqq", "proof": "00".repeat(32),
    })
    .to_string();
    let cases: Vec<(&str, String, &str)> = vec![
        ("not json", "not json".into(), "payload"),
        ("unknown field", with("extra", serde_json::json!(1)), "extra"),
        ("wrong type", with("pake", serde_json::json!(42)), "pake"),
        ("not base64", with("pake", serde_json::json!("!!!")), "pake"),
        ("v1", v1, "bad request"),
        ("no version", with("v", serde_json::json!(7)), "v"),
    ];
    // Each case on a session of its own (a session's requests count once per 2 s).
    for (what, payload, field) in &cases {
        let c = PairClient::connect(hub.mqtt_plain, "cam-m");
        c.publish(payload.clone());
        let reason = c.rejected();
        assert!(reason.starts_with("bad request") && reason.contains(field), "{what}: {reason}");
        c.close();
    }
    assert!(pending_ids(&hub, &cookie).is_empty(), "nothing malformed is listed");

    // Another client id may not ask on cam-m's behalf: the front end drops it. Its own
    // request after that is listed (one connection's publishes arrive in order).
    let x = PairClient::connect(hub.mqtt_plain, "cam-x");
    x.publish_to(&homehub::pairing::request_topic("cam-m"), valid.to_string());
    // Over 4 KiB: dropped by the front end before anyone reads it (no answer either).
    x.publish(format!("{{\"v\":2,\"model\":\"{}\"}}", "x".repeat(5000)));
    let (_, own) = v2_request("cam-x", CODE);
    x.publish(own.to_string());
    wait_until("cam-x's own request", Duration::from_secs(5), || pending_ids(&hub, &cookie) == ["cam-x"]);
    assert!(x.answers.try_recv().is_err(), "nothing answered to cam-x");
    // A valid request from cam-m's own session waits for the owner, beside cam-x's.
    let m = PairClient::connect(hub.mqtt_plain, "cam-m");
    m.publish(valid.to_string());
    wait_until("the valid request", Duration::from_secs(5), || pending_ids(&hub, &cookie).len() == 2);
    let mut ids = pending_ids(&hub, &cookie);
    ids.sort();
    assert_eq!(ids, ["cam-m", "cam-x"]);
    let metrics = String::from_utf8(hub.get("/metrics", Some(&cookie)).2).unwrap();
    let rejected = metrics
        .lines()
        .find(|l| l.starts_with("homehub_device_payloads_rejected"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok());
    assert!(rejected.is_some_and(|n| n >= cases.len() as f64), "every bad payload counted: {rejected:?}\n{metrics}");

    // A session that goes takes its request with it.
    x.close();
    wait_until("cam-x gone with its session", Duration::from_secs(5), || pending_ids(&hub, &cookie) == ["cam-m"]);
    // An oversized MQTT packet: the connection is closed, the hub keeps serving.
    m.publish(vec![b'x'; 600 * 1024]);
    assert!(m.ended.recv_timeout(Duration::from_secs(5)).is_ok(), "the connection of an oversized packet is closed");
    wait_until("cam-m gone with its session", Duration::from_secs(5), || pending_ids(&hub, &cookie).is_empty());
    assert_eq!(hub.get("/healthz", None).0, 200);
    let z = PairClient::connect(hub.mqtt_plain, "cam-z");
    let (_, req) = v2_request("cam-z", CODE);
    z.publish(req.to_string());
    wait_until("a new session is served", Duration::from_secs(5), || pending_ids(&hub, &cookie) == ["cam-z"]);
    z.close();
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

#[test]
fn a_second_request_for_a_pending_device_id_does_not_replace_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    let cookie = owner(&hub);
    let hub_addr = format!("127.0.0.1:{}", hub.mqtt_tls);
    let (_cam, lines) = camsim_lines(&pair_args(&hub_addr, &hub.fingerprint, "cam-c", CODE));
    wait_until("pairing request listed", Duration::from_secs(15), || pending_ids(&hub, &cookie) == ["cam-c"]);
    let first = hub.get_json("/api/pairing", &cookie)["items"][0].clone();
    // Another connection asks for the same id (with a code of its own choosing).
    let rogue = PairClient::connect(hub.mqtt_plain, "cam-c");
    let (_, req) = v2_request("cam-c", "00000000");
    rogue.publish(req.to_string());
    wait_until("both requests listed", Duration::from_secs(5), || pending_ids(&hub, &cookie).len() == 2);
    let items = hub.get_json("/api/pairing", &cookie)["items"].as_array().unwrap().clone();
    assert!(items.iter().all(|i| i["device_id"] == "cam-c" && i["competing"] == true), "{items:?}");
    let kept = items.iter().find(|i| i["request_id"] == first["request_id"]).expect("the first request is still listed");
    assert_eq!((&kept["received"], &kept["peer"]), (&first["received"], &first["peer"]), "the first is not replaced");
    // The owner must say which one.
    let (st, body) = hub.send_json("POST", "/api/pairing/cam-c", &cookie, &serde_json::json!({ "setup_code": CODE }));
    assert_eq!(st, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("2 requests for cam-c — from 127.0.0.1, 127.0.0.1"), "{body}");
    let (st, body) = hub.send_json(
        "POST",
        "/api/pairing/cam-c",
        &cookie,
        &serde_json::json!({ "setup_code": CODE, "request": first["request_id"] }),
    );
    assert_eq!(st, 200, "{body}");
    wait_line(&lines, "camsim paired cam-c", Duration::from_secs(10));
    assert!(rogue.rejected().contains("another connection"));
    assert!(pending_ids(&hub, &cookie).is_empty());
    assert!(device(&hub, &cookie, "cam-c").is_some_and(|d| d["paired"] == true));
    rogue.close();
}

/// A TLS endpoint with the certificate of the hub whose data dir is `cert_of`, relaying
/// what it decrypts to `target` (a hub's plaintext MQTT port): a man in the middle with a
/// certificate of its own. Returns its port.
fn tls_relay(cert_of: &std::path::Path, target: u16) -> u16 {
    let paths = homehub::web::tls::ensure(cert_of).unwrap();
    let mut cfg = (*homehub::web::tls::server_config(&paths).unwrap()).clone();
    cfg.alpn_protocols.clear();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
    });
    port
}

#[test]
fn an_impostor_hub_cannot_complete_pairing_and_the_device_refuses_its_challenge() {
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Hub::start(ta.path(), "");
    let b = Hub::start(tb.path(), "");
    assert_ne!(a.fingerprint, b.fingerprint);
    let (ca, cb) = (owner(&a), owner(&b));

    // 1. The device pinned the impostor B (it believed B's advert); B sits on the path and
    // hands the device's request on to the real hub A, where the owner types the right code.
    let relay = tls_relay(&b.dir, a.mqtt_plain);
    let (mut cam, _lines) = camsim_lines(&pair_args(&format!("127.0.0.1:{relay}"), &b.fingerprint, "cam-i", CODE));
    wait_until("the relayed request listed on A", Duration::from_secs(15), || pending_ids(&a, &ca) == ["cam-i"]);
    let (st, body) = a.send_json("POST", "/api/pairing/cam-i", &ca, &serde_json::json!({ "setup_code": CODE }));
    assert_eq!(st, 403, "the right code, through an impostor: {body}");
    assert!(body["error"].as_str().unwrap().contains("wrong setup code for cam-i (1 of 5)"), "{body}");
    let audit = a.get_json("/api/audit", &ca).to_string();
    assert!(audit.contains("the device aborted: confirm mismatch"), "the device refused A's challenge: {audit}");
    cam.kill9();

    // 2. The device pinned A, and its request is handed to the second hub B (a copy of
    // it, or a relay holding A's certificate): B's challenge is refused too.
    let relay = tls_relay(&a.dir, b.mqtt_plain);
    let (mut cam, _lines) = camsim_lines(&pair_args(&format!("127.0.0.1:{relay}"), &a.fingerprint, "cam-j", CODE));
    wait_until("the request listed on B", Duration::from_secs(15), || pending_ids(&b, &cb) == ["cam-j"]);
    let (st, body) = b.send_json("POST", "/api/pairing/cam-j", &cb, &serde_json::json!({ "setup_code": CODE }));
    assert_eq!(st, 403, "{body}");
    let audit = b.get_json("/api/audit", &cb).to_string();
    assert!(audit.contains("the device aborted: confirm mismatch"), "the device refused B's challenge: {audit}");
    cam.kill9();

    // A request replayed from another connection, without the device's secret behind it:
    // it cannot answer the challenge (a guessed confirm is refused and counted).
    let replay = PairClient::connect(b.mqtt_plain, "cam-r");
    let (device, req) = v2_request("cam-r", CODE);
    drop(device);
    replay.publish(req.to_string());
    wait_until("the replayed request listed on B", Duration::from_secs(5), || pending_ids(&b, &cb).contains(&"cam-r".into()));
    let (st, body) = std::thread::scope(|s| {
        let owner = s.spawn(|| b.send_json("POST", "/api/pairing/cam-r", &cb, &serde_json::json!({ "setup_code": CODE })));
        let challenge = replay.answer(Duration::from_secs(10));
        assert_eq!(challenge["status"], "challenge", "{challenge}");
        replay.publish(serde_json::json!({ "v": 2, "confirm": "00".repeat(32) }).to_string());
        owner.join().unwrap()
    });
    assert_eq!(st, 403, "a guessed confirm: {body}");
    assert!(body["error"].as_str().unwrap().contains("wrong setup code for cam-r (1 of 5)"), "{body}");
    assert!(replay.rejected().contains("wrong setup code"));
    replay.close();

    // No credentials were issued on either hub.
    for (hub, cookie) in [(&a, &ca), (&b, &cb)] {
        let devices = hub.get_json("/api/devices", cookie);
        assert_eq!(devices["items"].as_array().unwrap().len(), 0, "{devices}");
        let n: i64 = hub.db().query_row("SELECT COUNT(*) FROM devices", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
    }
}
