//! The pairing desk (SPEC "MQTT pairing protocol" v2): where `pair` sessions' requests
//! wait for the owner, and where the owner's setup code meets the device's exchange.
//!
//! Owns: the pending requests (in memory, bounded: [`MAX_PENDING`] in all,
//! [`MAX_PER_ADDRESS`] per peer address, one per session, a request from a session at most
//! every [`REQUEST_EVERY`], expiry on a timer after the policy's TTL or when the session
//! ends), competing requests for one device id (all kept and listed, never replaced), the
//! hub side of each exchange (challenge → the device's confirm or abort within
//! [`ANSWER_WAIT`] → sealed credentials or a rejection counted as a wrong code), and the
//! audit of it (one `pairing.requested` per session).
//!
//! The MQTT front end hands it `pair` sessions through [`PairDesk`]; the web's owner
//! confirms through [`Desk::confirm`]. Lock-outs and paired devices are the store's
//! (`pairing_lock`, `wrong_setup_code`, `complete_pairing`). May not touch: SQL, the
//! broker, sockets. Payloads are parsed only by [`crate::pairing`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::PairingPolicy;
use super::auth;
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::RateLog;
use crate::mqtt::{PairDesk, PairSession};
use crate::pairing::{self, Credentials, DeviceMessage, HubExchange, Request, Response};
use crate::shutdown::Shutdown;
use crate::store::{NewDevice, Store, WrongCode};

/// Pending requests held in all.
pub const MAX_PENDING: usize = 32;
/// Pending requests held per peer address.
pub const MAX_PER_ADDRESS: usize = 3;
/// A session's requests (and refused payloads) count at most this often; more are dropped.
pub const REQUEST_EVERY: Duration = Duration::from_secs(2);
/// How long the hub waits for the device's confirm or abort after its challenge.
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);
/// How long a confirm waits for the fresh request of a device told "rejected" just before.
pub const FRESH_WAIT: Duration = Duration::from_secs(5);
/// How often timers (expiry, answer and fresh-request waits) are looked at, in real time.
const TICK: Duration = Duration::from_millis(200);
/// Requests waiting for their store checks; more are dropped (sessions are rate-limited,
/// so this fills only if the store stalls).
const WORK_QUEUE: usize = 256;

/// A request waiting for the owner, as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub device_id: String,
    /// Names this request among competing ones for the same device id.
    pub request_id: String,
    pub kind: String,
    pub model: String,
    pub firmware: String,
    /// The address its session comes from.
    pub peer: IpAddr,
    pub received_ms: i64,
    pub expires_ms: i64,
    /// Another session asks for the same device id.
    pub competing: bool,
}

