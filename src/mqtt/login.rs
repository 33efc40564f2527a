//! From a fresh connection to a logged-in client: read the CONNECT, check it, ask the
//! [`Authenticator`](super::Authenticator), then either log in to rumqttd for the client
//! (its broker connection costs 2 more descriptor slots) or, for a `pair` login, check the
//! `pair` rules and caps and answer the CONNACK ourselves. Every refusal is answered with a
//! CONNACK code before the close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Packet};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

use super::broker::INTERNAL_USER;
use super::front::{Counters, NotRegistered, Registration, SessionKind, Shared};
use super::wire::{self, Hello, WireError};
use super::{Identity, PairDesk, Refusal, acl};
use crate::limits::{AddressSlot, Slot};

/// Longest client id and username we take: DEVICE_IDs are at most 64 bytes, and the
/// broker-side id (escaped, both joined) must stay far below MQTT's 65535.
const MAX_ID_BYTES: usize = 256;

/// How long the authenticator may take (it may hash a password).
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Keepalive of the front end's own connection to rumqttd, which refuses 0. The relay pings
/// the broker itself; the client's keepalive is enforced by the relay.
pub const BROKER_KEEPALIVE_SECS: u16 = 60;

/// What a successful login turns into.
pub enum Login {
    Relay(LoggedIn),
    Pair(PairLogin),
}

/// A `pair` login that passed every check, CONNACK sent; it has no broker connection.
pub struct PairLogin {
    pub client_id: String,
    pub keep_alive: u16,
    pub client_buf: BytesMut,
    pub desk: Arc<dyn PairDesk>,
    pub registration: Registration,
    pub revoked: oneshot::Receiver<()>,
    /// Its place among the `pair` sessions of its address and of all.
    pub _address: AddressSlot,
    pub _total: OwnedSemaphorePermit,
}

/// A client that passed every check, with its broker connection open and CONNACK sent.
pub struct LoggedIn {
    pub identity: Identity,
    pub client_id: String,
    pub keep_alive: u16,
    /// Bytes the client sent after its CONNECT.
    pub client_buf: BytesMut,
    pub broker: TcpStream,
    /// Bytes the broker sent after its CONNACK.
    pub broker_buf: BytesMut,
    pub registration: Registration,
    /// Fires when the login is revoked.
    pub revoked: oneshot::Receiver<()>,
    /// The descriptors of the broker connection (ours and rumqttd's end).
    pub broker_slot: Slot,
}

/// Runs the login; `None` when the connection was refused or closed (already logged).
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    deadline: Instant,
) -> Option<Login> {
    let mut client_buf = BytesMut::new();
    let mut connect = first_packet(client, &mut client_buf, peer, shared, deadline).await?;
    if connect.client_id.is_empty() && connect.clean_session {
        // MQTT 3.1.1 §3.1.3.1: the server may assign an id to a clean session (mosquitto's
        // tools and many libraries rely on it).
        connect.client_id = format!("auto-{}", hex::encode(rand::random::<[u8; 8]>()));
    }
    let mark = shared.registry.mark();
    let identity = match check(&connect, peer, shared).await {
        Ok(i) => i,
        Err((code, why)) => {
            refuse(client, shared, peer, &connect.client_id, code, &why).await;
            return None;
        }
    };
    if identity.username == crate::pairing::PAIR_USERNAME {
        return pair_login(client, connect, client_buf, peer, shared, mark).await.map(Login::Pair);
    }
    // Registered before the broker login, so a revocation from now on reaches this one.
    let kind =
        if connect.clean_session { SessionKind::Clean(&connect.client_id) } else { SessionKind::Persistent(&connect.client_id) };
    let (registration, revoked) = match Registration::new(shared, &identity.username, mark, peer.ip(), kind) {
        Ok(r) => r,
        Err(NotRegistered::Revoked) => {
            let why = "credentials revoked while logging in";
            refuse(client, shared, peer, &connect.client_id, ConnectReturnCode::NotAuthorized, why).await;
            return None;
        }
        Err(NotRegistered::TooManyPersistentIds) => {
            let why = format!("login already has {} persistent client ids", super::MAX_PERSISTENT_IDS);
            refuse(client, shared, peer, &connect.client_id, ConnectReturnCode::BadClientId, &why).await;
            return None;
        }
    };
    let Some(broker_slot) = shared.descriptors.slots().take(2, "an MQTT broker session") else {
        let why = "no descriptor slots left for a broker session";
        refuse(client, shared, peer, &connect.client_id, ConnectReturnCode::ServiceUnavailable, why).await;
        return None;
    };
    let broker_id = match registration.slot {
        Some(slot) => wire::broker_slot_id(&identity.username, slot),
        None => wire::broker_client_id(&identity.username, &connect.client_id),
    };
    let (broker, broker_buf) = open_broker_session(client, &connect, &broker_id, &identity, peer, shared).await?;
    Some(Login::Relay(LoggedIn {
        identity,
        client_id: connect.client_id,
        keep_alive: connect.keep_alive,
        client_buf,
        broker,
        broker_buf,
        registration,
        revoked,
        broker_slot,
    }))
}

