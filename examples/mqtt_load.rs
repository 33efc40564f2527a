//! MQTT load generator for `tests/bench/mqtt.sh` (a benchmark tool, not part of the hub).
//!
//! Simulates N devices, each with its own MQTT connection, publishing a small JSON state to
//! `homehub/dev/<username>/state`, and one subscriber on `homehub/dev/+/state` that timestamps
//! every delivery. Phases: connect all devices, steady (every device at `--rate` per second,
//! spread evenly over the second), burst (`--burst` messages per device as fast as the broker
//! acknowledges them). All publishes are QoS 1. Prints one JSON line per phase on stdout:
//! `{"label","phase","devices","sent","received","lost","msgs_per_s","p50_ms","p99_ms","max_ms",
//! "secs","acked","acked_per_s","duplicates","retained"}`.
//! Latency is the subscriber's receive time minus the `sent_ns` the device stamped just before
//! handing the message to its client (so in the burst it includes the wait in the client's
//! queue), both from this process's clock.
//!
//!   cargo build --release --example mqtt_load
//!   target/release/examples/mqtt_load --port 1883 --devices 200 --burst 50 --label mosquitto

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use rand::Rng;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};

#[derive(Parser, Debug)]
#[command(about = "MQTT load: N devices publishing state, one subscriber measuring delivery")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long)]
    port: u16,
    /// File of `username password` lines, one per simulated device.
    #[arg(long, conflicts_with = "devices")]
    creds: Option<String>,
    /// Number of anonymous devices, client ids and usernames `bench-1` … `bench-N`.
    #[arg(long)]
    devices: Option<usize>,
    /// Login of the subscriber (anonymous when absent).
    #[arg(long, requires = "watch_pass")]
    watch_user: Option<String>,
    #[arg(long)]
    watch_pass: Option<String>,
    #[arg(long, default_value_t = 20)]
    steady_secs: u64,
    /// Messages per second per device in the steady phase.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Messages per device in the burst phase (0 skips it).
    #[arg(long, default_value_t = 50)]
    burst: u64,
    /// Publish state retained, as a paired device does (SPEC, pairing step 5).
    #[arg(long)]
    retain: bool,
    /// Payload size in bytes (the JSON is padded up to it).
    #[arg(long, default_value_t = 200)]
    payload: usize,
    /// How long to wait for the last deliveries of a phase once everything is acknowledged.
    #[arg(long, default_value_t = 5)]
    drain_secs: u64,
    #[arg(long, default_value = "load")]
    label: String,
}

const STEADY: u8 = 0;
const BURST: u8 = 1;

/// What the main task tells every device to do next.
#[derive(Clone, Copy, Debug)]
enum Cmd {
    Wait,
    /// Device i sends its k-th message at start + (k + (i-1)/devices) × period.
    Steady {
        start: Instant,
        count: u64,
        period: Duration,
        devices: u32,
    },
    Burst {
        count: u64,
    },
    Stop,
}

/// What the subscriber has seen, per phase.
#[derive(Default)]
struct Seen {
    /// (device index, seq) of every delivery, to count duplicates once.
    keys: HashSet<(u32, u64)>,
    latencies_ns: Vec<u64>,
    duplicates: u64,
    /// Deliveries flagged retained: copies stored before we subscribed, not timed.
    retained: u64,
    last: Option<Instant>,
}

#[derive(Deserialize)]
struct State {
    dev: u32,
    ph: u8,
    seq: u64,
    sent_ns: u64,
}

/// PUBACKs the devices got from the broker, and when the latest arrived.
#[derive(Default)]
struct Acks {
    count: AtomicU64,
    last_ns: AtomicU64,
}

struct Device {
    username: String,
    password: Option<String>,
}

/// A failure worth stopping for, with what failed.
type Failure = String;

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos() as u64
}

fn options(client_id: &str, args: &Args, login: Option<(&str, &str)>) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, args.host.clone(), args.port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(true);
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    o
}

/// Polls until the broker's CONNACK; anything else is a failure naming the client.
async fn connect(name: &str, el: &mut EventLoop) -> Result<(), Failure> {
    loop {
        match timeout(Duration::from_secs(10), el.poll()).await {
            Err(_) => return Err(format!("{name}: no CONNACK within 10 s")),
            Ok(Err(e)) => return Err(format!("{name}: connect failed: {e}")),
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                return if ack.code == ConnectReturnCode::Success {
                    Ok(())
                } else {
                    Err(format!("{name}: login refused, CONNACK {:?}", ack.code))
                };
            }
            Ok(Ok(_)) => {}
        }
    }
}

