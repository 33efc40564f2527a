//! The network-facing side: listeners, one task per connection, the caps taken at accept
//! (descriptor slots, connections per address), the registry of live logins (revocation,
//! peers, clean-session slots, persistent ids) and the counters behind [`super::Stats`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::broker::Broker;
use super::{Authenticator, PairDesk, Settings, Stats, login, pair, relay};
use crate::limits::{AddressSlot, Descriptors, PerAddress, RateLog, Slot};
use crate::shutdown::Shutdown;

/// Most client connections the front end holds at once (logged in or still logging in).
pub const MAX_CLIENTS: usize = 1024;

/// Time from accepting a socket to having its CONNECT (TLS handshake included).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection task shares.
pub struct Shared {
    pub broker: Broker,
    pub auth: Arc<dyn Authenticator>,
    pub max_packet_bytes: usize,
    pub counters: Counters,
    pub registry: Registry,
    /// Where `pair` sessions go; until set, `pair` logins get CONNACK 0x03.
    pub pair_desk: OnceLock<Arc<dyn PairDesk>>,
    /// `pair` sessions per address and in all.
    pub pair_per_address: Arc<PerAddress>,
    pub pair_total: Arc<Semaphore>,
    /// Numbers `PairSession::id`.
    pub next_pair_id: AtomicU64,
    /// [`super::PAIR_MAX_LIFETIME`], shorter in tests (milliseconds).
    pair_lifetime_ms: AtomicU64,
    pub descriptors: Descriptors,
    clients: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    pub unauthenticated: Arc<PerAddress>,
    allow_public_clients: bool,
    lan_log: RateLog,
    full_log: RateLog,
}

impl Shared {
    pub fn new(broker: Broker, auth: Arc<dyn Authenticator>, settings: &Settings) -> Shared {
        Shared {
            broker,
            auth,
            max_packet_bytes: settings.max_packet_bytes,
            counters: Counters::default(),
            registry: Registry::default(),
            pair_desk: OnceLock::new(),
            pair_per_address: PerAddress::new(super::PAIR_MAX_PER_ADDRESS, "MQTT pairing"),
            pair_total: Arc::new(Semaphore::new(super::PAIR_MAX_TOTAL)),
            next_pair_id: AtomicU64::new(0),
            pair_lifetime_ms: AtomicU64::new(super::PAIR_MAX_LIFETIME.as_millis() as u64),
            descriptors: settings.descriptors.clone(),
            clients: Arc::new(Semaphore::new(MAX_CLIENTS)),
            per_address: PerAddress::new(super::MAX_CONNECTIONS_PER_ADDRESS, "MQTT"),
            unauthenticated: PerAddress::new(super::MAX_UNAUTHENTICATED_PER_ADDRESS, "MQTT (not logged in)"),
            allow_public_clients: settings.allow_public_clients,
            lan_log: RateLog::default(),
            full_log: RateLog::default(),
        }
    }

    pub fn pair_lifetime(&self) -> Duration {
        Duration::from_millis(self.pair_lifetime_ms.load(Ordering::Relaxed))
    }

    /// Tests shorten the lifetime of `pair` sessions opened from now on.
    #[cfg(test)]
    pub fn set_pair_lifetime(&self, d: Duration) {
        self.pair_lifetime_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct Counters {
    pub connections_total: AtomicU64,
    pub refused_total: AtomicU64,
    pub live: AtomicU64,
    pub denied_publish_total: AtomicU64,
    pub denied_subscribe_total: AtomicU64,
    pub malformed_total: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            connections_total: get(&self.connections_total),
            refused_total: get(&self.refused_total),
            live: get(&self.live),
            denied_publish_total: get(&self.denied_publish_total),
            denied_subscribe_total: get(&self.denied_subscribe_total),
            malformed_total: get(&self.malformed_total),
        }
    }
}

/// Live logins by username, each with the switch that ends it, where it comes from and
/// its clean-session slot; and the persistent client ids each login has used.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

struct Conn {
    switch: oneshot::Sender<()>,
    ip: IpAddr,
    /// Clean sessions only: the slot and the client id it stands for.
    slot: Option<(u32, String)>,
}

#[derive(Default)]
struct RegistryInner {
    live: HashMap<String, HashMap<u64, Conn>>,
    next_id: u64,
    /// Counts every `revoke`; `revoked_at[user]` is the count after that user's last one.
    revocations: u64,
    revoked_at: HashMap<String, u64>,
    /// Persistent client ids per login, at most [`super::MAX_PERSISTENT_IDS`] each.
    persistent: HashMap<String, Vec<String>>,
    /// Every broker-side client id handed out (tests check that they do not pile up).
    #[cfg(test)]
    broker_ids: HashSet<String>,
}

