//! Camera ingest: one GStreamer pipeline per camera, supervised.
//!
//! Owns: GStreamer (the only hub module that imports it), the per-camera pipeline
//! (RTSP in, a recording branch that never re-encodes, a decode branch that hands
//! small grey frames on), reconnecting with capped backoff, the stall watchdog, and
//! each camera's live status. Output flows one way: segment files appear on disk and
//! [`SegmentEvent`]s go to the recorder over a channel. May not touch: the database,
//! the web, anything that decides what a segment means.

pub mod clip;
pub mod decoder;
pub mod live;
pub mod pieces;
pub mod probe;
mod redact;
mod ring;
pub mod still;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::clock::now_ms;
use crate::error::{Error, ErrorKind, Result};
use crate::shutdown::Shutdown;
use crate::sync::lock;

pub use redact::redact_urls;

/// Grey frames handed to motion detection are this size.
pub const FRAME_WIDTH: u32 = 320;
pub const FRAME_HEIGHT: u32 = 180;
/// A stream that delivers nothing for this long is restarted.
pub const STALL_AFTER: Duration = Duration::from_secs(10);
/// Reconnect delays double from the first to the cap. The cap is small so a camera is
/// back within a few seconds of returning; a refused TCP connect costs next to nothing.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// A run that lasted longer than this was healthy: the next reconnect waits the least again.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// Segments are split at the first keyframe this long before their planned length.
const SPLIT_EARLY_NS: u64 = 500_000_000;
/// How long an orderly stop waits for the muxer to finish the open segment.
const EOS_WAIT: Duration = Duration::from_secs(5);

/// Starts GStreamer once per process.
pub fn init() -> Result<()> {
    gst::init().map_err(|e| Error::new(ErrorKind::Unavailable, format!("GStreamer: {e}")))?;
    // A stopped pipeline's streaming threads end (half a second after their task)
    // instead of idling in GLib's pool for the life of the process: a camera that
    // reconnects for days must not leave threads behind, and a stopped hub leaves none.
    gst::glib::ThreadPool::set_max_unused_threads(Some(0));
    Ok(())
}

/// Whether this machine has the element (a plugin that registers it).
pub fn has_element(name: &str) -> bool {
    gst::ElementFactory::find(name).is_some()
}

/// Frames are scaled down before anything else touches them: by the Pi's hardware
/// converter when the decoder is the V4L2 one (its frames stay in that memory), in
/// software otherwise.
fn scaler(decoder: Option<&str>, has: impl Fn(&str) -> bool) -> &'static str {
    match decoder {
        Some(d) if d.starts_with("v4l2") && has("v4l2convert") => "v4l2convert",
        _ => "videoscale",
    }
}

/// The decoder a camera would get here.
pub fn pick_decoder(prefer: &[String]) -> Option<String> {
    decoder::choose_with_fallback(prefer, has_element)
}

/// What the recorder hears about segment files.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentEvent {
    /// The muxer started writing `path`; the file's first frame is at `start_ms`.
    Opened { camera_id: i64, path: PathBuf, start_ms: i64 },
    /// The file is closed. `complete` is false when it ended before its planned length
    /// (the stream failed or ended) or was never finalized (the pipeline died with it
    /// open); it holds what arrived until then.
    Closed { camera_id: i64, path: PathBuf, complete: bool },
}

/// A small grey frame for motion detection.
pub struct Frame {
    pub camera_id: i64,
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// Bytes per row (rows may be padded).
    pub stride: u32,
    /// Wall-clock time it arrived.
    pub at_ms: i64,
}

/// Cutting clips out of a camera's encoded stream, for the events subsystem.
pub trait ClipSink: Send + Sync {
    /// Starts writing `path` from the keyframe at or before `from_ms`; returns the
    /// wall-clock time of the clip's first frame.
    fn begin(&self, path: &Path, from_ms: i64) -> Result<i64>;
    /// Finishes the clip being written (and its pieces, if any).
    fn end(&self) -> Result<()>;
    /// Also cuts the clip being written, from the keyframe at or before `from_ms`, into
    /// short pieces that are handed to `spec.sink` as they close (see [`pieces`]).
    fn begin_pieces(&self, spec: pieces::PieceSpec, from_ms: i64) -> Result<()> {
        let _ = (spec, from_ms);
        Ok(())
    }
}

/// The pre-roll of one camera and the clip being written from it, if any. Fed by the
/// pipeline's encoded-stream sink; survives pipeline restarts.
pub struct Clips {
    inner: Mutex<ClipsInner>,
}

struct ClipsInner {
    preroll: clip::PreRoll,
    writer: Option<clip::ClipWriter>,
    pieces: Option<pieces::Pieces>,
}

impl Clips {
    fn new(pre_roll_ms: i64) -> Clips {
        Clips { inner: Mutex::new(ClipsInner { preroll: clip::PreRoll::new(pre_roll_ms), writer: None, pieces: None }) }
    }

    fn push(&self, buf: gst::Buffer, caps: Option<gst::Caps>, at_ms: i64) {
        let mut g = lock(&self.inner);
        if let Some(w) = &g.writer
            && let Err(e) = w.push(&buf)
        {
            tracing::warn!(error = %redact_urls(&e.to_string()), "clip write failed");
        }
        if let Some(p) = g.pieces.as_mut()
            && let Err(e) = p.push(&buf, at_ms)
        {
            tracing::warn!(error = %redact_urls(&e.to_string()), "piece write failed; no more pieces for this event");
            g.pieces = None;
        }
        // New stream parameters (a restart) empty the pre-roll: it does not fit them.
        g.preroll.push(buf, caps, at_ms);
    }

