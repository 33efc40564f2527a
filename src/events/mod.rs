//! Motion events: from grey frames to stored events with clips and thumbnails.
//!
//! Owns: one [`Detector`] per camera, the event lifecycle (start, post-roll, end), the
//! event rows, the clip and thumbnail files of events (files before rows), and the
//! motion ON/OFF broadcast other subsystems (MQTT, the cloud relay) listen to.
//! Input: [`Frame`]s from the cameras over a channel. Clips are cut by the camera
//! module through the narrow [`ClipSink`] trait; colour thumbnails through [`Pictures`],
//! encoded on a worker thread of this module so the detector never waits for a decoder.
//! May not touch: GStreamer directly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::camera::live::Gop;
use crate::camera::pieces::{PieceSink, PieceSpec};
use crate::camera::{ClipSink, Frame};
use crate::clock::Clock;
use crate::error::{Error, Result, ResultExt};
use crate::motion::{Detector, DetectorConfig, Transition};
use crate::recorder::{mp4, sync_dir};
use crate::store::{FinishedEvent, Store};
use crate::sync::lock;

pub const CLIPS_DIR: &str = "clips";

/// Where a camera's clips go.
pub fn clip_dir(data_dir: &Path, camera_id: i64) -> PathBuf {
    data_dir.join(CLIPS_DIR).join(camera_id.to_string())
}

/// A camera's motion state changed.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionChange {
    pub camera_id: i64,
    pub event_id: i64,
    pub on: bool,
    pub at_ms: i64,
}

/// What the events thread needs to know.
pub struct Settings {
    pub pre_roll_ms: i64,
    pub post_roll_ms: i64,
    /// The cameras: shared, so cameras paired at run time join in.
    pub cameras: Arc<Registry>,
    /// Encodes the detector's grey frame: the thumbnail when no colour picture was made.
    pub jpeg: fn(&[u8], u32, u32) -> Result<Vec<u8>>,
    /// Colour pictures of the cameras for thumbnails; None: grey thumbnails only.
    pub pictures: Option<Arc<dyn Pictures>>,
    /// The cloud relay: while it sends, it gets pieces while an event goes on and the
    /// clip when it ends.
    pub cloud: Option<Arc<dyn CloudRelay>>,
    /// Ends post-rolls and notices silent cameras between frames.
    pub clock: Clock,
}

/// Colour pictures of what a camera shows, for thumbnails of the moment of peak motion.
pub trait Pictures: Send + Sync {
    /// The camera's current group of pictures (a keyframe and the frames since), up to
    /// now. Cheap (no decoding): it runs on the detector's thread.
    fn grab(&self, camera_id: i64) -> Option<Gop>;
    /// The last frame of `gop` as a colour JPEG at least 320 px wide. Slow (decodes): it
    /// runs on the thumbnail worker.
    fn encode(&self, gop: &Gop) -> Result<Vec<u8>>;
}

/// At most one colour capture a second per event.
const CAPTURE_EVERY_MS: i64 = 1_000;
/// Captures waiting for the worker; more are dropped (the detector never waits).
const CAPTURE_QUEUE: usize = 4;
/// How long an ending event waits for a capture still being encoded.
const CAPTURE_WAIT: Duration = Duration::from_secs(2);

/// The thumbnail worker: one thread, a bounded queue, the latest JPEG per event.
struct Thumbs {
    tx: Option<SyncSender<(i64, Gop)>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<ThumbShared>,
}

#[derive(Default)]
struct ThumbShared {
    slots: Mutex<HashMap<i64, Slot>>,
    changed: Condvar,
}

#[derive(Default)]
struct Slot {
    pending: usize,
    jpeg: Option<Vec<u8>>,
    error: Option<String>,
}

