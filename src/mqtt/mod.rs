//! MQTT edge: an authorising front end (TLS with rustls, ACL per login) that relays to an
//! embedded rumqttd listening on loopback only.
//!
//! rumqttd has no per-topic ACLs, drops refused logins without a CONNACK and cannot serve
//! TLS to clients that connect by IP address, so the hub puts its own edge in front of it.
//!
//! What this module owns:
//! - [`broker`]: the embedded rumqttd on 127.0.0.1 with one login, `homehub-internal`, whose
//!   password is a random secret made at every start and kept only in memory;
//! - [`front`]/[`login`]/[`relay`]: the listeners on `mqtt.listen_tls` / `mqtt.listen_plain`,
//!   the login of each client through an [`Authenticator`], and the packet-by-packet relay;
//! - [`pair`]: `pair` logins, served by the front end itself and handed to a [`PairDesk`];
//! - the caps on what clients can make the hub hold: descriptor slots, connections per
//!   address, `pair` sessions, retained messages, broker-side client ids;
//! - [`acl`]: which topics a login may publish and subscribe to (pure);
//! - revocation ([`Mqtt::revoke`]) and the counters ([`Mqtt::stats`]);
//! - stopping: listeners and every connection task end on the hub's `Shutdown`, and
//!   [`Mqtt::stopped`] waits for them (the embedded rumqttd itself cannot be stopped).
//!
//! Invariants:
//! - Only the front end faces the network. rumqttd listens on loopback only and requires
//!   the in-memory secret; the front end never lets a client log in as the internal user.
//! - Every PUBLISH and SUBSCRIBE from a client, and every PUBLISH towards it, is checked
//!   against the login's [`Grants`]; denied ones are dropped and acknowledged as MQTT 3.1.1
//!   allows (SUBACK 0x80 per denied filter).
//! - A refused login always gets a CONNACK with a return code before the close.
//! - A client's session at the broker is keyed by both its username and its client id (a
//!   reused slot number for clean sessions), so one login can never take over another's
//!   session and unique client ids leave no state behind.
//! - `pair` logins never reach rumqttd; the broker keeps a retained message only on a
//!   topic of the login's `Grants::retain`, of at most [`MAX_RETAINED_PAYLOAD`] bytes.
//! - Any end of a connection other than the client's DISCONNECT closes the broker side
//!   without a DISCONNECT, so the client's will is published.
//!
//! It may not: run SQL or touch the store (who may log in, and to which topics, is the
//! [`Authenticator`]'s business), or parse message payloads.

mod acl;
mod broker;
mod front;
mod login;
mod pair;
mod relay;
mod wire;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

pub use acl::{Grants, MAX_RETAINED_PAYLOAD, may_publish, may_retain, may_subscribe};

use crate::error::{Error, ErrorKind, Result};
use crate::shutdown::Shutdown;

/// Who a client logged in as, and the topics that login may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub grants: Grants,
}

/// Why a login is refused; each is sent to the client as a CONNACK return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 0x02: identifier rejected.
    BadClientId,
    /// 0x03: server unavailable (e.g. the store could not be asked).
    Unavailable,
    /// 0x04: bad user name or password.
    BadCredentials,
    /// 0x05: not authorised.
    NotAuthorized,
}

/// What [`Authenticator::authenticate`] returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = std::result::Result<Identity, Refusal>> + Send + 'a>>;

/// Decides who may log in and with which grants. The hub's is `devices::auth::HubAuth`,
/// on top of the store; tests bring their own.
///
/// The front end checks the rest itself: the peer is on the home network (unless
/// `allow_public_clients`), MQTT 3.1.1 only, a client id of 1–256 bytes, a username
/// present (anonymous logins get 0x05 without a call, so `username` is `Some` today), the
/// returned identity not being the broker's internal login, and the will topic being
/// inside the publish grants. Calls taking over 10 s count as `Unavailable`.
pub trait Authenticator: Send + Sync + 'static {
    /// Called once per CONNECT, after the codec parsed it. username/password None when absent.
    fn authenticate<'a>(
        &'a self,
        client_id: &'a str,
        username: Option<&'a str>,
        password: Option<&'a [u8]>,
        peer: SocketAddr,
    ) -> AuthFuture<'a>;
}

/// Largest payload a `pair` session may publish (SPEC: requests are at most 4 KiB); the
/// front end drops bigger ones before anyone reads them.
pub const PAIR_MAX_PAYLOAD: usize = 4096;