    /// A new pipeline run: its timestamps start over, so the old pre-roll cannot be
    /// joined to it. A clip being written goes on with the new buffers.
    fn restart(&self) {
        let mut g = lock(&self.inner);
        g.preroll.clear();
    }

    /// Bytes held for pre-roll.
    pub fn bytes(&self) -> usize {
        lock(&self.inner).preroll.bytes()
    }
}

impl ClipSink for Clips {
    fn begin(&self, path: &Path, from_ms: i64) -> Result<i64> {
        let mut g = lock(&self.inner);
        if g.writer.is_some() {
            return Err(Error::new(ErrorKind::Conflict, "a clip is being written already"));
        }
        let caps = g.preroll.caps().cloned().ok_or_else(|| Error::new(ErrorKind::Unavailable, "no stream yet"))?;
        let first = g.preroll.start_from(from_ms);
        let first_ms = first.first().map(|(_, t)| *t).unwrap_or(from_ms);
        g.writer = Some(clip::ClipWriter::start(path, &caps, first)?);
        Ok(first_ms)
    }

    fn begin_pieces(&self, spec: pieces::PieceSpec, from_ms: i64) -> Result<()> {
        let mut g = lock(&self.inner);
        let caps = g.preroll.caps().cloned().ok_or_else(|| Error::new(ErrorKind::Unavailable, "no stream yet"))?;
        std::fs::create_dir_all(&spec.dir).map_err(|e| Error::internal(format!("creating {}: {e}", spec.dir.display())))?;
        let mut p = pieces::Pieces::new(spec, caps);
        for (buf, at_ms) in g.preroll.start_from(from_ms) {
            p.push(&buf, at_ms)?;
        }
        if let Some(old) = g.pieces.replace(p) {
            old.finish();
        }
        Ok(())
    }

    fn end(&self) -> Result<()> {
        let (w, p) = {
            let mut g = lock(&self.inner);
            (g.writer.take(), g.pieces.take())
        };
        if let Some(p) = p {
            p.finish();
        }
        match w {
            Some(w) => w.finish(),
            None => Ok(()),
        }
    }
}

/// The file name of a segment starting at `start_ms`; the recorder reads the start back
/// from it after a crash.
pub fn segment_file_name(start_ms: i64) -> String {
    format!("{start_ms}.mp4")
}

pub fn start_ms_from_file_name(path: &Path) -> Option<i64> {
    path.file_stem()?.to_str()?.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Streaming,
    Error,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Streaming => "streaming",
            State::Error => "error",
            State::Stopped => "stopped",
        }
    }
}

/// How RTP reaches us from a camera's RTSP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Interleaved in the RTSP connection: one TCP connection, no ports to open.
    Tcp,
    /// RTP over UDP, for servers that refuse TCP (SETUP answered 461).
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// Whether a message rtspsrc posted says the server refused RTP over TCP. Verified against
/// gst-rtsp-server offering only UDP (camsim --udp-only): it answers the SETUP with
/// `461 Unsupported Transport`, and rtspsrc 1.22 (protocols=tcp) then fails with "No
/// supported stream was found. You might need to allow more transport protocols …"
/// (debug: gst_rtspsrc_setup_streams_start). Other servers' words are matched too.
pub fn refused_tcp(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("allow more transport protocols") || t.contains("unsupported transport") || t.contains("(461)")
}

/// The transport of a camera's next run: UDP once a run failed because TCP was refused,
/// and kept until a run fails for another reason (then TCP, the default, again).
pub fn next_transport(current: Transport, tcp_refused: bool) -> Transport {
    match (current, tcp_refused) {
        (_, true) => Transport::Udp,
        (Transport::Udp | Transport::Tcp, false) => Transport::Tcp,
    }
}

#[derive(Debug, Clone)]
pub struct Status {
    pub state: State,
    /// Why the camera is in error.
    pub reason: Option<String>,
    pub decoder: Option<String>,
    pub decoded_fps: f64,
    pub since_ms: i64,
    /// The transport of the current (or last) run: "tcp" | "udp"; `None` before the first.
    pub transport: Option<&'static str>,
    /// Access units per second arriving from the camera (main stream), measured.
    pub fps: f64,
    /// Incoming bit rate of the main stream, measured.
    pub bitrate_kbps: u64,
    /// Picture size of the main stream, from its caps once known.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Pipeline runs started (1 after the first connect; each reconnect adds one).
    pub connects: u64,
}

/// One running camera as the rest of the hub sees it (the web's camera list, Home
/// Assistant discovery, metrics).
#[derive(Debug, Clone)]
pub struct CameraStatus {
    pub id: i64,
    pub name: String,
    pub status: Status,
    /// "config" | "paired"
    pub source: String,
    /// Motion going on now.
    pub motion: bool,
    /// Encoded stream held for clip pre-roll.
    pub preroll_bytes: u64,
}

/// The running cameras, read-only: what the hub's fleet gives those who only look.
pub trait CameraView: Send + Sync {
    /// Sorted by id.
    fn cameras(&self) -> Vec<CameraStatus>;
    /// The live feed of one of a running camera's streams (`None`: no such camera).
    fn feed(&self, camera_id: i64, stream: live::StreamKind) -> Option<Arc<live::Feed>> {
        let _ = (camera_id, stream);
        None
    }
    /// A colour JPEG `width` px wide of the latest keyframe of one of a running camera's
    /// streams, decoded now (blocking; see [`still`]). `NotFound`: no such camera;
    /// `Unavailable`: no picture yet. The fleet decodes with the hub's chosen decoder.
    fn snapshot(&self, camera_id: i64, stream: live::StreamKind, width: u32) -> Result<Vec<u8>> {
        let feed = self.feed(camera_id, stream).ok_or_else(|| Error::not_found("no such camera"))?;
        let prefer: Vec<String> = crate::config::DEFAULT_DECODERS.iter().map(|s| s.to_string()).collect();
        let decoder =
            pick_decoder(&prefer).ok_or_else(|| Error::new(ErrorKind::Unavailable, "no H.264 decoder on this machine"))?;
        still::snapshot(&feed, width, &decoder)
    }
}