fn payload(dev: u32, ph: u8, seq: u64, size: usize, started: Instant, rssi: i32) -> Vec<u8> {
    let mut s = format!(
        r#"{{"dev":{dev},"ph":{ph},"seq":{seq},"sent_ns":{},"uptime_s":{},"rssi":{rssi},"online":true,"pad":""#,
        now_ns(),
        started.elapsed().as_secs() + 3600,
    );
    while s.len() + 2 < size {
        s.push('x');
    }
    s.push_str("\"}");
    s.into_bytes()
}

/// One simulated device: connects, then publishes as `cmd` says. Its event loop is polled by
/// a task of its own so acknowledgements and pings flow while it waits to publish.
async fn device(
    idx: u32,
    dev: Device,
    args: Arc<Args>,
    mut cmd: watch::Receiver<Cmd>,
    connected: mpsc::UnboundedSender<Result<Duration, Failure>>,
    failures: mpsc::UnboundedSender<Failure>,
    acks: Arc<Acks>,
) {
    let login = dev.password.as_deref().map(|p| (dev.username.as_str(), p));
    let mut opts = options(&dev.username, &args, login);
    // Small queue: the stamp in the payload is taken close to when the client can write it.
    opts.set_request_channel_capacity(8);
    let (client, mut el) = AsyncClient::new(opts, 8);
    let t0 = Instant::now();
    if let Err(e) = connect(&dev.username, &mut el).await {
        let _ = connected.send(Err(e));
        return;
    }
    let _ = connected.send(Ok(t0.elapsed()));
    let name = dev.username.clone();
    let poller_failures = failures.clone();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acks.count.fetch_add(1, Ordering::Relaxed);
                    acks.last_ns.fetch_max(now_ns(), Ordering::Relaxed);
                }
                Ok(Event::Incoming(Packet::Disconnect)) => {
                    let _ = poller_failures.send(format!("{name}: broker sent DISCONNECT"));
                    return;
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(rumqttc::ConnectionError::RequestsDone) => return,
                Err(e) => {
                    let _ = poller_failures.send(format!("{name}: connection lost: {e}"));
                    return;
                }
            }
        }
    });
    let topic = format!("homehub/dev/{}/state", dev.username);
    let started = Instant::now();
    let rssi = -40 - rand::thread_rng().gen_range(0..40);
    let mut seq = 0u64;
    loop {
        if cmd.changed().await.is_err() {
            return;
        }
        let c = *cmd.borrow_and_update();
        let (ph, count, schedule) = match c {
            Cmd::Wait => continue,
            Cmd::Stop => {
                let _ = client.disconnect().await;
                return;
            }
            Cmd::Steady { start, count, period, devices } => {
                let offset = period.mul_f64(f64::from(idx - 1) / f64::from(devices));
                (STEADY, count, Some((start + offset, period)))
            }
            Cmd::Burst { count } => (BURST, count, None),
        };
        for k in 0..count {
            if let Some((start, period)) = schedule {
                sleep_until(start + period.mul_f64(k as f64)).await;
            }
            seq += 1;
            let body = payload(idx, ph, seq, args.payload, started, rssi);
            if let Err(e) = client.publish(&topic, QoS::AtLeastOnce, args.retain, body).await {
                let _ = failures.send(format!("{}: publish failed: {e}", dev.username));
                return;
            }
        }
    }
}