/// A `pair` login, as the front end hands it to the [`PairDesk`]. The front end terminates
/// `pair` sessions itself: they never reach rumqttd, so they leave no broker state, no
/// retained message and no will behind.
#[derive(Debug, Clone)]
pub struct PairSession {
    /// Unique per connection for the life of the process.
    pub id: u64,
    /// The MQTT client id, which is the device id (checked by the authenticator).
    pub device_id: String,
    /// Where the connection comes from.
    pub peer: SocketAddr,
    /// Payloads for `homehub/pair/DEVICE_ID/response`, published to the session (QoS 1)
    /// once it has subscribed there. Bounded: use `try_send`; a full queue means the
    /// device does not read, and the message is dropped.
    pub out: tokio::sync::mpsc::Sender<Vec<u8>>,
}

/// Where `pair` sessions' requests go (the hub's is `devices::pairing::Desk`). Called from
/// connection tasks: must not block (hand work to a task).
pub trait PairDesk: Send + Sync + 'static {
    /// A `pair` session logged in.
    fn opened(&self, session: PairSession);
    /// A non-retained payload of at most [`PAIR_MAX_PAYLOAD`] bytes the session published
    /// to `homehub/pair/DEVICE_ID/request` (anything else it publishes is dropped).
    fn message(&self, session_id: u64, payload: bytes::Bytes);
    /// The session ended (any reason); its `out` is no longer read.
    fn closed(&self, session_id: u64);
}

/// Longest a `pair` session may last, keepalive or not; then it is closed.
pub const PAIR_MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Most `pair` sessions at once from one client address, and in all (beyond: CONNACK 0x03).
pub const PAIR_MAX_PER_ADDRESS: usize = 4;
pub const PAIR_MAX_TOTAL: usize = 64;
/// Most connections from one address that have not logged in yet, and in all.
pub const MAX_UNAUTHENTICATED_PER_ADDRESS: usize = 64;
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
/// Most distinct persistent (clean_session = false) client ids one login may have at the
/// broker; a new one beyond that gets CONNACK 0x02.
pub const MAX_PERSISTENT_IDS: usize = 4;

/// Where the front end listens, how big a packet may be, and the descriptor budget.
#[derive(Clone)]
pub struct Settings {
    /// MQTT over TLS (`mqtt.listen_tls`); `None` = no TLS listener.
    pub listen_tls: Option<SocketAddr>,
    /// Plaintext MQTT (`mqtt.listen_plain`); `None` = no plaintext listener.
    pub listen_plain: Option<SocketAddr>,
    /// Largest packet a client may send or receive (remaining length, bytes).
    pub max_packet_bytes: usize,
    /// Serve clients whose address is not on the home network (`web.allow_public_clients`,
    /// shared with the web); refused otherwise, as the web refuses them.
    pub allow_public_clients: bool,
    /// The hub's descriptor budget: every connection takes 1 slot at accept and 2 more
    /// when it opens its session at rumqttd.
    pub descriptors: crate::limits::Descriptors,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen_tls", &self.listen_tls)
            .field("listen_plain", &self.listen_plain)
            .field("max_packet_bytes", &self.max_packet_bytes)
            .field("allow_public_clients", &self.allow_public_clients)
            .field("descriptor_slots", &self.descriptors.slots().total())
            .finish()
    }
}

/// Default largest packet: 256 KiB.
pub const DEFAULT_MAX_PACKET_BYTES: usize = 256 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen_tls: Some(SocketAddr::from(([0, 0, 0, 0], 8883))),
            listen_plain: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            max_packet_bytes: DEFAULT_MAX_PACKET_BYTES,
            allow_public_clients: false,
            descriptors: crate::limits::Descriptors::with_limit(4096),
        }
    }
}

/// Counters since start (and `live`, the logins connected now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted on either listener.
    pub connections_total: u64,
    /// Logins refused with a CONNACK code.
    pub refused_total: u64,
    /// Logged-in connections now.
    pub live: u64,
    /// PUBLISH packets from clients dropped by the ACL.
    pub denied_publish_total: u64,
    /// SUBSCRIBE filters answered 0x80 by the ACL.
    pub denied_subscribe_total: u64,
    /// Connections closed for bytes that were not acceptable MQTT (incl. oversized packets).
    pub malformed_total: u64,
}

/// The running MQTT edge: listeners, relays and the embedded broker.
pub struct Mqtt {
    tls_addr: Option<SocketAddr>,
    plain_addr: Option<SocketAddr>,
    shared: Arc<front::Shared>,
    /// The listeners and every connection's task.
    tasks: TaskTracker,
}