/// A camera's live feeds: its main stream always, its substream when it has one. They
/// outlive pipeline restarts (viewers stay subscribed) and close when the camera stops.
#[derive(Debug, Clone)]
pub struct Feeds {
    pub main: Arc<live::Feed>,
    pub sub: Option<Arc<live::Feed>>,
}

impl Feeds {
    fn new(has_sub: bool) -> Feeds {
        Feeds { main: Arc::new(live::Feed::new()), sub: has_sub.then(|| Arc::new(live::Feed::new())) }
    }

    /// The feed of `kind`: the substream falls back to the main stream.
    pub fn get(&self, kind: live::StreamKind) -> Arc<live::Feed> {
        match (kind, &self.sub) {
            (live::StreamKind::Sub, Some(s)) => s.clone(),
            _ => self.main.clone(),
        }
    }

    fn each(&self, f: impl Fn(&live::Feed)) {
        f(&self.main);
        if let Some(s) = &self.sub {
            f(s);
        }
    }
}

/// What the pipeline of one camera is built from.
#[derive(Debug, Clone)]
pub struct Spec {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub substream_url: String,
    /// Where segment files go (`None`: not recording).
    pub record_dir: Option<PathBuf>,
    pub segment_seconds: u32,
    pub motion_fps: u32,
    pub decoder: Option<String>,
    /// Keep this much encoded stream for clips (`None`: no clips).
    pub pre_roll_ms: Option<i64>,
}

/// A running camera: its supervisor thread and its status.
pub struct Camera {
    pub id: i64,
    pub name: String,
    clips: Option<Arc<Clips>>,
    feeds: Feeds,
    status: Arc<Mutex<Status>>,
    stop: Shutdown,
    thread: Option<JoinHandle<()>>,
}

impl Camera {
    pub fn start(spec: Spec, segments: Sender<SegmentEvent>, frames: Option<SyncSender<Frame>>) -> Result<Camera> {
        if let Some(dir) = &spec.record_dir {
            crate::error::ResultExt::ctx(std::fs::create_dir_all(dir), format!("creating {}", dir.display()))?;
        }
        let status = Arc::new(Mutex::new(Status {
            state: State::Connecting,
            reason: None,
            decoder: spec.decoder.clone(),
            decoded_fps: 0.0,
            since_ms: now_ms(),
            transport: None,
            fps: 0.0,
            bitrate_kbps: 0,
            width: None,
            height: None,
            connects: 0,
        }));
        let stop = Shutdown::new();
        let clips = spec.pre_roll_ms.map(|ms| Arc::new(Clips::new(ms)));
        let feeds = Feeds::new(!spec.substream_url.is_empty());
        let sup = Supervisor {
            spec: spec.clone(),
            status: status.clone(),
            stop: stop.clone(),
            segments,
            frames,
            clips: clips.clone(),
            feeds: feeds.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("camera-{}", spec.id))
            .spawn(move || sup.run())
            .map_err(|e| Error::internal(format!("starting camera thread: {e}")))?;
        Ok(Camera { id: spec.id, name: spec.name, clips, feeds, status, stop, thread: Some(thread) })
    }

    /// The live feed of one of its streams (the substream falls back to the main stream).
    pub fn feed(&self, kind: live::StreamKind) -> Arc<live::Feed> {
        self.feeds.get(kind)
    }

    /// Where events cut this camera's clips (`None` when clips are off).
    pub fn clips(&self) -> Option<Arc<Clips>> {
        self.clips.clone()
    }

    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// Asks the pipeline to finish its segment and stop; returns at once.
    pub fn request_stop(&self) {
        self.stop.trigger();
    }

    /// Waits for the supervisor to finish (after [`Camera::request_stop`]).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The supervisor's reconnect delays: [`BACKOFF_FIRST`] doubling to [`BACKOFF_CAP`]; after
/// a run longer than [`HEALTHY_RUN`] they start over.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff { next: BACKOFF_FIRST }
    }

    /// How long to wait before the next run, after one that lasted `ran_for`.
    fn after_run(&mut self, ran_for: Duration) -> Duration {
        if ran_for > HEALTHY_RUN {
            self.next = BACKOFF_FIRST;
        }
        let wait = self.next;
        self.next = (wait * 2).min(BACKOFF_CAP);
        wait
    }
}

/// The stall watchdog's decision, in ms on the pipeline's own clock: it has run for
/// `since_start_ms` and its last buffer came at `last_data_ms` (0: none yet, so the
/// silence counts from its start). `Some(reason)` once nothing came for [`STALL_AFTER`].
fn stalled(since_start_ms: u64, last_data_ms: u64) -> Option<String> {
    let idle = since_start_ms.saturating_sub(last_data_ms);
    (idle > STALL_AFTER.as_millis() as u64).then(|| format!("no data for {} s", STALL_AFTER.as_secs()))
}

