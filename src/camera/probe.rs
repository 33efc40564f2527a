//! "Test connection": a short pipeline that connects to an RTSP URL, waits for the first
//! H.264 access unit and reads what the stream is (codec, size, frame rate, transport),
//! then is torn down. TCP first, UDP when the server refuses TCP, all within one deadline.
//! Errors are one line naming what failed, never with the URL's credentials.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::redact_urls;
use super::{Transport, refused_tcp};
use crate::error::{Error, ErrorKind, Result};
use crate::sync::lock;

/// The longest a probe may take, whatever the caller asks.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10);
/// After the first access unit, frames are timed for at most this long when the stream's
/// caps carry no frame rate.
const FPS_WINDOW: Duration = Duration::from_millis(1500);
const FPS_FRAMES: usize = 31;

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// "H.264"
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub transport: Transport,
}

/// Connects to `url` and reports its main video stream; at most `timeout` (capped at
/// [`MAX_TIMEOUT`]) in all. Needs [`super::init`] first.
pub fn probe(url: &str, timeout: Duration) -> Result<ProbeResult> {
    let deadline = Instant::now() + timeout.min(MAX_TIMEOUT);
    match probe_with(url, Transport::Tcp, deadline) {
        Err(Failure::TcpRefused) => {
            tracing::debug!(url = %redact_urls(url), "probe: TCP refused, trying UDP");
            // gst-rtsp-server answers 503 for a moment after it refused a SETUP of a shared
            // stream (seen with camsim --udp-only): wait a little, and once more on a 503.
            let mut tries = 0;
            loop {
                pause(RETRY_PAUSE, deadline);
                match probe_with(url, Transport::Udp, deadline) {
                    Err(Failure::Busy) if tries == 0 => tries += 1,
                    r => break r.map_err(|f| f.into_error(url)),
                }
            }
        }
        r => r.map_err(|f| f.into_error(url)),
    }
}

/// Between a refused TCP attempt and the UDP one.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

fn pause(d: Duration, deadline: Instant) {
    std::thread::sleep(d.min(deadline.saturating_duration_since(Instant::now())));
}

#[derive(Debug)]
enum Failure {
    TcpRefused,
    /// The server answered 503 Service Unavailable.
    Busy,
    /// What failed, in words for the owner (no URL in it).
    Other(String),
}

impl Failure {
    fn into_error(self, url: &str) -> Error {
        let what = match self {
            Failure::TcpRefused => "the camera refused the stream over TCP and UDP".to_string(),
            Failure::Busy => "service unavailable (503): the camera is busy".to_string(),
            Failure::Other(w) => w,
        };
        Error::new(ErrorKind::Unavailable, format!("{} ({})", scrub(&redact_urls(&what), url), strip_userinfo(url)))
    }
}

/// The URL without `user:password@`, as shown to people.
pub fn strip_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let end = rest.find('/').unwrap_or(rest.len());
    let (auth, path) = rest.split_at(end);
    match auth.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{path}"),
        None => url.to_string(),
    }
}

/// Removes the URL's userinfo from `text`, should a library have put it there.
fn scrub(text: &str, url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else { return text.to_string() };
    let auth = &rest[..rest.find('/').unwrap_or(rest.len())];
    match auth.rsplit_once('@') {
        Some((cred, _)) if !cred.is_empty() => {
            let mut out = text.replace(cred, "***");
            if let Some((_, pass)) = cred.split_once(':')
                && !pass.is_empty()
            {
                out = out.replace(pass, "***");
            }
            out
        }
        _ => text.to_string(),
    }
}

/// Words for what rtspsrc reported (its error and debug text).
fn describe_failure(text: &str) -> String {
    let t = text.to_ascii_lowercase();
    // rtspsrc 1.22 says "Failed to connect. (Generic error)" for a closed port.
    if t.contains("connection refused") || t.contains("failed to connect") {
        "connection refused: nothing answers at this address and port".into()
    } else if t.contains("404") || t.contains("not found") {
        "not found (404): no stream at this path".into()
    } else if t.contains("401") || t.contains("unauthorized") {
        "unauthorized (401): wrong or missing user name and password".into()
    } else if t.contains("403") || t.contains("forbidden") {
        "forbidden (403)".into()
    } else if t.contains("resolve") || t.contains("name or service not known") {
        "host not found".into()
    } else if t.contains("timeout") || t.contains("timed out") {
        "timed out".into()
    } else if t.contains("no route") || t.contains("unreachable") {
        "host unreachable".into()
    } else {
        // The first line of GStreamer's own words, without file/function detail.
        text.lines().next().unwrap_or("the stream failed").trim().to_string()
    }
}

