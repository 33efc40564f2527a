//! `homehub demo`: the hub on embedded defaults with N simulated cameras on loopback that
//! pair themselves over MQTT: the demo plays the owner and types each camera's setup
//! code. Prints the URL and a one-time owner password, then runs until Ctrl-C.
//!
//! mDNS stays off in the demo: mdns-sd joins its multicast group on every interface
//! before it can be limited to `lo`, which would send membership reports on the
//! machine's real network. The cameras are given the hub's address and certificate
//! fingerprint instead; `make test` exercises discovery inside a network namespace.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{Config, RecordingMode};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::store::Role;
use crate::web::auth;

pub const OWNER_EMAIL: &str = "owner@homehub.local";

pub struct DemoArgs {
    pub cameras: u32,
    pub data_dir: Option<PathBuf>,
    pub listen: String,
}

/// Kills the simulated cameras when the demo ends, however it ends.
struct Sims(Vec<Child>);

impl Drop for Sims {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SAFETY: plain signal to our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

pub fn demo(args: DemoArgs) -> Result<()> {
    if args.cameras > 16 {
        return Err(Error::invalid(format!("--cameras: at most 16, got {}", args.cameras)));
    }
    let data_dir = match &args.data_dir {
        Some(d) => std::path::absolute(d).ctx(format!("--data-dir {}", d.display()))?,
        None => {
            let base = std::env::temp_dir().join(format!("homehub-demo-{}", std::process::id()));
            std::fs::create_dir_all(&base).ctx(format!("creating {}", base.display()))?;
            base
        }
    };
    let mut cfg = Config { data_dir: data_dir.clone(), ..Config::default() };
    cfg.web.listen = args.listen.clone();
    cfg.mdns.enabled = false;
    cfg.mdns.interfaces = vec!["lo".into()];
    // Loopback only, on ports the system picks: the demo never collides with a broker
    // already running on this machine.
    cfg.mqtt.listen_tls = "127.0.0.1:0".into();
    cfg.mqtt.listen_plain = "127.0.0.1:0".into();
    cfg.recording.mode = RecordingMode::Continuous;
    cfg.recording.segment_seconds = 30;
    cfg.recording.max_disk_gb = 2.0;

    // The demo's "cloud" is a local folder. A real hub keeps only the public key; the
    // demo also keeps the owner's key, beside its data, so `homehub cloud list` can be
    // tried at once.
    crate::store::prepare_data_dir(&data_dir)?;
    let key_path = data_dir.join("demo-owner.key");
    let recipient = demo_owner_key(&key_path)?;
    let bucket = data_dir.join("cloud-bucket");
    cfg.cloud.store = format!("file://{}", bucket.display());
    cfg.cloud.recipients = vec![recipient];

    let camsim = sibling_binary("homehub-camsim")?;

    let password = auth::random_password();
    let store = super::open_store(&data_dir)?;
    let hash = auth::hash_password(&password)?;
    let owner_is_new = store.call_blocking(move |db| {
        if db.user_by_email(OWNER_EMAIL)?.is_some() {
            return Ok(false);
        }
        db.add_user(OWNER_EMAIL, Role::Owner, &hash, crate::clock::now_ms())?;
        Ok(true)
    })?;
    // Cameras of an earlier demo in this data dir served on other ports: pair afresh.
    store.call_blocking(|db| {
        let now = crate::clock::now_ms();
        for d in db.devices()? {
            if d.id.starts_with("demo-cam-") && d.unpaired_ms.is_none() {
                db.unpair_device(&d.id, now)?;
            }
        }
        Ok(())
    })?;
    drop(store);

    let rt = tokio::runtime::Runtime::new().map_err(|e| Error::internal(format!("runtime: {e}")))?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let hub = tokio::spawn(crate::hub::run(cfg, super::until_signal(), Some(tx)));
        let mut sims = Sims(Vec::new());
        if let Ok(ready) = rx.await {
            let addr = ready.web;
            let mut codes = Vec::new();
            for i in 1..=args.cameras {
                let id = format!("demo-cam-{i}");
                let code = format!("{:08}", rand::random::<u32>() % 100_000_000);
                let hub = Hub { addr: ready.mqtt_tls, fp: &ready.fingerprint };
                let mut child = start_camsim(&camsim, i, &id, &code, &hub)?;
                wait_ready(&mut child, i as usize)?;
                sims.0.push(child);
                codes.push((id, code));
            }
            tokio::spawn(play_owner(ready.devices.clone(), codes));
            let host = if addr.ip().is_loopback() || addr.ip().is_unspecified() {
                "localhost".to_string()
            } else {
                addr.ip().to_string()
            };
            println!();
            println!("homehub demo is running ({} simulated cameras)", args.cameras);
            println!("  open:      https://{host}:{}/  (self-signed certificate)", addr.port());
            println!("  email:     {OWNER_EMAIL}");
            if owner_is_new {
                println!("  password:  {password}");
            } else {
                println!("  password:  (the owner exists already in this data dir; use its password)");
            }
            println!("  data dir:  {}", data_dir.display());
            println!(
                "  cloud:     {} (encrypted clips; read them with: homehub cloud list --store file://{} --identity {})",
                bucket.display(),
                bucket.display(),
                key_path.display()
            );
            if let Some(m) = ready.mqtt_tls {
                println!("  mqtt:      {m} (TLS, certificate fingerprint {})", ready.fingerprint);
            }
            println!("Ctrl-C stops it.");
            println!();
        }
        let r = hub.await.map_err(|e| Error::from(e).context("the demo hub"))?;
        drop(sims);
        r
    })?;
    Ok(())
}

