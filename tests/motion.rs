//! Motion events end to end: camsim with scripted motion, the hub detecting it on the
//! real decoded stream, clips and thumbnails checked with ffprobe/ffmpeg.

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn events(hub: &Hub, cookie: &str, camera: i64) -> Vec<serde_json::Value> {
    // Oldest first (the API lists events newest first).
    let mut evs = hub.get_json(&format!("/api/events?camera={camera}"), cookie)["items"].as_array().unwrap().clone();
    evs.reverse();
    evs
}

fn first_frame_is_key(path: &std::path::Path) -> bool {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "frame=pict_type",
            "-of",
            "csv=p=0",
            "-read_intervals",
            "%+#1",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().starts_with('I')
}

#[test]
fn two_movements_make_two_events_and_still_or_masked_scenes_make_none() {
    let tmp = tempfile::tempdir().unwrap();
    let t0 = now_ms();
    let a = camsim(&["--motion", "20-25,40-46"]);
    let b = camsim(&[]);
    let c = camsim(&["--motion", "20-25,40-46"]);
    let (pa, pb, pc) = (a.port, b.port, c.port);
    let cams = format!(
        "[[camera]]\nname = \"Moving\"\nurl = \"rtsp://127.0.0.1:{pa}/main\"\nsubstream_url = \"rtsp://127.0.0.1:{pa}/sub\"\n\
         [[camera]]\nname = \"Still\"\nurl = \"rtsp://127.0.0.1:{pb}/main\"\n\
         [[camera]]\nname = \"Masked\"\nurl = \"rtsp://127.0.0.1:{pc}/main\"\n"
    );
    let mut hub = Hub::start(
        tmp.path(),
        &format!("[recording]\nmode = \"events\"\n[motion]\npre_roll_seconds = 5\npost_roll_seconds = 10\n{cams}"),
    );
    hub.add_user(EMAIL, "owner", PASSWORD);
    let cookie = hub.login(EMAIL, PASSWORD).1.unwrap().0;
    // Mask the whole picture of the third camera; zones apply from the next start.
    let mask = r#"{"sensitivity":5,"zones":[{"name":"everything","kind":"mask","points":[[0,0],[1,0],[1,1],[0,1]]}]}"#;
    let (st, _, body) = hub.curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("cookie: {cookie}"),
        "-H",
        "content-type: application/json",
        "--data",
        mask,
        &hub.url("/api/cameras/3/motion"),
    ]);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let bad = r#"{"zones":[{"name":"x","kind":"mask","points":[[0,0],[2,0],[1,1]]}]}"#;
    let (st, _, _) = hub.curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("cookie: {cookie}"),
        "-H",
        "content-type: application/json",
        "--data",
        bad,
        &hub.url("/api/cameras/3/motion"),
    ]);
    assert_eq!(st, 400, "a zone outside the picture is refused");
    assert!(hub.proc.as_mut().unwrap().term().success());
    hub.restart();
    // The first span starts at 20 s: a hub back by 12 s has 8 s to connect and fill its
    // 5 s pre-roll (a slow start on a busy machine used to leave less than that).
    assert!(t0 + 12_000 > now_ms(), "set-up took too long for the first motion span");

    // Both movements are over (46 s) and their post-roll too (+10 s): two ended events by
    // 61 s after the cameras started.
    let ended = |evs: &[serde_json::Value]| evs.iter().filter(|e| !e["end"].is_null()).count();
    let deadline = Duration::from_millis((t0 + 61_000 - now_ms()).max(0) as u64);
    let evs = poll(deadline, || Some(events(&hub, &cookie, 1)).filter(|evs| ended(evs) >= 2))
        .unwrap_or_else(|| events(&hub, &cookie, 1));
    assert_eq!(evs.len(), 2, "events: {evs:#?}\nlog:\n{}", hub.log_text());
    for (e, (span_start, span_end)) in evs.iter().zip([(20_000, 25_000), (40_000, 46_000)]) {
        let start = api_ms(&e["start"]);
        let end = api_ms(&e["end"]);
        let (span_start, span_end) = (t0 + span_start, t0 + span_end);
        assert!((start - span_start).abs() <= 2_000, "event starts {} ms from its span", start - span_start);
        assert!(end >= span_end && end <= span_end + 13_000, "event ends {} ms after its span", end - span_end);
        assert!(e["score"].as_f64().unwrap() > 0.0);
        let id = e["id"].as_i64().unwrap();
        // The clip begins at least pre_roll − 1 GOP (2 s) before the movement.
        let cs = api_ms(&e["clip_start"]);
        assert!(cs <= span_start - 3_000 + 300, "clip starts only {} ms before the span", span_start - cs);
        let clip_url = e["clip_url"].as_str().expect("clip_url");
        let (st, _, clip) = hub.get(clip_url, Some(&cookie));
        assert_eq!(st, 200);
        let f = tmp.path().join(format!("clip{id}.mp4"));
        std::fs::write(&f, &clip).unwrap();
        let d = ffprobe_duration(&f).expect("clip readable");
        let want = (end - cs) as f64 / 1000.0;
        assert!((d - want).abs() < 2.5, "clip holds {d} s, event with pre-roll spans {want} s");
        assert!(plays(&f), "clip decodes");
        assert!(first_frame_is_key(&f), "clip starts on a keyframe");
        let (st, head, jpg) = hub.get(e["thumbnail_url"].as_str().expect("thumbnail_url"), Some(&cookie));
        assert_eq!(st, 200);
        assert!(head.to_ascii_lowercase().contains("content-type: image/jpeg"));
        let j = tmp.path().join(format!("thumb{id}.jpg"));
        std::fs::write(&j, &jpg).unwrap();
        let ok = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&j).args(["-f", "null", "-"]).status().unwrap();
        assert!(ok.success() && jpg.starts_with(&[0xff, 0xd8]), "thumbnail decodes as JPEG");
        assert_eq!(hub.get(clip_url, None).0, 401);
    }
    // Mode "events" keeps clips only.
    assert!(segment_files(&hub.dir).is_empty());
    let (_, _, metrics) = hub.get("/metrics", Some(&cookie));
    assert!(String::from_utf8_lossy(&metrics).contains("homehub_events_total 2"));

    // The still camera stays without events for two minutes; the masked one too.
    // Pacing: the scripted two minutes.
    std::thread::sleep(Duration::from_millis((t0 + 122_000 - now_ms()).max(0) as u64));
    assert_eq!(events(&hub, &cookie, 2).len(), 0, "still scene made events");
    assert_eq!(events(&hub, &cookie, 3).len(), 0, "masked scene made events");
    let cams = hub.get_json("/api/cameras", &cookie);
    assert!(cams["items"].as_array().unwrap().iter().all(|c| c["status"] == "streaming"), "{cams}");
}