/// What the desk is built on.
pub struct DeskParts {
    pub store: Store,
    pub clock: Clock,
    /// Lowercase hex SHA-256 of the hub's certificate (DER), as devices pin it: the
    /// exchange binds the hub's identity to it.
    pub fingerprint: String,
    pub policy: PairingPolicy,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct DeskCounters {
    /// Payloads that were not a valid pairing message.
    pub payloads_rejected: AtomicU64,
    pub pairings_accepted: AtomicU64,
    /// Requests refused (locked, paired, taken, over a bound) and exchanges that failed.
    pub pairings_rejected: AtomicU64,
    /// Messages dropped by the per-session rate.
    pub requests_dropped: AtomicU64,
}

/// The device's answer to a challenge, or why none will come.
#[derive(Debug)]
enum Answer {
    Confirm([u8; 32]),
    Abort(String),
    Timeout,
    /// The session ended.
    Closed,
    /// The device sent a new request instead of answering.
    Restarted,
}

struct Session {
    device_id: String,
    peer: IpAddr,
    out: mpsc::Sender<Vec<u8>>,
    /// Monotonic time of the last message that counted against the rate.
    last_counted: Option<Duration>,
    /// `pairing.requested` (or `pairing.refused`) was written for this session.
    audited: bool,
}

struct Exchange {
    deadline: Duration,
    answer: oneshot::Sender<Answer>,
}

/// A confirm waiting for the device's fresh request.
struct Waiter {
    deadline: Duration,
    wake: oneshot::Sender<bool>,
}

struct Entry {
    session: u64,
    request_id: String,
    device_id: String,
    kind: String,
    model: String,
    firmware: String,
    peer: IpAddr,
    received_ms: i64,
    /// Monotonic arrival, for expiry and "oldest".
    arrived: Duration,
    /// The device's current exchange message; taken by a confirm, and brought again by the
    /// device's fresh request after a rejection.
    request: Option<Request>,
    exchange: Option<Exchange>,
    fresh: Vec<Waiter>,
}

impl Entry {
    /// In the middle of something the owner started: never evicted or expired under it.
    fn busy(&self) -> bool {
        self.exchange.is_some() || !self.fresh.is_empty()
    }
}

#[derive(Default)]
struct State {
    sessions: HashMap<u64, Session>,
    /// At most [`MAX_PENDING`], at most one per session.
    entries: Vec<Entry>,
}

impl State {
    fn entry_of(&mut self, session: u64) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.session == session)
    }

    fn on_address(&self, peer: IpAddr) -> usize {
        self.entries.iter().filter(|e| e.peer == peer).count()
    }
}

enum Work {
    Request { session: u64, req: Request },
}

/// The hub's pairing desk. Cheap to share (`Arc`); its task ends on the hub's stop.
pub struct Desk {
    store: Store,
    clock: Clock,
    fingerprint: String,
    policy: PairingPolicy,
    state: Mutex<State>,
    work: mpsc::Sender<Work>,
    pub counters: DeskCounters,
    refused_log: RateLog,
    dropped_log: RateLog,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

enum Checked {
    Fine,
    Locked(i64),
    Paired,
    Taken,
}

impl Desk {
    /// A desk and the task that checks requests against the store and runs its timers;
    /// the task ends when `stop` fires ([`Desk::stopped`] waits for it). Must be called
    /// inside the hub's tokio runtime.
    pub fn new(parts: DeskParts, stop: Shutdown) -> Arc<Desk> {
        let DeskParts { store, clock, fingerprint, policy } = parts;
        let (work, rx) = mpsc::channel(WORK_QUEUE);
        let desk = Arc::new(Desk {
            store,
            clock,
            fingerprint,
            policy,
            state: Mutex::new(State::default()),
            work,
            counters: DeskCounters::default(),
            refused_log: RateLog::default(),
            dropped_log: RateLog::default(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(desk.clone().serve(rx, stop));
        *crate::sync::lock(&desk.task) = Some(task);
        desk
    }

    /// Resolves once the desk's task has ended (after the stop).
    pub async fn stopped(&self) {
        let task = crate::sync::lock(&self.task).take();
        if let Some(t) = task
            && let Err(e) = t.await
        {
            tracing::error!(error = %e, "pairing desk task ended abnormally");
        }
    }

    async fn serve(self: Arc<Self>, mut rx: mpsc::Receiver<Work>, stop: Shutdown) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                w = rx.recv() => match w {
                    Some(Work::Request { session, req }) => self.admit(session, req).await,
                    None => break,
                },
                _ = tick.tick() => self.sweep(),
                _ = stop.wait() => break,
            }
        }
        // Waiting confirms learn that the sessions are gone.
        let mut st = self.state();
        for e in st.entries.iter_mut() {
            if let Some(x) = e.exchange.take() {
                let _ = x.answer.send(Answer::Closed);
            }
        }
        st.entries.clear();
        st.sessions.clear();
    }