impl Thumbs {
    fn start(pictures: Arc<dyn Pictures>) -> Result<Thumbs> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(i64, Gop)>(CAPTURE_QUEUE);
        let shared = Arc::new(ThumbShared::default());
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("thumbnails".into())
            .spawn(move || {
                for (event_id, gop) in rx {
                    let r = pictures.encode(&gop);
                    let mut slots = lock(&sh.slots);
                    // An event that ended meanwhile took its slot: the picture is too late.
                    if let Some(slot) = slots.get_mut(&event_id) {
                        slot.pending -= 1;
                        match r {
                            Ok(jpeg) => slot.jpeg = Some(jpeg),
                            Err(e) => slot.error = Some(e.to_string()),
                        }
                    }
                    sh.changed.notify_all();
                }
            })
            .map_err(|e| Error::internal(format!("starting the thumbnail thread: {e}")))?;
        Ok(Thumbs { tx: Some(tx), thread: Some(thread), shared })
    }

    /// Hands a picture of event `event_id` to the worker, unless its queue is full.
    fn capture(&self, event_id: i64, gop: Gop) {
        let Some(tx) = &self.tx else { return };
        lock(&self.shared.slots).entry(event_id).or_default().pending += 1;
        if let Err(e) = tx.try_send((event_id, gop)) {
            if let Some(slot) = lock(&self.shared.slots).get_mut(&event_id) {
                slot.pending -= 1;
            }
            if matches!(e, TrySendError::Full(_)) {
                tracing::debug!(event = event_id, "thumbnail worker busy: picture skipped");
            }
        }
    }

    /// The latest colour JPEG of an ending event (waiting briefly for one being made), and
    /// forgets the event.
    fn take(&self, event_id: i64) -> std::result::Result<Vec<u8>, String> {
        let deadline = Instant::now() + CAPTURE_WAIT;
        let mut slots = lock(&self.shared.slots);
        while slots.get(&event_id).is_some_and(|s| s.pending > 0) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            slots = self.shared.changed.wait_timeout(slots, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        match slots.remove(&event_id) {
            Some(Slot { jpeg: Some(j), .. }) => Ok(j),
            Some(Slot { error: Some(e), .. }) => Err(e),
            Some(Slot { pending, .. }) if pending > 0 => Err("the picture was not ready in time".into()),
            _ => Err("no picture of the camera was taken".into()),
        }
    }
}

impl Drop for Thumbs {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the thumbnail thread panicked");
        }
    }
}

/// What the events thread tells the cloud relay.
pub trait CloudRelay: PieceSink {
    /// An event ended and its row is final (with or without a clip).
    fn event_done(&self, event_id: i64);
    /// Where piece files go.
    fn pieces_dir(&self) -> PathBuf;
    /// False while the cloud is off: no pieces are cut then.
    fn sending(&self) -> bool;
}

/// Detector settings and clip sinks per camera. A camera registered again (a device
/// paired anew) replaces its entry; an event already open keeps the sink it began with.
/// Settings changed while a camera runs ([`Registry::update_detector`]) reach its
/// detector at its next frame, without touching its pipeline.
#[derive(Default)]
pub struct Registry {
    cams: Mutex<HashMap<i64, Registered>>,
    /// Stamps each settings change, so the events thread sees which detectors are stale.
    version: std::sync::atomic::AtomicU64,
}

struct Registered {
    detector: DetectorConfig,
    clips: Option<Arc<dyn ClipSink>>,
    version: u64,
}

impl Registry {
    fn next_version(&self) -> u64 {
        self.version.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }
    pub fn register(&self, camera_id: i64, detector: DetectorConfig, clips: Option<Arc<dyn ClipSink>>) {
        let version = self.next_version();
        lock(&self.cams).insert(camera_id, Registered { detector, clips, version });
    }
    /// New detector settings for a running camera; false when it is not registered.
    pub fn update_detector(&self, camera_id: i64, detector: DetectorConfig) -> bool {
        let version = self.next_version();
        match lock(&self.cams).get_mut(&camera_id) {
            Some(r) => {
                (r.detector, r.version) = (detector, version);
                true
            }
            None => false,
        }
    }
    fn detector(&self, camera_id: i64) -> (DetectorConfig, u64) {
        lock(&self.cams).get(&camera_id).map(|c| (c.detector.clone(), c.version)).unwrap_or_default()
    }
    /// The camera's settings if they changed since version `seen`.
    fn detector_since(&self, camera_id: i64, seen: u64) -> Option<(DetectorConfig, u64)> {
        lock(&self.cams).get(&camera_id).filter(|c| c.version != seen).map(|c| (c.detector.clone(), c.version))
    }
    fn clips(&self, camera_id: i64) -> Option<Arc<dyn ClipSink>> {
        lock(&self.cams).get(&camera_id).and_then(|c| c.clips.clone())
    }
}

/// An event whose camera sends no frames for this long ends at its last frame (the
/// camera died or was unpaired mid-event).
const SILENT_CAMERA_MS: i64 = 10_000;

