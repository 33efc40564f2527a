//! The simulated camera behind `homehub-camsim`: an RTSP server with `/main` and `/sub`
//! (H.264, a still scene with motion only inside the `--motion` spans), and with `--pair` the
//! device side of pairing (mDNS, MQTT). It is a demo and test tool, not part of the hub:
//! nothing in the hub depends on it, and it may import gstreamer (and gstreamer-rtsp-server)
//! freely.
//!
//! - [`settings`]: the command-line strings checked into [`settings::Settings`] (pure).
//! - [`scene`]: what the picture shows and the launch line that draws and encodes it (pure).
//! - [`server`]: the gst-rtsp-server side: mounts, auth, the motion timer, the main loop.
//! - [`pair`]: `--pair`, on its own thread: find the hub, pair, publish config and state.

pub mod pair;
pub mod scene;
pub mod server;
pub mod settings;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rand::Rng;
use tokio::sync::watch;

pub use settings::Settings;

/// Command-line flags of `homehub-camsim` (see SPEC "homehub-camsim"). Each value is
/// checked by its clap value parser (in [`settings`]), so every bad value gets one clear
/// line naming the flag; [`parse_args`] gives that line. What needs several flags at once
/// is checked by [`Settings::from_args`].
#[derive(Parser, Debug, Clone)]
#[command(
    name = "homehub-camsim",
    version,
    about = "A simulated network camera (RTSP /main and /sub) for homehub demos and tests"
)]
pub struct Args {
    /// Where the RTSP server listens (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8554", value_parser = settings::parse_rtsp_addr)]
    pub rtsp: std::net::SocketAddr,

    /// Size of /main (/sub is always 640x360).
    #[arg(long, allow_hyphen_values = true, value_name = "WxH", default_value = "1920x1080", value_parser = settings::parse_size)]
    pub size: settings::Size,

    /// Frames per second of both streams.
    #[arg(long, allow_hyphen_values = true, value_name = "N", default_value = "30", value_parser = settings::parse_fps)]
    pub fps: u32,

    /// Bit rate of /main in kbit/s (/sub uses 600).
    #[arg(long, allow_hyphen_values = true, value_name = "KBPS", default_value = "4000", value_parser = settings::parse_bitrate)]
    pub bitrate: u32,

    /// Keyframe interval in frames (default 2 x fps).
    #[arg(long, allow_hyphen_values = true, value_name = "N", value_parser = settings::parse_gop)]
    pub gop: Option<u32>,

    /// Seconds since start when something moves, e.g. 10-15,40-48.
    #[arg(long, allow_hyphen_values = true, value_name = "SPANS", value_parser = settings::parse_spans)]
    pub motion: Option<settings::Spans>,

    /// Display name of the camera.
    #[arg(long, value_name = "NAME", default_value = "camsim", value_parser = settings::check_name)]
    pub name: String,

    /// Stable device id, [a-z0-9-] and at most 64 characters (default camsim-PORT).
    #[arg(long = "device-id", value_name = "ID", value_parser = settings::check_device_id)]
    pub device_id: Option<String>,

    /// 8-digit setup code (random if not given; printed on start).
    #[arg(long = "setup-code", value_name = "DIGITS", value_parser = settings::check_setup_code)]
    pub setup_code: Option<String>,

    /// Find the hub (mDNS, or --hub), pair with it over MQTT, then publish config and state.
    #[arg(long)]
    pub pair: bool,

    /// The only interface mDNS uses.
    #[arg(long = "mdns-interface", value_name = "NAME", default_value = "lo", value_parser = settings::check_interface_name)]
    pub mdns_interface: String,

    /// Use this hub instead of looking for one by mDNS (needs --hub-fp).
    #[arg(long, value_name = "HOST:PORT", value_parser = settings::parse_host_port)]
    pub hub: Option<settings::HostPort>,

    /// Hex SHA-256 of the hub's TLS certificate (DER), with --hub.
    #[arg(long = "hub-fp", value_name = "HEX", value_parser = settings::parse_fingerprint)]
    pub hub_fp: Option<[u8; 32]>,

    /// Wi-Fi network name the camera reports in its state.
    #[arg(long, value_name = "SSID", default_value = "homehub-sim", value_parser = settings::check_ssid)]
    pub ssid: String,

    /// Device model sent in the pairing request.
    #[arg(long, value_name = "MODEL", default_value = "homehub-camsim", value_parser = settings::check_model)]
    pub model: String,

    /// Require this RTSP user name (with --password; basic and digest auth).
    #[arg(long, value_name = "USER", value_parser = settings::check_user)]
    pub user: Option<String>,