/// What the first access unit told us, and the frames timed after it.
#[derive(Default)]
struct Seen {
    caps: Option<gst::Caps>,
    pts: Vec<gst::ClockTime>,
    first_at: Option<Instant>,
    /// The encoding of a video stream that is not H.264.
    other_codec: Option<String>,
}

fn probe_with(url: &str, transport: Transport, deadline: Instant) -> Result<ProbeResult, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::Other(format!("cannot build the probe: {e}"));
    let left_us = deadline.saturating_duration_since(Instant::now()).as_micros() as u64;
    if left_us == 0 {
        return Err(Failure::Other("timed out".into()));
    }
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("rtspsrc")
        .property("location", url)
        .property_from_str("protocols", transport.as_str())
        .property("latency", 0u32)
        .property("tcp-timeout", left_us)
        .property("timeout", left_us)
        .build()
        .map_err(|e| fail(&e))?;
    let depay = gst::ElementFactory::make("rtph264depay").build().map_err(|e| fail(&e))?;
    let parse = gst::ElementFactory::make("h264parse").build().map_err(|e| fail(&e))?;
    let sink = gst_app::AppSink::builder().sync(false).max_buffers(4).drop(true).build();
    pipeline.add_many([&src, &depay, &parse, sink.upcast_ref()]).map_err(|e| fail(&e))?;
    gst::Element::link_many([&depay, &parse, sink.upcast_ref()]).map_err(|e| fail(&e))?;

    let seen = Arc::new(Mutex::new(Seen::default()));
    {
        let seen = seen.clone();
        let depay = depay.clone();
        let pipeline_weak = pipeline.downgrade();
        src.connect_pad_added(move |_, pad| {
            let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None)));
            let s = caps.as_ref().and_then(|c| c.structure(0).map(|s| s.to_owned()));
            let media = s.as_ref().and_then(|s| s.get::<String>("media").ok()).unwrap_or_default();
            let enc = s.as_ref().and_then(|s| s.get::<String>("encoding-name").ok()).unwrap_or_default();
            let sinkpad = depay.static_pad("sink").expect("depay sink pad");
            if media == "video" && enc.eq_ignore_ascii_case("H264") && !sinkpad.is_linked() {
                let _ = pad.link(&sinkpad);
                return;
            }
            if media == "video" && !enc.eq_ignore_ascii_case("H264") {
                lock(&seen).other_codec.get_or_insert(enc);
            }
            // Streams we do not look at (audio, a second video) go nowhere.
            if let Some(p) = pipeline_weak.upgrade()
                && let Ok(fake) = gst::ElementFactory::make("fakesink").property("sync", false).build()
                && p.add(&fake).is_ok()
            {
                let _ = fake.sync_state_with_parent();
                if let Some(fp) = fake.static_pad("sink") {
                    let _ = pad.link(&fp);
                }
            }
        });
    }
    {
        let seen = seen.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let mut g = lock(&seen);
                    if g.caps.is_none() {
                        g.caps = sample.caps_owned();
                        g.first_at = Some(Instant::now());
                    }
                    if let Some(pts) = sample.buffer().and_then(|b| b.pts())
                        && g.pts.len() < FPS_FRAMES
                    {
                        g.pts.push(pts);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }

    let result = run(&pipeline, &seen, transport, deadline);
    // Always torn down, whatever happened.
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn run(
    pipeline: &gst::Pipeline,
    seen: &Arc<Mutex<Seen>>,
    transport: Transport,
    deadline: Instant,
) -> Result<ProbeResult, Failure> {
    let bus = pipeline.bus().ok_or_else(|| Failure::Other("the probe has no bus".into()))?;
    pipeline.set_state(gst::State::Playing).map_err(|e| Failure::Other(format!("cannot start the probe: {e}")))?;
    loop {
        if let Some(r) = done(seen, transport) {
            return r;
        }
        if let Some(codec) = lock(seen).other_codec.clone() {
            return Err(Failure::Other(format!("not H.264: the camera sends {codec}; homehub records H.264 only")));
        }
        let now = Instant::now();
        if now >= deadline {
            // Caps seen but the frame rate not yet timed: report what we have.
            return finish(seen, transport).unwrap_or_else(|| Err(Failure::Other("timed out: no video arrived".into())));
        }
        let wait = (deadline - now).min(Duration::from_millis(100));
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(wait.as_nanos() as u64)) else { continue };
        if let gst::MessageView::Error(e) = msg.view() {
            let debug = e.debug().map(|d| d.to_string()).unwrap_or_default();
            let text = format!("{}\n{debug}", e.error());
            tracing::debug!(transport = transport.as_str(), text = %redact_urls(&text), "probe failed");
            if transport == Transport::Tcp && refused_tcp(&text) {
                return Err(Failure::TcpRefused);
            }
            if let Some(codec) = lock(seen).other_codec.clone() {
                return Err(Failure::Other(format!("not H.264: the camera sends {codec}; homehub records H.264 only")));
            }
            if text.contains("(503)") {
                return Err(Failure::Busy);
            }
            return Err(Failure::Other(describe_failure(&text)));
        }
    }
}

