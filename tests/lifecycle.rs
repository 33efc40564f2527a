//! The hub's life in one process: `hub::run` started with a camera (a real camsim),
//! mDNS, the broker edge and the cloud relay, stopped through the shutdown future it was
//! given. Afterwards `run` has returned Ok, the WAL is checkpointed into the database
//! file, and no thread the hub started is still alive.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{camsim, poll, wait_until};

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

fn segment_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("recordings").join("1"))
        .map(|d| d.flatten().filter(|f| f.metadata().map(|m| m.len() > 0).unwrap_or(false)).count())
        .unwrap_or(0)
}

#[test]
fn run_returns_after_its_shutdown_future_with_every_thread_joined_and_the_wal_checkpointed() {
    let cam = camsim(&[]);
    let port = cam.port;
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

    // A joined thread may linger a moment in /proc: look again for a few seconds.
    let left = |after: &BTreeMap<String, usize>| -> Vec<String> {
        new_threads(&before, after).into_iter().filter(|t| !process_wide(t)).collect()
    };
    let clean = poll(Duration::from_secs(5), || left(&threads()).is_empty().then_some(()));
    let after = threads();
    assert!(clean.is_some(), "threads the hub started are still alive after run returned: {:?}", left(&after));
    println!("process-wide threads left, by design: {:?}", new_threads(&before, &after));
    drop(cam);
}