/// Confirms each simulated camera's pairing request with its setup code, as the owner
/// would on the page.
async fn play_owner(devices: std::sync::Arc<crate::devices::Devices>, mut codes: Vec<(String, String)>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !codes.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(pending) = devices.pending().await else { continue };
        for p in pending {
            if let Some(i) = codes.iter().position(|(id, _)| *id == p.device_id) {
                let (id, code) = codes.remove(i);
                match devices.confirm(&id, &code, Some(p.request_id.as_str()), "demo").await {
                    Ok(()) => println!("demo: paired {id} with its setup code"),
                    Err(e) => eprintln!("demo: pairing {id} failed: {e}"),
                }
            }
        }
    }
    for (id, _) in codes {
        eprintln!("demo: {id} never asked to pair (see its log lines above)");
    }
}

fn sibling_binary(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe().map_err(|e| Error::internal(format!("finding own path: {e}")))?;
    let p = me.with_file_name(name);
    if !p.exists() {
        return Err(Error::new(ErrorKind::Unavailable, format!("{} not found (build it: cargo build --bins)", p.display())));
    }
    Ok(p)
}

/// Where the simulated cameras find the hub (instead of mDNS).
struct Hub<'a> {
    addr: Option<std::net::SocketAddr>,
    fp: &'a str,
}

fn start_camsim(bin: &Path, i: u32, id: &str, code: &str, hub: &Hub<'_>) -> Result<Child> {
    let addr = hub.addr.ok_or_else(|| Error::internal("the hub has no MQTT TLS listener"))?;
    let mut cmd = Command::new(bin);
    // Any free port: the camera tells the hub its address when it pairs.
    cmd.args(["--rtsp", "127.0.0.1:0"])
        .args(["--size", "1280x720", "--fps", "15", "--bitrate", "1500"])
        .args(["--name", &format!("Demo camera {i}")])
        .args(["--pair", "--device-id", id, "--setup-code", code])
        .args(["--hub", &addr.to_string(), "--hub-fp", hub.fp])
        .args(["--motion", "20-30,80-95,200-215"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: prctl in the child before exec; asks the kernel to kill it if we die.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| Error::internal(format!("starting {}: {e}", bin.display())))
}

fn wait_ready(child: &mut Child, i: usize) -> Result<()> {
    let out = child.stdout.take().ok_or_else(|| Error::internal("camsim stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        for line in lines.by_ref().map_while(|l| l.ok()) {
            if line.starts_with("camsim ready") {
                let _ = tx.send(());
                break;
            }
        }
        // Keep draining so the simulator never blocks on a full pipe; show its pairing.
        for line in lines.map_while(|l| l.ok()) {
            if line.contains("pair") || line.contains("refused") {
                println!("{line}");
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(Error::new(ErrorKind::Unavailable, format!("simulated camera {i} exited: {st}")));
        }
    }
    Err(Error::new(ErrorKind::Unavailable, format!("simulated camera {i} did not start within 20 s")))
}

/// The demo owner's key at `path` (made once, mode 0600); its public key.
fn demo_owner_key(path: &Path) -> Result<String> {
    if !path.exists() {
        crate::web::tls::write_private(path, crate::cloud::keys::keygen_text(chrono::Utc::now()).as_bytes())?;
    }
    let text = std::fs::read_to_string(path).ctx(format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .map(str::to_string)
        .ok_or_else(|| Error::invalid(format!("{}: no \"# public key:\" line", path.display())))
}
