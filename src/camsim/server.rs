//! The gst-rtsp-server side of camsim: one shared media factory per mount, optional
//! basic/digest auth, the timer that shows and moves the box during motion spans, and the
//! main loop that runs until SIGTERM/SIGINT.
//!
//! Pipelines are built on demand by gst-rtsp-server when the first client of a mount asks
//! for it, so nothing is encoded while nobody watches.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_rtsp_server as rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use tracing::{debug, info, warn};

use super::scene::{self, BOX_PAD, BoxGeometry, MIXER_NAME};
use super::settings::{Credentials, Settings, Span, StreamSpec};

/// Role name given to the one configured RTSP user.
const VIEWER_ROLE: &str = "viewer";

/// SIGTERM and SIGINT, blocked in every thread and waited for by one.
pub struct StopSignals {
    set: libc::sigset_t,
}

/// Blocks SIGTERM and SIGINT in the calling thread and in all threads it starts from now on.
/// Call before any other thread exists.
pub fn block_stop_signals() -> anyhow::Result<StopSignals> {
    // SAFETY: sigset_t is plain data that sigemptyset initialises; the libc calls get valid
    // pointers to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            bail!("pthread_sigmask: {}", std::io::Error::from_raw_os_error(rc));
        }
        Ok(StopSignals { set })
    }
}

impl StopSignals {
    /// Waits for one of the signals; returns its number.
    fn wait(&self) -> i32 {
        let mut sig: libc::c_int = 0;
        loop {
            // SAFETY: `set` was initialised by block_stop_signals; `sig` is a valid out pointer.
            let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
            if rc == 0 {
                return sig;
            }
        }
    }
}

/// The moving-box pad of one live pipeline, with the geometry of its stream.
struct TrackedPad {
    pad: glib::WeakRef<gst::Pad>,
    geometry: BoxGeometry,
    /// Last state written (visible, x, y), to skip needless property writes.
    last: Option<(bool, i32, i32)>,
}

/// What the motion timer needs: start time, spans, and the pads of live pipelines.
struct Motion {
    start: Instant,
    spans: Vec<Span>,
    pads: Mutex<Vec<TrackedPad>>,
}

impl Motion {
    fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn moving_at(&self, t: f64) -> bool {
        self.spans.iter().any(|s| s.contains(t))
    }

    fn track(&self, pad: &gst::Pad, geometry: BoxGeometry) {
        let mut tracked = TrackedPad { pad: pad.downgrade(), geometry, last: None };
        let t = self.seconds();
        apply(&mut tracked, pad, self.moving_at(t), t);
        let mut pads = self.pads.lock().unwrap_or_else(|e| e.into_inner());
        pads.push(tracked);
    }

    /// Brings every live box pad up to date; forgets pads whose pipeline is gone.
    fn tick(&self) {
        let t = self.seconds();
        let moving = self.moving_at(t);
        let mut pads = self.pads.lock().unwrap_or_else(|e| e.into_inner());
        pads.retain_mut(|tracked| match tracked.pad.upgrade() {
            Some(pad) => {
                apply(tracked, &pad, moving, t);
                true
            }
            None => false,
        });
    }
}

fn apply(tracked: &mut TrackedPad, pad: &gst::Pad, moving: bool, t: f64) {
    let (x, y) = if moving { tracked.geometry.position_at(t) } else { tracked.last.map(|(_, x, y)| (x, y)).unwrap_or((0, 0)) };
    let state = (moving, x, y);
    if tracked.last == Some(state) {
        return;
    }
    if tracked.last.map(|l| l.0) != Some(moving) {
        debug!(moving, t, "motion state of {}x{}", tracked.geometry.frame_width, tracked.geometry.frame_height);
    }
    // Position first, then visibility, so the box never flashes at a stale place.
    pad.set_property("xpos", x);
    pad.set_property("ypos", y);
    pad.set_property("alpha", if moving { 1.0f64 } else { 0.0f64 });
    tracked.last = Some(state);
}

/// A started RTSP server; see [`Running::run_until_signal`].
pub struct Running {
    server: rtsp_server::RTSPServer,
    source: Option<glib::SourceId>,
    timer: Option<glib::SourceId>,
    public: SocketAddr,
}

impl Running {
    /// `rtsp://ADDR:PORT/<mount>` with the port actually bound.
    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://{}/{mount}", self.public)
    }

    /// The address and port actually bound.
    pub fn address(&self) -> SocketAddr {
        self.public
    }

    /// Runs the GLib main loop until SIGTERM or SIGINT, then drops all clients.
    pub fn run_until_signal(mut self, signals: StopSignals) -> anyhow::Result<()> {
        let main_loop = glib::MainLoop::new(None, false);
        let quitter = main_loop.clone();
        std::thread::Builder::new()
            .name("camsim-signals".into())
            .spawn(move || {
                let sig = signals.wait();
                info!(signal = sig, "stopping");
                quitter.quit();
            })
            .context("cannot start the signal thread")?;
        main_loop.run();

        if let Some(timer) = self.timer.take() {
            timer.remove();
        }
        if let Some(source) = self.source.take() {
            source.remove();
        }
        self.server.client_filter(Some(&mut |_, _| rtsp_server::RTSPFilterResult::Remove));
        Ok(())
    }
}