/// Live motion state per camera, for the API and metrics.
#[derive(Default)]
pub struct MotionState {
    moving: Mutex<HashMap<i64, bool>>,
}

impl MotionState {
    pub fn moving(&self, camera_id: i64) -> bool {
        lock(&self.moving).get(&camera_id).copied().unwrap_or(false)
    }
    fn set(&self, camera_id: i64, on: bool) {
        lock(&self.moving).insert(camera_id, on);
    }
}

struct Open {
    id: i64,
    start_ms: i64,
    /// Set once the detector saw the movement stop: the event ends here unless it starts again.
    ending_at: Option<i64>,
    peak: f32,
    zones: Vec<String>,
    clip: Option<Arc<dyn ClipSink>>,
    /// When a colour picture was last taken for the thumbnail.
    captured_ms: Option<i64>,
}

struct Cam {
    detector: Detector,
    /// The registry version of the detector's settings.
    version: u64,
    open: Option<Open>,
    /// Time of the last frame.
    last_ms: i64,
    /// The grey frame with the highest score of the current event (thumbnail).
    peak_frame: Option<(f32, Vec<u8>, u32, u32)>,
    /// A new peak has not been captured in colour yet (throttled, or before the event began).
    peak_uncaptured: bool,
}

pub fn spawn(
    store: Store,
    settings: Settings,
    frames: Receiver<Frame>,
    state: Arc<MotionState>,
    changes: tokio::sync::broadcast::Sender<MotionChange>,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("events".into())
        .spawn(move || {
            let thumbs = settings
                .pictures
                .clone()
                .and_then(|p| Thumbs::start(p).map_err(|e| tracing::error!(error = %e, "grey thumbnails only")).ok());
            let mut ev = Events { store, settings, cams: HashMap::new(), state, changes, thumbs };
            loop {
                match frames.recv_timeout(Duration::from_millis(500)) {
                    Ok(f) => ev.frame(f),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                ev.tick();
            }
            ev.finish_all();
        })
        .map_err(|e| Error::internal(format!("starting the events thread: {e}")))
}

struct Events {
    store: Store,
    settings: Settings,
    cams: HashMap<i64, Cam>,
    state: Arc<MotionState>,
    changes: tokio::sync::broadcast::Sender<MotionChange>,
    /// Dropped after the last event is finished: the worker thread is joined then.
    thumbs: Option<Thumbs>,
}

impl Events {
    fn frame(&mut self, f: Frame) {
        let registry = &self.settings.cameras;
        let cam = self.cams.entry(f.camera_id).or_insert_with(|| {
            let (cfg, version) = registry.detector(f.camera_id);
            Cam { detector: Detector::new(cfg), version, open: None, last_ms: f.at_ms, peak_frame: None, peak_uncaptured: false }
        });
        // Settings changed (zones, sensitivity): the same detector goes on under them,
        // keeping its background; an open event continues and ends when the new zones
        // see the scene still.
        if let Some((cfg, version)) = registry.detector_since(f.camera_id, cam.version) {
            tracing::info!(camera_id = f.camera_id, "motion settings applied");
            cam.detector.reconfigure(cfg);
            cam.version = version;
        }
        cam.last_ms = f.at_ms;
        let obs = cam.detector.feed_strided(&f.data, f.width, f.height, f.stride, f.at_ms);
        if obs.new_peak && cam.peak_frame.as_ref().is_none_or(|p| obs.score >= p.0) {
            cam.peak_frame = Some((obs.score, f.data.clone(), f.width, f.height));
        }
        cam.peak_uncaptured |= obs.new_peak;
        let capture = match (&mut cam.open, &self.thumbs, &self.settings.pictures) {
            (Some(open), Some(_), Some(p))
                if cam.peak_uncaptured && open.captured_ms.is_none_or(|t| f.at_ms - t >= CAPTURE_EVERY_MS) =>
            {
                cam.peak_uncaptured = false;
                open.captured_ms = Some(f.at_ms);
                p.grab(f.camera_id).map(|gop| (open.id, gop))
            }
            _ => None,
        };
        if let (Some((id, gop)), Some(t)) = (capture, &self.thumbs) {
            t.capture(id, gop);
        }
        match obs.transition {
            Some(Transition::Started { at_ms, zones_hit }) => {
                if let Some(open) = cam.open.as_mut() {
                    // Moving again within the post-roll: the same event goes on.
                    open.ending_at = None;
                    merge(&mut open.zones, zones_hit);
                } else {
                    self.start(f.camera_id, at_ms, zones_hit);
                }
            }
            Some(Transition::Ended { at_ms, peak_score, zones_hit, .. }) => {
                let post = self.settings.post_roll_ms;
                if let Some(open) = self.cams.get_mut(&f.camera_id).and_then(|c| c.open.as_mut()) {
                    open.ending_at = Some(at_ms + post);
                    open.peak = open.peak.max(peak_score);
                    merge(&mut open.zones, zones_hit);
                }
            }
            None => {}
        }
        self.finish_due(f.at_ms);
    }

    fn start(&mut self, camera_id: i64, at_ms: i64, zones: Vec<String>) {
        let id = match self.store.call_blocking(move |db| db.insert_event(camera_id, at_ms)) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "cannot store event");
                return;
            }
        };
        tracing::info!(camera_id, event = id, "motion started");
        let mut clip = None;
        if let Some(sink) = self.settings.cameras.clips(camera_id) {
            let dir = clip_dir(self.store.data_dir(), camera_id);
            let r = std::fs::create_dir_all(&dir)
                .ctx(format!("creating {}", dir.display()))
                .and_then(|_| sink.begin(&dir.join(format!("{id}.mp4")), at_ms - self.settings.pre_roll_ms));
            match r {
                Ok(first_ms) => {
                    clip = Some(sink.clone());
                    // Recovery after a crash finds the clip's start here; without it the clip
                    // is still written and indexed when the event ends.
                    if let Err(e) = self.store.call_blocking(move |db| db.set_event_clip_start(id, first_ms)) {
                        tracing::error!(error = %e, event = id, "cannot record where the clip starts");
                    }
                    if let Some(cloud) = self.settings.cloud.as_ref().filter(|c| c.sending()) {
                        let spec = PieceSpec { camera_id, event_id: id, dir: cloud.pieces_dir(), sink: cloud.clone() };
                        if let Err(e) = sink.begin_pieces(spec, at_ms - self.settings.pre_roll_ms) {
                            tracing::error!(error = %e, event = id, "cannot cut pieces for the cloud; the clip follows when the event ends");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, event = id, "cannot start clip"),
            }
        }
        let cam = self.cams.get_mut(&camera_id).expect("camera state");
        cam.open = Some(Open { id, start_ms: at_ms, ending_at: None, peak: 0.0, zones, clip, captured_ms: None });
        self.state.set(camera_id, true);
        let _ = self.changes.send(MotionChange { camera_id, event_id: id, on: true, at_ms });
    }

    /// Between frames: ends what is due by the clock (post-rolls, silent cameras).
    fn tick(&mut self) {
        self.finish_due(self.settings.clock.now_ms());
    }

    /// Ends the events whose post-roll is over.
    fn finish_due(&mut self, now_ms: i64) {
        for cam in self.cams.values_mut() {
            if let Some(open) = cam.open.as_mut().filter(|o| o.ending_at.is_none() && now_ms - cam.last_ms > SILENT_CAMERA_MS) {
                tracing::warn!(event = open.id, "camera sends no frames: ending its event");
                open.ending_at = Some(cam.last_ms);
            }
        }
        let due: Vec<i64> = self
            .cams
            .iter()
            .filter(|(_, c)| c.open.as_ref().and_then(|o| o.ending_at).is_some_and(|t| t <= now_ms))
            .map(|(id, _)| *id)
            .collect();
        for camera_id in due {
            self.finish(camera_id, None);
        }
    }

    fn finish_all(&mut self) {
        let now = self.settings.clock.now_ms();
        let ids: Vec<i64> = self.cams.keys().copied().collect();
        for camera_id in ids {
            self.finish(camera_id, Some(now));
        }
    }

    fn finish(&mut self, camera_id: i64, end_override: Option<i64>) {
        let Some(cam) = self.cams.get_mut(&camera_id) else { return };
        let Some(open) = cam.open.take() else { return };
        let peak_frame = cam.peak_frame.take();
        cam.peak_uncaptured = false;
        let end_ms = end_override.or(open.ending_at).unwrap_or(open.start_ms).max(open.start_ms);
        let data_dir = self.store.data_dir().to_path_buf();
        let dir = clip_dir(&data_dir, camera_id);
        let mut done = FinishedEvent {
            id: open.id,
            end_ms,
            peak_score: f64::from(open.peak.max(peak_frame.as_ref().map_or(0.0, |p| p.0))),
            zones_json: serde_json::to_string(&open.zones).unwrap_or_else(|_| "[]".into()),
            ..Default::default()
        };
        if let Some(sink) = &open.clip {
            let path = dir.join(format!("{}.mp4", open.id));
            let r = sink.end().and_then(|_| make_durable(&path));
            match r {
                Ok(bytes) => {
                    done.clip_path = Some(rel(&data_dir, &path));
                    done.clip_bytes = Some(bytes);
                }
                Err(e) => tracing::error!(error = %e, event = open.id, "clip failed"),
            }
        }
        let colour = self.thumbs.as_ref().map(|t| t.take(open.id));
        let jpeg = match (colour, peak_frame) {
            (Some(Ok(jpeg)), _) => Some(Ok(jpeg)),
            (colour, Some((_, data, w, h))) => {
                if let Some(Err(why)) = colour {
                    tracing::info!(event = open.id, why = %why, "no colour picture of this event: its thumbnail is the detector's grey frame");
                }
                Some((self.settings.jpeg)(&data, w, h))
            }
            (_, None) => None,
        };
        if let Some(jpeg) = jpeg {
            let path = dir.join(format!("{}.jpg", open.id));
            match jpeg.and_then(|jpeg| write_durable(&path, &jpeg)) {
                Ok(()) => done.thumb_path = Some(rel(&data_dir, &path)),
                Err(e) => tracing::error!(error = %e, event = open.id, "thumbnail failed"),
            }
        }
        let id = open.id;
        tracing::info!(camera_id, event = id, end_ms, "motion ended");
        match self.store.call_blocking(move |db| db.finish_event(&done)) {
            Ok(()) => {
                if let Some(cloud) = &self.settings.cloud {
                    cloud.event_done(id);
                }
            }
            Err(e) => tracing::error!(error = %e, event = id, "cannot finish event"),
        }
        self.state.set(camera_id, false);
        let _ = self.changes.send(MotionChange { camera_id, event_id: id, on: false, at_ms: end_ms });
    }
}