    /// The in-memory state; a panic elsewhere never takes pairing down with it.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    fn now(&self) -> Duration {
        self.clock.monotonic()
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.policy.ttl_ms).unwrap_or(0))
    }

    /// Requests held now, expired or not yet swept (for tests of the timer).
    pub fn held(&self) -> usize {
        self.state().entries.len()
    }

    /// Timers: expired requests go (the device is told), answers not given in time and
    /// fresh requests not sent in time are given up.
    fn sweep(&self) {
        let now = self.now();
        let ttl = self.ttl();
        let mut st = self.state();
        let mut expired = Vec::new();
        for e in st.entries.iter_mut() {
            if e.exchange.as_ref().is_some_and(|x| now >= x.deadline)
                && let Some(x) = e.exchange.take()
            {
                let _ = x.answer.send(Answer::Timeout);
            }
            let (due, waiting): (Vec<Waiter>, Vec<Waiter>) =
                std::mem::take(&mut e.fresh).into_iter().partition(|w| now >= w.deadline);
            e.fresh = waiting;
            for w in due {
                let _ = w.wake.send(false);
            }
            if !e.busy() && now >= e.arrived + ttl {
                expired.push(e.session);
            }
        }
        for session in expired {
            if let Some(i) = st.entries.iter().position(|e| e.session == session) {
                let e = st.entries.remove(i);
                tracing::info!(device = %e.device_id, peer = %e.peer, "pairing request expired");
                if let Some(s) = st.sessions.get(&session) {
                    tell(&s.out, &Response::Rejected { reason: "pairing request expired; ask again".into() });
                }
            }
        }
    }

    /// A valid request from `session`, checked against the store and the bounds.
    async fn admit(&self, session: u64, req: Request) {
        let id = req.device_id.clone();
        let now_ms = self.clock.now_ms();
        let checked = self
            .store
            .call(move |db| {
                if let Some(until) = db.pairing_lock(&id, now_ms)? {
                    return Ok(Checked::Locked(until));
                }
                if db.device_password_hash(&id)?.is_some() {
                    return Ok(Checked::Paired);
                }
                if db.mqtt_user(&id)?.is_some() {
                    return Ok(Checked::Taken);
                }
                Ok(Checked::Fine)
            })
            .await;
        let refusal = match checked {
            Err(e) => {
                tracing::error!(error = %e, device = %req.device_id, "pairing request: cannot ask the store");
                Some("the hub cannot take requests now; ask again later".to_string())
            }
            Ok(Checked::Locked(until)) => {
                let minutes = (until - now_ms + 59_999) / 60_000;
                Some(format!("too many wrong setup codes; locked for {minutes} more minutes"))
            }
            Ok(Checked::Paired) => Some("already paired; unpair it first".into()),
            Ok(Checked::Taken) => Some("device id is taken".into()),
            Ok(Checked::Fine) => None,
        };
        let audit = match refusal {
            Some(reason) => self.refuse(session, &req.device_id, reason),
            None => self.hold(session, req),
        };
        if let Some((action, detail)) = audit {
            self.audit("device", action, detail).await;
        }
    }

    /// Refuses a request; the audit line to write, once per session.
    fn refuse(&self, session: u64, device_id: &str, reason: String) -> Option<(&'static str, String)> {
        self.counters.pairings_rejected.fetch_add(1, Ordering::Relaxed);
        let mut st = self.state();
        let s = st.sessions.get_mut(&session)?;
        tell(&s.out, &Response::Rejected { reason: reason.clone() });
        tracing::info!(device = %device_id, peer = %s.peer, %reason, "pairing request refused");
        let first = !std::mem::replace(&mut s.audited, true);
        first.then(|| ("pairing.refused", format!("{device_id} from {}: {reason}", s.peer)))
    }

    /// Holds a checked request under the bounds; the audit line to write, once per session.
    fn hold(&self, session: u64, req: Request) -> Option<(&'static str, String)> {
        let now = self.now();
        let mut guard = self.state();
        let st = &mut *guard;
        let peer = st.sessions.get(&session)?.peer;
        if let Some(e) = st.entry_of(session) {
            // The same session asks again (a fresh exchange after a rejection, or the
            // device started over): its entry takes the new message.
            if let Some(x) = e.exchange.take() {
                let _ = x.answer.send(Answer::Restarted);
            }
            e.kind.clone_from(&req.kind);
            e.model.clone_from(&req.model);
            e.firmware.clone_from(&req.firmware);
            e.request = Some(req);
            // A new arrival: it waits its TTL from now (a session lives 15 minutes at most,
            // so this keeps no request beyond that).
            e.arrived = now;
            e.received_ms = self.clock.now_ms();
            for w in e.fresh.drain(..) {
                let _ = w.wake.send(true);
            }
            return None;
        }
        if st.on_address(peer) >= MAX_PER_ADDRESS {
            drop(guard);
            let reason = format!("{peer} holds {MAX_PER_ADDRESS} pairing requests already");
            self.refused_log.warn(&format!("pairing request refused: {reason}"));
            return self.refuse(session, &req.device_id, reason);
        }
        if st.entries.len() >= MAX_PENDING {
            match evictable(st, peer) {
                Some(i) => {
                    let e = st.entries.remove(i);
                    self.refused_log.warn(&format!(
                        "pairing requests: {MAX_PENDING} held; the oldest from {} ({}) made room for one from {peer}",
                        e.peer, e.device_id
                    ));
                    if let Some(s) = st.sessions.get(&e.session) {
                        tell(&s.out, &Response::Rejected { reason: "pushed out by newer pairing requests".into() });
                    }
                }
                None => {
                    drop(guard);
                    let reason = format!("the hub holds {MAX_PENDING} pairing requests; ask again later");
                    self.refused_log.warn(&format!("pairing request from {peer} refused: {reason}"));
                    return self.refuse(session, &req.device_id, reason);
                }
            }
        }
        let competing = st.entries.iter().filter(|e| e.device_id == req.device_id).count();
        let e = Entry {
            session,
            request_id: session.to_string(),
            device_id: req.device_id.clone(),
            kind: req.kind.clone(),
            model: req.model.clone(),
            firmware: req.firmware.clone(),
            peer,
            received_ms: self.clock.now_ms(),
            arrived: now,
            request: Some(req),
            exchange: None,
            fresh: Vec::new(),
        };
        if competing > 0 {
            tracing::warn!(device = %e.device_id, %peer, others = competing, "competing pairing request: the owner sees both");
        } else {
            tracing::info!(device = %e.device_id, model = %e.model, %peer, "pairing request waits for the owner");
        }
        let detail = format!("{} ({} {}) from {peer}", e.device_id, e.kind, e.model);
        st.entries.push(e);
        let s = st.sessions.get_mut(&session)?;
        let first = !std::mem::replace(&mut s.audited, true);
        first.then_some(("pairing.requested", detail))
    }

    async fn audit(&self, actor: &str, action: &'static str, detail: String) {
        let (actor, now) = (actor.to_string(), self.clock.now_ms());
        if let Err(e) = self.store.call(move |db| db.audit(&actor, action, &detail, now)).await {
            tracing::error!(error = %e, action, "cannot write audit");
        }
    }

    // ---- what the owner does (web API) ----

    /// The requests waiting now, oldest first.
    pub fn pending(&self) -> Vec<Pending> {
        let (now, ttl_ms) = (self.now(), self.policy.ttl_ms);
        let ttl = self.ttl();
        let st = self.state();
        st.entries
            .iter()
            .filter(|e| e.busy() || now < e.arrived + ttl)
            .map(|e| Pending {
                device_id: e.device_id.clone(),
                request_id: e.request_id.clone(),
                kind: e.kind.clone(),
                model: e.model.clone(),
                firmware: e.firmware.clone(),
                peer: e.peer,
                received_ms: e.received_ms,
                expires_ms: e.received_ms + ttl_ms,
                competing: st.entries.iter().any(|o| o.device_id == e.device_id && o.session != e.session),
            })
            .collect()
    }

    /// The owner typed `setup_code` for `device_id` (for the request `request_id` when
    /// several compete). Runs the exchange with the device and answers once it is over:
    /// Ok when paired; Forbidden for a wrong code (counted) or a lock-out; NotFound when no
    /// such request waits; Conflict when the request must be named, or cannot be used now.
    /// The exchange goes on if the caller stops waiting.
    pub async fn confirm(
        self: &Arc<Self>,
        device_id: &str,
        setup_code: &str,
        request_id: Option<&str>,
        actor: &str,
    ) -> Result<()> {
        let desk = self.clone();
        let (id, code, rid, actor) =
            (device_id.to_string(), setup_code.to_string(), request_id.map(str::to_string), actor.to_string());
        tokio::spawn(async move { desk.run_confirm(&id, &code, rid.as_deref(), &actor).await })
            .await
            .map_err(|e| Error::internal(format!("pairing {device_id}: {e}")))?
    }

    async fn run_confirm(&self, device_id: &str, setup_code: &str, request_id: Option<&str>, actor: &str) -> Result<()> {
        pairing::check_setup_code(setup_code).map_err(|e| Error::invalid(format!("setup_code: {e}")))?;
        let (id, now_ms) = (device_id.to_string(), self.clock.now_ms());
        if self.store.call(move |db| db.pairing_lock(&id, now_ms)).await?.is_some() {
            return Err(Error::new(ErrorKind::Forbidden, format!("{device_id}: too many wrong setup codes; try again later")));
        }
        let (session, rid, hub, answer) = self.start_exchange(device_id, setup_code, request_id).await?;
        let answer = answer.await.unwrap_or(Answer::Closed);
        match answer {
            Answer::Confirm(c) if hub.verify(&c) => {}
            Answer::Confirm(_) => {
                return Err(self.failed(session, device_id, "the device's confirm does not match", actor).await);
            }
            Answer::Abort(r) => {
                let reason = format!("the device aborted: {}", shown(&r));
                return Err(self.failed(session, device_id, &reason, actor).await);
            }
            Answer::Timeout => {
                let reason = format!("no answer from the device within {} s", ANSWER_WAIT.as_secs());
                return Err(self.failed(session, device_id, &reason, actor).await);
            }
            Answer::Closed => return Err(self.failed(session, device_id, "the device went away", actor).await),
            Answer::Restarted => {
                return Err(self.failed(session, device_id, "the device started over instead of answering", actor).await);
            }
        }
        self.accept(session, &rid, device_id, hub, actor).await
    }

    /// Picks the request, waits for a fresh exchange message if the last one was used, and
    /// sends the challenge. Returns the session, the request id, the exchange and where
    /// the device's answer will come.
    async fn start_exchange(
        &self,
        device_id: &str,
        setup_code: &str,
        request_id: Option<&str>,
    ) -> Result<(u64, String, HubExchange, oneshot::Receiver<Answer>)> {
        let mut waited = false;
        loop {
            let fresh = {
                let mut guard = self.state();
                let st = &mut *guard;
                let i = self.pick(st, device_id, request_id)?;
                let e = &mut st.entries[i];
                if e.exchange.is_some() {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("a setup code for {device_id} is being checked; wait for its answer"),
                    ));
                }
                match e.request.take() {
                    Some(req) => {
                        let (session, rid) = (e.session, e.request_id.clone());
                        let (hub, challenge) = match HubExchange::start(&req, setup_code, &self.fingerprint) {
                            Ok(x) => x,
                            Err(r) => {
                                // Not a valid exchange message: nothing to answer with.
                                let e = st.entries.remove(i);
                                if let Some(s) = st.sessions.get(&e.session) {
                                    tell(&s.out, &Response::Rejected { reason: format!("bad request: {r}") });
                                }
                                self.counters.payloads_rejected.fetch_add(1, Ordering::Relaxed);
                                return Err(Error::new(
                                    ErrorKind::Conflict,
                                    format!("the request of {device_id} is not valid ({r}); it must ask again"),
                                ));
                            }
                        };
                        let Some(s) = st.sessions.get(&session) else {
                            return Err(Error::not_found(format!("{device_id} went away")));
                        };
                        if s.out.try_send(challenge.to_json().into_bytes()).is_err() {
                            return Err(Error::new(
                                ErrorKind::Conflict,
                                format!("{device_id} does not read its answers; try again"),
                            ));
                        }
                        let (tx, rx) = oneshot::channel();
                        let e = &mut st.entries[i];
                        e.exchange = Some(Exchange { deadline: self.now() + ANSWER_WAIT, answer: tx });
                        return Ok((session, rid, hub, rx));
                    }
                    None if waited => {
                        return Err(Error::new(
                            ErrorKind::Conflict,
                            format!("{device_id} has not asked again since its last answer; try again in a moment"),
                        ));
                    }
                    None => {
                        let (tx, rx) = oneshot::channel();
                        e.fresh.push(Waiter { deadline: self.now() + FRESH_WAIT, wake: tx });
                        rx
                    }
                }
            };
            waited = true;
            let _ = fresh.await;
        }
    }

    /// The index of the request a confirm means.
    fn pick(&self, st: &State, device_id: &str, request_id: Option<&str>) -> Result<usize> {
        let (now, ttl) = (self.now(), self.ttl());
        let live = |e: &Entry| e.device_id == device_id && (e.busy() || now < e.arrived + ttl);
        let minutes = self.policy.ttl_ms / 60_000;
        let none =
            || Error::not_found(format!("no pending pairing request from {device_id:?} (they expire after {minutes} minutes)"));
        let found: Vec<usize> = st.entries.iter().enumerate().filter(|(_, e)| live(e)).map(|(i, _)| i).collect();
        match request_id {
            Some(rid) => found.into_iter().find(|&i| st.entries[i].request_id == rid).ok_or_else(|| {
                Error::not_found(format!("no pending pairing request {rid:?} for {device_id:?} (it may have expired)"))
            }),
            None => match found.as_slice() {
                [] => Err(none()),
                [i] => Ok(*i),
                many => {
                    let from: Vec<String> = many.iter().map(|&i| st.entries[i].peer.to_string()).collect();
                    Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "{} requests for {device_id} — from {}: only pair the one you recognise (name its request)",
                            many.len(),
                            from.join(", ")
                        ),
                    ))
                }
            },
        }
    }

    /// The device proved it holds the same code: credentials are issued, sealed for it.
    async fn accept(&self, session: u64, rid: &str, device_id: &str, hub: HubExchange, actor: &str) -> Result<()> {
        let (device, peer) = {
            let mut st = self.state();
            let Some(e) = st.entry_of(session) else {
                return Err(Error::not_found(format!("{device_id} went away before it was paired")));
            };
            e.exchange = None;
            let d =
                NewDevice { id: e.device_id.clone(), kind: e.kind.clone(), model: e.model.clone(), firmware: e.firmware.clone() };
            (d, e.peer)
        };
        let password = pairing::new_password();
        let creds = Credentials { username: device_id.to_string(), password };
        let hash = auth::digest(creds.password.as_bytes());
        let now = self.clock.now_ms();
        self.store.call(move |db| db.complete_pairing(&device, &hash, now)).await?;
        let sealed = hub.accept(&creds);
        {
            let mut st = self.state();
            if let Some(s) = st.sessions.get(&session) {
                tell(&s.out, &sealed);
            }
            // Competing requests for the id are answered too: it is paired now.
            let others: Vec<u64> =
                st.entries.iter().filter(|e| e.device_id == device_id && e.session != session).map(|e| e.session).collect();
            st.entries.retain(|e| e.device_id != device_id);
            for o in others {
                if let Some(s) = st.sessions.get(&o) {
                    tell(&s.out, &Response::Rejected { reason: "paired through another connection".into() });
                }
            }
        }
        self.counters.pairings_accepted.fetch_add(1, Ordering::Relaxed);
        tracing::info!(device = %device_id, %peer, request = rid, by = %actor, "device paired");
        self.audit(actor, "pairing.accepted", format!("{device_id} from {peer}")).await;
        Ok(())
    }

    /// An exchange that did not end in a valid confirm: the device is told, a wrong code is
    /// counted (the fifth locks the id and drops its requests); the error for the owner.
    async fn failed(&self, session: u64, device_id: &str, why: &str, actor: &str) -> Error {
        self.counters.pairings_rejected.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now_ms();
        let (id, PairingPolicy { max_wrong_codes: max, lockout_ms, .. }) = (device_id.to_string(), self.policy);
        let counted = self.store.call(move |db| db.wrong_setup_code(&id, now, max, lockout_ms)).await;
        tracing::info!(device = %device_id, reason = why, "pairing exchange failed");
        match counted {
            Ok(WrongCode::Counted(n)) => {
                {
                    let mut st = self.state();
                    if let Some(e) = st.entry_of(session) {
                        e.exchange = None;
                    }
                    if let Some(s) = st.sessions.get(&session) {
                        tell(&s.out, &Response::Rejected { reason: format!("wrong setup code: {why}") });
                    }
                }
                self.audit(actor, "pairing.wrong_code", format!("{device_id} ({n} of {max}): {why}")).await;
                Error::new(ErrorKind::Forbidden, format!("wrong setup code for {device_id} ({n} of {max})"))
            }
            Ok(WrongCode::Locked { .. }) => {
                let minutes = lockout_ms / 60_000;
                {
                    let mut st = self.state();
                    let gone: Vec<u64> = st.entries.iter().filter(|e| e.device_id == device_id).map(|e| e.session).collect();
                    st.entries.retain(|e| e.device_id != device_id);
                    for g in gone {
                        if let Some(s) = st.sessions.get(&g) {
                            tell(&s.out, &Response::Rejected { reason: "too many wrong setup codes".into() });
                        }
                    }
                }
                self.audit(actor, "pairing.locked", format!("{device_id} for {minutes} minutes")).await;
                tracing::warn!(device = %device_id, "too many wrong setup codes: device id locked");
                Error::new(ErrorKind::Forbidden, format!("wrong setup code; {device_id} is locked for {minutes} minutes"))
            }
            Err(e) => {
                let mut st = self.state();
                if let Some(e) = st.entry_of(session) {
                    e.exchange = None;
                }
                e
            }
        }
    }
}

