//! Sign-in and `/metrics` against a real `homehub serve`: oversized input is refused
//! before it costs anything, concurrent guesses reach argon2 at most the throttle's
//! budget, another account's success does not reset it, slow requests are cut off, and
//! `/metrics` answers members, the owner and the scrape token only.
//!
//! Attack traffic comes from loopback addresses other than 127.0.0.1 (the client socket
//! is bound before connect), so the test's own checks from 127.0.0.1 are not the
//! attacker's. Figures are printed on `hostile:` lines.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VIEWER: &str = "viewer@example.com";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection to the hub from `from` (pinned to the hub's certificate).
async fn connect(hub_port: u16, fingerprint: &str, from: IpAddr) -> std::io::Result<Tls> {
    let fp: [u8; 32] = hex::decode(fingerprint).ok().and_then(|b| b.try_into().ok()).expect("a hex SHA-256 fingerprint");
    let cfg = homehub::camsim::pair::pin::client_config(fp).map_err(std::io::Error::other)?;
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    let tcp = sock.connect(SocketAddr::from(([127, 0, 0, 1], hub_port))).await?;
    tokio_rustls::TlsConnector::from(cfg).connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await
}

/// Reads a whole answer (the request said `connection: close`); its status, 0 if none.
async fn status_of(tls: &mut Tls) -> u16 {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), tls.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw);
    text.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `POST /api/session` with `body` from `from`; the status (0: refused or no answer).
async fn sign_in_from(hub_port: u16, fingerprint: &str, from: IpAddr, body: &str) -> u16 {
    let Ok(mut tls) = connect(hub_port, fingerprint, from).await else { return 0 };
    let req = format!(
        "POST /api/session HTTP/1.1\r\nhost: 127.0.0.1:{hub_port}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if tls.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    status_of(&mut tls).await
}

fn login_body(email: &str, password: &str) -> String {
    json!({ "email": email, "password": password }).to_string()
}

fn sign_in(hub: &Hub, rt: &tokio::runtime::Runtime, from: &str, email: &str, password: &str) -> u16 {
    rt.block_on(sign_in_from(hub.port, &hub.fingerprint, from.parse().unwrap(), &login_body(email, password)))
}

/// A value on `/metrics` (read with the scrape token).
fn metric(hub: &Hub, token: &str, name: &str) -> u64 {
    let (st, _, body) = hub.curl(&["-H", &format!("authorization: Bearer {token}"), &hub.url("/metrics")]);
    assert_eq!(st, 200, "/metrics with the token");
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
}

fn scrape_token(hub: &Hub) -> String {
    let (ok, out, err) = hub.admin(&["metrics-token"]);
    assert!(ok, "metrics-token: {err}");
    let token = out.trim().to_string();
    assert!(token.len() >= 40 && !token.contains(char::is_whitespace), "{out:?}");
    token
}

/// (VmRSS, VmHWM) of a process in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} missing"))
    };
    (kb("VmRSS:") * 1024, kb("VmHWM:") * 1024)
}

fn db_bytes(hub: &Hub) -> u64 {
    ["homehub.db", "homehub.db-wal"].iter().map(|f| std::fs::metadata(hub.dir.join(f)).map_or(0, |m| m.len())).sum()
}

const MB: u64 = 1024 * 1024;

