//! Motion events end to end: camsim with scripted motion, the hub detecting it on the
//! real decoded stream, clips and thumbnails checked with ffprobe/ffmpeg.

mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn events(hub: &Hub, cookie: &str, camera: i64) -> Vec<serde_json::Value> {
    hub.get_json(&format!("/api/events?camera={camera}"), cookie)["items"].as_array().unwrap().clone()
}

fn ms(v: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp_millis()
}

/// (clip_start_ms) of an event, from the database.
fn clip_start(hub: &Hub, id: i64) -> i64 {
    hub.db().query_row("SELECT clip_start_ms FROM events WHERE id = ?1", [id], |r| r.get(0)).unwrap()
}

fn first_frame_is_key(path: &std::path::Path) -> bool {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries", "frame=pict_type", "-of", "csv=p=0", "-read_intervals", "%+#1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().starts_with('I')
}

#[test]
fn two_movements_make_two_events_and_still_or_masked_scenes_make_none() {
    let tmp = tempfile::tempdir().unwrap();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let t0 = now_ms();
    let _a = camsim(pa, &["--motion", "15-20,35-41"]);
    let _b = camsim(pb, &[]);
    let _c = camsim(pc, &["--motion", "15-20,35-41"]);
    let cams = format!(
        "[[camera]]\nname = \"Moving\"\nurl = \"rtsp://127.0.0.1:{pa}/main\"\nsubstream_url = \"rtsp://127.0.0.1:{pa}/sub\"\n\
         [[camera]]\nname = \"Still\"\nurl = \"rtsp://127.0.0.1:{pb}/main\"\n\
         [[camera]]\nname = \"Masked\"\nurl = \"rtsp://127.0.0.1:{pc}/main\"\n"
    );
    let mut hub = Hub::start(tmp.path(), &format!("[recording]\nmode = \"events\"\n[motion]\npre_roll_seconds = 5\npost_roll_seconds = 10\n{cams}"));
    hub.add_user(EMAIL, "owner", PASSWORD);
    let cookie = hub.login(EMAIL, PASSWORD).1.unwrap().0;
    // Mask the whole picture of the third camera; zones apply from the next start.
    let mask = r#"{"sensitivity":5,"zones":[{"name":"everything","kind":"mask","points":[[0,0],[1,0],[1,1],[0,1]]}]}"#;
    let (st, _, body) = hub.curl(&[
        "-X", "PUT", "-H", &format!("cookie: {cookie}"), "-H", "content-type: application/json", "--data", mask,
        &hub.url("/api/cameras/3/motion"),
    ]);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let bad = r#"{"zones":[{"name":"x","kind":"mask","points":[[0,0],[2,0],[1,1]]}]}"#;
    let (st, _, _) = hub.curl(&[
        "-X", "PUT", "-H", &format!("cookie: {cookie}"), "-H", "content-type: application/json", "--data", bad,
        &hub.url("/api/cameras/3/motion"),
    ]);
    assert_eq!(st, 400, "a zone outside the picture is refused");
    assert!(hub.proc.as_mut().unwrap().term().success());
    hub.restart();
    assert!(t0 + 12_000 > now_ms(), "set-up took too long for the first motion span");

    // Both movements are over (41 s) and their post-roll too (+10 s).
    let deadline = Instant::now() + Duration::from_secs(80);
    while now_ms() < t0 + 56_000 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(500));
    }
    let evs = events(&hub, &cookie, 1);
    assert_eq!(evs.len(), 2, "events: {evs:#?}\nlog:\n{}", hub.log_text());
    for (e, (span_start, span_end)) in evs.iter().zip([(15_000, 20_000), (35_000, 41_000)]) {
        let start = ms(&e["start"]);
        let end = ms(&e["end"]);
        let (span_start, span_end) = (t0 + span_start, t0 + span_end);
        assert!((start - span_start).abs() <= 2_000, "event starts {} ms from its span", start - span_start);
        assert!(end >= span_end && end <= span_end + 13_000, "event ends {} ms after its span", end - span_end);
        assert!(e["score"].as_f64().unwrap() > 0.0);
        let id = e["id"].as_i64().unwrap();
        // The clip begins at least pre_roll − 1 GOP (2 s) before the movement.
        let cs = clip_start(&hub, id);
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
    let (_, _, metrics) = hub.get("/metrics", None);
    assert!(String::from_utf8_lossy(&metrics).contains("homehub_events_total 2"));

    // The still camera stays without events for two minutes; the masked one too.
    while now_ms() < t0 + 122_000 {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(events(&hub, &cookie, 2).len(), 0, "still scene made events");
    assert_eq!(events(&hub, &cookie, 3).len(), 0, "masked scene made events");
    let cams = hub.get_json("/api/cameras", &cookie);
    assert!(cams["items"].as_array().unwrap().iter().all(|c| c["status"] == "streaming"), "{cams}");
}

#[test]
fn an_event_cut_by_sigkill_gets_an_end_and_a_playable_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let _cam = camsim(port, &["--motion", "6-60"]);
    let mut hub = Hub::start(
        tmp.path(),
        &format!("[recording]\nmode = \"events\"\n{}substream_url = \"rtsp://127.0.0.1:{port}/sub\"\n", cameras_toml(&[port])),
    );
    let conn = hub.db();
    wait_until("an event to start", Duration::from_secs(30), || {
        conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0)).unwrap() > 0
    });
    std::thread::sleep(Duration::from_secs(6));
    hub.proc.as_mut().unwrap().kill9();
    drop(conn);
    let clip = hub.dir.join("clips/1/1.mp4");
    assert!(clip.exists(), "clip being written");
    hub.restart();
    let conn = hub.db();
    let (start, end, path, bytes): (i64, Option<i64>, Option<String>, Option<i64>) = conn
        .query_row("SELECT start_ms, end_ms, clip_path, clip_bytes FROM events WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    let end = end.expect("the event got an end");
    assert!(end > start, "end {end} after start {start}");
    assert_eq!(path.as_deref(), Some("clips/1/1.mp4"));
    assert_eq!(bytes.unwrap() as u64, std::fs::metadata(&clip).unwrap().len());
    let d = ffprobe_duration(&clip).expect("partial clip readable");
    assert!(d >= 5.0, "partial clip holds {d} s (pre-roll + 6 s of event)");
    assert!(plays(&clip));
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}