    /// Require this RTSP password (with --user).
    #[arg(long, value_name = "PASS", value_parser = settings::check_password)]
    pub password: Option<String>,

    /// Refuse RTP over TCP (SETUP asking for TCP gets 461 Unsupported Transport); stream
    /// only over UDP, as some cameras do.
    #[arg(long = "udp-only")]
    pub udp_only: bool,
}

/// Parses the command line (`argv[0]` first). A bad value is one line naming the flag
/// (`--fps: expected a whole number from 1 to 120, got '0'`); `--help` and `--version`
/// come back as the clap error that prints them.
pub fn parse_args<I, T>(argv: I) -> Result<Args, ArgsError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Args::try_parse_from(argv).map_err(|e| {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        let line = match (e.kind(), e.get(ContextKind::InvalidArg), std::error::Error::source(&e)) {
            (ErrorKind::ValueValidation, Some(ContextValue::String(arg)), Some(why)) => {
                format!("{}: {why}", arg.split(' ').next().unwrap_or(arg))
            }
            _ => {
                let text = e.render().to_string();
                text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_string()
            }
        };
        ArgsError { line, clap: e }
    })
}

/// A command line camsim refuses: the one line to print, and clap's own error (which
/// prints `--help` and `--version`).
#[derive(Debug)]
pub struct ArgsError {
    pub line: String,
    pub clap: clap::Error,
}

/// How long a stopping camsim waits for its MQTT side to say `offline` and disconnect.
const PAIR_STOP_WAIT: Duration = Duration::from_secs(2);

/// Runs the camera until SIGTERM or SIGINT. Prints
/// `camsim ready rtsp://ADDR:PORT/main rtsp://ADDR:PORT/sub` on stdout once the RTSP server
/// listens (then, with `--pair`, the pairing lines of [`pair`]); errors are returned as
/// one-line messages.
pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let settings = Settings::from_args(&args, random_setup_code, random_suffix).map_err(anyhow::Error::msg)?;

    // Block the stop signals before any thread exists (GStreamer starts its own), so that only
    // the waiting thread started by the server ever sees them.
    let signals = server::block_stop_signals().context("cannot set up signal handling")?;

    gstreamer::init().context("cannot initialise GStreamer")?;

    let running = server::start(&settings)?;

    if settings.setup_code_generated {
        eprintln!("homehub-camsim: device {} setup code {}", settings.device_id, settings.setup_code);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "camsim ready {} {}", running.url("main"), running.url("sub"))
        .and_then(|_| out.flush())
        .context("cannot write to stdout")?;
    drop(out);

    let pairing = if settings.pair { Some(start_pairing(&settings, running.address(), started)?) } else { None };
    let result = running.run_until_signal(signals);
    if let Some(pairing) = pairing {
        pairing.stop();
    }
    result
}

/// The `--pair` thread and the means to stop it.
struct Pairing {
    stop: watch::Sender<bool>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Pairing {
    /// Asks the MQTT side to say `offline` and disconnect; waits a little for it.
    fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.done.recv_timeout(PAIR_STOP_WAIT);
    }
}

fn start_pairing(settings: &Settings, rtsp: SocketAddr, started: Instant) -> anyhow::Result<Pairing> {
    let device = pair::Device {
        device_id: settings.device_id.clone(),
        setup_code: settings.setup_code.clone(),
        name: settings.name.clone(),
        ssid: settings.ssid.clone(),
        model: settings.model.clone(),
        rtsp,
        rtsp_login: settings.credentials.as_ref().map(|c| (c.user.clone(), c.password.clone())),
        started,
    };
    let locate = match &settings.hub {
        Some(hub) => pair::Locate::Fixed { host: hub.host.clone(), port: hub.port, fingerprint: hub.fingerprint },
        None => pair::Locate::Mdns { interface: settings.mdns_interface.clone() },
    };
    let (stop, stop_rx) = watch::channel(false);
    let (done_tx, done) = std::sync::mpsc::channel();
    let say: pair::Say = Arc::new(say_line);
    std::thread::Builder::new()
        .name("camsim-pair".into())
        .spawn(move || {
            let end = pair::run(device, locate, say, stop_rx);
            tracing::debug!(?end, "pairing ended");
            let _ = done_tx.send(());
        })
        .context("cannot start the pairing thread")?;
    Ok(Pairing { stop, done })
}

/// One line on stdout, flushed at once (tests and scripts wait for these lines).
fn say_line(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
        tracing::warn!("cannot write to stdout: {e}");
    }
}

fn random_setup_code() -> String {
    format!("{:08}", rand::thread_rng().gen_range(0..100_000_000u32))
}

fn random_suffix() -> String {
    hex::encode(rand::thread_rng().r#gen::<[u8; 4]>())
}
