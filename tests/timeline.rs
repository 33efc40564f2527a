//! The timeline's data end to end: colour snapshots of a camsim camera decoded on demand,
//! colour thumbnails of the moment of peak motion, recorded spans, paging of events and
//! recordings, and the storage numbers, against a real hub and a real camera stream.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// (width, height, spread of U, spread of V) of a JPEG, decoded by ffmpeg.
fn jpeg_colour(dir: &Path, name: &str, jpeg: &[u8]) -> (u32, u32, u8, u8) {
    assert!(jpeg.starts_with(&[0xff, 0xd8]), "{name}: not a JPEG ({} bytes)", jpeg.len());
    let path = dir.join(name);
    std::fs::write(&path, jpeg).unwrap();
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .unwrap();
    let dims = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    let (w, h) = dims.split_once(',').unwrap_or_else(|| panic!("{name}: ffprobe says {dims:?}"));
    let (w, h): (u32, u32) = (w.parse().unwrap(), h.parse().unwrap());
    let raw = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()
        .unwrap();
    assert!(raw.status.success(), "{name}: ffmpeg cannot decode it");
    let luma = (w * h) as usize;
    let chroma = (w.div_ceil(2) * h.div_ceil(2)) as usize;
    assert_eq!(raw.stdout.len(), luma + 2 * chroma, "{name}: decoded size");
    let spread = |p: &[u8]| p.iter().max().unwrap() - p.iter().min().unwrap();
    let (u, v) = raw.stdout[luma..].split_at(chroma);
    (w, h, spread(u), spread(v))
}

