//! Cameras from the API, against a real hub and real simulated cameras: test connection
//! (probe), add, rename, live motion zones, UDP-only cameras, removal, secrets, roles.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "hunter2-very-secret";

fn camera(hub: &Hub, cookie: &str, id: i64) -> Value {
    let v = hub.get_json("/api/cameras", cookie);
    v["items"].as_array().unwrap().iter().find(|c| c["id"] == id).cloned().unwrap_or(Value::Null)
}

fn wait_streaming(hub: &Hub, cookie: &str, id: i64) -> Value {
    poll(Duration::from_secs(40), || {
        let c = camera(hub, cookie, id);
        (c["status"] == "streaming" && c["fps"].as_f64().unwrap_or(0.0) > 0.0).then_some(c)
    })
    .unwrap_or_else(|| panic!("camera {id} not streaming: {}\n{}", camera(hub, cookie, id), hub.log_text()))
}

fn wait_segment(hub: &Hub, cookie: &str, id: i64) -> Seg {
    poll(Duration::from_secs(40), || hub.segments(cookie).into_iter().find(|s| s.camera_id == id && !s.partial))
        .unwrap_or_else(|| panic!("no complete segment of camera {id}"))
}

#[test]
fn cameras_are_tested_added_tuned_and_removed_through_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    // Motion at 20-26 s (makes an event) and 40-46 s (after the zone: must not).
    let cam = camsim(&["--user", "admin", "--password", SECRET, "--motion", "20-26,40-46"]);
    let cam_started = Instant::now();
    let udp = camsim(&["--udp-only"]);
    let mut hub = Hub::start(
        tmp.path(),
        "[recording]\nmode = \"continuous\"\nsegment_seconds = 4\n[motion]\npre_roll_seconds = 1\npost_roll_seconds = 2\n\
         [[camera]]\nname = \"Configured\"\nurl = \"rtsp://127.0.0.1:1/none\"\n",
    );
    let owner = hub.session("owner");
    hub.add_user("viewer@example.com", "viewer", PASSWORD);
    let viewer = hub.login("viewer@example.com", PASSWORD).1.unwrap().0;
    let url = format!("rtsp://admin:{SECRET}@127.0.0.1:{}/main", cam.port);

    // Test connection: what the stream is, over TCP.
    let (st, p) = hub.send_json("POST", "/api/cameras/probe", &owner, &json!({ "url": url }));
    assert_eq!(st, 200, "{p}");
    assert_eq!((p["codec"].as_str(), p["width"].as_u64(), p["height"].as_u64()), (Some("H.264"), Some(640), Some(360)), "{p}");
    let fps = p["fps"].as_f64().unwrap();
    assert!((14.0..=16.0).contains(&fps), "camsim sends 15 fps: {p}");
    assert_eq!(p["transport"], "tcp");

    // Wrong URLs: 422 naming what failed, nothing added.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (st, e) =
        hub.send_json("POST", "/api/cameras/probe", &owner, &json!({ "url": format!("rtsp://127.0.0.1:{closed}/main") }));
    assert_eq!(st, 422, "{e}");
    assert!(e["error"].as_str().unwrap().contains("connection refused"), "{e}");
    let wrong_path = format!("rtsp://admin:{SECRET}@127.0.0.1:{}/nope", cam.port);
    let (st, e) = hub.send_json("POST", "/api/cameras/probe", &owner, &json!({ "url": wrong_path }));
    assert_eq!(st, 422, "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains("not found (404)") && !msg.contains(SECRET), "{e}");
    let (st, e) = hub.send_json(
        "POST",
        "/api/cameras/probe",
        &owner,
        &json!({ "url": format!("rtsp://admin:wrong@127.0.0.1:{}/main", cam.port) }),
    );
    assert_eq!(st, 422, "{e}");
    assert!(e["error"].as_str().unwrap().contains("unauthorized (401)"), "{e}");
    let (st, e) = hub.send_json("POST", "/api/cameras/probe", &owner, &json!({ "url": "http://127.0.0.1/x" }));
    assert_eq!(st, 400, "{e}");
    assert!(e["error"].as_str().unwrap().starts_with("url:"), "{e}");
    let listed = hub.get_json("/api/cameras", &owner)["items"].as_array().unwrap().len();
    assert_eq!(listed, 1, "only the configured camera");

    // A viewer changes nothing.
    for (method, path, body) in [
        ("POST", "/api/cameras/probe".to_string(), json!({ "url": url })),
        ("POST", "/api/cameras".to_string(), json!({ "name": "V", "url": url })),
        ("PATCH", "/api/cameras/1".to_string(), json!({ "name": "V" })),
        ("DELETE", "/api/cameras/1".to_string(), json!({})),
        ("PUT", "/api/cameras/1/motion".to_string(), json!({ "sensitivity": 5 })),
    ] {
        let (st, e) = hub.send_json(method, &path, &viewer, &body);
        assert_eq!(st, 403, "{method} {path}: {e}");
    }

    // Add: it streams over TCP and records; the password never comes back.
    let (st, c) = hub.send_json("POST", "/api/cameras", &owner, &json!({ "name": "Porch", "url": url }));
    assert_eq!(st, 201, "{c}");
    assert_eq!(c["source"], "added");
    assert_eq!(c["editable"], true);
    assert_eq!(c["url"], format!("rtsp://127.0.0.1:{}/main", cam.port));
    let id = c["id"].as_i64().unwrap();
    let (st, e) = hub.send_json("POST", "/api/cameras", &owner, &json!({ "name": "Porch", "url": url }));
    assert_eq!(st, 409, "a second Porch: {e}");
    let c = wait_streaming(&hub, &owner, id);
    assert_eq!(c["transport"], "tcp", "{c}");
    assert_eq!((c["width"].as_u64(), c["height"].as_u64()), (Some(640), Some(360)), "{c}");
    assert!(c["bitrate_kbps"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(c["recording_mode"], "continuous");
    assert_eq!(c["recording_mode_override"], Value::Null);
    let seg = wait_segment(&hub, &owner, id);
    assert!(plays(&hub.dir.join(&seg.path)), "{} plays", seg.path);

    // Rename: no restart.
    let connects = c["connects"].as_u64().unwrap();
    assert!(connects >= 1);
    let (st, r) = hub.send_json("PATCH", &format!("/api/cameras/{id}"), &owner, &json!({ "name": "Front door" }));
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["name"], "Front door");
    assert_eq!(camera(&hub, &owner, id)["connects"].as_u64(), Some(connects), "renaming restarted the camera");

    // The config camera is changed in homehub.toml only.
    let (st, e) = hub.send_json("PATCH", "/api/cameras/1", &owner, &json!({ "name": "X" }));
    assert_eq!(st, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("homehub.toml"), "{e}");
    let (st, _) = hub.send_json("DELETE", "/api/cameras/1", &owner, &json!({}));
    assert_eq!(st, 409);
    assert_eq!(camera(&hub, &owner, 1)["editable"], false);

    // The first motion span makes an event.
    poll(Duration::from_secs(60), || hub.events(&owner).into_iter().find(|e| e["camera_id"] == id && !e["end"].is_null()))
        .unwrap_or_else(|| panic!("no finished event for the first span: {:?}", hub.events(&owner)));
    assert!(cam_started.elapsed() < Duration::from_secs(38), "the zone must be in place before the second span");

    // An exclude zone over the whole picture, while streaming: the second span makes none.
    let zone = json!({ "sensitivity": 5, "zones": [{ "name": "all", "kind": "exclude",
        "points": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]] }] });
    let (st, z) = hub.send_json("PUT", &format!("/api/cameras/{id}/motion"), &owner, &zone);
    assert_eq!(st, 200, "{z}");
    assert_eq!(z["zones"][0]["kind"], "exclude");
    let before = hub.events(&owner).iter().filter(|e| e["camera_id"] == id).count();
    // A negative can only be waited out: until the span is over and the post-roll with it.
    wait_until("the second motion span to pass", Duration::from_secs(60), || cam_started.elapsed() > Duration::from_secs(50));
    let after = hub.events(&owner).iter().filter(|e| e["camera_id"] == id).count();
    assert_eq!(after, before, "motion inside the exclude zone made an event: {:?}", hub.events(&owner));
    assert_eq!(camera(&hub, &owner, id)["connects"].as_u64(), Some(connects), "the zone restarted the camera");

    // A camera that refuses RTP over TCP: probed and recorded over UDP.
    let udp_url = format!("rtsp://127.0.0.1:{}/main", udp.port);
    let (st, p) = hub.send_json("POST", "/api/cameras/probe", &owner, &json!({ "url": udp_url }));
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["transport"], "udp", "{p}");
    let (st, u) = hub.send_json("POST", "/api/cameras", &owner, &json!({ "name": "UDP only", "url": udp_url }));
    assert_eq!(st, 201, "{u}");
    let uid = u["id"].as_i64().unwrap();
    let u = wait_streaming(&hub, &owner, uid);
    assert_eq!(u["transport"], "udp", "{u}");
    let seg = wait_segment(&hub, &owner, uid);
    assert!(plays(&hub.dir.join(&seg.path)), "the UDP camera's {} plays", seg.path);

    // Recording mode: an override restarts the camera; null goes back to the config's.
    let (st, m) = hub.send_json("PATCH", &format!("/api/cameras/{uid}"), &owner, &json!({ "recording_mode": "events" }));
    assert_eq!(st, 200, "{m}");
    assert_eq!((m["recording_mode"].as_str(), m["recording_mode_override"].as_str()), (Some("events"), Some("events")));
    let (st, m) = hub.send_json("PATCH", &format!("/api/cameras/{uid}"), &owner, &json!({ "recording_mode": null }));
    assert_eq!(st, 200, "{m}");
    assert_eq!((m["recording_mode"].as_str(), m["recording_mode_override"].as_str()), (Some("continuous"), None));

    // Remove: gone from the list, its recordings stay.
    let (st, _) = hub.send_json("DELETE", &format!("/api/cameras/{uid}"), &owner, &json!({}));
    assert_eq!(st, 204);
    assert_eq!(camera(&hub, &owner, uid), Value::Null);
    assert!(hub.segments(&owner).iter().any(|s| s.camera_id == uid), "recordings stay");
    let (st, _) = hub.send_json("DELETE", &format!("/api/cameras/{uid}"), &owner, &json!({}));
    assert_eq!(st, 404);

    // The password is nowhere but the database: not in the API, the audit trail or the log.
    let (_, _, list) = hub.get("/api/cameras", Some(&owner));
    let (_, _, audit) = hub.get("/api/audit", Some(&owner));
    assert!(!String::from_utf8_lossy(&list).contains(SECRET));
    assert!(!String::from_utf8_lossy(&audit).contains(SECRET));
    assert!(String::from_utf8_lossy(&audit).contains("camera.add"), "changes are audited");

    // Added cameras come back after a restart, under their new names.
    hub.proc.as_mut().unwrap().term();
    assert!(!hub.log_text().contains(SECRET), "the log holds the password");
    hub.restart();
    let c = wait_streaming(&hub, &owner, id);
    assert_eq!(c["name"], "Front door");
    assert_eq!(camera(&hub, &owner, uid), Value::Null, "a removed camera stays removed");
    drop(udp);
}