impl Mqtt {
    /// Binds both listeners (port 0 allowed) before returning; error (crate::error::Error, kind Unavailable) names the key "mqtt.listen_tls"/"mqtt.listen_plain" and the address when a bind fails.
    ///
    /// Starts the embedded broker too. Listeners and connections end on `stop`;
    /// [`Mqtt::stopped`] waits for all of them. The broker thread lives until the process
    /// ends (rumqttd has no shutdown; it listens on loopback only and needs our secret).
    pub async fn start(
        settings: Settings,
        auth: Arc<dyn Authenticator>,
        tls: Arc<rustls::ServerConfig>,
        stop: Shutdown,
    ) -> Result<Mqtt> {
        if settings.max_packet_bytes == 0 {
            return Err(Error::invalid("mqtt: max_packet_bytes must be more than 0"));
        }
        let tls_listener = bind("mqtt.listen_tls", settings.listen_tls).await?;
        let plain_listener = bind("mqtt.listen_plain", settings.listen_plain).await?;
        let broker = broker::Broker::start(settings.max_packet_bytes).await?;
        let shared = Arc::new(front::Shared::new(broker, auth, &settings));
        let tasks = TaskTracker::new();
        let mut mqtt = Mqtt { tls_addr: None, plain_addr: None, shared: shared.clone(), tasks: tasks.clone() };
        if let Some(l) = tls_listener {
            mqtt.tls_addr = l.local_addr().ok();
            tasks.spawn(front::serve(l, Some(acceptor(&tls)), shared.clone(), stop.clone(), tasks.clone()));
        }
        if let Some(l) = plain_listener {
            mqtt.plain_addr = l.local_addr().ok();
            tasks.spawn(front::serve(l, None, shared, stop, tasks.clone()));
        }
        tracing::info!(tls = ?mqtt.tls_addr, plain = ?mqtt.plain_addr, "MQTT listening");
        Ok(mqtt)
    }

    /// Resolves once the listeners and every connection have ended (after `stop`).
    pub async fn stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_addr
    }

    /// Options for a trusted in-hub client straight to rumqttd (internal credentials, loopback port); caller builds rumqttc::AsyncClient from it.
    ///
    /// Such a client is not checked against any grants. Its broker-side client id is
    /// `homehub-internal:<client_id>` (escaped), which no device login can produce.
    pub fn internal_options(&self, client_id: &str) -> rumqttc::MqttOptions {
        let broker = &self.shared.broker;
        let id = wire::broker_client_id(broker::INTERNAL_USER, client_id);
        let mut o = rumqttc::MqttOptions::new(id, broker.addr().ip().to_string(), broker.addr().port());
        o.set_credentials(broker::INTERNAL_USER, broker.secret());
        o.set_max_packet_size(self.shared.max_packet_bytes, self.shared.max_packet_bytes);
        o
    }

    /// Drops every live connection logged in as `username` at once (revocation). Returns how many.
    ///
    /// The connections end without a DISCONNECT towards the broker, so their wills fire.
    pub fn revoke(&self, username: &str) -> usize {
        let n = self.shared.registry.revoke(username);
        if n > 0 {
            tracing::info!(user = username, connections = n, "MQTT login revoked");
        }
        n
    }

    /// Hands `pair` sessions to `desk` from now on; until then `pair` logins are refused
    /// with CONNACK 0x03 (server unavailable). Set once; later calls are ignored.
    pub fn set_pair_desk(&self, desk: Arc<dyn PairDesk>) {
        if self.shared.pair_desk.set(desk).is_err() {
            tracing::warn!("MQTT pair desk set twice; the first one stays");
        }
    }

    /// The addresses `username`'s live connections come from (a paired device's config may
    /// name only its own address).
    pub fn peers(&self, username: &str) -> Vec<std::net::IpAddr> {
        self.shared.registry.peers(username)
    }

    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }
}

/// Room in the accept queue for a house of devices coming back at once after a power
/// cut (the default 128 overflowed with 200 simulated devices).
const LISTEN_BACKLOG: u32 = 1024;

async fn bind(key: &str, addr: Option<SocketAddr>) -> Result<Option<TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() };
    socket
        .and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(LISTEN_BACKLOG)
        })
        .map(Some)
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{key}: cannot listen on {addr}: {e}")))
}

/// The hub's TLS settings without ALPN: the web's `http/1.1` would make rustls refuse MQTT
/// clients that offer `mqtt`, and clients that offer nothing do not care.
fn acceptor(tls: &Arc<rustls::ServerConfig>) -> TlsAcceptor {
    let mut cfg = (**tls).clone();
    cfg.alpn_protocols.clear();
    TlsAcceptor::from(Arc::new(cfg))
}