/// Every item of a paged list, following `next` with `limit`.
fn all_pages(hub: &Hub, cookie: &str, path: &str, limit: u32) -> (Vec<serde_json::Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let v = hub.get_json(&url, cookie);
        let page = v["items"].as_array().unwrap();
        assert!(page.len() <= limit as usize, "a page holds at most limit items");
        items.extend(page.iter().cloned());
        pages += 1;
        assert!(pages < 1000, "paging does not end");
        match v["next"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    (items, pages)
}

fn ids(items: &[serde_json::Value]) -> Vec<i64> {
    items.iter().map(|i| i["id"].as_i64().unwrap()).collect()
}

#[test]
fn snapshots_thumbnails_spans_paging_and_storage() {
    let tmp = tempfile::tempdir().unwrap();
    let cam = camsim(&["--motion", "10-13,19-22", "--gop", "15"]);
    let port = cam.port;
    let hub = Hub::start(
        tmp.path(),
        &format!(
            "[recording]\nmode = \"continuous\"\nsegment_seconds = 3\n[motion]\npre_roll_seconds = 1\npost_roll_seconds = 2\n\
             [[camera]]\nname = \"Porch\"\nurl = \"rtsp://127.0.0.1:{port}/main\"\nsubstream_url = \"rtsp://127.0.0.1:{port}/sub\"\n"
        ),
    );
    let cookie = hub.session("owner");

    // Snapshots: 503 until the stream delivers a keyframe, then a colour JPEG of the asked width.
    let (st, _, body) = hub.get("/api/cameras/1/snapshot.jpg", None);
    assert_eq!(st, 401, "{}", String::from_utf8_lossy(&body));
    assert_eq!(hub.get("/api/cameras/99/snapshot.jpg", Some(&cookie)).0, 404);
    assert_eq!(hub.get("/api/cameras/1/snapshot.jpg?width=wide", Some(&cookie)).0, 400);
    let jpeg = poll(Duration::from_secs(20), || {
        let (st, head, body) = hub.get("/api/cameras/1/snapshot.jpg", Some(&cookie));
        assert!(st == 200 || st == 503, "snapshot: {st} {}", String::from_utf8_lossy(&body));
        (st == 200).then(|| {
            assert!(head.to_ascii_lowercase().contains("content-type: image/jpeg"), "{head}");
            body
        })
    })
    .unwrap_or_else(|| panic!("no snapshot within 20 s; log:\n{}", hub.log_text()));
    let (w, h, u, v) = jpeg_colour(tmp.path(), "snap.jpg", &jpeg);
    assert_eq!((w, h), (640, 360), "default width, aspect of the 640x360 substream");
    assert!(u > 60 && v > 60, "snapshot chroma is flat (U spread {u}, V spread {v}): grey, not colour");
    let (_, _, small) = hub.get("/api/cameras/1/snapshot.jpg?width=320", Some(&cookie));
    let (w, h, u, v) = jpeg_colour(tmp.path(), "snap320.jpg", &small);
    assert_eq!((w, h), (320, 180));
    assert!(u > 60 && v > 60, "small snapshot is colour");
    let (_, _, tiny) = hub.get("/api/cameras/1/snapshot.jpg?width=10", Some(&cookie));
    assert_eq!(jpeg_colour(tmp.path(), "snap160.jpg", &tiny).0, 160, "width clamped to 160");

    // Two motion spans make two events, each with a colour thumbnail of the moving scene.
    let ended = |evs: &[serde_json::Value]| evs.iter().filter(|e| !e["end"].is_null() && !e["thumbnail_url"].is_null()).count();
    let evs = poll(Duration::from_secs(45), || Some(hub.events(&cookie)).filter(|e| ended(e) >= 2))
        .unwrap_or_else(|| panic!("two ended events: {:#?}\nlog:\n{}", hub.events(&cookie), hub.log_text()));
    assert_eq!(evs.len(), 2, "{evs:#?}");
    for e in &evs {
        let url = e["thumbnail_url"].as_str().unwrap();
        let (st, head, jpg) = hub.get(url, Some(&cookie));
        assert_eq!(st, 200);
        assert!(head.to_ascii_lowercase().contains("content-type: image/jpeg"));
        let (w, _, u, v) = jpeg_colour(tmp.path(), &format!("thumb{}.jpg", e["id"]), &jpg);
        assert!(w >= 320, "thumbnail {w} px wide");
        assert!(u > 60 && v > 60, "thumbnail chroma flat (U {u}, V {v}): the detector's grey frame, not colour");
    }
    assert!(!hub.log_text().contains("its thumbnail is the detector's grey frame"), "a grey fallback was used");

    // Events: newest first, every one exactly once across pages of one.
    let (paged, pages) = all_pages(&hub, &cookie, "/api/events", 1);
    assert_eq!(pages, 2, "pages of one event each, and no empty last page");
    let mut want: Vec<i64> = ids(&evs);
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids(&paged), want, "newest first, each once");
    let starts: Vec<i64> = paged.iter().map(|e| api_ms(&e["start"])).collect();
    assert!(starts[0] > starts[1], "newest first: {starts:?}");
    assert_eq!(hub.get("/api/events?limit=0", Some(&cookie)).0, 400);
    assert_eq!(hub.get("/api/events?limit=1001", Some(&cookie)).0, 400);
    assert_eq!(hub.get("/api/events?cursor=bogus", Some(&cookie)).0, 400);

    // Recordings: oldest first, every one exactly once across pages of two.
    wait_until("five segments", Duration::from_secs(30), || hub.segments(&cookie).len() >= 5);
    let (recs, pages) = all_pages(&hub, &cookie, "/api/recordings?camera=1", 2);
    assert!(pages >= 3, "{pages} pages");
    let rec_ids = ids(&recs);
    assert_eq!(rec_ids.iter().collect::<HashSet<_>>().len(), rec_ids.len(), "no recording twice: {rec_ids:?}");
    let starts: Vec<i64> = recs.iter().map(|r| api_ms(&r["start"])).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "oldest first: {starts:?}");
    let everything = ids(hub.get_json("/api/recordings?limit=1000", &cookie)["items"].as_array().unwrap());
    assert!(everything.starts_with(&rec_ids), "the pages are the whole list (later segments may have closed since)");
    let events_cursor = hub.get_json("/api/events?limit=1", &cookie)["next"].as_str().unwrap().to_string();
    assert_eq!(hub.get(&format!("/api/recordings?cursor={events_cursor}"), Some(&cookie)).0, 400, "cursors are per list");

    // Spans cover every recorded segment; separate spans are at least 2 s apart.
    let segs = hub.segments(&cookie);
    let since = rfc(segs[0].start_ms - 1000);
    let spans = hub.get_json(&format!("/api/recordings/spans?camera=1&since={since}"), &cookie);
    let spans: Vec<(i64, i64)> = spans["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["camera_id"], 1);
            (api_ms(&s["start"]), api_ms(&s["end"]))
        })
        .collect();
    assert!(!spans.is_empty() && spans.len() <= segs.len(), "{spans:?}");
    for s in &segs {
        assert!(spans.iter().any(|(a, b)| *a <= s.start_ms && s.end_ms <= *b), "segment {s:?} not in a span: {spans:?}");
    }
    assert!(spans.windows(2).all(|w| w[1].0 - w[0].1 >= 2000), "spans closer than 2 s are one: {spans:?}");
    assert_eq!(hub.get("/api/recordings/spans?since=2020-01-01T00:00:00Z&until=2021-01-01T00:00:00Z", Some(&cookie)).0, 400);

    // Storage: the disk's numbers make sense; a camera's bytes are the sum of its rows.
    let (storage, recs, evs) = poll(Duration::from_secs(20), || {
        let before = hub.get_json("/api/recordings?limit=1000", &cookie);
        let evs = hub.get_json("/api/events?limit=1000", &cookie);
        let storage = hub.get_json("/api/storage", &cookie);
        let after = hub.get_json("/api/recordings?limit=1000", &cookie);
        let evs_after = hub.get_json("/api/events?limit=1000", &cookie);
        // No segment or clip was added in between.
        (before == after && evs == evs_after).then_some((storage, after, evs))
    })
    .expect("a quiet moment between two segments");
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!(n(&storage["free_bytes"]) <= n(&storage["total_bytes"]), "{storage}");
    assert!(n(&storage["total_bytes"]) > 0);
    let seg_bytes: u64 = recs["items"].as_array().unwrap().iter().map(|r| n(&r["bytes"])).sum();
    let clip_bytes: u64 = evs["items"].as_array().unwrap().iter().filter_map(|e| e["clip_bytes"].as_u64()).sum();
    assert!(seg_bytes > 0 && clip_bytes > 0, "continuous mode records segments and event clips");
    let cams = storage["cameras"].as_array().unwrap();
    assert_eq!(cams.len(), 1, "{storage}");
    let c = &cams[0];
    assert_eq!((c["camera_id"].as_i64(), c["name"].as_str()), (Some(1), Some("Porch")));
    assert_eq!(n(&c["recordings_bytes"]), seg_bytes);
    assert_eq!(n(&c["clips_bytes"]), clip_bytes);
    assert_eq!(n(&c["bytes"]), seg_bytes + clip_bytes);
    assert_eq!(n(&storage["used_bytes"]), seg_bytes + clip_bytes);
    assert!(n(&storage["write_bytes_per_day"]) > 0, "{storage}");
    assert_eq!(storage["retain_days"], 14);
    // Under ten minutes of recording: too little for a forecast.
    assert!(storage["forecast_days"].is_null() && storage["limited_by"].is_null(), "{storage}");
}

fn rfc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
