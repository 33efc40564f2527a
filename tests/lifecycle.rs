//! The hub's life in one process: `hub::run` started with a camera (a real camsim),
//! mDNS, the broker edge and the cloud relay, stopped through the shutdown future it was
//! given. Afterwards `run` has returned Ok, the WAL is checkpointed into the database
//! file, and no thread the hub started is still alive.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CAMSIM: &str = env!("CARGO_BIN_EXE_homehub-camsim");

/// Threads of this process by name (as the kernel shortens them, 15 bytes), with counts.
fn threads() -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(name) = std::fs::read_to_string(t.path().join("comm")) {
            *out.entry(name.trim().to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// Threads that are in `after` and not (or fewer times) in `before`.
fn new_threads(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>) -> Vec<String> {
    after
        .iter()
        .filter(|(name, n)| before.get(*name).copied().unwrap_or(0) < **n)
        .map(|(name, n)| format!("{name} ×{}", n - before.get(name).copied().unwrap_or(0)))
        .collect()
}

/// Threads that outlive any one hub by design, because the library that owns them has
/// no way to stop them: the embedded rumqttd (our thread `mqtt-broker`, its router and
/// its loopback server; see `mqtt::broker`), and GLib's process-wide singletons (its
/// main-context thread and GIO's settings worker), started once per process.
fn process_wide(name: &str) -> bool {
    let name = name.split(" ×").next().unwrap_or(name);
    matches!(name, "mqtt-broker" | "router-0" | "homehub-loopbac" | "gmain" | "dconf worker")
}

fn start_camsim() -> (std::process::Child, u16) {
    let mut child = Command::new(CAMSIM)
        .args(["--rtsp", "127.0.0.1:0", "--size", "320x180", "--fps", "10", "--bitrate", "200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start camsim");
    let out = child.stdout.take().unwrap();
    let line =
        BufReader::new(out).lines().map_while(Result::ok).find(|l| l.starts_with("camsim ready")).expect("camsim ready line");
    // camsim ready rtsp://127.0.0.1:PORT/main rtsp://…/sub
    let port = line.split_whitespace().nth(2).and_then(|u| u.rsplit(':').next()).and_then(|p| p.split('/').next()).unwrap();
    (child, port.parse().unwrap())
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn segment_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("recordings").join("1"))
        .map(|d| d.flatten().filter(|f| f.metadata().map(|m| m.len() > 0).unwrap_or(false)).count())
        .unwrap_or(0)
}

#[test]
fn run_returns_after_its_shutdown_future_with_every_thread_joined_and_the_wal_checkpointed() {
    let (mut cam, port) = start_camsim();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let recipient = homehub::cloud::keys::keygen_text(chrono::Utc::now())
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .unwrap();
    let cfg = homehub::config::Config::parse(&format!(
        "data_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nlisten_tls = \"127.0.0.1:0\"\nlisten_plain = \"127.0.0.1:0\"\n\
         [mdns]\ninterfaces = [\"lo\"]\n[recording]\nmode = \"continuous\"\nsegment_seconds = 2\n\
         [cloud]\nstore = \"file://{}\"\nrecipients = [\"{recipient}\"]\n\
         [[camera]]\nname = \"Porch\"\nurl = \"rtsp://127.0.0.1:{port}/main\"\n",
        data.display(),
        bucket.display()
    ))
    .unwrap();

    let before = threads();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("test-rt").enable_all().build().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let hub = rt.spawn(homehub::hub::run(
        cfg,
        async {
            let _ = stop_rx.await;
        },
        Some(ready_tx),
    ));
    let ready = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), ready_rx).await })
        .expect("ready in 30 s")
        .expect("ready");
    assert!(ready.web.port() != 0 && ready.mqtt_tls.is_some_and(|a| a.port() != 0), "bound ports are reported");
    drop(ready);
    // The camera records: at least one finished segment and the next one open.
    wait_until("two segment files", Duration::from_secs(30), || segment_files(&data) >= 2);
    let running = threads();
    for name in ["store", "recorder", "events", "camera-1"] {
        assert!(running.contains_key(name), "{name} runs while the hub does: {running:?}");
    }

    stop_tx.send(()).unwrap();
    let result = rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), hub).await });
    let result = result.expect("run returned within 30 s of its shutdown future").expect("run did not panic");
    assert!(result.is_ok(), "run: {result:?}");
    // The test's runtime and its blocking pool are the test's own: stop them first.
    rt.shutdown_timeout(Duration::from_secs(10));

    let wal = data.join("homehub.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "the WAL was checkpointed into homehub.db");
    assert!(homehub::store::DirLock::holder(&data).is_none(), "the data dir lock was released");

    // Threads end asynchronously after join() returns only in the kernel's bookkeeping:
    // allow a moment for /proc to catch up.
    let deadline = Instant::now() + Duration::from_secs(5);
    let left = loop {
        let left: Vec<String> = new_threads(&before, &threads()).into_iter().filter(|t| !process_wide(t)).collect();
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("process-wide threads left, by design: {:?}", new_threads(&before, &threads()));
    assert!(left.is_empty(), "threads the hub started are still alive after run returned: {left:?}");
    let _ = cam.kill();
    let _ = cam.wait();
}
