//! Start-up and ordered tear-down of the hub, in one readable function: [`run`].
//!
//! Owns: the order things start and stop in, the one [`Shutdown`] every thread and task
//! listens to, and the readiness notice to systemd. May not touch: SQL, GStreamer
//! elements, HTTP details, signals (the caller passes `shutdown`: `homehub serve` the
//! first SIGTERM/SIGINT, a test any future); it wires the subsystems together.
//!
//! Start: descriptor budget (soft limit raised, reserve kept for recording) → data dir
//! and lock → database → TLS → web and MQTT listeners (fail fast if a
//! port is taken) → recovery of half-written segments and open events → recorder →
//! cloud relay (when configured) → events → cameras (config and paired) → devices (the
//! hub's broker client) → mDNS → web → READY=1.
//! Stop (`shutdown` resolved): STOPPING=1 → web → mDNS goodbye → devices and the broker
//! edge → cameras finish their segments → events and recorder drain → relay → the
//! database is checkpointed and closed. `run` returns only after every thread and task
//! it started has been joined (rumqttd's, which cannot be stopped, aside).

pub mod fleet;
mod pictures;

use std::future::Future;
use std::sync::Arc;

use crate::camera;
use crate::clock::Clock;
use crate::cloud;
use crate::config::Config;
use crate::devices::{self, Devices};
use crate::error::{Error, ErrorKind, Result, blocking};
use crate::events::{self, MotionState, Registry};
use crate::limits::Descriptors;
use crate::mdns;
use crate::mqtt::{self, Mqtt};
use crate::recorder::{self, Recorder, Retention};
use crate::shutdown::Shutdown;
use crate::store::{self, DirLock, Store};
use crate::web;

use fleet::{Fleet, Template};

/// Pre-roll kept beyond `pre_roll_seconds`, for the detector's persistence delay.
const PRE_ROLL_MARGIN_MS: i64 = 2000;

/// What the hub tells its starter once it serves (the demo prints it and plays the owner).
pub struct Ready {
    pub hub_id: String,
    pub web: std::net::SocketAddr,
    pub mqtt_tls: Option<std::net::SocketAddr>,
    pub mqtt_plain: Option<std::net::SocketAddr>,
    /// Hex SHA-256 of the certificate, as devices pin it.
    pub fingerprint: String,
    pub devices: Arc<Devices>,
}

impl Ready {
    /// The one line `homehub serve` prints on stdout once it serves: what it bound (port 0
    /// in the config means "any free port"), so a starter never has to guess a free port.
    pub fn json_line(&self) -> String {
        serde_json::json!({
            "ready": true,
            "hub_id": self.hub_id,
            "web": self.web.to_string(),
            "mqtt_tls": self.mqtt_tls.map(|a| a.to_string()),
            "mqtt_plain": self.mqtt_plain.map(|a| a.to_string()),
            "fingerprint": self.fingerprint,
        })
        .to_string()
    }
}

/// Runs the hub until `shutdown` resolves, then tears it down in order and returns once
/// every thread and task it started has ended and the database is closed. `ready` is
/// told once the hub serves. Signals are the caller's business (`homehub serve` passes
/// the first SIGTERM/SIGINT); a test passes any future.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()>,
    ready: Option<tokio::sync::oneshot::Sender<Ready>>,
) -> Result<()> {
    // First, before anything opens a descriptor: raise the soft limit and split it into
    // the reserve recording keeps and the slots every listener's clients share.
    let descriptors = Descriptors::init();
    tracing::info!(
        limit = descriptors.limit(),
        reserve = descriptors.reserve(),
        client_slots = descriptors.slots().total(),
        open_now = crate::limits::open_descriptors(),
        "descriptor budget"
    );
    let data_dir = cfg.data_dir.clone();
    let clock = Clock::system();
    store::prepare_data_dir(&data_dir)?;
    let _lock = DirLock::acquire(&data_dir)?;
    let store = Store::open(&data_dir)?;
    let served = serve(&cfg, &store, clock, descriptors, shutdown, ready).await;
    // Whatever happened above, the database thread ends here with a checkpointed WAL.
    let closed = blocking("closing the database", move || store.close()).await.and_then(|r| r);
    served.and(closed)?;
    tracing::info!("stopped");
    Ok(())
}