/// The answer once the first access unit came and the frame rate is known (from the
/// caps, or timed over a few frames).
fn done(seen: &Arc<Mutex<Seen>>, transport: Transport) -> Option<Result<ProbeResult, Failure>> {
    let (has_rate, timed) = {
        let g = lock(seen);
        g.caps.as_ref()?;
        let rate = caps_fps(g.caps.as_ref()?).is_some();
        let timed = g.pts.len() >= FPS_FRAMES || g.first_at.is_some_and(|t| t.elapsed() >= FPS_WINDOW);
        (rate, timed)
    };
    (has_rate || timed).then(|| finish(seen, transport)).flatten()
}

fn finish(seen: &Arc<Mutex<Seen>>, transport: Transport) -> Option<Result<ProbeResult, Failure>> {
    let g = lock(seen);
    let caps = g.caps.as_ref()?;
    let s = caps.structure(0)?;
    let (w, h) = (s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?);
    let fps = caps_fps(caps).or_else(|| timed_fps(&g.pts)).unwrap_or(0.0);
    Some(Ok(ProbeResult {
        codec: "H.264".into(),
        width: u32::try_from(w).ok()?,
        height: u32::try_from(h).ok()?,
        fps: (fps * 100.0).round() / 100.0,
        transport,
    }))
}

fn caps_fps(caps: &gst::Caps) -> Option<f64> {
    let f = caps.structure(0)?.get::<gst::Fraction>("framerate").ok()?;
    (f.numer() > 0 && f.denom() > 0).then(|| f64::from(f.numer()) / f64::from(f.denom()))
}

/// Frames per second from presentation times (sorted: B-frames come out of order).
fn timed_fps(pts: &[gst::ClockTime]) -> Option<f64> {
    let mut p: Vec<u64> = pts.iter().map(|t| t.nseconds()).collect();
    p.sort_unstable();
    let span = p.last()?.checked_sub(*p.first()?)?;
    (p.len() >= 2 && span > 0).then(|| (p.len() - 1) as f64 * 1e9 / span as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_message() {
        let url = "rtsp://admin:hunter2@192.0.2.7:554/stream1";
        assert_eq!(strip_userinfo(url), "rtsp://192.0.2.7:554/stream1");
        assert_eq!(strip_userinfo("rtsp://192.0.2.7/s"), "rtsp://192.0.2.7/s");
        let e = Failure::Other("failed for rtsp://admin:hunter2@192.0.2.7:554/stream1 (hunter2)".into()).into_error(url);
        assert!(!e.message().contains("hunter2"), "{e}");
        assert!(e.message().contains("rtsp://192.0.2.7:554/stream1"), "{e}");
    }

    #[test]
    fn failures_are_named() {
        assert!(
            describe_failure("Could not open resource for reading and writing.\nFailed to connect. (Generic error)")
                .starts_with("connection refused")
        );
        assert!(describe_failure("Not Found (404)").starts_with("not found (404)"));
        assert!(describe_failure("Unauthorized (401)").starts_with("unauthorized (401)"));
    }

    #[test]
    fn frame_rate_from_presentation_times() {
        let ms = |v: u64| gst::ClockTime::from_mseconds(v);
        assert_eq!(timed_fps(&[ms(0), ms(200), ms(100)]), Some(10.0));
        assert_eq!(timed_fps(&[ms(5)]), None);
    }
}
