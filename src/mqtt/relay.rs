//! One logged-in client: packets relayed both ways between the client and its broker
//! connection, each one checked against the login's grants.
//!
//! What the relay answers itself instead of forwarding:
//! - a denied PUBLISH from the client is dropped and acknowledged as a 3.1.1 server does
//!   (PUBACK; PUBREC, then PUBCOMP for the PUBREL);
//! - denied SUBSCRIBE filters get 0x80 in the SUBACK (spliced into the broker's answer when
//!   some filters were allowed);
//! - a PUBLISH from the broker outside the subscribe grants is dropped and acknowledged to
//!   the broker (defence in depth: rumqttd should never send one);
//! - a retained PUBLISH outside `Grants::retain` (or too big to keep) goes on with its retain
//!   flag cleared;
//! - PINGREQ is answered here; the relay pings rumqttd on its own schedule, and uses a ping
//!   as a barrier after an UNSUBSCRIBE, because rumqttd answers one UNSUBACK per removed
//!   filter and none for filters it did not have. The client gets exactly one UNSUBACK.
//!
//! Any end other than the client's DISCONNECT drops the broker connection without a
//! DISCONNECT, so rumqttd publishes the client's will.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Packet, PubAck, PubComp, PubRec, Publish, SubAck, Subscribe, SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::front::{Counters, Shared};
use super::login::BROKER_KEEPALIVE_SECS;
use super::wire::{self, WireError};
use super::{Grants, Identity, acl};
use crate::shutdown::Shutdown;

/// A peer that does not take our bytes for this long is gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the last words of a closing connection may take.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a relayed connection ended.
#[derive(Debug)]
pub enum End {
    /// The client sent DISCONNECT (no will).
    Disconnect,
    ClientClosed(String),
    KeepaliveExpired,
    Revoked,
    Shutdown,
    /// A `pair` session reached its longest lifetime.
    LifetimeOver,
    /// The client broke the protocol (logged and counted already).
    Malformed(String),
    Broker(String),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Disconnect => f.write_str("disconnected"),
            End::ClientClosed(e) => write!(f, "connection lost: {e}"),
            End::KeepaliveExpired => f.write_str("keepalive expired"),
            End::Revoked => f.write_str("credentials revoked, or its client id connected again"),
            End::Shutdown => f.write_str("hub shutting down"),
            End::LifetimeOver => f.write_str("pair session lifetime over"),
            End::Malformed(why) => write!(f, "malformed input: {why}"),
            End::Broker(why) => write!(f, "embedded broker closed the session: {why}"),
        }
    }
}

/// Why the relay sent a PINGREQ to the broker, in the order the PINGRESPs will come back.
enum Ping {
    Keepalive,
    /// The UNSUBACK for this client packet id is due once this ping is answered.
    UnsubscribeDone(u16),
}

enum Flow {
    Continue,
    /// The client sent DISCONNECT; what it sent before has been relayed.
    Disconnect,
}

enum Event {
    Client(Result<(), WireError>),
    Broker(Result<(), WireError>),
    KeepaliveExpired,
    PingBroker,
    Revoked,
    Shutdown,
}

/// One side of the relay: its stream and the bytes already read from it.
pub struct Link<S> {
    pub stream: S,
    pub buf: BytesMut,
}

pub struct Relay<'a> {
    peer: SocketAddr,
    username: &'a str,
    client_id: &'a str,
    grants: &'a Grants,
    shared: &'a Arc<Shared>,
    /// QoS 2 publishes from the client we refused with PUBREC: their PUBREL is ours to answer.
    client_refused_qos2: HashSet<u16>,
    /// QoS 2 publishes from the broker we dropped with PUBREC: likewise towards the broker.
    broker_refused_qos2: HashSet<u16>,
    /// SUBSCRIBEs forwarded without their denied filters: which positions were allowed.
    partial_subscribes: HashMap<u16, Vec<bool>>,
    pings: VecDeque<Ping>,
    to_client: BytesMut,
    to_broker: BytesMut,
}

