//! `pair` sessions, served by the front end itself: they never reach rumqttd, so a device
//! without credentials leaves no broker state, retained message or will behind.
//!
//! The session may subscribe only to its own response topic (granted QoS ≤ 1; anything else
//! 0x80) and publish only to its own request topic, non-retained, at most
//! [`PAIR_MAX_PAYLOAD`] bytes; everything else it publishes is dropped, counted as denied,
//! and acknowledged as MQTT 3.1.1 requires. Accepted payloads go to the [`PairDesk`];
//! the desk's answers (from [`PairSession::out`]) go to the device on its response topic,
//! only once it has subscribed there. The desk hears `opened`, `message` per accepted
//! publish, and `closed` exactly once, whatever ends the session (DISCONNECT, keepalive,
//! [`PAIR_MAX_LIFETIME`](super::PAIR_MAX_LIFETIME), revocation, shutdown, bad input).
//!
//! It may not: parse payloads (that is the desk's business) or talk to the broker.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Packet, PubAck, PubComp, PubRec, Publish, SubAck, Subscribe, SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::front::{Counters, Shared};
use super::login::PairLogin;
use super::relay::{CLOSE_TIMEOUT, End, WRITE_TIMEOUT, name};
use super::wire::{self, WireError};
use super::{PAIR_MAX_PAYLOAD, PairDesk, PairSession};
use crate::shutdown::Shutdown;

/// Largest packet a `pair` session may send at all: a publish a little over the payload
/// cap is dropped and the session goes on, a bigger packet ends it (so no session makes
/// the front end buffer more than this).
pub(super) const PAIR_MAX_PACKET: usize = 4 * PAIR_MAX_PAYLOAD;
/// Answers the desk may have queued for one session.
const OUT_QUEUE: usize = 8;
/// Answers sent at QoS 1 and not yet acknowledged; beyond this the queue fills and the
/// desk's `try_send` fails (a device that does not acknowledge does not read).
const MAX_INFLIGHT: usize = 8;
/// QoS 2 publishes from the device waiting for their PUBREL.
const MAX_QOS2_PENDING: usize = 16;

/// Runs one `pair` session to its end.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    client: S,
    peer: SocketAddr,
    login: PairLogin,
    shared: &Arc<Shared>,
    stop: Shutdown,
) {
    let PairLogin { client_id, keep_alive, client_buf, desk, registration, revoked, _address, _total } = login;
    let id = shared.next_pair_id.fetch_add(1, Ordering::Relaxed) + 1;
    let lifetime_end = Instant::now() + shared.pair_lifetime();
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    tracing::info!(%peer, session = id, device_id = %client_id, "MQTT pair session opened");
    desk.opened(PairSession { id, device_id: client_id.clone(), peer, out: tx });
    let closed = Closed { desk: desk.clone(), id };
    let session = Pair {
        peer,
        id,
        request_topic: crate::pairing::request_topic(&client_id),
        response_topic: crate::pairing::response_topic(&client_id),
        desk,
        shared,
        granted: None,
        inflight: HashSet::new(),
        next_pkid: 0,
        qos2: HashSet::new(),
        out: BytesMut::new(),
    };
    let end = session.run(client, client_buf, rx, keep_alive, revoked, stop, lifetime_end).await;
    drop(closed);
    drop(registration);
    match end {
        End::Malformed(_) => {
            tracing::warn!(%peer, session = id, device_id = %client_id, reason = %end, "MQTT pair session dropped")
        }
        _ => tracing::info!(%peer, session = id, device_id = %client_id, reason = %end, "MQTT pair session closed"),
    }
}

/// Tells the desk the session is over when dropped, so it hears it exactly once on every
/// path out (a cancelled task included).
struct Closed {
    desk: Arc<dyn PairDesk>,
    id: u64,
}

impl Drop for Closed {
    fn drop(&mut self) {
        self.desk.closed(self.id);
    }
}

enum Flow {
    Continue,
    Disconnect,
}

enum Event {
    Client(Result<(), WireError>),
    Out(Option<Vec<u8>>),
    KeepaliveExpired,
    LifetimeOver,
    Revoked,
    Shutdown,
}