/// What kind of session a login asks for, which decides its broker-side client id.
pub enum SessionKind<'a> {
    /// clean_session = true, with this client id: a reused slot number.
    Clean(&'a str),
    /// clean_session = false: its own client id, one of a bounded few per login.
    Persistent(&'a str),
    /// A `pair` session: no broker side at all.
    Pair,
}

/// Why [`Registration::new`] refused.
pub enum NotRegistered {
    /// The user was revoked since the mark.
    Revoked,
    /// The login already has its [`super::MAX_PERSISTENT_IDS`] persistent client ids.
    TooManyPersistentIds,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryInner> {
        // Every change below is a single map operation: a panic elsewhere cannot leave the
        // registry half-changed, so a poisoned lock is still good to use.
        crate::sync::lock(&self.inner)
    }

    /// A mark to take before asking the authenticator: a login registered with it is refused
    /// if its user was revoked after the mark (the store may have said yes just before).
    pub fn mark(&self) -> u64 {
        self.lock().revocations
    }

    /// Ends every live connection of `username`; returns how many there were. The login's
    /// persistent ids are forgotten too.
    pub fn revoke(&self, username: &str) -> usize {
        let conns = {
            let mut inner = self.lock();
            inner.revocations += 1;
            let now = inner.revocations;
            inner.revoked_at.insert(username.to_string(), now);
            inner.persistent.remove(username);
            inner.live.remove(username).unwrap_or_default()
        };
        let n = conns.len();
        for (_, c) in conns {
            let _ = c.switch.send(());
        }
        n
    }

    /// The distinct addresses `username`'s live connections come from.
    pub fn peers(&self, username: &str) -> Vec<IpAddr> {
        let inner = self.lock();
        let mut ips: Vec<IpAddr> = inner.live.get(username).map(|c| c.values().map(|c| c.ip).collect()).unwrap_or_default();
        ips.sort();
        ips.dedup();
        ips
    }

    /// Notes a broker-side client id (tests only).
    #[cfg(test)]
    pub fn note_broker_id(&self, id: &str) {
        self.lock().broker_ids.insert(id.to_string());
    }

    /// How many distinct broker-side client ids were ever handed out.
    #[cfg(test)]
    pub fn broker_ids_seen(&self) -> usize {
        self.lock().broker_ids.len()
    }
}

/// A login's place in the registry and in the `live` count; both undone on drop.
pub struct Registration {
    shared: Arc<Shared>,
    username: String,
    id: u64,
    /// The clean-session slot this connection holds (`SessionKind::Clean`).
    pub slot: Option<u32>,
}

impl Registration {
    /// Registers a live login; the receiver fires when it is revoked.
    pub fn new(
        shared: &Arc<Shared>,
        username: &str,
        mark: u64,
        ip: IpAddr,
        kind: SessionKind<'_>,
    ) -> Result<(Registration, oneshot::Receiver<()>), NotRegistered> {
        let (tx, rx) = oneshot::channel();
        let (id, slot) = {
            let mut inner = shared.registry.lock();
            if inner.revoked_at.get(username).is_some_and(|at| *at > mark) {
                return Err(NotRegistered::Revoked);
            }
            let slot = match kind {
                SessionKind::Pair => None,
                SessionKind::Clean(client_id) => {
                    let conns = inner.live.entry(username.to_string()).or_default();
                    // MQTT 3.1.1 §3.1.4-2: a client id already connected is taken over. The old
                    // connection ends (its will fires), the new one gets its slot, and rumqttd
                    // sees the same broker-side id, as a reconnecting device expects.
                    let same =
                        conns.iter().find(|(_, c)| c.slot.as_ref().is_some_and(|(_, id)| id == client_id)).map(|(k, _)| *k);
                    let slot = match same.and_then(|k| conns.remove(&k)) {
                        Some(old) => {
                            let slot = old.slot.as_ref().map(|(n, _)| *n);
                            let _ = old.switch.send(());
                            slot
                        }
                        None => {
                            let used: HashSet<u32> = conns.values().filter_map(|c| c.slot.as_ref().map(|(n, _)| *n)).collect();
                            (0..).find(|n| !used.contains(n))
                        }
                    };
                    slot.map(|n| (n, client_id.to_string()))
                }
                SessionKind::Persistent(client_id) => {
                    let ids = inner.persistent.entry(username.to_string()).or_default();
                    if !ids.iter().any(|i| i == client_id) {
                        if ids.len() >= super::MAX_PERSISTENT_IDS {
                            return Err(NotRegistered::TooManyPersistentIds);
                        }
                        ids.push(client_id.to_string());
                    }
                    None
                }
            };
            inner.next_id += 1;
            let id = inner.next_id;
            let number = slot.as_ref().map(|(n, _)| *n);
            inner.live.entry(username.to_string()).or_default().insert(id, Conn { switch: tx, ip, slot });
            (id, number)
        };
        Counters::bump(&shared.counters.live, 1);
        Ok((Registration { shared: shared.clone(), username: username.to_string(), id, slot }, rx))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.shared.registry.lock();
        if let Some(conns) = inner.live.get_mut(&self.username) {
            conns.remove(&self.id);
            if conns.is_empty() {
                inner.live.remove(&self.username);
            }
        }
        drop(inner);
        self.shared.counters.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a connection holds from its accept on: given back when it ends.
pub struct Held {
    _slot: Slot,
    _address: AddressSlot,
    _client: OwnedSemaphorePermit,
}

/// Accepts connections on `listener` until `stop`; each runs in its own task on `tasks`,
/// and each ends on `stop` too. A connection the caps refuse is closed at once.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>, stop: Shutdown, tasks: TaskTracker) {
    let kind = if tls.is_some() { "TLS" } else { "plain" };
    loop {
        let accepted = tokio::select! {
            _ = stop.wait() => break,
            a = listener.accept() => a,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, listener = kind, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some((held, unauthenticated)) = admit(&shared, peer) else { continue };
        let (tls, shared, stop) = (tls.clone(), shared.clone(), stop.clone());
        tasks.spawn(async move {
            connection(socket, peer, tls, shared, stop, unauthenticated).await;
            drop(held);
        });
    }
    tracing::debug!(listener = kind, "MQTT listener stopped");
}

/// The checks and caps of a fresh connection; None = close it now (each cap logs itself,
/// at most once a minute).
fn admit(shared: &Shared, peer: SocketAddr) -> Option<(Held, AddressSlot)> {
    if !shared.allow_public_clients && !crate::lan::is_lan(peer.ip()) {
        shared.lan_log.warn(&format!("MQTT connection from {peer} dropped: not on the local network (web.allow_public_clients)"));
        return None;
    }
    Counters::bump(&shared.counters.connections_total, 1);
    let address = shared.per_address.enter(peer.ip())?;
    let unauthenticated = shared.unauthenticated.enter(peer.ip())?;
    let slot = shared.descriptors.slots().take(1, "an MQTT connection")?;
    let Ok(client) = shared.clients.clone().try_acquire_owned() else {
        shared.full_log.warn(&format!("MQTT connection from {peer} dropped: {MAX_CLIENTS} clients already connected"));
        return None;
    };
    Some((Held { _slot: slot, _address: address, _client: client }, unauthenticated))
}

async fn connection(
    socket: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    stop: Shutdown,
    unauthenticated: AddressSlot,
) {
    let _ = socket.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    match tls {
        None => session(socket, peer, shared, stop, deadline, unauthenticated).await,
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(socket)).await {
            Ok(Ok(stream)) => session(stream, peer, shared, stop, deadline, unauthenticated).await,
            // Scanners and clients that do not trust us end here; not worth more than debug.
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "MQTT TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "MQTT TLS handshake timed out"),
        },
    }
}

async fn session<S: AsyncRead + AsyncWrite + Unpin + Send>(
    mut client: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: Shutdown,
    deadline: tokio::time::Instant,
    unauthenticated: AddressSlot,
) {
    let logged_in = tokio::select! {
        _ = stop.wait() => return,
        l = login::login(&mut client, peer, &shared, deadline) => l,
    };
    drop(unauthenticated);
    let l = match logged_in {
        None => return,
        Some(login::Login::Pair(p)) => return pair::run(client, peer, p, &shared, stop).await,
        Some(login::Login::Relay(l)) => l,
    };
    tracing::info!(%peer, user = %l.identity.username, client_id = %l.client_id, "MQTT client logged in");
    let end = relay::Relay::new(peer, &l.identity, &l.client_id, &shared)
        .run(
            relay::Link { stream: client, buf: l.client_buf },
            relay::Link { stream: l.broker, buf: l.broker_buf },
            l.keep_alive,
            l.revoked,
            stop,
        )
        .await;
    drop(l.registration);
    drop(l.broker_slot);
    let (user, client_id) = (&l.identity.username, &l.client_id);
    match end {
        relay::End::Malformed(_) => tracing::warn!(%peer, %user, %client_id, reason = %end, "MQTT client dropped"),
        _ => tracing::info!(%peer, %user, %client_id, reason = %end, "MQTT client left"),
    }
}
