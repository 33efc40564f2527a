//! The desk driven as the MQTT front end drives it (through [`PairDesk`]), with real
//! device-side exchanges ([`DeviceExchange`]), a real store and a test clock.

use std::net::SocketAddr;

use super::*;
use crate::clock::TestClock;
use crate::pairing::DeviceExchange;

const CODE: &str = "12345678";
const WRONG: &str = "87654321";
const P: PairingPolicy = PairingPolicy::SPEC;

fn fp(b: u8) -> String {
    hex::encode([b; 32])
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Store,
    tc: TestClock,
    desk: Arc<Desk>,
    next: u64,
    _stop: Shutdown,
}

/// One `pair` session, as the device sees it.
struct Dev {
    session: u64,
    device_id: String,
    rx: mpsc::Receiver<Vec<u8>>,
    exchange: Option<DeviceExchange>,
}

impl Rig {
    async fn start() -> Rig {
        Rig::with_fingerprint(fp(1)).await
    }

    async fn with_fingerprint(fingerprint: String) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tc = TestClock::at(1_700_000_000_000);
        let stop = Shutdown::new();
        let desk = Desk::new(DeskParts { store: store.clone(), clock: tc.clock(), fingerprint, policy: P }, stop.clone());
        Rig { _dir: dir, store, tc, desk, next: 1, _stop: stop }
    }

    /// A `pair` session logs in from `peer`.
    fn open(&mut self, device_id: &str, peer: &str) -> Dev {
        let (out, rx) = mpsc::channel(16);
        let session = self.next;
        self.next += 1;
        let peer: SocketAddr = format!("{peer}:40000").parse().unwrap();
        self.desk.opened(PairSession { id: session, device_id: device_id.into(), peer, out });
        Dev { session, device_id: device_id.into(), rx, exchange: None }
    }

    /// The device starts an exchange with `code` and publishes its request.
    fn ask(&self, dev: &mut Dev, code: &str) {
        let (x, payload) = DeviceExchange::start(&dev.device_id, "camera", "sim", "1", code);
        dev.exchange = Some(x);
        self.desk.message(dev.session, payload.into());
    }

    fn ids(&self) -> Vec<String> {
        self.desk.pending().into_iter().map(|p| p.device_id).collect()
    }

    async fn listed(&self, n: usize) {
        until(&format!("{n} requests listed"), || self.desk.pending().len() == n).await;
    }

    /// The owner confirms in the background; the HTTP request's future.
    fn confirm(&self, device_id: &str, code: &str, request: Option<&str>) -> tokio::task::JoinHandle<Result<()>> {
        let (desk, id, code, rid) = (self.desk.clone(), device_id.to_string(), code.to_string(), request.map(str::to_string));
        tokio::spawn(async move { desk.confirm(&id, &code, rid.as_deref(), "owner").await })
    }

    async fn paired(&self, device_id: &str) -> Option<Vec<u8>> {
        let id = device_id.to_string();
        self.store.call(move |db| db.device_password_hash(&id)).await.unwrap()
    }

    async fn audits(&self, action: &str) -> usize {
        let rows = self.store.call(|db| db.audit_entries(1000)).await.unwrap();
        rows.iter().filter(|r| r.action == action).count()
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "not within 5 s: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next answer the hub publishes to the device.
async fn answer(dev: &mut Dev) -> Response {
    let bytes = tokio::time::timeout(Duration::from_secs(5), dev.rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{}: no answer within 5 s", dev.device_id))
        .expect("session queue open");
    pairing::parse_response(&bytes).unwrap()
}

fn rejected(r: Response) -> String {
    match r {
        Response::Rejected { reason } => reason,
        other => panic!("expected rejected, got {}", other.to_json()),
    }
}

/// The device answers the hub's challenge as the protocol says, having pinned `pinned`.
/// Some(the abort it sent) when it refused the challenge.
fn respond(desk: &Desk, dev: &mut Dev, challenge: Response, pinned: &str) -> Result<crate::pairing::Opened, String> {
    let Response::Challenge { pake, confirm } = challenge else { panic!("expected a challenge, got {}", challenge.to_json()) };
    let x = dev.exchange.take().expect("an exchange started");
    match x.finish(&pake, &confirm, pinned) {
        Ok((opened, payload)) => {
            desk.message(dev.session, payload.into());
            Ok(opened)
        }
        Err(abort) => {
            let text = String::from_utf8_lossy(&abort).to_string();
            desk.message(dev.session, abort.into());
            Err(text)
        }
    }
}

/// The whole happy path for one device: challenge, confirm, sealed credentials.
async fn pair_through(r: &Rig, dev: &mut Dev, confirm: tokio::task::JoinHandle<Result<()>>) -> Credentials {
    let ch = answer(dev).await;
    let opened = respond(&r.desk, dev, ch, &fp(1)).expect("the device accepts the hub's challenge");
    let Response::Accepted { sealed } = answer(dev).await else { panic!("not accepted") };
    confirm.await.unwrap().expect("the owner's confirm answers paired");
    opened.unseal(&sealed).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_code_pairs_with_sealed_credentials_and_one_audit_line_per_session() {
    let mut r = Rig::start().await;
    let mut dev = r.open("cam-1", "192.168.1.5");
    r.ask(&mut dev, CODE);
    r.listed(1).await;
    let p = &r.desk.pending()[0];
    assert_eq!((p.device_id.as_str(), p.peer.to_string().as_str(), p.competing), ("cam-1", "192.168.1.5", false));
    assert_eq!(p.received_ms, r.tc.now_ms());
    assert_eq!(p.expires_ms, p.received_ms + P.ttl_ms);
    // The same session asking again (after the rate's 2 s) is the same entry, audited once.
    r.tc.advance(REQUEST_EVERY);
    r.ask(&mut dev, CODE);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.ids(), ["cam-1"]);
    let creds = pair_through(&r, &mut dev, r.confirm("cam-1", CODE, None)).await;
    assert_eq!(creds.username, "cam-1");
    assert!(creds.password.len() >= 43, "32 random bytes, base64url");
    assert_eq!(r.paired("cam-1").await, Some(auth::digest(creds.password.as_bytes())), "the store keeps its digest");
    assert!(r.ids().is_empty(), "a paired request is no longer pending");
    assert_eq!(r.audits("pairing.requested").await, 1);
    assert_eq!(r.audits("pairing.accepted").await, 1);
    assert_eq!(r.desk.counters.pairings_accepted.load(Ordering::Relaxed), 1);
    // Paired now: a new request for the id is refused.
    let mut again = r.open("cam-1", "192.168.1.5");
    r.ask(&mut again, CODE);
    assert!(rejected(answer(&mut again).await).contains("already paired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_bounded_per_address_and_in_all_and_the_busiest_address_makes_room() {
    let mut r = Rig::start().await;
    let mut devs = Vec::new();
    // Three per address; the fourth from the same address is refused.
    for i in 0..4 {
        let mut d = r.open(&format!("a-{i}"), "10.0.0.1");
        r.ask(&mut d, CODE);
        devs.push(d);
    }
    let reason = rejected(answer(&mut devs[3]).await);
    assert!(reason.contains("holds 3 pairing requests"), "{reason}");
    r.listed(3).await;
    // Fill up to 32: nine more addresses with three, one with two.
    for a in 2..=11 {
        let n = if a == 11 { 2 } else { 3 };
        for i in 0..n {
            r.tc.advance(Duration::from_millis(1));
            let mut d = r.open(&format!("b-{a}-{i}"), &format!("10.0.0.{a}"));
            r.ask(&mut d, CODE);
            devs.push(d);
        }
    }
    r.listed(MAX_PENDING).await;
    // From an address that holds fewer: the oldest of the busiest address goes.
    let mut fresh = r.open("c-1", "10.0.0.99");
    r.ask(&mut fresh, CODE);
    let pushed = rejected(answer(&mut devs[0]).await);
    assert!(pushed.contains("pushed out"), "{pushed}");
    until("the newcomer listed", || r.ids().contains(&"c-1".to_string())).await;
    assert_eq!(r.desk.pending().len(), MAX_PENDING);
    assert!(!r.ids().contains(&"a-0".to_string()), "the oldest of 10.0.0.1 made room");
    // From an address among the busiest: refused, nothing evicted.
    let mut busy = r.open("c-2", "10.0.0.2");
    r.ask(&mut busy, CODE);
    let reason = rejected(answer(&mut busy).await);
    assert!(reason.contains("holds 3") || reason.contains("holds 32"), "{reason}");
    assert_eq!(r.desk.pending().len(), MAX_PENDING);
    // The newcomer's address holds 1 now, the busiest 3: another from it still gets room.
    let mut fresh2 = r.open("c-3", "10.0.0.99");
    r.ask(&mut fresh2, CODE);
    until("the second newcomer listed", || r.ids().contains(&"c-3".to_string())).await;
    assert_eq!(r.desk.held(), MAX_PENDING);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_asks_at_most_every_two_seconds_and_malformed_payloads_are_answered_with_a_reason() {
    let mut r = Rig::start().await;
    let mut bad = r.open("cam-b", "10.0.0.1");
    r.desk.message(bad.session, bytes::Bytes::from_static(b"not json"));
    let reason = rejected(answer(&mut bad).await);
    assert!(reason.starts_with("bad request: payload"), "{reason}");
    // Within 2 s: dropped, unanswered.
    r.desk.message(bad.session, bytes::Bytes::from_static(b"{\"v\":2}"));
    r.ask(&mut bad, CODE);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(bad.rx.try_recv().is_err(), "nothing answered within the rate");
    assert!(r.ids().is_empty());
    assert_eq!(r.desk.counters.requests_dropped.load(Ordering::Relaxed), 2);
    assert_eq!(r.desk.counters.payloads_rejected.load(Ordering::Relaxed), 1);
    r.tc.advance(REQUEST_EVERY);
    r.ask(&mut bad, CODE);
    r.listed(1).await;
    // A request naming another device than the session's client id is refused.
    let mut other = r.open("cam-o", "10.0.0.2");
    let (_, payload) = DeviceExchange::start("cam-b", "camera", "sim", "1", CODE);
    r.desk.message(other.session, payload.into());
    assert!(rejected(answer(&mut other).await).contains("not the client id"));
    assert_eq!(r.ids(), ["cam-b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_expires_on_a_timer_and_goes_when_its_session_closes() {
    let mut r = Rig::start().await;
    let mut a = r.open("cam-1", "10.0.0.1");
    r.ask(&mut a, CODE);
    let mut b = r.open("cam-2", "10.0.0.2");
    r.ask(&mut b, CODE);
    r.listed(2).await;
    r.desk.closed(b.session);
    assert_eq!(r.ids(), ["cam-1"], "gone with its session");
    r.tc.advance(Duration::from_millis(P.ttl_ms as u64 - 1));
    tokio::time::sleep(TICK * 2).await;
    assert_eq!(r.desk.held(), 1, "still held a millisecond before its TTL");
    r.tc.advance(Duration::from_millis(1));
    // Nobody lists it: the timer alone frees it and tells the device.
    until("the timer frees the request", || r.desk.held() == 0).await;
    assert!(rejected(answer(&mut a).await).contains("expired"));
    let e = r.desk.confirm("cam-1", CODE, None, "owner").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("expire after 10 minutes"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_requests_are_all_kept_and_the_owner_must_name_one() {
    let mut r = Rig::start().await;
    let mut real = r.open("cam-1", "192.168.1.5");
    r.ask(&mut real, CODE);
    r.listed(1).await;
    let mut rogue = r.open("cam-1", "192.168.1.9");
    r.ask(&mut rogue, WRONG);
    r.listed(2).await;
    let p = r.desk.pending();
    assert!(p.iter().all(|p| p.device_id == "cam-1" && p.competing), "{p:?}");
    assert_eq!(p[0].peer.to_string(), "192.168.1.5", "the first is not replaced");
    assert_ne!(p[0].request_id, p[1].request_id);
    let e = r.desk.confirm("cam-1", CODE, None, "owner").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(e.message().contains("2 requests for cam-1 — from 192.168.1.5, 192.168.1.9"), "{}", e.message());
    let e = r.desk.confirm("cam-1", CODE, Some("nope"), "owner").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let rid = p[0].request_id.clone();
    let creds = pair_through(&r, &mut real, r.confirm("cam-1", CODE, Some(&rid))).await;
    assert_eq!(creds.username, "cam-1");
    assert!(rejected(answer(&mut rogue).await).contains("another connection"));
    assert!(r.ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_is_counted_and_the_device_s_fresh_exchange_then_pairs() {
    let mut r = Rig::start().await;
    let mut dev = r.open("cam-1", "10.0.0.1");
    r.ask(&mut dev, CODE);
    r.listed(1).await;
    let c = r.confirm("cam-1", WRONG, None);
    let ch = answer(&mut dev).await;
    let abort = respond(&r.desk, &mut dev, ch, &fp(1)).map(|_| ()).unwrap_err();
    assert!(abort.contains("abort"), "{abort}");
    let e = c.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    assert!(e.message().contains("wrong setup code for cam-1 (1 of 5)"), "{}", e.message());
    assert!(rejected(answer(&mut dev).await).contains("wrong setup code"));
    assert_eq!(r.ids(), ["cam-1"], "still pending, for the device's fresh exchange");
    // The owner types again before the device has asked again: the confirm waits for it.
    let c = r.confirm("cam-1", CODE, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    r.ask(&mut dev, CODE); // within 2 s of the last: a fresh request is never held back
    let creds = pair_through(&r, &mut dev, c).await;
    assert_eq!(creds.username, "cam-1");
    assert_eq!(r.audits("pairing.wrong_code").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_within_thirty_seconds_is_a_wrong_code() {
    let mut r = Rig::start().await;
    let mut dev = r.open("cam-1", "10.0.0.1");
    r.ask(&mut dev, CODE);
    r.listed(1).await;
    let c = r.confirm("cam-1", CODE, None);
    assert!(matches!(answer(&mut dev).await, Response::Challenge { .. }));
    // A second confirm meanwhile is told to wait.
    let e = r.desk.confirm("cam-1", CODE, None, "owner").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    r.tc.advance(ANSWER_WAIT - Duration::from_millis(1));
    tokio::time::sleep(TICK * 2).await;
    assert!(!c.is_finished(), "still waiting just before 30 s");
    r.tc.advance(Duration::from_millis(1));
    let e = tokio::time::timeout(Duration::from_secs(5), c).await.expect("answered after 30 s").unwrap().unwrap_err();
    assert!(e.message().contains("(1 of 5)"), "{}", e.message());
    assert!(rejected(answer(&mut dev).await).contains("within 30 s"));
    assert!(r.paired("cam-1").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_codes_lock_the_id_for_fifteen_minutes() {
    let mut r = Rig::start().await;
    let mut dev = r.open("cam-1", "10.0.0.1");
    r.ask(&mut dev, CODE);
    r.listed(1).await;
    for n in 1..=P.max_wrong_codes {
        if n > 1 {
            r.ask(&mut dev, CODE); // the device's fresh exchange after "rejected"
        }
        let c = r.confirm("cam-1", WRONG, None);
        let ch = answer(&mut dev).await;
        assert!(respond(&r.desk, &mut dev, ch, &fp(1)).is_err(), "the device refuses a challenge made with another code");
        let e = c.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden);
        if n < P.max_wrong_codes {
            assert!(e.message().contains(&format!("({n} of 5)")), "{}", e.message());
        } else {
            assert!(e.message().contains("locked for 15 minutes"), "{}", e.message());
        }
        let reason = rejected(answer(&mut dev).await);
        assert!(reason.contains(if n < 5 { "wrong setup code" } else { "too many" }), "{reason}");
    }
    let locked_at = r.tc.now_ms();
    assert!(r.ids().is_empty(), "its requests are dropped");
    // During the lock-out a request is refused, and the right code does nothing.
    r.tc.set_wall_ms(locked_at + P.lockout_ms - 1);
    let mut later = r.open("cam-1", "10.0.0.1");
    r.ask(&mut later, CODE);
    assert!(rejected(answer(&mut later).await).contains("locked"));
    let e = r.desk.confirm("cam-1", CODE, None, "owner").await.unwrap_err();
    assert!(e.message().contains("try again later"), "{}", e.message());
    // Another id is not affected; after the lock-out the id may ask again.
    let mut other = r.open("cam-2", "10.0.0.2");
    r.ask(&mut other, CODE);
    r.listed(1).await;
    r.tc.advance(REQUEST_EVERY);
    r.tc.set_wall_ms(locked_at + P.lockout_ms);
    r.ask(&mut later, CODE);
    r.listed(2).await;
    assert_eq!(r.audits("pairing.locked").await, 1);
    assert!(r.paired("cam-1").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_pinned_another_hub_refuses_the_challenge_and_nothing_is_issued() {
    // This hub's certificate is fp(2); the device pinned fp(1) (it was given another hub's
    // fingerprint, or its request was replayed to this hub).
    let mut r = Rig::with_fingerprint(fp(2)).await;
    let mut dev = r.open("cam-1", "10.0.0.1");
    r.ask(&mut dev, CODE);
    r.listed(1).await;
    let c = r.confirm("cam-1", CODE, None);
    let ch = answer(&mut dev).await;
    assert!(respond(&r.desk, &mut dev, ch, &fp(1)).is_err(), "the right code, the wrong hub: refused");
    let e = c.await.unwrap().unwrap_err();
    assert!(e.message().contains("wrong setup code for cam-1 (1 of 5)"), "{}", e.message());
    assert!(r.paired("cam-1").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_id_that_names_a_broker_user_is_refused() {
    let mut r = Rig::start().await;
    r.store.call(|db| db.add_mqtt_user("ha", b"h", true, 1)).await.unwrap();
    let mut dev = r.open("ha", "10.0.0.1");
    r.ask(&mut dev, CODE);
    assert_eq!(rejected(answer(&mut dev).await), "device id is taken");
    assert!(r.ids().is_empty());
    assert_eq!(r.audits("pairing.refused").await, 1);
}
