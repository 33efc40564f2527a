//! The live view end to end: a real hub, a simulated camera, the WebSocket route as a
//! browser would open it, the bytes checked by ffprobe/ffmpeg, and `/metrics`.

#[path = "live/client.rs"]
mod client;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use client::{Msg, box_type, nal_types};
use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The camera's id once it is streaming.
fn streaming_camera(hub: &Hub, cookie: &str) -> i64 {
    poll(Duration::from_secs(30), || {
        let v = hub.get_json("/api/cameras", cookie);
        let c = v["items"].as_array()?.first()?.clone();
        (c["status"] == "streaming").then(|| c["id"].as_i64()).flatten()
    })
    .unwrap_or_else(|| panic!("camera not streaming within 30 s; log:\n{}", hub.log_text()))
}

/// `curl` asking for a WebSocket upgrade; returns the HTTP status.
fn upgrade_status(hub: &Hub, path: &str, extra: &[&str]) -> u16 {
    let url = hub.url(path);
    let mut args = vec![
        "--http1.1",
        "--max-time",
        "5",
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Sec-WebSocket-Version: 13",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    hub.curl(&args).0
}

/// `homehub_live_viewers` and `homehub_live_bytes_sent_total` of camera `id`, read the
/// way a Prometheus does: with the scrape token from `homehub metrics-token`.
fn live_metrics(hub: &Hub, token: &str, id: i64) -> (u64, u64) {
    let (st, _, body) = hub.curl(&["-H", &format!("authorization: Bearer {token}"), &hub.url("/metrics")]);
    assert_eq!(st, 200);
    let text = String::from_utf8(body).unwrap();
    let value = |name: &str| {
        let key = format!("{name}{{camera=\"{id}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{key:?} missing in:\n{text}"))
    };
    (value("homehub_live_viewers"), value("homehub_live_bytes_sent_total"))
}