/// Everything between opening the database and closing it.
async fn serve(
    cfg: &Config,
    store: &Store,
    clock: Clock,
    descriptors: Descriptors,
    shutdown: impl Future<Output = ()>,
    ready: Option<tokio::sync::oneshot::Sender<Ready>>,
) -> Result<()> {
    let data_dir = cfg.data_dir.clone();
    let hub_id = store.call(|db| db.hub_id()).await?;
    let tls_paths = web::tls::ensure(&data_dir)?;
    let tls = web::tls::server_config(&tls_paths)?;
    let listen = cfg.web_listen();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("web.listen {listen}: cannot listen: {e}")))?;
    let web_addr = listener.local_addr().map_err(|e| Error::internal(format!("web.listen {listen}: {e}")))?;
    let stop = Shutdown::new();
    // The broker's listeners are bound before anything starts, so a taken port fails fast.
    let mqtt = Arc::new(
        Mqtt::start(
            mqtt::Settings {
                listen_tls: Some(cfg.mqtt_listen_tls()),
                listen_plain: Some(cfg.mqtt_listen_plain()),
                allow_public_clients: cfg.web.allow_public_clients,
                descriptors: descriptors.clone(),
                ..mqtt::Settings::default()
            },
            Arc::new(devices::auth::HubAuth { store: store.clone(), clock: clock.clone() }),
            tls.clone(),
            stop.clone(),
        )
        .await?,
    );

    let config_cams: Vec<(String, String, String)> =
        cfg.camera.iter().map(|c| (c.name.clone(), c.url.clone(), c.substream_url.clone())).collect();
    let now = clock.now_ms();
    let mut rows = store.call(move |db| db.sync_config_cameras(&config_cams, now)).await?;
    // A paired device's camera starts before the device is back only if its stored URLs
    // name the home network; anything else waits for its retained config to be checked
    // against the device's address (devices::fence).
    for row in store.call(|db| db.paired_cameras()).await? {
        match devices::fence::startable(&row.url, &row.substream_url) {
            Ok(()) => rows.push(row),
            Err(reason) => {
                tracing::warn!(camera = %row.name, %reason, "paired camera not started until its device's config is checked")
            }
        }
    }
    rows.extend(store.call(|db| db.added_cameras()).await?);

    let retention = Retention::from(&cfg.recording);
    let report = {
        let rec = Recorder::new(store.clone(), retention.clone(), clock.clone());
        blocking("recovering segments", move || rec.recover()).await??
    };
    let closed = {
        let store = store.clone();
        blocking("recovering events", move || events::recover(&store)).await??
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
    // The recorder and the events thread end when every camera has dropped its sender
    // (they drain what the cameras sent while finishing), so they need no stop of their own.
    let (seg_tx, seg_rx) = std::sync::mpsc::channel();
    let recorder_thread = recorder::spawn(store.clone(), retention, clock.clone(), seg_rx)?;
    // Frames for motion detection: a short queue; a camera drops frames the detector
    // has no time for rather than waiting.
    let (frame_tx, frame_rx) = std::sync::mpsc::sync_channel(32);
    // The seal key of secrets the hub reads back (TOTP, the store's secret access key).
    let seal_key = Arc::new(crate::secrets::SealKey::load_or_create(&data_dir)?);
    // The relay always runs: with no store it waits until the owner sets one.
    let (cloud, cloud_task) = cloud::relay::Relay::start(
        &cfg.cloud,
        cloud::relay::Parts { store: store.clone(), hub_id: hub_id.clone(), clock: clock.clone(), seal_key: seal_key.clone() },
        stop.clone(),
    )
    .await?;
    let motion = Arc::new(MotionState::default());
    // Stills (snapshots, colour thumbnails) are decoded even when motion detection is off.
    let still_decoder = camera::pick_decoder(&cfg.decode.prefer);
    let pictures = Arc::new(pictures::FleetPictures::new(still_decoder.clone()));
    let registry = Arc::new(Registry::default());
    let (changes, _) = tokio::sync::broadcast::channel(64);
    let events_thread = events::spawn(
        store.clone(),
        events::Settings {
            pre_roll_ms: i64::from(cfg.motion.pre_roll_seconds) * 1000,
            post_roll_ms: i64::from(cfg.motion.post_roll_seconds) * 1000,
            cameras: registry.clone(),
            jpeg: camera::encode_jpeg,
            pictures: Some(pictures.clone() as Arc<dyn events::Pictures>),
            cloud: Some(cloud.clone() as Arc<dyn events::CloudRelay>),
            clock: clock.clone(),
        },
        frame_rx,
        motion.clone(),
        changes.clone(),
    )?;
    let fleet = Arc::new(Fleet::new(
        Template {
            data_dir: data_dir.clone(),
            mode: cfg.recording.mode,
            segment_seconds: cfg.recording.segment_seconds,
            motion_fps: cfg.motion.fps,
            decoder: decoder.clone(),
            still_decoder,
            // Events are reported a few frames after the movement began: keep a margin.
            pre_roll_ms: i64::from(cfg.motion.pre_roll_seconds) * 1000 + PRE_ROLL_MARGIN_MS,
        },
        store.clone(),
        seg_tx,
        decoder.is_some().then_some(frame_tx),
        motion,
        registry,
    ));
    pictures.attach(&fleet);
    {
        let fleet = fleet.clone();
        blocking("starting cameras", move || rows.iter().try_for_each(|row| fleet.start_blocking(row))).await??;
    }

    let fingerprint = web::tls::fingerprint(&tls_paths.cert)?;
    // Pairing: the MQTT front end hands `pair` sessions to the desk from here on.
    let desk = devices::pairing::Desk::new(
        devices::pairing::DeskParts {
            store: store.clone(),
            clock: clock.clone(),
            fingerprint: fingerprint.clone(),
            policy: devices::PairingPolicy::SPEC,
        },
        stop.clone(),
    );
    mqtt.set_pair_desk(desk.clone());
    let (devices, devices_task) = Devices::start(
        devices::Parts {
            store: store.clone(),
            hub_id: hub_id.clone(),
            mqtt: mqtt.clone(),
            cameras: Box::new(fleet.clone()),
            view: fleet.clone(),
            changes: changes.subscribe(),
            clock: clock.clone(),
            desk: desk.clone(),
        },
        stop.clone(),
    );
    let mdns = if cfg.mdns.enabled {
        let advert = mdns::HubAdvert {
            hub_id: hub_id.clone(),
            web_port: web_addr.port(),
            mqtt_port: mqtt.tls_addr().map_or(0, |a| a.port()),
            fp: fingerprint.clone(),
        };
        // mDNS is a convenience: without it devices can still be pointed at the hub.
        match mdns::Mdns::start(&cfg.mdns.interfaces).and_then(|m| m.advertise_hub(&advert).map(|_| m)) {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => {
                tracing::warn!(error = %e, "mDNS unavailable: devices must be given the hub's address");
                None
            }
        }
    } else {
        None
    };

    let state = web::AppState::new(web::Parts {
        store: store.clone(),
        clock: clock.clone(),
        cameras: fleet.clone(),
        camera_admin: Arc::new(fleet.clone()),
        devices: devices.clone(),
        broker: mqtt.clone(),
        discovery: mdns.clone().map(|m| m as Arc<dyn web::ports::Discovery>),
        cloud: cloud.clone() as Arc<dyn web::ports::CloudStatus>,
        retention: Retention::from(&cfg.recording),
        allow_public_clients: cfg.web.allow_public_clients,
        sessions: web::SessionPolicy::from_config(&cfg.web),
        totp_key: seal_key,
        self_check: Arc::new(web::ports::Doctor(cfg.clone())),
    });
    state.load_settings().await?;
    // First run: no users yet. The one-time link that creates the owner is logged once
    // (`homehub setup-link` makes another).
    if store.call(|db| db.user_count()).await? == 0 {
        let now = clock.now_ms();
        let token = store.call(move |db| web::people_mint_setup_token(db, now)).await?;
        tracing::warn!(
            "this hub has no users yet: open {} to create its owner (valid 24 hours; `sudo homehub setup-link` makes another)",
            web::setup_url(web_addr, &token)
        );
    }
    let web_task = tokio::spawn(web::serve(listener, tls, web::router(state), stop.clone(), descriptors.clone()));
    tracing::info!(
        hub_id = %hub_id,
        url = %format!("https://{web_addr}"),
        mqtt_tls = ?mqtt.tls_addr(),
        mqtt_plain = ?mqtt.plain_addr(),
        "homehub serving"
    );
    sd_notify(sd_notify::NotifyState::Ready);
    if let Some(r) = ready {
        let _ = r.send(Ready {
            hub_id: hub_id.clone(),
            web: web_addr,
            mqtt_tls: mqtt.tls_addr(),
            mqtt_plain: mqtt.plain_addr(),
            fingerprint,
            devices: devices.clone(),
        });
    }

    shutdown.await;
    tracing::info!("shutting down");
    sd_notify(sd_notify::NotifyState::Stopping);
    stop.trigger();
    // Tear-down, in order. 1. The web stops accepting and drops its connections; its
    // state (the last other handle on mDNS) goes with it.
    joined("web", web_task).await;
    // 2. mDNS says goodbye and its threads end.
    if let Some(m) = mdns {
        match Arc::try_unwrap(m) {
            Ok(m) => blocking("stopping mDNS", move || m.shutdown()).await?,
            Err(_) => tracing::error!("mDNS still in use after the web stopped: not said goodbye"),
        }
    }
    // 3. The hub's broker client says "offline"; the broker edge's listeners and
    // connections end.
    joined("devices", devices_task).await;
    drop(devices);
    desk.stopped().await;
    mqtt.stopped().await;
    // 4. Cameras finish their segments and clips; then (their senders gone) the events
    // thread closes open events and the recorder indexes what is queued.
    blocking("stopping cameras", move || {
        fleet.shutdown_blocking();
        join_thread("events", events_thread);
        join_thread("recorder", recorder_thread);
    })
    .await?;
    // 5. The cloud relay leaves what it has not sent in its queue, for the next start.
    drop(cloud);
    joined("cloud relay", cloud_task).await;
    Ok(())
}

async fn joined(what: &str, task: tokio::task::JoinHandle<()>) {
    if let Err(e) = task.await {
        tracing::error!(task = what, error = %e, "task ended abnormally");
    }
}

fn join_thread(what: &str, thread: std::thread::JoinHandle<()>) {
    if thread.join().is_err() {
        tracing::error!(thread = what, "thread panicked");
    }
}

/// Tells systemd (Type=notify) about our state; nothing when not run by systemd.
fn sd_notify(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}
