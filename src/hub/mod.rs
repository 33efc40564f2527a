//! Start-up and ordered tear-down of the hub, in one readable function: [`run`].
//!
//! Owns: the order things start and stop in, the one shutdown signal every task
//! listens to, and the readiness notice to systemd. May not touch: SQL, GStreamer
//! elements, HTTP details; it wires the subsystems together and nothing more.
//!
//! Start: data dir and lock → database → TLS → web listener (fail fast if the port is
//! taken) → recovery of half-written segments → recorder → cameras → web → READY=1.
//! Stop (first SIGTERM/SIGINT): web stops accepting → cameras finish their segments →
//! recorder indexes them → database closes. A second signal exits at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::camera::{self, Camera, ClipSink};
use crate::events::{self, MotionState};
use crate::motion::DetectorConfig;
use crate::config::{Config, RecordingMode};
use crate::error::{Error, ErrorKind, Result};
use crate::recorder::{self, Recorder, Retention};
use crate::store::{self, DirLock, Store};
use crate::web::{self, CameraInfo, CameraView};

/// Pre-roll kept beyond `pre_roll_seconds`, for the detector's persistence delay.
const PRE_ROLL_MARGIN_MS: i64 = 2000;

/// The cameras as the web sees them.
struct Cameras {
    running: Mutex<Vec<(Camera, String)>>,
    motion: Arc<MotionState>,
}

impl CameraView for Cameras {
    fn cameras(&self) -> Vec<CameraInfo> {
        let running = self.running.lock().expect("cameras lock");
        running
            .iter()
            .map(|(c, source)| {
                let s = c.status();
                CameraInfo {
                    id: c.id,
                    name: c.name.clone(),
                    status: s.state.as_str().to_string(),
                    reason: s.reason,
                    decoder: s.decoder,
                    decoded_fps: s.decoded_fps,
                    source: source.clone(),
                    motion: self.motion.moving(c.id),
                    preroll_bytes: c.clips().map_or(0, |cl| cl.bytes() as u64),
                }
            })
            .collect()
    }
}

