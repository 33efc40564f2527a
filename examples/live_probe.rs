//! Benchmark client for tests/bench/live.sh (not part of the hub).
//!   live_probe first PORT FINGERPRINT COOKIE PATH OPENS    → time from connect to the first
//!       fragment (a keyframe) over OPENS opens, one after the other: "p50_ms=… p95_ms=… max_ms=…"
//!   live_probe hold PORT FINGERPRINT COOKIE PATH VIEWERS SECONDS → VIEWERS viewers reading for
//!       SECONDS: "bytes=… fragments=…"

#[path = "../tests/live/client.rs"]
mod client;

use std::time::{Duration, Instant};

use client::{Msg, box_type, nal_types};

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let usage = "usage: live_probe first|hold PORT FINGERPRINT COOKIE PATH N [SECONDS]";
    let (mode, port, fp, cookie, path) = match &a[..] {
        [_, m, p, f, c, path, ..] => (m.as_str(), p.parse::<u16>().expect("PORT"), f.as_str(), c.as_str(), path.as_str()),
        _ => panic!("{usage}"),
    };
    let n: usize = a.get(6).and_then(|s| s.parse().ok()).expect(usage);
    match mode {
        "first" => {
            let mut ms = Vec::new();
            for _ in 0..n {
                let t0 = Instant::now();
                let mut ws = client::connect(port, fp, path, cookie, None).await.unwrap_or_else(|st| panic!("HTTP {st}"));
                loop {
                    match tokio::time::timeout(Duration::from_secs(10), client::next(&mut ws)).await.expect("10 s") {
                        Msg::Binary(b) if box_type(&b) == "moof" => {
                            assert!(nal_types(&b).contains(&5), "first fragment without an IDR");
                            break;
                        }
                        Msg::Closed => panic!("closed"),
                        _ => {}
                    }
                }
                ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                drop(ws);
                // Not in step with the GOP: opens land anywhere in it.
                tokio::time::sleep(Duration::from_millis(337)).await;
            }
            ms.sort_by(f64::total_cmp);
            println!("p50_ms={:.1} p95_ms={:.1} max_ms={:.1}", pct(&ms, 0.5), pct(&ms, 0.95), ms[ms.len() - 1]);
        }
        "hold" => {
            let secs: u64 = a.get(7).and_then(|s| s.parse().ok()).expect(usage);
            let mut tasks = Vec::new();
            for _ in 0..n {
                let (fp, cookie, path) = (fp.to_string(), cookie.to_string(), path.to_string());
                tasks.push(tokio::spawn(async move {
                    let mut ws = client::connect(port, &fp, &path, &cookie, None).await.unwrap_or_else(|st| panic!("HTTP {st}"));
                    let until = Instant::now() + Duration::from_secs(secs);
                    let (mut bytes, mut frags) = (0usize, 0usize);
                    while let Ok(m) = tokio::time::timeout_at(until.into(), client::next(&mut ws)).await {
                        match m {
                            Msg::Binary(b) => {
                                bytes += b.len();
                                frags += usize::from(box_type(&b) == "moof");
                            }
                            Msg::Closed => break,
                            Msg::Text(_) => {}
                        }
                    }
                    (bytes, frags)
                }));
            }
            let (mut bytes, mut frags) = (0, 0);
            for t in tasks {
                let (b, f) = t.await.unwrap();
                bytes += b;
                frags += f;
            }
            println!("bytes={bytes} fragments={frags}");
        }
        _ => panic!("{usage}"),
    }
}