struct Supervisor {
    spec: Spec,
    status: Arc<Mutex<Status>>,
    stop: Shutdown,
    segments: Sender<SegmentEvent>,
    frames: Option<SyncSender<Frame>>,
    clips: Option<Arc<Clips>>,
    feeds: Feeds,
}

/// How one run of the pipeline ended.
enum Ended {
    Stopped,
    /// `tcp_refused`: the server refused RTP over TCP ([`refused_tcp`]).
    Failed {
        reason: String,
        tcp_refused: bool,
    },
}

impl Ended {
    fn failed(reason: impl Into<String>) -> Ended {
        Ended::Failed { reason: reason.into(), tcp_refused: false }
    }
}

impl Supervisor {
    fn run(self) {
        let mut retry = Backoff::new();
        let mut transport = Transport::Tcp;
        while !self.stopping() {
            let started = Instant::now();
            match self.run_once(transport) {
                Ended::Stopped => break,
                Ended::Failed { reason, tcp_refused } => {
                    // Shown in the API and logged: never with the URL's password.
                    let reason = redact_urls(&reason);
                    let next = next_transport(transport, tcp_refused);
                    tracing::warn!(camera = %self.spec.name, %reason, transport = next.as_str(), "camera stream failed; retrying");
                    transport = next;
                    self.set(|s| {
                        s.state = State::Error;
                        s.reason = Some(reason.clone());
                        s.decoded_fps = 0.0;
                        s.fps = 0.0;
                        s.bitrate_kbps = 0;
                        s.since_ms = now_ms();
                    });
                }
            }
            let backoff = retry.after_run(started.elapsed());
            self.sleep(backoff);
        }
        self.set(|s| {
            s.state = State::Stopped;
            s.decoded_fps = 0.0;
            s.fps = 0.0;
            s.bitrate_kbps = 0;
            s.since_ms = now_ms();
        });
        self.feeds.each(live::Feed::close);
    }

    fn stopping(&self) -> bool {
        self.stop.is_triggered()
    }

    /// Waits `d`, or less if asked to stop meanwhile.
    fn sleep(&self, d: Duration) {
        self.stop.wait_timeout(d);
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        f(&mut lock(&self.status));
    }

    fn run_once(&self, transport: Transport) -> Ended {
        if let Some(c) = &self.clips {
            c.restart();
        }
        self.feeds.each(live::Feed::restart);
        let built = match build(&self.spec, transport, self.frames.clone(), self.clips.clone(), &self.feeds) {
            Ok(b) => b,
            Err(e) => return Ended::failed(e.to_string()),
        };
        let Built { pipeline, last_buffer, frames, units, bytes } = built;
        self.set(|s| {
            s.transport = Some(transport.as_str());
            s.connects += 1;
        });
        let bus = pipeline.bus().expect("pipeline has a bus");
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            let _ = pipeline.set_state(gst::State::Null);
            return Ended::failed(format!("cannot start pipeline: {e}"));
        }
        let mut in_mark = (Instant::now(), 0u64, 0u64);
        let t0 = Instant::now();
        let mut open: Option<PathBuf> = None;
        // Running time at which each open file is due to be split.
        let mut planned_end: HashMap<PathBuf, u64> = HashMap::new();
        let mut streaming = false;
        let mut fps_mark = (Instant::now(), 0u64);
        let ended = loop {
            if self.stopping() {
                self.finish(&pipeline, &bus, &mut open, &mut planned_end);
                break Ended::Stopped;
            }
            if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) {
                match msg.view() {
                    gst::MessageView::Error(e) => {
                        let details = e.debug().map(|d| d.to_string()).unwrap_or_default();
                        let src = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                        tracing::debug!(camera = %self.spec.name, %src, details = %redact_urls(&details), "pipeline error");
                        let tcp_refused = transport == Transport::Tcp && refused_tcp(&format!("{} {details}", e.error()));
                        break Ended::Failed { reason: format!("{src}: {}", e.error()), tcp_refused };
                    }
                    gst::MessageView::Eos(_) => break Ended::failed("stream ended"),
                    gst::MessageView::Element(el) => {
                        if let Some(ev) = self.segment_event(el.structure(), &mut open, &mut planned_end, Some(&pipeline)) {
                            let _ = self.segments.send(ev);
                        }
                    }
                    _ => {}
                }
            }
            // Streaming once data flows; stalled once it stops flowing.
            let last = last_buffer.load(Ordering::Relaxed);
            let since_start = t0.elapsed().as_millis() as u64;
            if last > 0 && !streaming {
                streaming = true;
                tracing::info!(camera = %self.spec.name, "streaming");
                self.set(|s| {
                    s.state = State::Streaming;
                    s.reason = None;
                    s.since_ms = now_ms();
                });
            }
            if let Some(reason) = stalled(since_start, last) {
                break Ended::failed(reason);
            }
            let elapsed = fps_mark.0.elapsed();
            if elapsed >= Duration::from_secs(2) {
                let n = frames.load(Ordering::Relaxed);
                let fps = (n - fps_mark.1) as f64 / elapsed.as_secs_f64();
                self.set(|s| s.decoded_fps = (fps * 10.0).round() / 10.0);
                fps_mark = (Instant::now(), n);
            }
            let elapsed = in_mark.0.elapsed();
            if elapsed >= Duration::from_secs(2) {
                let (u, b) = (units.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed));
                let secs = elapsed.as_secs_f64();
                let fps = (u - in_mark.1) as f64 / secs;
                let kbps = ((b - in_mark.2) as f64 * 8.0 / 1000.0 / secs).round() as u64;
                let size = main_size(&pipeline);
                self.set(|s| {
                    s.fps = (fps * 10.0).round() / 10.0;
                    s.bitrate_kbps = kbps;
                    if let Some((w, h)) = size {
                        (s.width, s.height) = (Some(w), Some(h));
                    }
                });
                in_mark = (Instant::now(), u, b);
            }
        };
        let _ = pipeline.set_state(gst::State::Null);
        if let Some(path) = open.take() {
            let _ = self.segments.send(SegmentEvent::Closed { camera_id: self.spec.id, path, complete: false });
        }
        ended
    }

    /// Orderly stop: EOS lets the muxer write out the open segment, then the pipeline
    /// goes down. Messages seen meanwhile still reach the recorder.
    fn finish(
        &self,
        pipeline: &gst::Pipeline,
        bus: &gst::Bus,
        open: &mut Option<PathBuf>,
        planned_end: &mut HashMap<PathBuf, u64>,
    ) {
        pipeline.send_event(gst::event::Eos::new());
        let until = Instant::now() + EOS_WAIT;
        while Instant::now() < until {
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else { continue };
            match msg.view() {
                gst::MessageView::Eos(_) | gst::MessageView::Error(_) => break,
                gst::MessageView::Element(el) => {
                    if let Some(ev) = self.segment_event(el.structure(), open, planned_end, None) {
                        let _ = self.segments.send(ev);
                    }
                }
                _ => {}
            }
        }
    }

    fn segment_event(
        &self,
        s: Option<&gst::StructureRef>,
        open: &mut Option<PathBuf>,
        planned_end: &mut HashMap<PathBuf, u64>,
        pipeline: Option<&gst::Pipeline>,
    ) -> Option<SegmentEvent> {
        let s = s?;
        let path = PathBuf::from(s.get::<String>("location").ok()?);
        let camera_id = self.spec.id;
        match s.name().as_str() {
            "splitmuxsink-fragment-opened" => {
                *open = Some(path.clone());
                // Cut at the first keyframe from half a second before segment_seconds on.
                // (max-size-time would cut at the last keyframe before it: 8 s segments
                // for 10 s with a 2 s GOP; aiming exactly at 10 s misses the keyframe
                // there whenever RTP timing puts it a hair early: 12 s.)
                if let Ok(rt) = s.get::<u64>("running-time") {
                    let at = (rt + u64::from(self.spec.segment_seconds) * 1_000_000_000).saturating_sub(SPLIT_EARLY_NS);
                    planned_end.insert(path.clone(), at);
                    if let Some(rec) = pipeline.and_then(|p| p.by_name("rec")) {
                        rec.emit_by_name::<()>("split-at-running-time", &[&at]);
                    }
                }
                let start_ms = start_ms_from_file_name(&path).unwrap_or_else(now_ms);
                Some(SegmentEvent::Opened { camera_id, path, start_ms })
            }
            "splitmuxsink-fragment-closed" => {
                if open.as_ref() == Some(&path) {
                    *open = None;
                }
                // Closed before its planned split: the stream ended or we are stopping.
                let planned = planned_end.remove(&path);
                let at = s.get::<u64>("running-time").ok();
                let complete = matches!((planned, at), (Some(p), Some(a)) if a + SPLIT_EARLY_NS >= p);
                Some(SegmentEvent::Closed { camera_id, path, complete })
            }
            _ => None,
        }
    }
}