/// The oldest request that may make room for one from `peer`: from the address holding
/// most (and more than `peer` holds), never one the owner is in the middle of.
fn evictable(st: &State, peer: IpAddr) -> Option<usize> {
    let mut counts: HashMap<IpAddr, usize> = HashMap::new();
    for e in st.entries.iter().filter(|e| !e.busy()) {
        *counts.entry(e.peer).or_default() += 1;
    }
    let mine = st.on_address(peer);
    let (&worst, &most) = counts.iter().max_by_key(|&(ip, n)| (*n, std::cmp::Reverse(oldest_on(st, *ip))))?;
    if most <= mine {
        return None;
    }
    st.entries.iter().enumerate().filter(|(_, e)| e.peer == worst && !e.busy()).min_by_key(|(_, e)| e.arrived).map(|(i, _)| i)
}

fn oldest_on(st: &State, ip: IpAddr) -> Duration {
    st.entries.iter().filter(|e| e.peer == ip).map(|e| e.arrived).min().unwrap_or_default()
}

/// Publishes an answer to a session; a full queue means it does not read, and it is dropped.
fn tell(out: &mpsc::Sender<Vec<u8>>, r: &Response) {
    let _ = out.try_send(r.to_json().into_bytes());
}

/// Untrusted text for a log line or a message: escaped and cut short.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

