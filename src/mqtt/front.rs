//! The network-facing side: listeners, one task per connection, the registry of live logins
//! (for revocation) and the counters behind [`super::Stats`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::broker::Broker;
use super::{Authenticator, Stats, login, relay};
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
    slots: Arc<Semaphore>,
    allow_public_clients: bool,
}

impl Shared {
    pub fn new(broker: Broker, auth: Arc<dyn Authenticator>, max_packet_bytes: usize, allow_public_clients: bool) -> Shared {
        Shared {
            broker,
            auth,
            max_packet_bytes,
            counters: Counters::default(),
            registry: Registry::default(),
            slots: Arc::new(Semaphore::new(MAX_CLIENTS)),
            allow_public_clients,
        }
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

/// Live logins by username, each with the switch that ends it.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    live: HashMap<String, HashMap<u64, oneshot::Sender<()>>>,
    next_id: u64,
    /// Counts every `revoke`; `revoked_at[user]` is the count after that user's last one.
    revocations: u64,
    revoked_at: HashMap<String, u64>,
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

    /// Ends every live connection of `username`; returns how many there were.
    pub fn revoke(&self, username: &str) -> usize {
        let switches = {
            let mut inner = self.lock();
            inner.revocations += 1;
            let now = inner.revocations;
            inner.revoked_at.insert(username.to_string(), now);
            inner.live.remove(username).unwrap_or_default()
        };
        let n = switches.len();
        for (_, s) in switches {
            let _ = s.send(());
        }
        n
    }
}

/// A login's place in the registry and in the `live` count; both undone on drop.
pub struct Registration {
    shared: Arc<Shared>,
    username: String,
    id: u64,
}

impl Registration {
    /// Registers a live login; the receiver fires when it is revoked. `None` when the user
    /// was revoked since `mark`.
    pub fn new(shared: &Arc<Shared>, username: &str, mark: u64) -> Option<(Registration, oneshot::Receiver<()>)> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut inner = shared.registry.lock();
            if inner.revoked_at.get(username).is_some_and(|at| *at > mark) {
                return None;
            }
            inner.next_id += 1;
            let id = inner.next_id;
            inner.live.entry(username.to_string()).or_default().insert(id, tx);
            id
        };
        Counters::bump(&shared.counters.live, 1);
        Some((Registration { shared: shared.clone(), username: username.to_string(), id }, rx))
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

/// Accepts connections on `listener` until `stop`; each runs in its own task on `tasks`,
/// and each ends on `stop` too.
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
        if !shared.allow_public_clients && !crate::lan::is_lan(peer.ip()) {
            tracing::warn!(%peer, "MQTT connection dropped: not on the local network (web.allow_public_clients)");
            continue;
        }
        Counters::bump(&shared.counters.connections_total, 1);
        let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "MQTT connection dropped: {MAX_CLIENTS} clients already connected");
            continue;
        };
        let (tls, shared, stop) = (tls.clone(), shared.clone(), stop.clone());
        tasks.spawn(async move {
            connection(socket, peer, tls, shared, stop).await;
            drop(slot);
        });
    }
    tracing::debug!(listener = kind, "MQTT listener stopped");
}

async fn connection(socket: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>, shared: Arc<Shared>, stop: Shutdown) {
    let _ = socket.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    match tls {
        None => session(socket, peer, shared, stop, deadline).await,
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(socket)).await {
            Ok(Ok(stream)) => session(stream, peer, shared, stop, deadline).await,
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
) {
    let logged_in = tokio::select! {
        _ = stop.wait() => return,
        l = login::login(&mut client, peer, &shared, deadline) => l,
    };
    let Some(l) = logged_in else { return };
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
    let (user, client_id) = (&l.identity.username, &l.client_id);
    match end {
        relay::End::Malformed(_) => tracing::warn!(%peer, %user, %client_id, reason = %end, "MQTT client dropped"),
        _ => tracing::info!(%peer, %user, %client_id, reason = %end, "MQTT client left"),
    }
}