/// Runs the hub until SIGTERM or SIGINT. `ready` is told the web address once the hub
/// serves (the demo prints it).
pub async fn run(cfg: Config, ready: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>) -> Result<()> {
    let data_dir = cfg.data_dir.clone();
    store::prepare_data_dir(&data_dir)?;
    let _lock = DirLock::acquire(&data_dir)?;
    let store = Store::open(&data_dir)?;
    let hub_id = store.call(|db| db.hub_id()).await?;
    let tls_paths = web::tls::ensure(&data_dir)?;
    let tls = web::tls::server_config(&tls_paths)?;
    let listen = cfg.web_listen();
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        Error::new(ErrorKind::Unavailable, format!("web.listen {listen}: cannot listen: {e}"))
    })?;
    let web_addr = listener.local_addr().map_err(|e| Error::internal(e.to_string()))?;

    let config_cams: Vec<(String, String, String)> =
        cfg.camera.iter().map(|c| (c.name.clone(), c.url.clone(), c.substream_url.clone())).collect();
    let rows = store.call(move |db| db.sync_config_cameras(&config_cams)).await?;

    let retention = Retention::from(&cfg.recording);
    let report = {
        let rec = Recorder::new(store.clone(), retention.clone());
        tokio::task::spawn_blocking(move || rec.recover()).await.map_err(|e| Error::internal(e.to_string()))??
    };
    let closed = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || events::recover(&store)).await.map_err(|e| Error::internal(e.to_string()))??
    };
    tracing::info!(?report, events_closed = closed, "recovery done");

    camera::init()?;
    // motion.fps = 0 turns detection off: no decode branch at all.
    let decoder = if cfg.motion.fps == 0 { None } else { camera::pick_decoder(&cfg.decode.prefer) };
    match &decoder {
        Some(d) => tracing::info!(decoder = %d, hardware = camera::decoder::is_hardware(d), "H.264 decoder"),
        None if cfg.motion.fps == 0 => tracing::info!("motion detection off (motion.fps = 0): not decoding"),
        None => tracing::warn!("no H.264 decoder on this machine: recording only, no motion detection"),
    }
    let (seg_tx, seg_rx) = std::sync::mpsc::channel();
    let recorder_thread = recorder::spawn(store.clone(), retention, seg_rx);
    // Frames for motion detection: a short queue; a camera drops frames the detector
    // has no time for rather than waiting.
    let (frame_tx, frame_rx) = std::sync::mpsc::sync_channel(32);
    let clips_on = cfg.recording.mode != RecordingMode::Off;
    let mut detectors = HashMap::new();
    let mut clip_sinks: HashMap<i64, Arc<dyn ClipSink>> = HashMap::new();
    let mut running = Vec::new();
    for row in rows {
        let id = row.id;
        let json = store.call(move |db| db.camera_motion(id)).await?.unwrap_or_default();
        let det: DetectorConfig = serde_json::from_str(&json).unwrap_or_else(|e| {
            tracing::warn!(camera = %row.name, error = %e, "motion settings unreadable; using defaults");
            DetectorConfig::default()
        });
        detectors.insert(id, det);
        let spec = camera::Spec {
            id: row.id,
            name: row.name.clone(),
            url: row.url.clone(),
            substream_url: row.substream_url.clone(),
            record_dir: (cfg.recording.mode == RecordingMode::Continuous).then(|| recorder::camera_dir(&data_dir, row.id)),
            segment_seconds: cfg.recording.segment_seconds,
            motion_fps: cfg.motion.fps,
            decoder: decoder.clone(),
            // Events are reported a few frames after the movement began: keep a margin.
            pre_roll_ms: clips_on.then(|| i64::from(cfg.motion.pre_roll_seconds) * 1000 + PRE_ROLL_MARGIN_MS),
        };
        let cam = Camera::start(spec, seg_tx.clone(), decoder.is_some().then(|| frame_tx.clone()))?;
        if let Some(c) = cam.clips() {
            clip_sinks.insert(id, c);
        }
        running.push((cam, row.source));
    }
    drop(seg_tx);
    drop(frame_tx);
    let motion = Arc::new(MotionState::default());
    let (changes, _) = tokio::sync::broadcast::channel(64);
    let events_thread = events::spawn(
        store.clone(),
        events::Settings {
            pre_roll_ms: i64::from(cfg.motion.pre_roll_seconds) * 1000,
            post_roll_ms: i64::from(cfg.motion.post_roll_seconds) * 1000,
            detectors,
            clips: clip_sinks,
            jpeg: camera::encode_jpeg,
        },
        frame_rx,
        motion.clone(),
        changes.clone(),
    );
    let cameras = Arc::new(Cameras { running: Mutex::new(running), motion });

    let (stop_tx, stop_rx) = watch::channel(false);
    let state = web::AppState::new(store.clone(), cameras.clone(), cfg.web.allow_public_clients);
    let web_task = tokio::spawn(web::serve(listener, tls, web::router(state), stop_rx));
    tracing::info!(hub_id = %hub_id, url = %format!("https://{web_addr}"), "homehub serving");
    sd_notify("READY=1");
    if let Some(r) = ready {
        let _ = r.send(web_addr);
    }

    wait_for_signal().await;
    tracing::info!("shutting down");
    sd_notify("STOPPING=1");
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("homehub: second signal, exiting now");
        std::process::exit(130);
    });

    let _ = stop_tx.send(true);
    let _ = web_task.await;
    let cams: Vec<Camera> = std::mem::take(&mut *cameras.running.lock().expect("cameras lock")).into_iter().map(|(c, _)| c).collect();
    tokio::task::spawn_blocking(move || {
        for c in &cams {
            c.request_stop();
        }
        for c in cams {
            c.join();
        }
        // Every camera has dropped its senders: events close (with their clips), the
        // recorder indexes what is queued, and both end.
        let _ = events_thread.join();
        let _ = recorder_thread.join();
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?;
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Tells systemd (Type=notify) about our state; nothing when not run by systemd.
fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let path = PathBuf::from(path);
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_os_str().as_encoded_bytes();
    let r = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name).and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), &path)
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}