impl PairDesk for Desk {
    fn opened(&self, session: PairSession) {
        let PairSession { id, device_id, peer, out } = session;
        self.state().sessions.insert(id, Session { device_id, peer: peer.ip(), out, last_counted: None, audited: false });
    }

    fn message(&self, session_id: u64, payload: bytes::Bytes) {
        let parsed = pairing::parse_device_message(&payload);
        let now = self.now();
        let mut guard = self.state();
        let st = &mut *guard;
        let Some(s) = st.sessions.get_mut(&session_id) else { return };
        let answer = match parsed {
            Ok(DeviceMessage::Confirm(c)) => Answer::Confirm(c),
            Ok(DeviceMessage::Abort(r)) => Answer::Abort(r),
            Ok(DeviceMessage::Request(req)) => {
                // A fresh request that the hub waits for (after its rejection) is never
                // held back by the rate.
                let awaited = st.entries.iter().any(|e| e.session == session_id && e.request.is_none() && e.exchange.is_none());
                if !awaited && s.last_counted.is_some_and(|t| now < t + REQUEST_EVERY) {
                    self.counters.requests_dropped.fetch_add(1, Ordering::Relaxed);
                    self.dropped_log.warn(&format!("pairing: {} sends requests faster than one per 2 s; dropping", s.device_id));
                    return;
                }
                s.last_counted = Some(now);
                let refusal = if req.device_id != s.device_id {
                    Some("bad request: device_id is not the client id")
                } else if req.device_id == pairing::PAIR_USERNAME {
                    Some("bad request: device id is reserved")
                } else {
                    None
                };
                if let Some(reason) = refusal {
                    self.counters.payloads_rejected.fetch_add(1, Ordering::Relaxed);
                    self.refused_log.warn(&format!("pairing request refused: {}: {reason}", s.device_id));
                    tell(&s.out, &Response::Rejected { reason: reason.into() });
                    return;
                }
                let device_id = s.device_id.clone();
                drop(guard);
                if self.work.try_send(Work::Request { session: session_id, req }).is_err() {
                    self.counters.requests_dropped.fetch_add(1, Ordering::Relaxed);
                    self.dropped_log.warn(&format!("pairing: request of {device_id} dropped: the desk is behind"));
                }
                return;
            }
            Err(r) => {
                if s.last_counted.is_some_and(|t| now < t + REQUEST_EVERY) {
                    self.counters.requests_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                s.last_counted = Some(now);
                self.counters.payloads_rejected.fetch_add(1, Ordering::Relaxed);
                self.refused_log.warn(&format!("pairing request refused: {}: {r}", s.device_id));
                tell(&s.out, &Response::Rejected { reason: format!("bad request: {r}") });
                return;
            }
        };
        let device_id = s.device_id.clone();
        match st.entry_of(session_id).and_then(|e| e.exchange.take()) {
            Some(x) => {
                let _ = x.answer.send(answer);
            }
            None => tracing::debug!(device = %device_id, "pairing answer without a challenge: ignored"),
        }
    }

    fn closed(&self, session_id: u64) {
        let mut st = self.state();
        st.sessions.remove(&session_id);
        if let Some(i) = st.entries.iter().position(|e| e.session == session_id) {
            let mut e = st.entries.remove(i);
            if let Some(x) = e.exchange.take() {
                let _ = x.answer.send(Answer::Closed);
            }
            for w in e.fresh.drain(..) {
                let _ = w.wake.send(false);
            }
            tracing::debug!(device = %e.device_id, "pairing session closed: its request goes");
        }
    }
}

#[cfg(test)]
mod tests;