/// The subscriber runs on a thread and runtime of its own so 200 device tasks cannot delay
/// its reads: what it measures is the broker, not this process's scheduler.
fn start_subscriber(
    args: Arc<Args>,
    seen: Arc<Mutex<[Seen; 2]>>,
    ready: std::sync::mpsc::Sender<Result<(), Failure>>,
    failures: mpsc::UnboundedSender<Failure>,
) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let login = match (&args.watch_user, &args.watch_pass) {
                (Some(u), Some(p)) => Some((u.as_str(), p.as_str())),
                _ => None,
            };
            let id = args.watch_user.clone().unwrap_or_else(|| "bench-watch".into());
            let mut opts = options(&id, &args, login);
            opts.set_max_packet_size(1 << 20, 1 << 20);
            opts.set_request_channel_capacity(1024);
            opts.set_inflight(1000);
            let (client, mut el) = AsyncClient::new(opts, 1024);
            if let Err(e) = connect("subscriber", &mut el).await {
                let _ = ready.send(Err(e));
                return;
            }
            if let Err(e) = client.subscribe("homehub/dev/+/state", QoS::AtLeastOnce).await {
                let _ = ready.send(Err(format!("subscriber: subscribe: {e}")));
                return;
            }
            let mut ready = Some(ready);
            loop {
                let ev = match el.poll().await {
                    Ok(ev) => ev,
                    Err(e) => {
                        let msg = format!("subscriber: connection lost: {e}");
                        match ready.take() {
                            Some(r) => drop(r.send(Err(msg))),
                            None => drop(failures.send(msg)),
                        }
                        return;
                    }
                };
                match ev {
                    Event::Incoming(Packet::SubAck(ack)) => {
                        let ok = matches!(ack.return_codes.as_slice(), [SubscribeReasonCode::Success(_)]);
                        let r = ready.take().expect("one subscription");
                        if !ok {
                            let _ = r.send(Err(format!(
                                "subscriber: subscription to homehub/dev/+/state refused: {:?}",
                                ack.return_codes
                            )));
                            return;
                        }
                        let _ = r.send(Ok(()));
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        let at = now_ns();
                        let now = Instant::now();
                        let Ok(s) = serde_json::from_slice::<State>(&p.payload) else {
                            let _ = failures.send(format!("subscriber: unreadable payload on {}", p.topic));
                            continue;
                        };
                        let mut seen = seen.lock().expect("not poisoned");
                        let Some(ph) = seen.get_mut(s.ph as usize) else {
                            continue;
                        };
                        if p.retain {
                            // A stored copy sent on subscribing, not a delivery we can time.
                            ph.retained += 1;
                            continue;
                        }
                        if !ph.keys.insert((s.dev, s.seq)) {
                            ph.duplicates += 1;
                            continue;
                        }
                        ph.latencies_ns.push(at.saturating_sub(s.sent_ns));
                        ph.last = Some(now);
                    }
                    Event::Incoming(Packet::Disconnect) => {
                        let _ = failures.send("subscriber: broker sent DISCONNECT".into());
                        return;
                    }
                    _ => {}
                }
            }
        });
    });
}

fn read_creds(path: &str) -> Result<Vec<Device>, Failure> {
    let f = std::fs::File::open(path).map_err(|e| format!("--creds {path}: {e}"))?;
    let mut out = Vec::new();
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("--creds {path}: {e}"))?;
        let mut w = line.split_whitespace();
        match (w.next(), w.next(), w.next()) {
            (None, _, _) => continue,
            (Some(u), Some(p), None) => out.push(Device { username: u.into(), password: Some(p.into()) }),
            _ => {
                return Err(format!("--creds {path}:{}: expected `username password`", n + 1));
            }
        }
    }
    if out.is_empty() {
        return Err(format!("--creds {path}: no logins"));
    }
    Ok(out)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1e6
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