/// Builds the server, mounts `/main` and `/sub`, binds the port and starts the motion timer.
/// Needs `gst::init` first. Fails with one line if the port cannot be bound.
pub fn start(settings: &Settings) -> anyhow::Result<Running> {
    check_elements()?;

    let server = rtsp_server::RTSPServer::new();
    server.set_address(&settings.rtsp.ip().to_string());
    server.set_service(&settings.rtsp.port().to_string());

    if let Some(creds) = &settings.credentials {
        server.set_auth(Some(&make_auth(creds)));
    }

    let motion = Arc::new(Motion { start: Instant::now(), spans: settings.motion.clone(), pads: Mutex::new(Vec::new()) });

    let mounts = server.mount_points().ok_or_else(|| anyhow!("the RTSP server has no mount points"))?;
    for (path, spec) in [("/main", settings.main), ("/sub", settings.sub)] {
        let factory = make_factory(path, &spec, settings.credentials.is_some(), &motion);
        if settings.udp_only {
            // A SETUP asking for RTP over TCP is then answered 461 Unsupported Transport.
            factory.set_protocols(
                gstreamer_rtsp_server::gst_rtsp::RTSPLowerTrans::UDP | gstreamer_rtsp_server::gst_rtsp::RTSPLowerTrans::UDP_MCAST,
            );
        }
        mounts.add_factory(path, factory);
    }

    let source = server
        .attach(None)
        .map_err(|_| anyhow!("--rtsp: cannot listen on {} (address in use or not available)", settings.rtsp))?;
    let port = server.bound_port();
    let port =
        u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(|| anyhow!("--rtsp: cannot listen on {}", settings.rtsp))?;
    let public = SocketAddr::new(settings.rtsp.ip(), port);
    info!(%public, "RTSP server listening");

    let interval = Duration::from_millis((1000 / u64::from(settings.main.fps.max(1))).clamp(10, 100));
    let timer_motion = Arc::clone(&motion);
    let timer = glib::timeout_add(interval, move || {
        timer_motion.tick();
        glib::ControlFlow::Continue
    });

    Ok(Running { server, source: Some(source), timer: Some(timer), public })
}

/// Fails with a clear line when a needed GStreamer plugin is missing.
fn check_elements() -> anyhow::Result<()> {
    for name in ["videotestsrc", "compositor", "clockoverlay", "x264enc", "rtph264pay", "queue"] {
        if gst::ElementFactory::find(name).is_none() {
            bail!("GStreamer element '{name}' is missing (install the GStreamer plugins)");
        }
    }
    Ok(())
}

fn make_auth(creds: &Credentials) -> rtsp_server::RTSPAuth {
    let auth = rtsp_server::RTSPAuth::new();
    let token = rtsp_server::RTSPToken::builder().field(rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, VIEWER_ROLE).build();
    let basic = rtsp_server::RTSPAuth::make_basic(&creds.user, &creds.password);
    auth.add_basic(basic.as_str(), &token);
    auth.add_digest(&creds.user, &creds.password, &token);
    auth.set_realm(Some("homehub-camsim"));
    // The Rust binding takes a single method; the C API takes a bit mask, so offer both.
    // SAFETY: `auth` is a valid GstRTSPAuth for the duration of the call.
    unsafe {
        rtsp_server::ffi::gst_rtsp_auth_set_supported_methods(
            glib::translate::ToGlibPtr::to_glib_none(&auth).0,
            rtsp_server::gst_rtsp::ffi::GST_RTSP_AUTH_BASIC | rtsp_server::gst_rtsp::ffi::GST_RTSP_AUTH_DIGEST,
        );
    }
    auth
}

fn make_factory(path: &'static str, spec: &StreamSpec, with_auth: bool, motion: &Arc<Motion>) -> rtsp_server::RTSPMediaFactory {
    let factory = rtsp_server::RTSPMediaFactory::new();
    factory.set_launch(&scene::launch_line(spec));
    factory.set_shared(true);
    if with_auth {
        let role = gst::Structure::builder(VIEWER_ROLE)
            .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
            .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
            .build();
        factory.add_role_from_structure(&role);
    }
    let geometry = BoxGeometry::for_stream(spec);
    let motion = Arc::clone(motion);
    factory.connect_media_configure(move |_, media| {
        info!(mount = path, "building the pipeline (first client)");
        match box_pad(&media.element()) {
            Some(pad) => {
                pad.set_property("width", geometry.width as i32);
                pad.set_property("height", geometry.height as i32);
                motion.track(&pad, geometry);
            }
            None => warn!(mount = path, "no compositor box pad; the scene will not move"),
        }
    });
    factory
}

/// The compositor pad of the moving box, if the pipeline has it with the expected properties.
fn box_pad(element: &gst::Element) -> Option<gst::Pad> {
    let bin = element.downcast_ref::<gst::Bin>()?;
    let mixer = bin.by_name(MIXER_NAME)?;
    let pad = mixer.static_pad(BOX_PAD)?;
    let has = |name: &str, ty: glib::Type| pad.find_property(name).is_some_and(|p| p.value_type() == ty);
    (has("xpos", glib::Type::I32)
        && has("ypos", glib::Type::I32)
        && has("width", glib::Type::I32)
        && has("height", glib::Type::I32)
        && has("alpha", glib::Type::F64))
    .then_some(pad)
}