impl<'a> Relay<'a> {
    pub fn new(peer: SocketAddr, identity: &'a Identity, client_id: &'a str, shared: &'a Arc<Shared>) -> Self {
        Relay {
            peer,
            username: &identity.username,
            client_id,
            grants: &identity.grants,
            shared,
            client_refused_qos2: HashSet::new(),
            broker_refused_qos2: HashSet::new(),
            partial_subscribes: HashMap::new(),
            pings: VecDeque::new(),
            to_client: BytesMut::new(),
            to_broker: BytesMut::new(),
        }
    }

    /// Relays until either side ends.
    pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        mut self,
        client: Link<S>,
        broker: Link<TcpStream>,
        keep_alive: u16,
        mut revoked: oneshot::Receiver<()>,
        stop: Shutdown,
    ) -> End {
        let Link { stream: mut client, buf: mut client_buf } = client;
        let Link { stream: mut broker, buf: mut broker_buf } = broker;
        // 1.5 × keepalive without a byte from the client ends it (MQTT 3.1.1, 3.1.2.10).
        let idle = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        let mut client_deadline = idle.map(|d| Instant::now() + d);
        let ping_every = Duration::from_secs(u64::from(BROKER_KEEPALIVE_SECS) / 2);
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        let mut pending = (true, true);
        loop {
            match self.drain(&mut client_buf, &mut broker_buf, pending) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Disconnect) => return self.disconnect(client, broker).await,
                Err(end) => return end,
            }
            // A peer that does not read must not hold up revocation or shutdown.
            let flushed = tokio::select! {
                r = self.flush(&mut client, &mut broker) => r,
                _ = &mut revoked => Err(End::Revoked),
                _ = stop.wait() => Err(End::Shutdown),
            };
            if let Err(end) = flushed {
                return end;
            }
            let event = tokio::select! {
                r = wire::fill(&mut client, &mut client_buf) => Event::Client(r),
                r = wire::fill(&mut broker, &mut broker_buf) => Event::Broker(r),
                _ = sleep_until(client_deadline) => Event::KeepaliveExpired,
                _ = ping.tick() => Event::PingBroker,
                _ = &mut revoked => Event::Revoked,
                _ = stop.wait() => Event::Shutdown,
            };
            pending = (false, false);
            match event {
                Event::Client(Ok(())) => {
                    client_deadline = idle.map(|d| Instant::now() + d);
                    pending.0 = true;
                }
                Event::Broker(Ok(())) => pending.1 = true,
                Event::Client(Err(e)) => return End::ClientClosed(e.to_string()),
                Event::Broker(Err(e)) => return End::Broker(e.to_string()),
                Event::KeepaliveExpired => return End::KeepaliveExpired,
                Event::PingBroker => self.ping_broker(Ping::Keepalive),
                Event::Revoked => return End::Revoked,
                Event::Shutdown => return End::Shutdown,
            }
        }
    }

    /// Handles every complete packet in the buffers that just received bytes.
    fn drain(&mut self, client_buf: &mut BytesMut, broker_buf: &mut BytesMut, which: (bool, bool)) -> Result<Flow, End> {
        if which.1 {
            self.drain_broker(broker_buf)?;
        }
        if which.0 {
            return self.drain_client(client_buf);
        }
        Ok(Flow::Continue)
    }

    fn drain_broker(&mut self, buf: &mut BytesMut) -> Result<(), End> {
        loop {
            match wire::take_packet(buf, self.shared.max_packet_bytes) {
                Ok(Some(p)) => self.on_broker_packet(p)?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(End::Broker(e.to_string())),
            }
        }
    }

    fn drain_client(&mut self, buf: &mut BytesMut) -> Result<Flow, End> {
        loop {
            match wire::take_packet(buf, self.shared.max_packet_bytes) {
                Ok(Some(Packet::Disconnect)) => return Ok(Flow::Disconnect),
                Ok(Some(p)) => self.on_client_packet(p)?,
                Ok(None) => return Ok(Flow::Continue),
                Err(e) => return Err(self.malformed(e.to_string())),
            }
        }
    }

    /// Forwards the client's DISCONNECT so rumqttd discards the will, then closes both.
    async fn disconnect<S: AsyncWrite + Unpin>(mut self, mut client: S, mut broker: TcpStream) -> End {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = wire::send(&mut client, &mut self.to_client).await;
            let _ = client.shutdown().await;
        })
        .await;
        drop(client);
        let _ = wire::encode(&Packet::Disconnect, &mut self.to_broker);
        if let Ok(Ok(())) = tokio::time::timeout(CLOSE_TIMEOUT, wire::send(&mut broker, &mut self.to_broker)).await {
            super::broker::close_after_disconnect(broker).await;
        }
        End::Disconnect
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, client: &mut S, broker: &mut TcpStream) -> Result<(), End> {
        let to_client = tokio::time::timeout(WRITE_TIMEOUT, wire::send(client, &mut self.to_client)).await;
        match to_client {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(End::ClientClosed(e.to_string())),
            Err(_) => return Err(End::ClientClosed("client stopped reading".into())),
        }
        match tokio::time::timeout(WRITE_TIMEOUT, wire::send(broker, &mut self.to_broker)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Broker(e.to_string())),
            Err(_) => Err(End::Broker("broker stopped reading".into())),
        }
    }

    fn on_client_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(p) => self.client_publish(p),
            Packet::Subscribe(s) => self.client_subscribe(s),
            Packet::Unsubscribe(u) => self.client_unsubscribe(u),
            Packet::PubRel(r) if self.client_refused_qos2.remove(&r.pkid) => {
                self.queue_client(&Packet::PubComp(PubComp::new(r.pkid)));
            }
            p @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_)) => self.queue_broker(&p),
            Packet::PingReq => self.queue_client(&Packet::PingResp),
            other => return Err(self.malformed(format!("unexpected {} from a client", name(&other)))),
        }
        Ok(())
    }

    fn on_broker_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(p) => self.broker_publish(p),
            Packet::SubAck(a) => self.broker_suback(a),
            // The client gets its UNSUBACK when the barrier ping comes back.
            Packet::UnsubAck(_) => {}
            Packet::PingResp => {
                if let Some(Ping::UnsubscribeDone(pkid)) = self.pings.pop_front() {
                    self.queue_client(&Packet::UnsubAck(UnsubAck::new(pkid)));
                }
            }
            Packet::PubRel(r) if self.broker_refused_qos2.remove(&r.pkid) => {
                self.queue_broker(&Packet::PubComp(PubComp::new(r.pkid)));
            }
            p @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_)) => self.queue_client(&p),
            other => return Err(End::Broker(format!("unexpected {} from the broker", name(&other)))),
        }
        Ok(())
    }

    fn client_publish(&mut self, mut p: Publish) {
        if acl::may_publish(self.grants, &p.topic) {
            if p.retain && !acl::may_retain(self.grants, &p.topic, p.payload.len()) {
                // Delivered live, never kept: rumqttd's retained store has no bound.
                tracing::debug!(peer = %self.peer, user = self.username, topic = %p.topic, bytes = p.payload.len(), "MQTT publish may not be retained; retain flag stripped");
                p.retain = false;
            }
            return self.queue_broker(&Packet::Publish(p));
        }
        Counters::bump(&self.shared.counters.denied_publish_total, 1);
        let why = if acl::valid_topic(&p.topic) { "outside the login's grants" } else { "not a valid topic name" };
        tracing::debug!(peer = %self.peer, user = self.username, client_id = self.client_id, topic = %p.topic, reason = why, "MQTT publish denied");
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.queue_client(&Packet::PubAck(PubAck::new(p.pkid))),
            QoS::ExactlyOnce => {
                self.client_refused_qos2.insert(p.pkid);
                self.queue_client(&Packet::PubRec(PubRec::new(p.pkid)));
            }
        }
    }

    fn client_subscribe(&mut self, s: Subscribe) {
        let allowed: Vec<bool> = s.filters.iter().map(|f| acl::may_subscribe(self.grants, &f.path)).collect();
        for f in s.filters.iter().zip(&allowed).filter(|(_, ok)| !**ok).map(|(f, _)| f) {
            Counters::bump(&self.shared.counters.denied_subscribe_total, 1);
            tracing::debug!(peer = %self.peer, user = self.username, client_id = self.client_id, filter = %f.path, "MQTT subscription denied");
        }
        if allowed.iter().all(|ok| *ok) {
            return self.queue_broker(&Packet::Subscribe(s));
        }
        if !allowed.iter().any(|ok| *ok) {
            let codes = vec![SubscribeReasonCode::Failure; allowed.len()];
            return self.queue_client(&Packet::SubAck(SubAck::new(s.pkid, codes)));
        }
        let filters = s.filters.into_iter().zip(&allowed).filter(|(_, ok)| **ok).map(|(f, _)| f).collect();
        self.partial_subscribes.insert(s.pkid, allowed);
        self.queue_broker(&Packet::Subscribe(Subscribe { pkid: s.pkid, filters }));
    }

    fn client_unsubscribe(&mut self, u: Unsubscribe) {
        let pkid = u.pkid;
        self.queue_broker(&Packet::Unsubscribe(u));
        self.ping_broker(Ping::UnsubscribeDone(pkid));
    }

    fn broker_publish(&mut self, p: Publish) {
        let receivable =
            acl::valid_topic(&p.topic) && self.grants.subscribe.iter().any(|g| acl::valid_filter(g) && acl::matches(g, &p.topic));
        if receivable {
            return self.queue_client(&Packet::Publish(p));
        }
        tracing::warn!(peer = %self.peer, user = self.username, topic = %p.topic, "MQTT broker sent a message outside the login's grants; dropped");
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.queue_broker(&Packet::PubAck(PubAck::new(p.pkid))),
            QoS::ExactlyOnce => {
                self.broker_refused_qos2.insert(p.pkid);
                self.queue_broker(&Packet::PubRec(PubRec::new(p.pkid)));
            }
        }
    }

    /// Puts 0x80 back at the positions of the filters we did not forward.
    fn broker_suback(&mut self, mut ack: SubAck) {
        if let Some(allowed) = self.partial_subscribes.remove(&ack.pkid) {
            let mut on_broker_packet = ack.return_codes.into_iter();
            ack.return_codes = allowed
                .iter()
                .map(|ok| {
                    if *ok {
                        on_broker_packet.next().unwrap_or(SubscribeReasonCode::Failure)
                    } else {
                        SubscribeReasonCode::Failure
                    }
                })
                .collect();
        }
        self.queue_client(&Packet::SubAck(ack));
    }

    fn ping_broker(&mut self, why: Ping) {
        self.pings.push_back(why);
        self.queue_broker(&Packet::PingReq);
    }

    fn queue_client(&mut self, p: &Packet) {
        // Encoding a packet the codec itself parsed cannot fail; if it ever did, the
        // packet is lost and the peer's own timeouts recover.
        if let Err(e) = wire::encode(p, &mut self.to_client) {
            tracing::error!(error = %e, "MQTT relay could not encode a packet for the client");
        }
    }

    fn queue_broker(&mut self, p: &Packet) {
        if let Err(e) = wire::encode(p, &mut self.to_broker) {
            tracing::error!(error = %e, "MQTT relay could not encode a packet for the broker");
        }
    }

    /// Counts a protocol violation by the client; the caller logs the end of the session.
    fn malformed(&self, why: String) -> End {
        Counters::bump(&self.shared.counters.malformed_total, 1);
        End::Malformed(why)
    }
}

pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

pub fn name(p: &Packet) -> &'static str {
    match p {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}