/// The `pair` rules at CONNECT: a desk to hand it to, a keepalive, no will, room under the
/// caps. Sends the CONNACK on success.
async fn pair_login<S: AsyncWrite + Unpin>(
    client: &mut S,
    connect: Connect,
    client_buf: BytesMut,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    mark: u64,
) -> Option<PairLogin> {
    let id = connect.client_id.as_str();
    let refused = |code: ConnectReturnCode, why: String| Err::<(), _>((code, why));
    let ok = if shared.pair_desk.get().is_none() {
        refused(ConnectReturnCode::ServiceUnavailable, "pairing is not being served yet".into())
    } else if connect.keep_alive == 0 {
        refused(ConnectReturnCode::NotAuthorized, "keepalive required".into())
    } else if connect.last_will.is_some() {
        refused(ConnectReturnCode::NotAuthorized, "pair sessions may not have a will".into())
    } else {
        Ok(())
    };
    if let Err((code, why)) = ok {
        refuse(client, shared, peer, id, code, &why).await;
        return None;
    }
    let desk = shared.pair_desk.get()?.clone();
    let Some(address) = shared.pair_per_address.enter(peer.ip()) else {
        let why = format!("{} pair sessions from this address already", super::PAIR_MAX_PER_ADDRESS);
        refuse(client, shared, peer, id, ConnectReturnCode::ServiceUnavailable, &why).await;
        return None;
    };
    let Ok(total) = shared.pair_total.clone().try_acquire_owned() else {
        let why = format!("{} pair sessions already", super::PAIR_MAX_TOTAL);
        refuse(client, shared, peer, id, ConnectReturnCode::ServiceUnavailable, &why).await;
        return None;
    };
    let Ok((registration, revoked)) =
        Registration::new(shared, crate::pairing::PAIR_USERNAME, mark, peer.ip(), SessionKind::Pair)
    else {
        refuse(client, shared, peer, id, ConnectReturnCode::NotAuthorized, "pair login revoked while logging in").await;
        return None;
    };
    if let Err(e) = wire::send_packet(client, &Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))).await {
        tracing::debug!(%peer, error = %e, "MQTT pair client left before its CONNACK");
        return None;
    }
    Some(PairLogin {
        client_id: connect.client_id,
        keep_alive: connect.keep_alive,
        client_buf,
        desk,
        registration,
        revoked,
        _address: address,
        _total: total,
    })
}

/// Reads the CONNECT within the deadline; anything else is answered (CONNACK 0x01 for
/// another MQTT version) or logged, and ends the connection.
async fn first_packet<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
    buf: &mut BytesMut,
    peer: SocketAddr,
    shared: &Shared,
    deadline: Instant,
) -> Option<Connect> {
    match tokio::time::timeout_at(deadline, read_connect(client, buf, shared.max_packet_bytes)).await {
        Ok(Ok(c)) => Some(c),
        Err(_) => {
            tracing::debug!(%peer, "MQTT client sent no CONNECT in time");
            None
        }
        Ok(Err(First::Closed)) => None,
        Ok(Err(First::Malformed(why))) => {
            malformed(shared, peer, &why);
            None
        }
        Ok(Err(First::OtherVersion(level))) => {
            let why = format!("MQTT protocol level {level}, only 3.1.1 (4) is served");
            refuse(client, shared, peer, "", ConnectReturnCode::RefusedProtocolVersion, &why).await;
            None
        }
    }
}

/// Logs in to rumqttd for the client (its will, clean-session flag, a client id of its own)
/// and passes rumqttd's CONNACK on. The will keeps its retain flag only where the grants
/// allow retaining it.
async fn open_broker_session<S: AsyncWrite + Unpin>(
    client: &mut S,
    connect: &Connect,
    broker_id: &str,
    identity: &Identity,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<(TcpStream, BytesMut)> {
    #[cfg(test)]
    shared.registry.note_broker_id(broker_id);
    let mut will = connect.last_will.clone();
    if let Some(w) = will.as_mut().filter(|w| w.retain && !acl::may_retain(&identity.grants, &w.topic, w.message.len())) {
        tracing::debug!(%peer, user = %identity.username, topic = %w.topic, "MQTT will may not be retained; retain flag stripped");
        w.retain = false;
    }
    let (broker, ack, broker_buf) =
        match shared.broker.connect(broker_id, BROKER_KEEPALIVE_SECS, connect.clean_session, will).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "MQTT login failed: the embedded broker did not accept us");
                let (code, why) = (ConnectReturnCode::ServiceUnavailable, "embedded broker unavailable");
                refuse(client, shared, peer, &connect.client_id, code, why).await;
                return None;
            }
        };
    if ack.code != ConnectReturnCode::Success {
        let why = format!("embedded broker answered {:?}", ack.code);
        refuse(client, shared, peer, &connect.client_id, ack.code, &why).await;
        return None;
    }
    if let Err(e) = wire::send_packet(client, &Packet::ConnAck(ack)).await {
        tracing::debug!(%peer, error = %e, "MQTT client left before its CONNACK");
        return None;
    }
    Some((broker, broker_buf))
}

