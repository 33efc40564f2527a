//! The running cameras: started at boot from config, paired devices and cameras added
//! from the API, and at run time when a device is paired or unpaired or the owner adds,
//! removes, renames or retunes a camera. Holds the senders every camera feeds, so the
//! recorder and the events thread end only after the last camera has stopped.

use std::path::PathBuf;
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::camera::{self, Camera, CameraStatus, CameraView, Frame, SegmentEvent};
use crate::config::RecordingMode;
use crate::devices::CameraControl;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{MotionState, Registry};
use crate::motion::DetectorConfig;
use crate::recorder;
use crate::store::{CameraRow, Store};
use crate::sync::lock;

/// What every camera of this hub shares.
pub struct Template {
    pub data_dir: PathBuf,
    pub mode: RecordingMode,
    pub segment_seconds: u32,
    pub motion_fps: u32,
    pub decoder: Option<String>,
    /// Decodes stills (snapshots, thumbnails), even when motion detection is off.
    pub still_decoder: Option<String>,
    /// Pre-roll kept for clips, for cameras whose recording mode is not "off".
    pub pre_roll_ms: i64,
}

/// What every camera sends into: segments for the recorder, frames for motion detection.
type Senders = (Sender<SegmentEvent>, Option<SyncSender<Frame>>);

pub struct Fleet {
    running: Mutex<Vec<(Camera, String)>>,
    /// Threads starting or stopping a camera for pairing; joined by `shutdown_blocking`.
    workers: Mutex<Vec<JoinHandle<()>>>,
    senders: Mutex<Option<Senders>>,
    template: Template,
    store: Store,
    pub motion: Arc<MotionState>,
    pub registry: Arc<Registry>,
}

impl Fleet {
    pub fn new(
        template: Template,
        store: Store,
        segments: Sender<SegmentEvent>,
        frames: Option<SyncSender<Frame>>,
        motion: Arc<MotionState>,
        registry: Arc<Registry>,
    ) -> Fleet {
        Fleet {
            running: Mutex::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
            senders: Mutex::new(Some((segments, frames))),
            template,
            store,
            motion,
            registry,
        }
    }

    /// Starts a camera (blocking: reads its motion settings and builds its pipeline).
    /// A camera already running under the same id is stopped first.
    pub fn start_blocking(&self, row: &CameraRow) -> Result<()> {
        self.stop_blocking(row.id);
        let id = row.id;
        let json = self.store.call_blocking(move |db| db.camera_motion(id))?.unwrap_or_default();
        let det: DetectorConfig = serde_json::from_str(&json).unwrap_or_else(|e| {
            tracing::warn!(camera = %row.name, error = %e, "motion settings unreadable; using defaults");
            DetectorConfig::default()
        });
        let t = &self.template;
        let mode = row.recording_mode.unwrap_or(t.mode);
        let spec = camera::Spec {
            id: row.id,
            name: row.name.clone(),
            url: row.url.clone(),
            substream_url: row.substream_url.clone(),
            record_dir: (mode == RecordingMode::Continuous).then(|| recorder::camera_dir(&t.data_dir, row.id)),
            segment_seconds: t.segment_seconds,
            motion_fps: t.motion_fps,
            decoder: t.decoder.clone(),
            pre_roll_ms: (mode != RecordingMode::Off).then_some(t.pre_roll_ms),
        };
        let (seg, frames) = match &*lock(&self.senders) {
            Some((s, f)) => (s.clone(), f.clone()),
            None => return Ok(()), // shutting down
        };
        let cam = Camera::start(spec, seg, frames)?;
        self.registry.register(row.id, det, cam.clips().map(|c| c as Arc<dyn crate::camera::ClipSink>));
        tracing::info!(camera = %row.name, id = row.id, source = %row.source, "camera started");
        lock(&self.running).push((cam, row.source.clone()));
        Ok(())
    }

    /// Stops one camera and waits for its last segment (blocking).
    pub fn stop_blocking(&self, camera_id: i64) {
        let cam = {
            let mut running = lock(&self.running);
            running.iter().position(|(c, _)| c.id == camera_id).map(|i| running.remove(i).0)
        };
        if let Some(c) = cam {
            c.request_stop();
            c.join();
            tracing::info!(id = camera_id, "camera stopped");
        }
    }

    /// The recording mode of cameras without one of their own.
    pub fn default_mode(&self) -> RecordingMode {
        self.template.mode
    }