struct Built {
    pipeline: gst::Pipeline,
    /// Milliseconds after start at which the last encoded buffer arrived (0: none yet).
    last_buffer: Arc<AtomicU64>,
    /// Grey frames delivered to the decode branch's sink.
    frames: Arc<AtomicU64>,
    /// Encoded buffers and their bytes out of the (watched) depayloader.
    units: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

/// The main stream's picture size, from the parser's caps once negotiated.
fn main_size(pipeline: &gst::Pipeline) -> Option<(u32, u32)> {
    let caps = pipeline.by_name("parse")?.static_pad("src")?.current_caps()?;
    let s = caps.structure(0)?;
    let (w, h) = (s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?);
    Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?))
}

/// The pipeline description, without URLs (those are set as properties, so no quoting
/// of passwords is needed).
fn describe(spec: &Spec, transport: Transport) -> String {
    // The jitterbuffer holds each packet for `latency`; with drop-on-latency it also drops
    // the oldest whenever it holds more, so any hiccup of its output thread (a busy CPU, a
    // slow write downstream) cut frames out of the middle of a GOP: clips and segments that
    // do not decode (seen under load: 400–600 ms of frames missing). Recording keeps every
    // packet; a stall shows up as delay, not as lost footage.
    let rtsp = format!("protocols={} latency=200 tcp-timeout=5000000 timeout=5000000 drop-on-latency=false", transport.as_str());
    let decode = spec.decoder.as_ref().map(|dec| {
        format!(
            "queue leaky=downstream max-size-buffers=60 max-size-bytes=0 max-size-time=0 ! {dec} ! \
             videorate drop-only=true skip-to-first=true ! {scale} ! videoconvert ! \
             video/x-raw,format=GRAY8,width={FRAME_WIDTH},height={FRAME_HEIGHT},framerate={}/1 ! \
             appsink name=frames max-buffers=2 drop=true sync=false emit-signals=false",
            spec.motion_fps,
            scale = scaler(spec.decoder.as_deref(), |n| gst::init().is_ok() && has_element(n))
        )
    });
    let record = spec.record_dir.as_ref().map(|_| {
        // Fragmented MP4 (a fragment a second) stays playable if the hub is killed.
        // splitmuxsink applies muxer properties only in async-finalize mode (a fresh
        // muxer per file), and only if they are set before that mode is switched on. The file
        // sink is unbuffered so each fragment reaches the kernel as it is written.
        "queue max-size-buffers=0 max-size-bytes=0 max-size-time=4000000000 ! splitmuxsink name=rec \
         muxer-factory=mp4mux muxer-properties=\"properties,fragment-duration=(uint)1000\" \
         sink-factory=filesink sink-properties=\"properties,buffer-mode=(int)2\" async-finalize=true"
            .to_string()
    });
    // The encoded stream as length-prefixed access units with codec_data in the caps, for
    // the live feed and clip pre-roll: every access unit, never dropped (the appsink's
    // callback only copies and queues, so it never holds recording up).
    let enc = |name: &str| {
        format!(
            "queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 ! appsink name={name} sync=false emit-signals=false"
        )
    };
    let avc = "video/x-h264,stream-format=avc,alignment=au";
    let main = format!("rtspsrc name=src {rtsp} ! rtph264depay name=depay ! h264parse name=parse config-interval=-1 ! {avc}");
    let has_sub = !spec.substream_url.is_empty();
    let mut main_branches: Vec<String> = [record, Some(enc("enc"))].into_iter().flatten().collect();
    if !has_sub && let Some(dec) = decode.clone() {
        main_branches.push(dec);
    }
    let tee = |name: &str, head: &str, branches: &[String]| match branches {
        [one] => format!("{head} ! {one}"),
        _ => format!("{head} ! tee name={name} {}", branches.iter().map(|b| format!(" {name}. ! {b}")).collect::<String>()),
    };
    let mut out = tee("t", &main, &main_branches);
    if has_sub {
        let head = format!("rtspsrc name=subsrc {rtsp} ! rtph264depay name=subdepay ! h264parse config-interval=-1 ! {avc}");
        let branches: Vec<String> = [Some(enc("subenc")), decode].into_iter().flatten().collect();
        out.push_str("  ");
        out.push_str(&tee("st", &head, &branches));
    }
    out
}