#[allow(clippy::too_many_arguments)]
fn line(
    args: &Args,
    phase: &str,
    devices: usize,
    sent: u64,
    received: u64,
    secs: f64,
    mut lat_ns: Vec<u64>,
    extra: serde_json::Value,
) {
    lat_ns.sort_unstable();
    let mut v = serde_json::json!({
        "label": args.label,
        "phase": phase,
        "devices": devices,
        "sent": sent,
        "received": received,
        "lost": sent.saturating_sub(received),
        "msgs_per_s": round(if secs > 0.0 { received as f64 / secs } else { 0.0 }, 1),
        "p50_ms": round(pct(&lat_ns, 0.50), 3),
        "p99_ms": round(pct(&lat_ns, 0.99), 3),
        "max_ms": round(lat_ns.last().copied().unwrap_or(0) as f64 / 1e6, 3),
        "secs": round(secs, 3),
    });
    if let (Some(m), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    println!("{v}");
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Arc::new(Args::parse());
    match run(args).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("mqtt_load: {n} failure(s) during the run (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mqtt_load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the phases; returns how many connection failures happened while loading.
async fn run(args: Arc<Args>) -> Result<usize, Failure> {
    let devices: Vec<Device> = match (&args.creds, args.devices) {
        (Some(path), _) => read_creds(path)?,
        (None, Some(n)) if n > 0 => (1..=n).map(|i| Device { username: format!("bench-{i}"), password: None }).collect(),
        _ => return Err("give --creds FILE or --devices N".into()),
    };
    let n = devices.len();
    if args.rate <= 0.0 {
        return Err("--rate must be > 0".into());
    }

    let seen = Arc::new(Mutex::new([Seen::default(), Seen::default()]));
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<Failure>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    start_subscriber(args.clone(), seen.clone(), ready_tx, fail_tx.clone());
    tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(15)))
        .await
        .expect("join")
        .map_err(|_| "subscriber: not subscribed within 15 s".to_string())??;

    // Connect: every device at once, as after a power cut.
    let (cmd_tx, cmd_rx) = watch::channel(Cmd::Wait);
    let (conn_tx, mut conn_rx) = mpsc::unbounded_channel();
    let acks = Arc::new(Acks::default());
    let t0 = Instant::now();
    for (i, d) in devices.into_iter().enumerate() {
        tokio::spawn(device(i as u32 + 1, d, args.clone(), cmd_rx.clone(), conn_tx.clone(), fail_tx.clone(), acks.clone()));
    }
    drop(conn_tx);
    let mut connect_ns = Vec::with_capacity(n);
    let mut refused = Vec::new();
    for _ in 0..n {
        match conn_rx.recv().await.expect("every device reports once") {
            Ok(d) => connect_ns.push(d.as_nanos() as u64),
            Err(e) => refused.push(e),
        }
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    line(&args, "connect", n, n as u64, connect_ns.len() as u64, connect_secs, connect_ns, serde_json::json!({}));
    if !refused.is_empty() {
        for e in refused.iter().take(10) {
            eprintln!("mqtt_load: {e}");
        }
        return Err(format!("{} of {n} devices could not connect", refused.len()));
    }

    let mut failures = 0usize;
    let mut report = |rx: &mut mpsc::UnboundedReceiver<Failure>| {
        while let Ok(e) = rx.try_recv() {
            failures += 1;
            if failures <= 20 {
                eprintln!("mqtt_load: {e}");
            }
        }
    };

    // Steady: each device at --rate, device i offset by i/n of the period.
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let count = (args.steady_secs as f64 * args.rate).round() as u64;
    let start = Instant::now() + Duration::from_millis(200);
    let mut phases = vec![(STEADY, "steady", count)];
    if args.burst > 0 {
        phases.push((BURST, "burst", args.burst));
    }
    for (ph, name, count) in phases {
        let acked_before = acks.count.load(Ordering::Relaxed);
        let sent = count * n as u64;
        let (began, scheduled_end) = if ph == STEADY {
            cmd_tx.send_replace(Cmd::Steady { start, count, period, devices: n as u32 });
            (start, start + period.mul_f64(count as f64))
        } else {
            let b = Instant::now();
            cmd_tx.send_replace(Cmd::Burst { count });
            (b, b)
        };
        let began_ns = now_ns() + began.saturating_duration_since(Instant::now()).as_nanos() as u64;
        // Wait until the broker has acknowledged every publish (or stops making progress),
        // then until the subscriber has everything (or --drain-secs pass with nothing new).
        let mut last = (0u64, 0usize, Instant::now());
        loop {
            sleep(Duration::from_millis(100)).await;
            report(&mut fail_rx);
            let a = acks.count.load(Ordering::Relaxed) - acked_before;
            let r = seen.lock().expect("not poisoned")[ph as usize].keys.len();
            if a >= sent && r as u64 >= sent {
                break;
            }
            if (a, r) != (last.0, last.1) {
                last = (a, r, Instant::now());
            } else if Instant::now() > scheduled_end && last.2.elapsed() > Duration::from_secs(args.drain_secs) {
                eprintln!(
                    "mqtt_load: {name}: stopped waiting: {a} of {sent} acknowledged, {r} delivered, nothing new for {} s",
                    args.drain_secs
                );
                break;
            }
        }
        let s = std::mem::take(&mut seen.lock().expect("not poisoned")[ph as usize]);
        let received = s.keys.len() as u64;
        let secs = match s.last {
            Some(l) => (l - began).as_secs_f64(),
            None => 0.0,
        };
        let a = acks.count.load(Ordering::Relaxed) - acked_before;
        // The rate the broker took messages in (PUBACKs), beside the rate it delivered them.
        let ack_secs = acks.last_ns.load(Ordering::Relaxed).saturating_sub(began_ns) as f64 / 1e9;
        let acked_per_s = if ack_secs > 0.0 { round(a as f64 / ack_secs, 1) } else { 0.0 };
        line(
            &args,
            name,
            n,
            sent,
            received,
            secs,
            s.latencies_ns,
            serde_json::json!({
                "acked": a,
                "acked_per_s": acked_per_s,
                "duplicates": s.duplicates,
                "retained": s.retained,
            }),
        );
    }
    cmd_tx.send_replace(Cmd::Stop);
    sleep(Duration::from_millis(300)).await;
    report(&mut fail_rx);
    Ok(failures)
}