#[test]
fn an_event_cut_by_sigkill_gets_an_end_and_a_playable_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let cam = camsim(&["--motion", "6-60"]);
    let port = cam.port;
    let mut hub = Hub::start(
        tmp.path(),
        &format!("[recording]\nmode = \"events\"\n{}substream_url = \"rtsp://127.0.0.1:{port}/sub\"\n", cameras_toml(&[port])),
    );
    let cookie = hub.session("owner");
    wait_until("an event to start", Duration::from_secs(30), || !hub.events(&cookie).is_empty());
    // Pacing: the kill comes 6 s into the event.
    std::thread::sleep(Duration::from_secs(6));
    hub.proc.as_mut().unwrap().kill9();
    let clip = hub.dir.join("clips/1/1.mp4");
    assert!(clip.exists(), "clip being written");
    hub.restart();
    let evs = hub.events(&cookie);
    let e = evs.iter().find(|e| e["id"] == 1).unwrap_or_else(|| panic!("event 1 listed: {evs:#?}"));
    let start = api_ms(&e["start"]);
    assert!(!e["end"].is_null(), "the event got an end: {e}");
    let end = api_ms(&e["end"]);
    assert!(end > start, "end {end} after start {start}");
    // Its clip is that file (the API serves exactly its bytes), and the size recorded is its size.
    let (st, _, served) = hub.get(e["clip_url"].as_str().unwrap_or_else(|| panic!("a clip: {e}")), Some(&cookie));
    assert_eq!(st, 200);
    assert!(served == std::fs::read(&clip).unwrap(), "the event's clip is clips/1/1.mp4");
    assert_eq!(e["clip_bytes"].as_u64(), Some(std::fs::metadata(&clip).unwrap().len()));
    let d = ffprobe_duration(&clip).expect("partial clip readable");
    assert!(d >= 5.0, "partial clip holds {d} s (pre-roll + 6 s of event)");
    assert!(plays(&clip));
    // The database file itself, which no API shows: SQLite's own check.
    let ok: String = hub.db().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}