fn merge(into: &mut Vec<String>, more: Vec<String>) {
    for z in more {
        if !into.contains(&z) {
            into.push(z);
        }
    }
}

fn rel(data_dir: &Path, p: &Path) -> String {
    p.strip_prefix(data_dir).unwrap_or(p).to_string_lossy().to_string()
}

/// fsync a finished clip and its directory; its size.
fn make_durable(path: &Path) -> Result<u64> {
    let f = std::fs::File::open(path).ctx(format!("opening {}", path.display()))?;
    f.sync_all().ctx(format!("fsync {}", path.display()))?;
    let n = f.metadata().ctx(format!("stat {}", path.display()))?.len();
    sync_dir(path.parent().unwrap_or(Path::new("/")))?;
    Ok(n)
}

fn write_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).ctx(format!("creating {}", path.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).ctx(format!("writing {}", path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// After a crash: events without an end get one, from what their clip holds (cut back
/// to its last complete fragment), or their start if there is no clip.
pub fn recover(store: &Store) -> Result<usize> {
    let data_dir = store.data_dir().to_path_buf();
    let open = store.call_blocking(|db| db.open_events())?;
    let n = open.len();
    for e in open {
        let path = clip_dir(&data_dir, e.camera_id).join(format!("{}.mp4", e.id));
        let mut done = FinishedEvent {
            id: e.id,
            end_ms: e.start_ms,
            peak_score: e.peak_score,
            zones_json: e.zones_json.clone(),
            ..Default::default()
        };
        if path.exists() {
            match index_partial_clip(&path) {
                Ok((bytes, ms)) => {
                    done.end_ms = (e.clip_start_ms.unwrap_or(e.start_ms) + ms).max(e.start_ms);
                    done.clip_path = Some(rel(&data_dir, &path));
                    done.clip_bytes = Some(bytes);
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "removing unplayable clip");
                    std::fs::remove_file(&path).ctx(format!("removing {}", path.display()))?;
                }
            }
        }
        tracing::info!(event = e.id, end_ms = done.end_ms, "closed an event left open by a crash");
        store.call_blocking(move |db| db.finish_event(&done))?;
    }
    remove_orphans(store)?;
    Ok(n)
}

/// Files under clips/ that no event points at (a thumbnail written just before a crash,
/// a clip whose event was lost) would never be deleted: remove them.
fn remove_orphans(store: &Store) -> Result<()> {
    let data_dir = store.data_dir().to_path_buf();
    let known: std::collections::HashSet<String> = store.call_blocking(|db| db.clip_paths())?.into_iter().collect();
    let Ok(cams) = std::fs::read_dir(data_dir.join(CLIPS_DIR)) else { return Ok(()) };
    for cam in cams.flatten() {
        let Ok(files) = std::fs::read_dir(cam.path()) else { continue };
        let mut removed = false;
        for f in files.flatten() {
            let p = f.path();
            if !known.contains(&rel(&data_dir, &p)) {
                tracing::warn!(path = %p.display(), "removing a clip file no event refers to");
                std::fs::remove_file(&p).ctx(format!("removing {}", p.display()))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&cam.path())?;
        }
    }
    Ok(())
}

fn index_partial_clip(path: &Path) -> Result<(u64, i64)> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).ctx(format!("opening {}", path.display()))?;
    let len = f.metadata().ctx(format!("stat {}", path.display()))?.len();
    let scan = mp4::scan(len, |off, buf| f.read_exact_at(buf, off)).map_err(Error::invalid)?;
    if scan.fragments == 0 {
        return Err(Error::invalid("no complete fragment"));
    }
    if scan.complete_end < len {
        f.set_len(scan.complete_end).ctx(format!("truncating {}", path.display()))?;
    }
    f.sync_all().ctx(format!("fsync {}", path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new("/")))?;
    Ok((scan.complete_end.min(len), scan.duration_ms()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TestClock;
    use crate::store::EventRow;

    /// 5 fps.
    const DT: Duration = Duration::from_millis(200);
    const POST_ROLL_MS: i64 = 5_000;

    /// The events layer on a real store, fed frames by hand, its clock moved by hand.
    struct Rig {
        _dir: tempfile::TempDir,
        store: Store,
        tc: TestClock,
        ev: Events,
        changes: tokio::sync::broadcast::Receiver<MotionChange>,
        cam: i64,
        /// Where the moving block is (it moves every frame).
        x: u32,
    }

    impl Rig {
        fn new() -> Rig {
            Rig::with_pictures(None)
        }

        fn with_pictures(pictures: Option<Arc<dyn Pictures>>) -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let cam = store
                .call_blocking(|db| db.sync_config_cameras(&[("Porch".into(), "rtsp://h/a".into(), String::new())], 0))
                .unwrap()[0]
                .id;
            std::fs::create_dir_all(clip_dir(dir.path(), cam)).unwrap();
            let tc = TestClock::at(1_700_000_000_000);
            let settings = Settings {
                pre_roll_ms: 0,
                post_roll_ms: POST_ROLL_MS,
                cameras: Arc::new(Registry::default()),
                jpeg: |_, _, _| Ok(b"\xff\xd8".to_vec()),
                pictures: pictures.clone(),
                cloud: None,
                clock: tc.clock(),
            };
            let (tx, changes) = tokio::sync::broadcast::channel(16);
            let state = Arc::new(MotionState::default());
            let ev = Events {
                store: store.clone(),
                settings,
                cams: HashMap::new(),
                state,
                changes: tx,
                thumbs: pictures.map(|p| Thumbs::start(p).unwrap()),
            };
            let mut rig = Rig { _dir: dir, store, tc, ev, changes, cam, x: 0 };
            rig.still(crate::motion::WARMUP_FRAMES + 5);
            rig
        }

        /// One frame now, then the clock moves on by a frame interval.
        fn frame(&mut self, moving: bool) {
            let (w, h) = (crate::camera::FRAME_WIDTH, crate::camera::FRAME_HEIGHT);
            let mut data = vec![60u8; (w * h) as usize];
            if moving {
                self.x = (self.x + 37) % (w - 80);
                for y in 50..130 {
                    data[(y * w + self.x) as usize..(y * w + self.x + 80) as usize].fill(240);
                }
            }
            let f = Frame { camera_id: self.cam, data, width: w, height: h, stride: w, at_ms: self.tc.now_ms() };
            self.ev.frame(f);
            self.tc.advance(DT);
        }

        fn still(&mut self, n: u32) {
            (0..n).for_each(|_| self.frame(false));
        }

        fn moving(&mut self, n: u32) {
            (0..n).for_each(|_| self.frame(true));
        }

        fn events(&self) -> Vec<EventRow> {
            let cam = self.cam;
            let q = crate::store::SegmentQuery { camera_id: Some(cam), ..Default::default() };
            let mut v = self.store.call_blocking(move |db| db.events(&q)).unwrap();
            v.sort_by_key(|e| e.id);
            v
        }

        /// The motion changes broadcast so far: (event id, on, at).
        fn changes(&mut self) -> Vec<(i64, bool, i64)> {
            std::iter::from_fn(|| self.changes.try_recv().ok()).map(|c| (c.event_id, c.on, c.at_ms)).collect()
        }
    }

    #[test]
    fn an_event_ends_post_roll_after_the_motion_stops() {
        let mut r = Rig::new();
        let began = r.tc.now_ms();
        r.moving(10);
        let last_motion = r.tc.now_ms() - DT.as_millis() as i64;
        r.still(4); // the detector reports the end on the third still frame
        let [(id, true, at)] = r.changes()[..] else { panic!("one start: {:?}", r.changes()) };
        assert_eq!(at, began, "the event starts when the movement began");
        assert!(r.ev.state.moving(r.cam));
        // Frames stop; only the clock moves. Just before the post-roll is over: still open.
        let end = last_motion + POST_ROLL_MS;
        r.tc.set_wall_ms(end - 1);
        r.ev.tick();
        assert_eq!(r.events()[0].end_ms, None);
        assert!(r.changes().is_empty());
        r.tc.set_wall_ms(end);
        r.ev.tick();
        assert_eq!(r.changes(), [(id, false, end)]);
        let e = &r.events()[0];
        assert_eq!((e.id, e.start_ms, e.end_ms), (id, began, Some(end)));
        assert!(!r.ev.state.moving(r.cam));
    }

    #[test]
    fn motion_again_within_the_post_roll_keeps_one_event() {
        let mut r = Rig::new();
        r.moving(10);
        r.still(4);
        let [(id, true, _)] = r.changes()[..] else { panic!("one start") };
        // 2 s later (well inside the 5 s post-roll) it moves again, for a while.
        r.still(10);
        r.moving(10);
        let last_motion = r.tc.now_ms() - DT.as_millis() as i64;
        r.still(4);
        r.tc.advance(Duration::from_millis(POST_ROLL_MS as u64));
        r.ev.tick();
        assert_eq!(r.changes(), [(id, false, last_motion + POST_ROLL_MS)], "no second start, one end");
        assert_eq!(r.events().len(), 1);
        // Motion after the post-roll is a new event.
        r.moving(10);
        let [(second, true, _)] = r.changes()[..] else { panic!("a second start") };
        assert_ne!(second, id);
    }

    #[test]
    fn new_zones_apply_at_the_next_frame_of_a_running_camera() {
        let mut r = Rig::new();
        let reg = r.ev.settings.cameras.clone();
        assert!(!reg.update_detector(r.cam, DetectorConfig::default()), "not registered yet");
        reg.register(r.cam, DetectorConfig::default(), None);
        let whole: crate::motion::DetectorConfig = serde_json::from_value(serde_json::json!({
            "zones": [{"name": "all", "kind": "exclude", "points": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]}]
        }))
        .unwrap();
        assert!(reg.update_detector(r.cam, whole));
        r.moving(15);
        r.still(4);
        assert!(r.changes().is_empty(), "movement inside an exclude zone makes no event");
        assert!(r.events().is_empty());
        // And back: the detector kept its background, so motion counts at once.
        assert!(reg.update_detector(r.cam, DetectorConfig::default()));
        r.moving(10);
        assert_eq!(r.changes().len(), 1, "an event once the zone is gone");
    }

    #[test]
    fn an_event_of_a_camera_gone_silent_ends_at_its_last_frame() {
        let mut r = Rig::new();
        r.moving(10);
        let last_frame = r.tc.now_ms() - DT.as_millis() as i64;
        let [(id, true, _)] = r.changes()[..] else { panic!("one start") };
        // No frames at all: 10 s after the last one it is still open, then it ends there.
        r.tc.set_wall_ms(last_frame + SILENT_CAMERA_MS);
        r.ev.tick();
        assert!(r.changes().is_empty());
        r.tc.advance(Duration::from_millis(1));
        r.ev.tick();
        assert_eq!(r.changes(), [(id, false, last_frame)]);
        assert_eq!(r.events()[0].end_ms, Some(last_frame));
    }

    #[test]
    fn recovery_closes_open_events_and_sweeps_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cam = store
            .call_blocking(|db| db.sync_config_cameras(&[("Porch".into(), "rtsp://h/a".into(), String::new())], 0))
            .unwrap()[0]
            .id;
        let open_with_clip = store.call_blocking(move |db| db.insert_event(cam, 2_000)).unwrap();
        store.call_blocking(move |db| db.set_event_clip_start(open_with_clip, 1_000)).unwrap();
        let open_without = store.call_blocking(move |db| db.insert_event(cam, 20_000)).unwrap();
        let cdir = clip_dir(dir.path(), cam);
        std::fs::create_dir_all(&cdir).unwrap();
        // Two complete one-second fragments and a cut third one.
        let mut clip = crate::recorder::mp4::tests::synthetic_file(3);
        clip.truncate(clip.len() - 10);
        std::fs::write(cdir.join(format!("{open_with_clip}.mp4")), &clip).unwrap();
        std::fs::write(cdir.join(format!("{open_without}.jpg")), b"\xff\xd8").unwrap();
        std::fs::write(cdir.join("999.mp4"), b"stray").unwrap();
        assert_eq!(recover(&store).unwrap(), 2);
        let e = store.call_blocking(move |db| db.event(open_with_clip)).unwrap().unwrap();
        assert_eq!(e.end_ms, Some(3_000), "clip start + 2 s of complete fragments");
        assert_eq!(e.clip_path.as_deref(), Some(format!("clips/{cam}/{open_with_clip}.mp4").as_str()));
        let e = store.call_blocking(move |db| db.event(open_without)).unwrap().unwrap();
        assert_eq!(e.end_ms, Some(20_000));
        assert!(e.clip_path.is_none());
        let left: Vec<_> = std::fs::read_dir(&cdir).unwrap().flatten().map(|f| f.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(format!("{open_with_clip}.mp4"))]);
    }

    /// Pictures of a camera that hands out an empty GOP and "encodes" it to a marker (or fails).
    struct Marker {
        encoded: Mutex<Vec<i64>>,
        fail: bool,
    }

    impl Pictures for Marker {
        fn grab(&self, _camera_id: i64) -> Option<Gop> {
            let params = Arc::new(crate::camera::live::Params { avcc: Default::default(), width: 640, height: 360, fps: 5.0 });
            Some(Gop { params, units: Vec::new() })
        }
        fn encode(&self, _gop: &Gop) -> Result<Vec<u8>> {
            lock(&self.encoded).push(crate::clock::now_ms());
            if self.fail { Err(Error::internal("decoder broke")) } else { Ok(b"COLOUR".to_vec()) }
        }
    }

    fn thumbnail(r: &Rig) -> Vec<u8> {
        let e = &r.events()[0];
        std::fs::read(r.store.data_dir().join(e.thumb_path.as_ref().expect("a thumbnail"))).unwrap()
    }

    #[test]
    fn the_thumbnail_is_the_colour_picture_of_the_peak_throttled_to_one_a_second() {
        let pics = Arc::new(Marker { encoded: Mutex::new(Vec::new()), fail: false });
        let mut r = Rig::with_pictures(Some(pics.clone()));
        // 4 s of motion at 5 fps: new peaks come often, captures at most once a (test clock) second.
        r.moving(20);
        r.still(4);
        r.tc.advance(Duration::from_millis(POST_ROLL_MS as u64));
        r.ev.tick();
        assert!(r.events()[0].end_ms.is_some());
        assert_eq!(thumbnail(&r), b"COLOUR", "the colour picture, not the grey frame");
        let n = lock(&pics.encoded).len();
        assert!((1..=5).contains(&n), "{n} captures in 4 s of motion");
    }

    #[test]
    fn without_a_colour_picture_the_grey_frame_is_the_thumbnail() {
        let pics = Arc::new(Marker { encoded: Mutex::new(Vec::new()), fail: true });
        let mut r = Rig::with_pictures(Some(pics.clone()));
        r.moving(10);
        r.still(4);
        r.tc.advance(Duration::from_millis(POST_ROLL_MS as u64));
        r.ev.tick();
        assert!(!lock(&pics.encoded).is_empty(), "a capture was tried");
        assert_eq!(thumbnail(&r), b"\xff\xd8", "the grey fallback");
    }
}
