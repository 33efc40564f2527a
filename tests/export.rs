//! Range export: a recorded span of a camera, across segment files, as one fragmented
//! MP4 from `GET /api/cameras/{id}/export` — read back by ffprobe, ffmpeg and our reader.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn rfc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:"))).map(|l| l.split_once(':').unwrap().1.trim())
}

#[test]
fn a_range_across_segment_boundaries_is_one_playable_mp4() {
    let tmp = tempfile::tempdir().unwrap();
    // The harness runs it at 15 fps: a 2 s GOP.
    let cam = camsim(&["--gop", "30"]);
    let hub = Hub::start(
        tmp.path(),
        &format!("[recording]\nmode = \"continuous\"\nsegment_seconds = 4\n{}", cameras_toml(&[cam.port])),
    );
    let cookie = hub.session("owner");
    let segs = poll(Duration::from_secs(60), || {
        let s = hub.segments(&cookie);
        (s.len() >= 4).then_some(s)
    })
    .unwrap_or_else(|| panic!("no 4 segments within 60 s; log:\n{}", hub.log_text()));
    let cam_id = segs[0].camera_id;
    // From the middle of the second segment to the middle of the fourth: two boundaries.
    // (Not the first: its first second carries the RTSP start's timestamp jitter, which
    // ffmpeg's null muxer complains about in the segment file itself.)
    // Half a GOP into the 2nd segment (keyframes at 0 and 2 s of each 4 s file): the export
    // begins at the keyframe at or before `start`, so it adds up to a GOP there, plus up to
    // a frame at the end; a start right on a keyframe's time could go either way by a hair.
    let start = segs[1].start_ms + 1000;
    let end = (segs[3].start_ms + segs[3].end_ms) / 2;
    let want = (end - start) as f64 / 1000.0;
    let route = format!("/api/cameras/{cam_id}/export?start={}&end={}", rfc(start), rfc(end));
    let t0 = Instant::now();
    let (st, head, body) = hub.get(&route, Some(&cookie));
    let took = t0.elapsed();
    assert_eq!(st, 200, "{head}{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&head, "content-type"), Some("video/mp4"), "{head}");
    assert_eq!(header(&head, "content-disposition"), None, "inline without download=1: {head}");
    eprintln!("export of {want:.1} s: {} bytes in {took:?}", body.len());

    let file = tmp.path().join("export.mp4");
    std::fs::write(&file, &body).unwrap();
    let got = ffprobe_duration(&file).unwrap_or_else(|| panic!("ffprobe cannot read the export ({} bytes)", body.len()));
    assert!((got - want).abs() <= 2.0, "asked for {want:.2} s, ffprobe says {got:.2} s (one GOP is 2 s)");
    let dec =
        std::process::Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&file).args(["-f", "null", "-"]).output().unwrap();
    assert!(dec.status.success());
    assert_eq!(String::from_utf8_lossy(&dec.stderr), "", "ffmpeg decodes it without complaint");

    // Through our reader: one track, starting at a keyframe, decode times without a gap.
    let idx = homehub::fmp4::read::index_bytes(&body).expect("the export reads back");
    assert!(idx.samples.len() as f64 >= want * 15.0 - 1.0, "{} samples for {want:.1} s at 15 fps", idx.samples.len());
    assert!(idx.samples[0].key, "the export starts at a keyframe");
    assert_eq!(idx.samples[0].decode_time, 0);
    assert!(idx.samples.windows(2).all(|w| w[1].decode_time == w[0].decode_time + w[0].duration as u64));
    assert!(homehub::fmp4::codec_string(&idx.track.avcc).unwrap().starts_with("avc1."));

    // download=1: an attachment named after the camera and the start.
    let (st, head, body2) = hub.get(&format!("{route}&download=1"), Some(&cookie));
    assert_eq!(st, 200);
    let cd = header(&head, "content-disposition").unwrap_or_else(|| panic!("no content-disposition: {head}"));
    let stamp = rfc(start).replace(':', "-");
    assert_eq!(cd, format!("attachment; filename=\"Cam_0-{stamp}.mp4\""));
    assert_eq!(body2, body, "the same bytes either way");

    // Nothing recorded there: 404. Bad ranges: 400 naming the parameter.
    let later = segs.last().unwrap().end_ms + 3_600_000;
    let (st, _, b) =
        hub.get(&format!("/api/cameras/{cam_id}/export?start={}&end={}", rfc(later), rfc(later + 60_000)), Some(&cookie));
    assert_eq!(st, 404, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("nothing recorded"));
    let (st, _, b) = hub.get(&format!("/api/cameras/999/export?start={}&end={}", rfc(start), rfc(end)), Some(&cookie));
    assert_eq!(st, 404, "another camera has nothing: {}", String::from_utf8_lossy(&b));
    for (q, key) in [
        (format!("start={}&end={}", rfc(end), rfc(start)), "end"),
        (format!("start={}&end={}", rfc(start), rfc(start + 24 * 3_600_000 + 1)), "24 h"),
        (format!("end={}", rfc(end)), "start"),
        (format!("start=yesterday&end={}", rfc(end)), "start"),
        (format!("start={}&end={}&download=yes", rfc(start), rfc(end)), "download"),
    ] {
        let (st, _, b) = hub.get(&format!("/api/cameras/{cam_id}/export?{q}"), Some(&cookie));
        let text = String::from_utf8_lossy(&b);
        assert_eq!(st, 400, "{q}: {text}");
        assert!(text.contains(key), "{q}: the error names {key:?}: {text}");
    }

    // Without a session: 401, nothing served.
    let (st, _, b) = hub.get(&route, None);
    assert_eq!(st, 401, "{}", String::from_utf8_lossy(&b));
    assert!(!b.starts_with(b"\0\0\0"), "no MP4 bytes without a session");
}