fn build(
    spec: &Spec,
    transport: Transport,
    frames_out: Option<SyncSender<Frame>>,
    clips: Option<Arc<Clips>>,
    feeds: &Feeds,
) -> Result<Built> {
    let desc = describe(spec, transport);
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("building pipeline: {}", redact_urls(&e.to_string()))))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| Error::internal("pipeline description did not give a pipeline"))?;
    if let Some(src) = pipeline.by_name("src") {
        src.set_property("location", &spec.url);
    }
    if let Some(src) = pipeline.by_name("subsrc") {
        let url = if spec.substream_url.is_empty() { &spec.url } else { &spec.substream_url };
        src.set_property("location", url);
    }
    if let (Some(rec), Some(dir)) = (pipeline.by_name("rec"), spec.record_dir.clone()) {
        rec.connect("format-location", false, move |_| {
            let path = dir.join(segment_file_name(now_ms()));
            Some(path.to_string_lossy().to_string().to_value())
        });
    }

    let t0 = Instant::now();
    let last_buffer = Arc::new(AtomicU64::new(0));
    let depay = pipeline.by_name("depay").ok_or_else(|| Error::internal("no depayloader in pipeline"))?;
    let lb = last_buffer.clone();
    let units = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let (un, by) = (units.clone(), bytes.clone());
    depay.static_pad("src").expect("depay src pad").add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        lb.store((t0.elapsed().as_millis() as u64).max(1), Ordering::Relaxed);
        if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
            un.fetch_add(1, Ordering::Relaxed);
            by.fetch_add(b.size() as u64, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });

    let frames = Arc::new(AtomicU64::new(0));
    if let Some(sink) = pipeline.by_name("frames").and_then(|e| e.downcast::<gst_app::AppSink>().ok()) {
        let n = frames.clone();
        let camera_id = spec.id;
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    n.fetch_add(1, Ordering::Relaxed);
                    if let Some(tx) = &frames_out
                        && let Some(frame) = grey_frame(camera_id, &sample)
                    {
                        // A detector that falls behind loses frames, never the camera.
                        let _ = tx.try_send(frame);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let appsink = |name: &str| pipeline.by_name(name).and_then(|e| e.downcast::<gst_app::AppSink>().ok());
    if let Some(sink) = appsink("enc") {
        encoded_sink(&sink, feeds.main.clone(), clips);
    }
    if let (Some(sink), Some(feed)) = (appsink("subenc"), &feeds.sub) {
        encoded_sink(&sink, feed.clone(), None);
    }
    tracing::debug!(camera = %spec.name, url = %redact_urls(&spec.url), "pipeline built");
    Ok(Built { pipeline, last_buffer, frames, units, bytes })
}

/// Hands each encoded access unit to the live feed (and the clips' pre-roll). Runs on the
/// streaming thread: a copy, a lock or two, no waiting.
fn encoded_sink(sink: &gst_app::AppSink, feed: Arc<live::Feed>, clips: Option<Arc<Clips>>) {
    // The parameters of the caps seen last: a new Arc only when the caps change.
    let mut last: Option<(gst::Caps, Arc<live::Params>)> = None;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let at_ms = now_ms();
                if let (Some(caps), Some(buf)) = (sample.caps(), sample.buffer()) {
                    if !last.as_ref().is_some_and(|(c, _)| c.as_ref() == caps) {
                        last = live_params(caps).map(|p| (caps.to_owned(), Arc::new(p)));
                    }
                    if let (Some((_, params)), Some(unit)) = (&last, live_unit(buf, at_ms)) {
                        feed.push(params, unit);
                    }
                }
                if let (Some(clips), Some(buf)) = (&clips, sample.buffer_owned()) {
                    clips.push(buf, sample.caps_owned(), at_ms);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// A feed's parameters from `video/x-h264,stream-format=avc` caps (`None` without codec_data).
fn live_params(caps: &gst::CapsRef) -> Option<live::Params> {
    let s = caps.structure(0)?;
    let avcc = s.get::<gst::Buffer>("codec_data").ok()?;
    let avcc = bytes::Bytes::copy_from_slice(avcc.map_readable().ok()?.as_slice());
    let fps =
        s.get::<gst::Fraction>("framerate").ok().filter(|f| f.denom() > 0).map_or(0.0, |f| f.numer() as f64 / f.denom() as f64);
    Some(live::Params {
        avcc,
        width: s.get::<i32>("width").ok().and_then(|w| u32::try_from(w).ok()).unwrap_or(0),
        height: s.get::<i32>("height").ok().and_then(|h| u32::try_from(h).ok()).unwrap_or(0),
        fps,
    })
}

fn live_unit(buf: &gst::BufferRef, at_ms: i64) -> Option<live::Unit> {
    let dts = buf.dts().or(buf.pts())?;
    let pts = buf.pts().unwrap_or(dts);
    let map = buf.map_readable().ok()?;
    Some(live::Unit {
        data: bytes::Bytes::copy_from_slice(map.as_slice()),
        dts_us: dts.useconds() as i64,
        pts_us: pts.useconds() as i64,
        key: !buf.flags().contains(gst::BufferFlags::DELTA_UNIT),
        at_ms,
    })
}

fn grey_frame(camera_id: i64, sample: &gst::Sample) -> Option<Frame> {
    let info = gstreamer_video::VideoInfo::from_caps(sample.caps()?).ok()?;
    let map = sample.buffer()?.map_readable().ok()?;
    Some(Frame {
        camera_id,
        data: map.as_slice().to_vec(),
        width: info.width(),
        height: info.height(),
        stride: u32::try_from(info.stride()[0]).ok()?,
        at_ms: now_ms(),
    })
}

/// Encodes a grey frame as JPEG (thumbnails).
pub fn encode_jpeg(gray: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let fail = |e: &dyn std::fmt::Display| Error::internal(format!("JPEG encoding: {e}"));
    let pipeline = gst::parse::launch("appsrc name=src ! videoconvert ! jpegenc quality=85 ! appsink name=out sync=false")
        .map_err(|e| fail(&e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| Error::internal("JPEG pipeline"))?;
    let src =
        pipeline.by_name("src").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).ok_or_else(|| Error::internal("appsrc"))?;
    let out =
        pipeline.by_name("out").and_then(|e| e.downcast::<gst_app::AppSink>().ok()).ok_or_else(|| Error::internal("appsink"))?;
    let info = gstreamer_video::VideoInfo::builder(gstreamer_video::VideoFormat::Gray8, width, height)
        .fps(gst::Fraction::new(1, 1))
        .build()
        .map_err(|e| fail(&e))?;
    src.set_caps(Some(&info.to_caps().map_err(|e| fail(&e))?));
    src.set_format(gst::Format::Time);
    // Rows of GRAY8 video frames are padded to 4 bytes.
    let stride = info.stride()[0] as usize;
    let w = width as usize;
    let mut data = vec![0u8; info.size()];
    for (row, chunk) in gray.chunks(w).take(height as usize).enumerate() {
        data[row * stride..row * stride + chunk.len()].copy_from_slice(chunk);
    }
    let mut buf = gst::Buffer::from_mut_slice(data);
    buf.get_mut().expect("new buffer").set_pts(gst::ClockTime::ZERO);
    pipeline.set_state(gst::State::Playing).map_err(|e| fail(&e))?;
    let _ = src.push_buffer(buf);
    let _ = src.end_of_stream();
    let sample = out.try_pull_sample(gst::ClockTime::from_seconds(5));
    let _ = pipeline.set_state(gst::State::Null);
    let sample = sample.ok_or_else(|| Error::internal("JPEG encoding: no output"))?;
    let map = sample.buffer().ok_or_else(|| Error::internal("JPEG: empty"))?.map_readable().map_err(|e| fail(&e))?;
    Ok(map.as_slice().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            id: 1,
            name: "Porch".into(),
            url: "rtsp://127.0.0.1:1/main".into(),
            substream_url: String::new(),
            record_dir: Some("/tmp/x".into()),
            segment_seconds: 10,
            motion_fps: 5,
            decoder: Some("avdec_h264".into()),
            pre_roll_ms: None,
        }
    }

    #[test]
    fn one_stream_is_recorded_and_decoded_through_a_tee() {
        let d = describe(&spec(), Transport::Tcp);
        assert!(d.contains("tee name=t"));
        assert!(d.contains("splitmuxsink"));
        assert!(d.contains("avdec_h264"));
        assert!(!d.contains("x264enc"), "recording must never re-encode");
    }

    #[test]
    fn the_substream_is_decoded_when_there_is_one() {
        let mut s = spec();
        s.substream_url = "rtsp://127.0.0.1:1/sub".into();
        let d = describe(&s, Transport::Tcp);
        let (main, sub) = d.split_once("name=subsrc").unwrap();
        assert!(main.contains("splitmuxsink") && !main.contains("avdec_h264"));
        assert!(sub.contains("avdec_h264"));
    }

    #[test]
    fn every_stream_feeds_its_live_view_as_length_prefixed_access_units() {
        let mut s = spec();
        s.record_dir = None;
        s.decoder = None;
        let d = describe(&s, Transport::Tcp);
        assert!(
            d.contains("h264parse name=parse config-interval=-1 ! video/x-h264,stream-format=avc,alignment=au ! queue"),
            "{d}"
        );
        assert!(d.contains("appsink name=enc") && !d.contains("tee") && !d.contains("subenc"), "{d}");
        s.substream_url = "rtsp://127.0.0.1:1/sub".into();
        s.decoder = Some("avdec_h264".into());
        let d = describe(&s, Transport::Tcp);
        let (main, sub) = d.split_once("name=subsrc").unwrap();
        assert!(main.contains("appsink name=enc") && !main.contains("avdec_h264"), "{d}");
        assert!(sub.contains("stream-format=avc,alignment=au ! tee name=st"), "{d}");
        assert_eq!(sub.matches(" st. ! ").count(), 2, "{d}");
        assert!(sub.contains("appsink name=subenc") && sub.contains("avdec_h264"), "{d}");
    }

    #[test]
    fn clips_take_the_encoded_stream_beside_recording_and_decoding() {
        let mut s = spec();
        s.pre_roll_ms = Some(5000);
        let d = describe(&s, Transport::Tcp);
        assert!(d.contains("tee name=t"));
        assert_eq!(d.matches(" t. ! ").count(), 3, "{d}");
        assert!(d.contains("appsink name=enc"));
        s.pre_roll_ms = None;
        assert_eq!(describe(&s, Transport::Tcp).matches(" t. ! ").count(), 3, "the live feed keeps the encoded branch");
        s.pre_roll_ms = Some(5000);
        s.record_dir = None;
        s.substream_url = "rtsp://127.0.0.1:1/sub".into();
        let d = describe(&s, Transport::Tcp);
        let (main, sub) = d.split_once("name=subsrc").unwrap();
        assert!(main.contains("appsink name=enc") && !main.contains("tee"));
        assert!(sub.contains("avdec_h264"));
    }

    #[test]
    fn the_transport_is_a_property_of_the_run() {
        assert!(describe(&spec(), Transport::Tcp).contains("protocols=tcp "));
        let mut s = spec();
        s.substream_url = "rtsp://127.0.0.1:1/sub".into();
        let d = describe(&s, Transport::Udp);
        assert_eq!(d.matches("protocols=udp ").count(), 2, "both streams: {d}");
        assert!(!d.contains("protocols=tcp"));
    }

    #[test]
    fn udp_after_a_refused_tcp_setup_until_a_run_fails_otherwise() {
        // What rtspsrc said against camsim --udp-only (gst-rtsp-server: 461).
        let refused = "No supported stream was found. You might need to allow more transport protocols or may \
                       otherwise be missing the right GStreamer RTSP extension plugin. \
                       ../gst/rtsp/gstrtspsrc.c(7894): gst_rtspsrc_setup_streams_start (): /GstPipeline:pipeline0/GstRTSPSrc:src";
        assert!(refused_tcp(refused));
        assert!(!refused_tcp("Could not open resource for reading and writing. Failed to connect. (Generic error)"));
        assert!(!refused_tcp("Not found ../gst/rtsp/gstrtspsrc.c(6895): gst_rtspsrc_send (): Not Found (404)"));
        assert!(!refused_tcp("rtsp://127.0.0.1:8461/main: Unauthorized (401)"));
        assert!(!refused_tcp("no data for 10 s"));
        use Transport::{Tcp, Udp};
        assert_eq!(next_transport(Tcp, false), Tcp);
        assert_eq!(next_transport(Tcp, true), Udp);
        assert_eq!(next_transport(Udp, true), Udp);
        assert_eq!(next_transport(Udp, false), Tcp, "a UDP run that fails otherwise goes back to TCP first");
    }

    #[test]
    fn the_pi_scales_in_hardware() {
        let pi = |n: &str| n == "v4l2convert";
        assert_eq!(scaler(Some("v4l2h264dec"), pi), "v4l2convert");
        assert_eq!(scaler(Some("avdec_h264"), pi), "videoscale");
        assert_eq!(scaler(Some("v4l2h264dec"), |_| false), "videoscale");
    }

    #[test]
    fn reconnects_back_off_from_half_a_second_to_two_and_start_over_after_a_healthy_run() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new();
        let short = ms(100);
        let waits: Vec<Duration> = (0..5).map(|_| b.after_run(short)).collect();
        assert_eq!(waits, [ms(500), ms(1000), ms(2000), ms(2000), ms(2000)]);
        // A run of exactly 30 s is not yet healthy; a longer one is.
        assert_eq!(b.after_run(HEALTHY_RUN), ms(2000));
        assert_eq!(b.after_run(HEALTHY_RUN + ms(1)), ms(500));
        assert_eq!(b.after_run(short), ms(1000));
    }

    #[test]
    fn the_watchdog_fails_a_stream_silent_for_more_than_ten_seconds() {
        // Nothing ever came: counted from the start.
        assert_eq!(stalled(10_000, 0), None);
        assert_eq!(stalled(10_001, 0).as_deref(), Some("no data for 10 s"));
        // Data flowed, then stopped at 25 s.
        assert_eq!(stalled(35_000, 25_000), None);
        assert!(stalled(35_001, 25_000).is_some());
        // A buffer stamped after the check began (probe thread raced ahead) is not idle time.
        assert_eq!(stalled(1_000, 1_200), None);
    }

    #[test]
    fn segment_names_carry_their_start() {
        let p = PathBuf::from("/d/recordings/3").join(segment_file_name(1_700_000_000_123));
        assert_eq!(start_ms_from_file_name(&p), Some(1_700_000_000_123));
    }
}