#[test]
fn the_live_route_refuses_strangers_and_streams_decodable_fmp4_from_a_keyframe() {
    let tmp = tempfile::tempdir().unwrap();
    let cam = camsim(&["--gop", "15"]);
    let hub = Hub::start(tmp.path(), &cameras_toml(&[cam.port]));
    let cookie = hub.viewer_of(&[1]);
    let id = streaming_camera(&hub, &cookie);
    let path = format!("/api/cameras/{id}/live");

    // No session: 401 before any upgrade. Another site's page: 403. A bad stream: 400.
    assert_eq!(upgrade_status(&hub, &path, &[]), 401);
    let with_cookie = format!("cookie: {cookie}");
    assert_eq!(upgrade_status(&hub, &path, &["-H", &with_cookie, "-H", "Origin: https://evil.example"]), 403);
    assert_eq!(upgrade_status(&hub, &format!("{path}?stream=side"), &["-H", &with_cookie]), 400);
    assert_eq!(upgrade_status(&hub, "/api/cameras/999/live", &["-H", &with_cookie]), 404);
    let (ok, token, err) = hub.admin(&["metrics-token"]);
    assert!(ok, "metrics-token: {err}");
    let token = token.trim().to_string();
    assert_eq!(live_metrics(&hub, &token, id).0, 0);

    let rt = runtime();
    let origin = format!("https://127.0.0.1:{}", hub.port);
    let mut ws = rt
        .block_on(client::connect(hub.port, &hub.fingerprint, &path, &cookie, Some(&origin)))
        .unwrap_or_else(|st| panic!("no upgrade: HTTP {st}"));
    let next = |ws: &mut client::Ws| {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), client::next(ws)).await })
            .expect("a message within 10 s")
    };
    let Msg::Text(init) = next(&mut ws) else { panic!("the first message is not the init text") };
    assert_eq!(init["type"], "init", "{init}");
    assert!(init["mime"].as_str().unwrap().starts_with("video/mp4; codecs=\"avc1."), "{init}");
    assert_eq!((init["width"].as_u64(), init["height"].as_u64()), (Some(640), Some(360)), "{init}");
    let Msg::Binary(init_segment) = next(&mut ws) else { panic!("no init segment") };
    assert_eq!(box_type(&init_segment), "ftyp");

    let mut file = init_segment.clone();
    let mut fragments = 0;
    let started = Instant::now();
    let mut viewers_seen = None;
    while started.elapsed() < Duration::from_secs(3) || fragments < 10 {
        let Msg::Binary(f) = next(&mut ws) else { panic!("expected fragments only") };
        assert_eq!(box_type(&f), "moof");
        let nals = nal_types(&f);
        if fragments == 0 {
            assert!(nals.contains(&5), "the first fragment is not a keyframe (NAL types {nals:?})");
        }
        fragments += 1;
        file.extend_from_slice(&f);
        if fragments == 5 {
            viewers_seen = Some(live_metrics(&hub, &token, id));
        }
    }
    let (viewers, sent_then) = viewers_seen.unwrap();
    assert_eq!(viewers, 1, "homehub_live_viewers while watching");
    assert!(sent_then >= init_segment.len() as u64, "bytes sent {sent_then}");
    let (_, sent_now) = live_metrics(&hub, &token, id);
    assert!(sent_now > sent_then, "bytes sent did not grow: {sent_then} → {sent_now}");

    let out = tmp.path().join("live.mp4");
    std::fs::write(&out, &file).unwrap();
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=codec_name,width,height,nb_read_frames", "-of", "json"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(probe.status.success(), "ffprobe: {}", String::from_utf8_lossy(&probe.stderr));
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let s = &v["streams"][0];
    assert_eq!(
        (s["codec_name"].as_str(), s["width"].as_u64(), s["height"].as_u64()),
        (Some("h264"), Some(640), Some(360)),
        "{v}"
    );
    let frames: usize = s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert_eq!(frames, fragments, "every fragment a frame: {v}");
    // The camera's own timestamps (just after it started, the jitter buffer spaces them
    // unevenly): passed through, not forced onto a guessed constant frame rate.
    let dec = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&out)
        .args(["-fps_mode", "passthrough", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(dec.status.success() && dec.stderr.is_empty(), "ffmpeg decode: {}", String::from_utf8_lossy(&dec.stderr));

    drop(ws);
    wait_until("the viewer gone from /metrics", Duration::from_secs(15), || live_metrics(&hub, &token, id).0 == 0);
}

#[test]
fn the_substream_is_served_and_a_new_viewer_starts_at_the_cached_keyframe_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    // Main 1280x720, sub 640x360, a keyframe every 4 s at 15 fps: a viewer that had to wait
    // for the next keyframe would see its first frame seconds late.
    // (The harness's camsim is 640x360 like the substream, so this one is started here.)
    let mut child = Command::new(CAMSIM)
        .args(["--rtsp", "127.0.0.1:0", "--size", "1280x720", "--fps", "15", "--bitrate", "800", "--gop", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = ready_line(&mut child, "camsim ready");
    let _cam = Proc { child, name: "camsim".into() };
    let ready = ready.recv_timeout(Duration::from_secs(20)).expect("camsim ready line");
    let main_url = ready.split_whitespace().nth(2).expect("main URL").to_string();
    let sub_url = ready.split_whitespace().nth(3).expect("sub URL").to_string();
    let toml = format!("[[camera]]\nname = \"Porch\"\nurl = \"{main_url}\"\nsubstream_url = \"{sub_url}\"\n");
    let hub = Hub::start(tmp.path(), &toml);
    let cookie = hub.viewer_of(&[1]);
    let id = streaming_camera(&hub, &cookie);
    let rt = runtime();
    for (stream, size) in [("sub", (640, 360)), ("main", (1280, 720))] {
        let path = format!("/api/cameras/{id}/live?stream={stream}");
        // Three messages (init, init segment, first fragment) within `wait` of opening.
        let open = |wait: Duration| {
            rt.block_on(async {
                let mut ws = client::connect(hub.port, &hub.fingerprint, &path, &cookie, None).await.ok()?;
                let mut seen = Vec::new();
                for _ in 0..3 {
                    seen.push(tokio::time::timeout(wait, client::next(&mut ws)).await.ok()?);
                }
                Some(seen)
            })
        };
        // Once the first keyframe has come (and is cached)...
        poll(Duration::from_secs(20), || open(Duration::from_secs(5)))
            .unwrap_or_else(|| panic!("{stream}: no picture within 20 s; log:\n{}", hub.log_text()));
        // ...every new viewer gets it at once, not at the next keyframe (up to 4 s away).
        for _ in 0..3 {
            let got = open(Duration::from_secs(1)).unwrap_or_else(|| panic!("{stream}: a viewer had to wait for a keyframe"));
            let [Msg::Text(init), Msg::Binary(seg), Msg::Binary(frag)] = &got[..] else { panic!("{stream}: {got:?}") };
            assert_eq!((init["width"].as_u64(), init["height"].as_u64()), (Some(size.0), Some(size.1)), "{stream}: {init}");
            assert_eq!(box_type(seg), "ftyp");
            assert!(nal_types(frag).contains(&5), "{stream}: the first fragment is not the cached keyframe");
        }
    }
}