    /// A new name for a running camera's status (its pipeline goes on); false when it
    /// does not run.
    pub fn rename(&self, camera_id: i64, name: &str) -> bool {
        let mut running = lock(&self.running);
        match running.iter_mut().find(|(c, _)| c.id == camera_id) {
            Some((c, _)) => {
                c.name = name.to_string();
                true
            }
            None => false,
        }
    }

    /// New motion settings for a running camera: its detector takes them at its next
    /// frame, the pipeline goes on. False when it does not run.
    pub fn retune(&self, camera_id: i64, cfg: DetectorConfig) -> bool {
        self.registry.update_detector(camera_id, cfg)
    }

    /// Runs `f` on a worker thread (joined at shutdown, like pairing's) and waits for
    /// its answer, so async callers never block and shutdown never misses a camera
    /// started meanwhile.
    pub async fn on_worker<T: Send + 'static>(
        self: &Arc<Self>,
        what: &str,
        f: impl FnOnce(&Fleet) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.worker(what, move |fleet| {
            let _ = tx.send(f(fleet));
        });
        rx.await.map_err(|_| Error::new(ErrorKind::Unavailable, format!("cannot {what} the camera now (the hub is stopping)")))?
    }

    /// Stops every camera and lets go of the senders (blocking): afterwards the
    /// recorder and the events thread drain their queues and end.
    pub fn shutdown_blocking(&self) {
        *lock(&self.senders) = None;
        // A camera being started now finds no senders and gives up; one being stopped ends.
        for w in std::mem::take(&mut *lock(&self.workers)) {
            if w.join().is_err() {
                tracing::error!("a camera start/stop thread panicked");
            }
        }
        let cams: Vec<Camera> = std::mem::take(&mut *lock(&self.running)).into_iter().map(|(c, _)| c).collect();
        for c in &cams {
            c.request_stop();
        }
        for c in cams {
            c.join();
        }
    }
}

impl Fleet {
    /// Runs `f` on a thread of its own, joined at shutdown.
    fn worker(self: &Arc<Self>, what: &str, f: impl FnOnce(&Fleet) + Send + 'static) {
        let fleet = self.clone();
        let mut workers = lock(&self.workers);
        workers.retain(|w| !w.is_finished());
        match std::thread::Builder::new().name(format!("fleet-{what}")).spawn(move || f(&fleet)) {
            Ok(t) => workers.push(t),
            Err(e) => tracing::error!(error = %e, "cannot start a thread to {what} a camera"),
        }
    }
}

/// Pairing starts and stops cameras from async code: the blocking work runs on its own thread.
impl CameraControl for Arc<Fleet> {
    fn start(&self, row: CameraRow) {
        self.worker("start", move |fleet| {
            if let Err(e) = fleet.start_blocking(&row) {
                tracing::error!(camera = %row.name, error = %e, "cannot start camera");
            }
        });
    }
    fn stop(&self, camera_id: i64) {
        self.worker("stop", move |fleet| fleet.stop_blocking(camera_id));
    }
    fn running(&self, camera_id: i64) -> bool {
        lock(&self.running).iter().any(|(c, _)| c.id == camera_id)
    }
}

impl CameraView for Fleet {
    fn cameras(&self) -> Vec<CameraStatus> {
        let running = lock(&self.running);
        let mut out: Vec<CameraStatus> = running
            .iter()
            .map(|(c, source)| CameraStatus {
                id: c.id,
                name: c.name.clone(),
                status: c.status(),
                source: source.clone(),
                motion: self.motion.moving(c.id),
                preroll_bytes: c.clips().map_or(0, |cl| cl.bytes() as u64),
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
    }

    fn feed(&self, camera_id: i64, stream: crate::camera::live::StreamKind) -> Option<Arc<crate::camera::live::Feed>> {
        lock(&self.running).iter().find(|(c, _)| c.id == camera_id).map(|(c, _)| c.feed(stream))
    }

    fn snapshot(&self, camera_id: i64, stream: camera::live::StreamKind, width: u32) -> Result<Vec<u8>> {
        let feed = self.feed(camera_id, stream).ok_or_else(|| crate::error::Error::not_found("no such camera"))?;
        let decoder = self.template.still_decoder.as_deref().ok_or_else(|| {
            crate::error::Error::new(crate::error::ErrorKind::Unavailable, "no H.264 decoder on this machine")
        })?;
        camera::still::snapshot(&feed, width, decoder)
    }
}
