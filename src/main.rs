//! `homehub`: the hub daemon and its admin CLI. Errors end here as one line on stderr
//! and an exit code from their kind.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use homehub::config::Config;
use homehub::{Error, cli, hub};

#[derive(Parser)]
#[command(name = "homehub", version, about = "Local-first home hub: cameras and devices on the LAN; only encrypted clips leave")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the hub.
    Serve {
        /// Config file (default /etc/homehub/homehub.toml, or $HOMEHUB_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the hub on embedded defaults with simulated cameras.
    Demo {
        #[arg(long, default_value_t = 2)]
        cameras: u32,
        /// Where the demo keeps its data (default: a new temporary folder).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Web address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Broker logins for integrations such as Home Assistant.
    MqttUser {
        #[command(subcommand)]
        cmd: MqttUserCmd,
    },
    /// Devices provisioned by hand (most devices pair themselves).
    Device {
        #[command(subcommand)]
        cmd: DeviceCmd,
    },
    /// The owner's recovery key for cloud clips.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Read the cloud bucket with the owner's key (works without the hub).
    Cloud {
        #[command(subcommand)]
        cmd: CloudCmd,
    },
    /// List the hubs that mDNS finds on an interface.
    Discover {
        #[arg(long, default_value = "lo")]
        interface: String,
        /// Seconds to listen.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// The Prometheus scrape token: a new one (printed once, replacing the old), or --revoke.
    MetricsToken {
        /// Remove the token instead: only signed-in members and the owner may scrape.
        #[arg(long)]
        revoke: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The one-time link that creates the hub's first owner (only while it has no users).
    SetupLink {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Security and health self-check: exit 0 = all good, 1 = findings.
    Doctor {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user; the password is read from stdin.
    Add {
        email: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Remove a user (their sessions end at once).
    Remove {
        email: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Change a user's role: owner, member or viewer.
    SetRole {
        email: String,
        role: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List the users.
    List {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum MqttUserCmd {
    /// Add a broker user; its password is made up and printed once.
    Add {
        name: String,
        /// May only read camera states and discovery (Home Assistant needs no more).
        #[arg(long)]
        read_only: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Remove a broker user.
    Remove {
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Print a new age identity (age-keygen's layout); the hub never keeps it.
    New,
}

#[derive(clap::Args)]
struct BucketArgs {
    /// s3://BUCKET/PREFIX or file:///FOLDER (S3 credentials from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY).
    #[arg(long)]
    store: String,
    /// S3-compatible endpoint URL (default: AWS).
    #[arg(long, default_value = "")]
    endpoint: String,
    /// The owner's identity file (from `homehub keys new`).
    #[arg(long)]
    identity: PathBuf,
}

impl BucketArgs {
    fn into_cli(self) -> cli::cloud::CloudArgs {
        cli::cloud::CloudArgs { store: self.store, endpoint: self.endpoint, identity: self.identity }
    }
}

#[derive(Subcommand)]
enum CloudCmd {
    /// List the clips in the bucket, from its encrypted index.
    List {
        #[command(flatten)]
        bucket: BucketArgs,
        /// Also list the pieces of events whose full clip arrived.
        #[arg(long)]
        pieces: bool,
        /// Print the index entries as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Fetch and decrypt one clip (or piece) by its id.
    Get {
        id: String,
        #[command(flatten)]
        bucket: BucketArgs,
        /// Where to write the MP4.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Give a device credentials without the pairing protocol; printed once.
    Add {
        id: String,
        #[arg(long, default_value = "sensor")]
        kind: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn load(config: Option<PathBuf>) -> Result<Config, Error> {
    Config::load(&config.unwrap_or_else(Config::default_path))
}

fn run(args: Args) -> Result<i32, Error> {
    match args.cmd {
        Cmd::Serve { config } => {
            let cfg = load(config)?;
            let rt = tokio::runtime::Runtime::new().map_err(|e| Error::internal(format!("runtime: {e}")))?;
            rt.block_on(async {
                let (tx, rx) = tokio::sync::oneshot::channel::<hub::Ready>();
                tokio::spawn(async move {
                    if let Ok(ready) = rx.await {
                        use std::io::Write;
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{}", ready.json_line()).and_then(|_| out.flush());
                    }
                });
                hub::run(cfg, cli::until_signal(), Some(tx)).await
            })?;
            Ok(0)
        }
        Cmd::Demo { cameras, data_dir, listen } => {
            listen
                .parse::<std::net::SocketAddr>()
                .map_err(|_| Error::invalid(format!("--listen: expected ADDRESS:PORT, got {listen:?}")))?;
            cli::demo(cli::DemoArgs { cameras, data_dir, listen })?;
            Ok(0)
        }
        Cmd::User { cmd: UserCmd::Add { email, role, config } } => {
            let cfg = load(config)?;
            cli::user_add(&cfg, &email, &role)?;
            Ok(0)
        }
        Cmd::User { cmd: UserCmd::Remove { email, config } } => {
            cli::user_remove(&load(config)?, &email)?;
            Ok(0)
        }
        Cmd::User { cmd: UserCmd::SetRole { email, role, config } } => {
            cli::user_set_role(&load(config)?, &email, &role)?;
            Ok(0)
        }
        Cmd::User { cmd: UserCmd::List { config } } => {
            cli::user_list(&load(config)?)?;
            Ok(0)
        }
        Cmd::SetupLink { config } => {
            cli::setup_link(&load(config)?)?;
            Ok(0)
        }
        Cmd::MqttUser { cmd: MqttUserCmd::Add { name, read_only, config } } => {
            cli::mqtt_user_add(&load(config)?, &name, read_only)?;
            Ok(0)
        }
        Cmd::MqttUser { cmd: MqttUserCmd::Remove { name, config } } => {
            cli::mqtt_user_remove(&load(config)?, &name)?;
            Ok(0)
        }
        Cmd::Device { cmd: DeviceCmd::Add { id, kind, config } } => {
            cli::device_add(&load(config)?, &id, &kind)?;
            Ok(0)
        }
        Cmd::Keys { cmd: KeysCmd::New } => {
            print!("{}", homehub::cloud::keys::keygen_text(chrono::Utc::now()));
            eprintln!("Keep this key offline: it alone opens your cloud clips, and the hub never stores it.");
            eprintln!("Put the public key into [cloud] recipients of the hub's config.");
            Ok(0)
        }
        Cmd::Cloud { cmd: CloudCmd::List { bucket, pieces, json } } => {
            cli::cloud::list(&bucket.into_cli(), pieces, json)?;
            Ok(0)
        }
        Cmd::Cloud { cmd: CloudCmd::Get { id, bucket, output } } => {
            cli::cloud::get(&bucket.into_cli(), &id, &output)?;
            Ok(0)
        }
        Cmd::Discover { interface, timeout } => {
            cli::discover(&interface, std::time::Duration::from_secs(timeout))?;
            Ok(0)
        }
        Cmd::MetricsToken { revoke, config } => {
            cli::metrics_token(&load(config)?, revoke)?;
            Ok(0)
        }
        Cmd::Doctor { config } => {
            let cfg = load(config)?;
            let findings = cli::doctor(&cfg);
            for f in &findings {
                println!("{f}");
            }
            if findings.is_empty() {
                eprintln!("doctor: all good");
                Ok(0)
            } else {
                Ok(1)
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            // rumqttd's server logs an ERROR for every clean disconnect (the MQTT front end
            // logs logins, refusals and departures itself); its other warnings stay.
            tracing_subscriber::EnvFilter::try_from_env("HOMEHUB_LOG")
                .unwrap_or_else(|_| "info,rumqttd=warn,rumqttd::server::broker=off".into()),
        )
        .init();
    let code = match run(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("homehub: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
