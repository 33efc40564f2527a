//! The simulated camera behind `homehub-camsim`: an RTSP server with `/main` and `/sub`
//! (H.264, a still scene with motion only inside the `--motion` spans), plus the identity
//! flags used for pairing. It is a demo and test tool, not part of the hub: nothing in the hub
//! depends on it, and it may import gstreamer (and gstreamer-rtsp-server) freely.
//!
//! - [`settings`]: the command-line strings checked into [`settings::Settings`] (pure).
//! - [`scene`]: what the picture shows and the launch line that draws and encodes it (pure).
//! - [`server`]: the gst-rtsp-server side: mounts, auth, the motion timer, the main loop.

pub mod scene;
pub mod server;
pub mod settings;

use std::io::Write;

use anyhow::{Context, bail};
use clap::Parser;
use rand::Rng;

pub use settings::Settings;

/// Command-line flags of `homehub-camsim` (see SPEC "homehub-camsim"). Values are taken as
/// strings and checked by [`Settings::from_args`], so every bad value gets one clear line.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "homehub-camsim",
    version,
    about = "A simulated network camera (RTSP /main and /sub) for homehub demos and tests"
)]
pub struct Args {
    /// Where the RTSP server listens (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8554")]
    pub rtsp: String,

    /// Size of /main (/sub is always 640x360).
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "WxH",
        default_value = "1920x1080"
    )]
    pub size: String,

    /// Frames per second of both streams.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "N",
        default_value = "30"
    )]
    pub fps: String,

    /// Bit rate of /main in kbit/s (/sub uses 600).
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "KBPS",
        default_value = "4000"
    )]
    pub bitrate: String,

    /// Keyframe interval in frames (default 2 x fps).
    #[arg(long, allow_hyphen_values = true, value_name = "N")]
    pub gop: Option<String>,

    /// Seconds since start when something moves, e.g. 10-15,40-48.
    #[arg(long, allow_hyphen_values = true, value_name = "SPANS")]
    pub motion: Option<String>,

    /// Display name of the camera.
    #[arg(long, value_name = "NAME", default_value = "camsim")]
    pub name: String,

    /// Stable device id, [a-z0-9-] and at most 64 characters (default camsim-PORT).
    #[arg(long = "device-id", value_name = "ID")]
    pub device_id: Option<String>,

    /// 8-digit setup code (random if not given; printed on start).
    #[arg(long = "setup-code", value_name = "DIGITS")]
    pub setup_code: Option<String>,

    /// Find the hub and pair (not implemented yet).
    #[arg(long)]
    pub pair: bool,

    /// The only interface mDNS uses.
    #[arg(long = "mdns-interface", value_name = "NAME", default_value = "lo")]
    pub mdns_interface: String,

    /// Use this hub instead of looking for one by mDNS (needs --hub-fp).
    #[arg(long, value_name = "HOST:PORT")]
    pub hub: Option<String>,

    /// Hex SHA-256 of the hub's TLS certificate (DER), with --hub.
    #[arg(long = "hub-fp", value_name = "HEX")]
    pub hub_fp: Option<String>,

    /// Require this RTSP user name (with --password; basic and digest auth).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Require this RTSP password (with --user).
    #[arg(long, value_name = "PASS")]
    pub password: Option<String>,
}

/// Runs the camera until SIGTERM or SIGINT. Prints
/// `camsim ready rtsp://ADDR:PORT/main rtsp://ADDR:PORT/sub` on stdout once the RTSP server
/// listens; errors are returned as one-line messages.
pub fn run(args: Args) -> anyhow::Result<()> {
    let settings =
        Settings::from_args(&args, random_setup_code, random_suffix).map_err(anyhow::Error::msg)?;
    if settings.pair {
        bail!("--pair: pairing is not implemented yet");
    }

    // Block the stop signals before any thread exists (GStreamer starts its own), so that only
    // the waiting thread started by the server ever sees them.
    let signals = server::block_stop_signals().context("cannot set up signal handling")?;

    gstreamer::init().context("cannot initialise GStreamer")?;

    let running = server::start(&settings)?;

    if settings.setup_code_generated {
        eprintln!(
            "homehub-camsim: device {} setup code {}",
            settings.device_id, settings.setup_code
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "camsim ready {} {}",
        running.url("main"),
        running.url("sub")
    )
    .and_then(|_| out.flush())
    .context("cannot write to stdout")?;
    drop(out);

    running.run_until_signal(signals)
}

fn random_setup_code() -> String {
    format!("{:08}", rand::thread_rng().gen_range(0..100_000_000u32))
}

fn random_suffix() -> String {
    hex::encode(rand::thread_rng().r#gen::<[u8; 4]>())
}