#[test]
fn oversized_sign_ins_are_refused_before_they_cost_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    let owner = hub.session("owner");
    let token = scrape_token(&hub);
    let before = db_bytes(&hub);

    // 40 sign-ins with a 1 MB email: each refused, nothing written.
    let big = tmp.path().join("big.json");
    std::fs::write(&big, login_body(&format!("{}@example.com", "x".repeat(1_000_000)), "wrong password")).unwrap();
    let data = format!("@{}", big.display());
    for i in 0..40 {
        let (st, _, body) = hub.curl(&[
            "--interface",
            "127.0.0.2",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &data,
            &hub.url("/api/session"),
        ]);
        assert_eq!(st, 413, "sign-in {i}: {}", String::from_utf8_lossy(&body));
    }
    // Short bodies with fields past their bounds: 400, and a message naming the field.
    let rt = runtime();
    let long_email = format!("{}@example.com", "y".repeat(300));
    for (body, field) in [
        (login_body(&long_email, "wrong password"), "email"),
        (login_body(EMAIL, &"p".repeat(1025)), "password"),
        (json!({ "email": EMAIL, "password": "x", "totp": "1".repeat(17) }).to_string(), "totp"),
    ] {
        let (st, _, answer) = hub.curl(&[
            "--interface",
            "127.0.0.2",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data",
            &body,
            &hub.url("/api/session"),
        ]);
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(st, 400, "{field}: {answer}");
        assert!(answer.contains(field), "{answer}");
    }
    let grown = db_bytes(&hub).saturating_sub(before);
    eprintln!("hostile: 40 sign-ins with a 1 MB email: database grew by {grown} bytes");
    assert!(grown < MB, "the database grew by {grown} bytes");
    assert_eq!(metric(&hub, &token, "homehub_password_checks_total"), 1, "only the owner's own sign-in reached argon2");
    assert_eq!(metric(&hub, &token, "homehub_signin_refused_total"), 43);

    // A failed sign-in with an unknown email of the longest size is audited, within bounds.
    let longest = format!("{}@example.com", "z".repeat(254 - 12));
    assert_eq!(sign_in(&hub, &rt, "127.0.0.2", &longest, "wrong password"), 401);
    let audit = hub.get_json("/api/audit", &owner);
    let failed = audit["items"].as_array().unwrap().iter().find(|r| r["action"] == "login.failed").expect("audited");
    assert_eq!(failed["actor"].as_str().unwrap().chars().count(), 254);
    assert_eq!(failed["detail"], "127.0.0.2");
    assert!(audit["rolled_up"].as_array().unwrap().is_empty(), "{audit}");
}

#[test]
fn metrics_answer_members_and_the_scrape_token_only() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    hub.add_user(VIEWER, "viewer", PASSWORD);
    hub.add_user("member@example.com", "member", PASSWORD);
    let viewer = hub.login(VIEWER, PASSWORD).1.unwrap().0;
    let member = hub.login("member@example.com", PASSWORD).1.unwrap().0;
    let bearer = |t: &str| hub.curl(&["-H", &format!("authorization: Bearer {t}"), &hub.url("/metrics")]).0;

    // From loopback without a session or token: 401 (no loopback exemption).
    assert_eq!(hub.get("/metrics", None).0, 401);
    assert_eq!(bearer("not-a-token"), 401, "no token set yet");
    assert_eq!(hub.get("/metrics", Some(&viewer)).0, 403);
    let (st, head, body) = hub.get("/metrics", Some(&member));
    assert_eq!(st, 200);
    assert!(head.to_ascii_lowercase().contains("openmetrics"));
    assert!(String::from_utf8_lossy(&body).contains("homehub_password_checks_total "));

    let first = scrape_token(&hub);
    assert_eq!(bearer(&first), 200);
    assert_eq!(bearer(&format!("{first}x")), 401);
    // A wrong token is not rescued by a session beside it.
    let (st, _, _) = hub.curl(&["-H", "authorization: Bearer wrong", "-H", &format!("cookie: {member}"), &hub.url("/metrics")]);
    assert_eq!(st, 401);
    // A new token replaces the old; revoking leaves sessions only.
    let second = scrape_token(&hub);
    assert_ne!(first, second);
    assert_eq!(bearer(&first), 401);
    assert_eq!(bearer(&second), 200);
    let (ok, out, _) = hub.admin(&["metrics-token", "--revoke"]);
    assert!(ok, "{out}");
    assert_eq!(bearer(&second), 401);
    assert_eq!(hub.get("/metrics", Some(&member)).0, 200);
    // Only the digest is stored, and the changes are audited.
    let stored: Vec<u8> = {
        let (_, third, _) = hub.admin(&["metrics-token"]);
        let db = hub.db();
        let h: Vec<u8> = db.query_row("SELECT token_hash FROM metrics_token", [], |r| r.get(0)).unwrap();
        assert_ne!(h, third.trim().as_bytes());
        h
    };
    assert_eq!(stored.len(), 32);
    hub.add_user(EMAIL, "owner", PASSWORD);
    let owner = hub.login(EMAIL, PASSWORD).1.unwrap().0;
    let audit = hub.get_json("/api/audit", &owner).to_string();
    assert!(audit.contains("metrics_token.new") && audit.contains("metrics_token.revoke"), "{audit}");
}