struct Pair<'a> {
    peer: SocketAddr,
    id: u64,
    request_topic: String,
    response_topic: String,
    desk: Arc<dyn PairDesk>,
    shared: &'a Arc<Shared>,
    /// The QoS the response subscription was granted; None until the device subscribed.
    granted: Option<QoS>,
    /// Packet ids of answers sent at QoS 1 and not acknowledged yet.
    inflight: HashSet<u16>,
    next_pkid: u16,
    /// QoS 2 publishes answered with PUBREC whose PUBREL has not come yet.
    qos2: HashSet<u16>,
    out: BytesMut,
}

impl Pair<'_> {
    #[allow(clippy::too_many_arguments)]
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        mut self,
        mut client: S,
        mut buf: BytesMut,
        mut rx: mpsc::Receiver<Vec<u8>>,
        keep_alive: u16,
        mut revoked: oneshot::Receiver<()>,
        stop: Shutdown,
        lifetime_end: Instant,
    ) -> End {
        // keep_alive is never 0 here (refused at CONNECT); 1.5 × it without a byte ends it.
        let idle = Duration::from_millis(u64::from(keep_alive.max(1)) * 1500);
        let mut client_deadline = Instant::now() + idle;
        let mut desk_open = true;
        let mut fresh = true;
        loop {
            if fresh {
                match self.drain(&mut buf) {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Disconnect) => return self.disconnect(client).await,
                    Err(end) => return end,
                }
            }
            // A device that does not read must not hold up revocation, shutdown or its end.
            let flushed = tokio::select! {
                r = tokio::time::timeout(WRITE_TIMEOUT, wire::send(&mut client, &mut self.out)) => match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(End::ClientClosed(e.to_string())),
                    Err(_) => Err(End::ClientClosed("client stopped reading".into())),
                },
                _ = &mut revoked => Err(End::Revoked),
                _ = stop.wait() => Err(End::Shutdown),
                _ = tokio::time::sleep_until(lifetime_end) => Err(End::LifetimeOver),
            };
            if let Err(end) = flushed {
                return end;
            }
            let want_out = desk_open && self.inflight.len() < MAX_INFLIGHT;
            let event = tokio::select! {
                r = wire::fill(&mut client, &mut buf) => Event::Client(r),
                m = rx.recv(), if want_out => Event::Out(m),
                _ = tokio::time::sleep_until(client_deadline) => Event::KeepaliveExpired,
                _ = tokio::time::sleep_until(lifetime_end) => Event::LifetimeOver,
                _ = &mut revoked => Event::Revoked,
                _ = stop.wait() => Event::Shutdown,
            };
            fresh = false;
            match event {
                Event::Client(Ok(())) => {
                    client_deadline = Instant::now() + idle;
                    fresh = true;
                }
                Event::Client(Err(e)) => return End::ClientClosed(e.to_string()),
                Event::Out(Some(payload)) => self.answer(payload),
                Event::Out(None) => desk_open = false,
                Event::KeepaliveExpired => return End::KeepaliveExpired,
                Event::LifetimeOver => return End::LifetimeOver,
                Event::Revoked => return End::Revoked,
                Event::Shutdown => return End::Shutdown,
            }
        }
    }

    fn drain(&mut self, buf: &mut BytesMut) -> Result<Flow, End> {
        let max = PAIR_MAX_PACKET.min(self.shared.max_packet_bytes);
        loop {
            match wire::take_packet(buf, max) {
                Ok(Some(Packet::Disconnect)) => return Ok(Flow::Disconnect),
                Ok(Some(p)) => self.on_packet(p)?,
                Ok(None) => return Ok(Flow::Continue),
                Err(e) => return Err(self.malformed(e.to_string())),
            }
        }
    }

    async fn disconnect<S: AsyncWrite + Unpin>(mut self, mut client: S) -> End {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = wire::send(&mut client, &mut self.out).await;
            let _ = client.shutdown().await;
        })
        .await;
        End::Disconnect
    }

    fn on_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(p) => return self.publish(p),
            Packet::Subscribe(s) => self.subscribe(s),
            Packet::Unsubscribe(u) => self.unsubscribe(u),
            Packet::PubAck(a) => {
                self.inflight.remove(&a.pkid);
            }
            // MQTT 3.1.1 §4.3.3: a PUBREL is always answered with PUBCOMP.
            Packet::PubRel(r) => {
                self.qos2.remove(&r.pkid);
                self.queue(&Packet::PubComp(PubComp::new(r.pkid)));
            }
            Packet::PingReq => self.queue(&Packet::PingResp),
            other => return Err(self.malformed(format!("unexpected {} from a pair client", name(&other)))),
        }
        Ok(())
    }

    fn publish(&mut self, p: Publish) -> Result<(), End> {
        if p.qos == QoS::ExactlyOnce && self.qos2.contains(&p.pkid) {
            // A resent QoS 2 publish before its PUBREL: already handled once.
            self.queue(&Packet::PubRec(PubRec::new(p.pkid)));
            return Ok(());
        }
        let refused = if p.topic != self.request_topic {
            Some("not its request topic")
        } else if p.retain {
            Some("retained")
        } else if p.payload.len() > PAIR_MAX_PAYLOAD {
            Some("payload over 4 KiB")
        } else {
            None
        };
        match refused {
            None => self.desk.message(self.id, Bytes::clone(&p.payload)),
            Some(why) => {
                Counters::bump(&self.shared.counters.denied_publish_total, 1);
                tracing::debug!(peer = %self.peer, session = self.id, topic = %p.topic, bytes = p.payload.len(), reason = why, "MQTT pair publish dropped");
            }
        }
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.queue(&Packet::PubAck(PubAck::new(p.pkid))),
            QoS::ExactlyOnce => {
                if self.qos2.len() >= MAX_QOS2_PENDING {
                    return Err(self.malformed(format!("over {MAX_QOS2_PENDING} QoS 2 publishes without PUBREL")));
                }
                self.qos2.insert(p.pkid);
                self.queue(&Packet::PubRec(PubRec::new(p.pkid)));
            }
        }
        Ok(())
    }

    fn subscribe(&mut self, s: Subscribe) {
        let mut codes = Vec::with_capacity(s.filters.len());
        for f in &s.filters {
            if f.path == self.response_topic {
                let qos = if f.qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                self.granted = Some(qos);
                codes.push(SubscribeReasonCode::Success(qos));
            } else {
                Counters::bump(&self.shared.counters.denied_subscribe_total, 1);
                tracing::debug!(peer = %self.peer, session = self.id, filter = %f.path, "MQTT pair subscription denied");
                codes.push(SubscribeReasonCode::Failure);
            }
        }
        self.queue(&Packet::SubAck(SubAck::new(s.pkid, codes)));
    }

    fn unsubscribe(&mut self, u: Unsubscribe) {
        if u.topics.contains(&self.response_topic) {
            self.granted = None;
        }
        self.queue(&Packet::UnsubAck(UnsubAck::new(u.pkid)));
    }

    /// Sends one of the desk's answers on the response topic, if the device listens there.
    fn answer(&mut self, payload: Vec<u8>) {
        let Some(qos) = self.granted else {
            tracing::debug!(peer = %self.peer, session = self.id, "MQTT pair answer dropped: not subscribed to its response topic");
            return;
        };
        let mut p = Publish::new(&self.response_topic, qos, payload);
        if qos == QoS::AtLeastOnce {
            p.pkid = self.free_pkid();
            self.inflight.insert(p.pkid);
        }
        self.queue(&Packet::Publish(p));
    }

    fn free_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.contains(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    fn queue(&mut self, p: &Packet) {
        if let Err(e) = wire::encode(p, &mut self.out) {
            tracing::error!(error = %e, "MQTT pair session could not encode a packet");
        }
    }

    fn malformed(&self, why: String) -> End {
        Counters::bump(&self.shared.counters.malformed_total, 1);
        End::Malformed(why)
    }
}