enum First {
    Closed,
    Malformed(String),
    OtherVersion(u8),
}

/// Reads the first packet, which must be an MQTT 3.1.1 CONNECT.
async fn read_connect<S: AsyncRead + Unpin>(client: &mut S, buf: &mut BytesMut, max: usize) -> Result<Connect, First> {
    loop {
        match wire::hello(buf, max) {
            Hello::Incomplete => {}
            Hello::V311 => break,
            Hello::OtherVersion(level) => return Err(First::OtherVersion(level)),
            Hello::NotConnect(why) => return Err(First::Malformed(why)),
        }
        if let Err(e) = wire::fill(client, buf).await {
            return Err(match (e, buf.is_empty()) {
                // Closing before the first byte is a port probe, not a broken client.
                (WireError::Closed(_), true) => First::Closed,
                (e, _) => First::Malformed(e.to_string()),
            });
        }
    }
    match wire::take_packet(buf, max) {
        Ok(Some(Packet::Connect(c))) => Ok(c),
        Ok(other) => Err(First::Malformed(format!("expected CONNECT, got {other:?}"))),
        Err(e) => Err(First::Malformed(e.to_string())),
    }
}

/// Everything that decides whether this CONNECT may log in.
async fn check(c: &Connect, peer: SocketAddr, shared: &Shared) -> Result<Identity, (ConnectReturnCode, String)> {
    if c.client_id.is_empty() || c.client_id.len() > MAX_ID_BYTES {
        return Err((ConnectReturnCode::BadClientId, "empty or over-long client id".into()));
    }
    let Some(login) = c.login.as_ref().filter(|l| !l.username.is_empty()) else {
        return Err((ConnectReturnCode::NotAuthorized, "no username (anonymous logins are refused)".into()));
    };
    let password = (!login.password.is_empty()).then_some(login.password.as_bytes());
    let asked = shared.auth.authenticate(&c.client_id, Some(&login.username), password, peer);
    let identity = match tokio::time::timeout(AUTH_TIMEOUT, asked).await {
        Err(_) => return Err((ConnectReturnCode::ServiceUnavailable, "authenticator timed out".into())),
        Ok(Err(refusal)) => return Err((refusal.code(), format!("authenticator refused user {:?}", login.username))),
        Ok(Ok(i)) => i,
    };
    let name = &identity.username;
    if name.is_empty() || name == INTERNAL_USER || name.len() > MAX_ID_BYTES {
        tracing::warn!(%peer, user = %name, "authenticator returned an identity the MQTT front end cannot use");
        return Err((ConnectReturnCode::NotAuthorized, "unusable identity".into()));
    }
    if let Some(will) = &c.last_will
        && !acl::may_publish(&identity.grants, &will.topic)
    {
        return Err((ConnectReturnCode::NotAuthorized, format!("will topic {:?} is not allowed", will.topic)));
    }
    Ok(identity)
}

impl Refusal {
    pub(crate) fn code(self) -> ConnectReturnCode {
        match self {
            Refusal::BadClientId => ConnectReturnCode::BadClientId,
            Refusal::Unavailable => ConnectReturnCode::ServiceUnavailable,
            Refusal::BadCredentials => ConnectReturnCode::BadUserNamePassword,
            Refusal::NotAuthorized => ConnectReturnCode::NotAuthorized,
        }
    }
}

/// Answers with a CONNACK carrying `code`, then closes (politely, so the CONNACK arrives).
async fn refuse<S: AsyncWrite + Unpin>(
    client: &mut S,
    shared: &Shared,
    peer: SocketAddr,
    client_id: &str,
    code: ConnectReturnCode,
    why: &str,
) {
    Counters::bump(&shared.counters.refused_total, 1);
    tracing::info!(%peer, client_id, code = code as u8, reason = why, "MQTT login refused");
    let ack = Packet::ConnAck(ConnAck::new(code, false));
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        if wire::send_packet(client, &ack).await.is_ok() {
            let _ = client.shutdown().await;
        }
    })
    .await;
}

fn malformed(shared: &Shared, peer: SocketAddr, why: &str) {
    Counters::bump(&shared.counters.malformed_total, 1);
    tracing::warn!(%peer, reason = why, "MQTT connection closed: malformed input");
}