#[test]
fn concurrent_guesses_reach_argon2_at_most_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    hub.add_user(EMAIL, "owner", PASSWORD);
    hub.add_user(VIEWER, "viewer", PASSWORD);
    let token = scrape_token(&hub);
    let pid = hub.proc.as_ref().unwrap().child.id();
    let checks_before = metric(&hub, &token, "homehub_password_checks_total");
    let (rss_before, hwm_before) = memory(pid);

    // Sample the hub's memory while 200 wrong-password sign-ins arrive at once.
    let peak = Arc::new(AtomicU64::new(rss_before));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(memory(pid).0, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let rt = runtime();
    let started = Instant::now();
    let statuses: Vec<u16> = rt.block_on(async {
        let body = login_body(EMAIL, "a wrong password, again");
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (fp, body) = (hub.fingerprint.clone(), body.clone());
                let port = hub.port;
                tokio::spawn(async move { sign_in_from(port, &fp, "127.0.0.2".parse().unwrap(), &body).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let took = started.elapsed();
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let (rss_after, hwm_after) = memory(pid);
    let count = |s: u16| statuses.iter().filter(|&&x| x == s).count();
    let checks = metric(&hub, &token, "homehub_password_checks_total") - checks_before;
    let throttled = metric(&hub, &token, "homehub_signin_throttled_total");
    let peak = peak.load(Ordering::SeqCst);
    eprintln!(
        "hostile: 200 concurrent wrong sign-ins from one address in {:.1} s: {} x 401, {} x 429, {} x 503, {} refused \
         connections; {checks} reached argon2, {throttled} throttled",
        took.as_secs_f64(),
        count(401),
        count(429),
        count(503),
        count(0)
    );
    eprintln!(
        "hostile: hub memory: VmRSS {} -> {} MB (sampled peak {} MB), VmHWM {} -> {} MB",
        rss_before / MB,
        rss_after / MB,
        peak / MB,
        hwm_before / MB,
        hwm_after / MB
    );
    assert!(checks <= 10, "{checks} sign-ins reached argon2; the budget is 10");
    assert!(checks >= 1, "none reached argon2: the test did not test");
    assert_eq!(count(401) as u64, checks, "every check was a failure answered 401");
    assert!(count(429) >= 1, "the rest are throttled or refused: {statuses:?}");
    assert_eq!(statuses.len(), 200);
    assert!(statuses.iter().all(|&s| [0, 401, 429, 503].contains(&s)), "{statuses:?}");
    // Growth at the peak: the high-water mark after, against the resident size before.
    let growth = hwm_after.saturating_sub(rss_before);
    assert!(growth < 150 * MB, "hub RSS grew by {} MB at peak", growth / MB);
    // Other accounts sign in from other addresses; the owner's own account waits out its
    // window (the per-account budget is what stops guesses from many addresses).
    assert_eq!(hub.login(VIEWER, PASSWORD).0, 200);
    assert_eq!(hub.login(EMAIL, PASSWORD).0, 429);
}

#[test]
fn another_accounts_success_does_not_reset_the_owners_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    hub.add_user(EMAIL, "owner", PASSWORD);
    hub.add_user(VIEWER, "viewer", PASSWORD);
    let token = scrape_token(&hub);
    let rt = runtime();
    let house = "127.0.0.3";
    // A housemate guesses the owner's password, signing in as themselves every 3 tries.
    let mut guesses = 0;
    for round in 0..3 {
        for _ in 0..3 {
            assert_eq!(sign_in(&hub, &rt, house, EMAIL, &format!("guess {guesses}")), 401, "guess {guesses}");
            guesses += 1;
        }
        assert_eq!(sign_in(&hub, &rt, house, VIEWER, PASSWORD), 200, "viewer sign-in {round}");
    }
    assert_eq!(sign_in(&hub, &rt, house, EMAIL, "guess 9"), 401);
    // Ten guesses: the budget is spent, for the owner and for anyone from that address.
    assert_eq!(sign_in(&hub, &rt, house, EMAIL, "guess 10"), 429);
    assert_eq!(sign_in(&hub, &rt, house, VIEWER, PASSWORD), 429);
    // From another address, the owner's account is still out of guesses; the viewer is not.
    assert_eq!(sign_in(&hub, &rt, "127.0.0.4", EMAIL, "guess 11"), 429);
    assert_eq!(sign_in(&hub, &rt, "127.0.0.4", VIEWER, PASSWORD), 200);
    // Unknown emails have budgets too, whatever their case.
    for i in 0..10 {
        let email = if i % 2 == 0 { "nobody@example.com" } else { "NoBody@Example.com" };
        assert_eq!(sign_in(&hub, &rt, &format!("127.0.1.{i}"), email, "x"), 401);
    }
    assert_eq!(sign_in(&hub, &rt, "127.0.1.99", "nobody@example.com", "x"), 429);
    let checks = metric(&hub, &token, "homehub_password_checks_total");
    eprintln!("hostile: housemate: 10 owner guesses reached argon2 in the window, then 429 ({checks} checks in all)");
    assert_eq!(checks, 10 + 3 + 1 + 10);
}

#[test]
fn slow_requests_are_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    let rt = runtime();
    let from: IpAddr = "127.0.0.5".parse().unwrap();
    let (port, fp) = (hub.port, hub.fingerprint.clone());
    let (body_cut, header_cut) = rt.block_on(async {
        // A body promised and never sent: 408 after the body timeout.
        let body = tokio::spawn({
            let fp = fp.clone();
            async move {
                let mut tls = connect(port, &fp, from).await.unwrap();
                let head = format!(
                    "POST /api/session HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n\
                     content-length: 100\r\nconnection: close\r\n\r\n{{\"email\""
                );
                tls.write_all(head.as_bytes()).await.unwrap();
                let t = Instant::now();
                (status_of(&mut tls).await, t.elapsed())
            }
        });
        // A header trickled a byte a second: the connection closes after the header timeout.
        let header = tokio::spawn(async move {
            let mut tls = connect(port, &fp, from).await.unwrap();
            let t = Instant::now();
            for b in b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                if tls.write_all(&[*b]).await.is_err() || tls.flush().await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                if t.elapsed() > Duration::from_secs(40) {
                    break;
                }
            }
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut rest)).await;
            t.elapsed()
        });
        (body.await.unwrap(), header.await.unwrap())
    });
    eprintln!("hostile: body never sent: {} after {:?}; trickled header closed after {:?}", body_cut.0, body_cut.1, header_cut);
    assert_eq!(body_cut.0, 408);
    assert!(body_cut.1 >= Duration::from_secs(9) && body_cut.1 < Duration::from_secs(20), "{:?}", body_cut.1);
    assert!(header_cut >= Duration::from_secs(9) && header_cut < Duration::from_secs(20), "{header_cut:?}");
    assert_eq!(hub.get("/healthz", None).0, 200);
}
