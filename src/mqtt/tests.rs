//! The front end against real loopback sockets: a real rumqttd behind it and real rumqttc
//! clients (or raw sockets for what no client library sends) in front.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, Packet, Publish, QoS, SubAck, SubscribeFilter,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::shutdown::Shutdown;
use tokio::task::JoinHandle;

use super::*;

/// "a" and "b" own `homehub/dev/<name>/#`; "pair" may only use its client id's pairing
/// topics; "down" stands for a store that cannot be asked; "slow" takes 400 ms to check.
struct TestAuth;

impl Authenticator for TestAuth {
    fn authenticate<'a>(
        &'a self,
        client_id: &'a str,
        username: Option<&'a str>,
        password: Option<&'a [u8]>,
        _peer: SocketAddr,
    ) -> AuthFuture<'a> {
        Box::pin(async move {
            let user = username.ok_or(Refusal::NotAuthorized)?;
            let grants = match (user, password) {
                ("a", Some(b"pa")) => own("a"),
                ("b", Some(b"pb")) => own("b"),
                ("pair", Some(b"pair")) => Grants {
                    publish: vec![format!("homehub/pair/{client_id}/request")],
                    subscribe: vec![format!("homehub/pair/{client_id}/response")],
                    retain: vec![],
                },
                ("down", _) => return Err(Refusal::Unavailable),
                // A broken authenticator handing out the broker's own login.
                ("evil", _) => return Ok(Identity { username: broker::INTERNAL_USER.into(), grants: own("a") }),
                ("slow", Some(b"ps")) => {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    own("slow")
                }
                _ => return Err(Refusal::BadCredentials),
            };
            Ok(Identity { username: user.to_string(), grants })
        })
    }
}

fn own(name: &str) -> Grants {
    let mine = format!("homehub/dev/{name}/#");
    let retain = ["config", "state", "availability"].map(|t| format!("homehub/dev/{name}/{t}")).to_vec();
    Grants { publish: vec![mine.clone()], subscribe: vec![mine], retain }
}

struct Hub {
    mqtt: Mqtt,
    cert_der: Vec<u8>,
    _stop: Shutdown,
}

impl Hub {
    async fn start(max_packet_bytes: usize) -> Hub {
        Hub::start_with(|s| s.max_packet_bytes = max_packet_bytes).await
    }

    async fn start_with(tune: impl FnOnce(&mut Settings)) -> Hub {
        let filter = tracing_subscriber::EnvFilter::new("homehub=debug,rumqttd=warn");
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        let (server, cert_der) = tls_server();
        let stop = Shutdown::new();
        let stop_tx = stop.clone();
        let loopback = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut settings = Settings { listen_tls: loopback, listen_plain: loopback, ..Settings::default() };
        tune(&mut settings);
        let mqtt = Mqtt::start(settings, Arc::new(TestAuth), server, stop).await.expect("mqtt starts");
        Hub { mqtt, cert_der, _stop: stop_tx }
    }

    fn plain(&self) -> SocketAddr {
        self.mqtt.plain_addr().expect("plain listener")
    }

    fn opts(&self, client_id: &str, login: Option<(&str, &str)>) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", self.plain().port());
        if let Some((u, p)) = login {
            o.set_credentials(u, p);
        }
        o.set_keep_alive(Duration::from_secs(5));
        o
    }

    async fn user(&self, client_id: &str, user: &str, password: &str) -> Client {
        Client::login(self.opts(client_id, Some((user, password)))).await.expect("login works")
    }

    async fn internal(&self, client_id: &str) -> Client {
        Client::login(self.mqtt.internal_options(client_id)).await.expect("internal login works")
    }
}

/// A self-signed certificate for 127.0.0.1, served the way the web's config is (with ALPN
/// http/1.1, which the front end must drop).
fn tls_server() -> (Arc<rustls::ServerConfig>, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    let der = ck.cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone().into()], key)
        .expect("server config");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(cfg), der)
}

/// A rumqttc client whose event loop runs in a task; incoming packets arrive on `rx`.
struct Client {
    c: AsyncClient,
    rx: mpsc::UnboundedReceiver<Packet>,
    task: JoinHandle<ConnectionError>,
}

impl Client {
    async fn login(opts: MqttOptions) -> std::result::Result<Client, ConnectionError> {
        let (c, mut el) = AsyncClient::new(opts, 64);
        loop {
            match el.poll().await? {
                Event::Incoming(Packet::ConnAck(_)) => break,
                _ => continue,
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(p)) => {
                        let _ = tx.send(p);
                    }
                    Ok(_) => {}
                    Err(e) => return e,
                }
            }
        });
        Ok(Client { c, rx, task })
    }

    async fn next(&mut self, within: Duration) -> Option<Packet> {
        tokio::time::timeout(within, self.rx.recv()).await.ok().flatten()
    }

    async fn publish_within(&mut self, within: Duration) -> Option<Publish> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Packet::Publish(p) => return Some(p),
                _ => continue,
            }
        }
    }

    async fn publish(&mut self) -> Publish {
        self.publish_within(Duration::from_secs(5)).await.expect("a message arrives")
    }

    async fn wait_for(&mut self, what: &str, want: impl Fn(&Packet) -> bool) -> Packet {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(p) if want(&p) => return p,
                Some(_) => continue,
                None => panic!("no {what} within 5 s"),
            }
        }
    }

    async fn suback(&mut self) -> SubAck {
        match self.wait_for("SUBACK", |p| matches!(p, Packet::SubAck(_))).await {
            Packet::SubAck(a) => a,
            _ => unreachable!(),
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
        self.c.subscribe(filter, qos).await.expect("queue subscribe");
        self.suback().await.return_codes
    }

    async fn send(&self, topic: &str, qos: QoS, retain: bool, payload: &str) {
        self.c.publish(topic, qos, retain, payload.as_bytes().to_vec()).await.expect("queue publish");
    }

    /// Waits until the connection has ended; returns the client library's error.
    async fn closed(self) -> ConnectionError {
        tokio::time::timeout(Duration::from_secs(5), self.task).await.expect("connection ends").expect("task")
    }
}

async fn refusal(opts: MqttOptions) -> ConnectReturnCode {
    match Client::login(opts).await {
        Err(ConnectionError::ConnectionRefused(code)) => code,
        Err(e) => panic!("expected a CONNACK refusal, got {e}"),
        Ok(_) => panic!("expected a CONNACK refusal, got a login"),
    }
}

fn payload(p: &Publish) -> &str {
    std::str::from_utf8(&p.payload).expect("utf-8 payload")
}

const QUIET: Duration = Duration::from_millis(400);

#[tokio::test]
async fn refused_logins_get_their_connack_code() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    assert_eq!(refusal(hub.opts("dev-1", None)).await, ConnectReturnCode::NotAuthorized);
    assert_eq!(refusal(hub.opts("dev-1", Some(("a", "wrong")))).await, ConnectReturnCode::BadUserNamePassword);
    assert_eq!(refusal(hub.opts("dev-1", Some(("nobody", "x")))).await, ConnectReturnCode::BadUserNamePassword);
    assert_eq!(refusal(hub.opts("dev-1", Some(("down", "x")))).await, ConnectReturnCode::ServiceUnavailable);
    // Anonymous is refused as such even without a client id; a clean session without an
    // id gets one from the front end (MQTT 3.1.1 §3.1.3.1); an over-long id is refused.
    assert_eq!(refusal(hub.opts("", None)).await, ConnectReturnCode::NotAuthorized);
    assert_eq!(refusal(hub.opts(&"d".repeat(300), Some(("a", "pa")))).await, ConnectReturnCode::BadClientId);
    // The internal login exists only at the broker, never through the front end.
    let secret = hub.mqtt.internal_options("x").credentials().expect("internal credentials").password;
    let internal = refusal(hub.opts("dev-1", Some((broker::INTERNAL_USER, &secret)))).await;
    assert_eq!(internal, ConnectReturnCode::BadUserNamePassword);
    assert_eq!(refusal(hub.opts("dev-1", Some(("evil", "x")))).await, ConnectReturnCode::NotAuthorized);
    // A will outside the grants refuses the login.
    let mut o = hub.opts("dev-1", Some(("a", "pa")));
    o.set_last_will(LastWill::new("homehub/dev/b/availability", "offline", QoS::AtLeastOnce, false));
    assert_eq!(refusal(o).await, ConnectReturnCode::NotAuthorized);
    assert_eq!(hub.mqtt.stats().refused_total, 9);
    assert_eq!(hub.mqtt.stats().live, 0);
    assert!(Client::login(hub.opts("", Some(("a", "pa")))).await.is_ok(), "empty client id with a clean session");
}

#[tokio::test]
async fn other_protocol_versions_get_0x01() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    for level in [3u8, 5] {
        let mut s = TcpStream::connect(hub.plain()).await.expect("connect");
        s.write_all(&raw_connect("dev-1", Some(("a", "pa")), 30, None, level)).await.expect("write");
        let mut ack = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack)).await.expect("answer").expect("read");
        assert_eq!(ack, [0x20, 0x02, 0x00, 0x01], "level {level}");
    }
}

#[tokio::test]
async fn own_topics_work_at_qos0_and_qos1_and_retained() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut a = hub.user("a-1", "a", "pa").await;
    let codes = a.subscribe("homehub/dev/a/#", QoS::AtLeastOnce).await;
    assert_eq!(codes, [SubscribeReasonCode::Success(QoS::AtLeastOnce)]);

    a.send("homehub/dev/a/state", QoS::AtMostOnce, false, "zero").await;
    let p = a.publish().await;
    assert_eq!((p.topic.as_str(), payload(&p)), ("homehub/dev/a/state", "zero"));

    a.send("homehub/dev/a/state", QoS::AtLeastOnce, false, "one").await;
    a.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_))).await;
    assert_eq!(payload(&a.publish().await), "one");

    a.send("homehub/dev/a/config", QoS::AtLeastOnce, true, "{\"rtsp_url\":\"x\"}").await;
    assert_eq!(payload(&a.publish().await), "{\"rtsp_url\":\"x\"}");
    let mut later = hub.user("a-2", "a", "pa").await;
    later.c.subscribe("homehub/dev/a/config", QoS::AtLeastOnce).await.expect("subscribe");
    let retained = later.publish().await;
    assert_eq!((retained.topic.as_str(), payload(&retained)), ("homehub/dev/a/config", "{\"rtsp_url\":\"x\"}"));
    assert!(retained.retain, "a retained message is delivered with the retain flag");
    assert_eq!(hub.mqtt.stats().live, 2);
}

#[tokio::test]
async fn one_login_cannot_see_or_touch_another() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut a = hub.user("a-1", "a", "pa").await;
    let mut b = hub.user("b-1", "b", "pb").await;
    assert_eq!(b.subscribe("homehub/dev/b/#", QoS::AtLeastOnce).await, [SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    for filter in ["#", "homehub/dev/+/state", "homehub/#", "homehub/dev/b/state", "+/dev/a/x", "$SYS/#"] {
        assert_eq!(a.subscribe(filter, QoS::AtMostOnce).await, [SubscribeReasonCode::Failure], "{filter}");
    }
    assert_eq!(a.subscribe("homehub/dev/a/#", QoS::AtMostOnce).await, [SubscribeReasonCode::Success(QoS::AtMostOnce)]);

    // b's message reaches b but not a.
    b.send("homehub/dev/b/state", QoS::AtLeastOnce, false, "b-secret").await;
    assert_eq!(payload(&b.publish().await), "b-secret");
    a.send("homehub/dev/a/state", QoS::AtMostOnce, false, "marker").await;
    assert_eq!(payload(&a.publish().await), "marker");
    assert!(a.publish_within(QUIET).await.is_none(), "a received another login's message");

    // a's publish to b's topic is acknowledged (QoS 1 and 2) but never reaches b.
    a.send("homehub/dev/b/state", QoS::AtLeastOnce, false, "forged").await;
    a.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_))).await;
    a.send("homehub/dev/b/cmd", QoS::ExactlyOnce, false, "forged2").await;
    a.wait_for("PUBCOMP", |p| matches!(p, Packet::PubComp(_))).await;
    a.send("homehub/dev/b/cmd", QoS::AtMostOnce, false, "forged3").await;
    assert!(b.publish_within(QUIET).await.is_none(), "a forged a message on b's topic");

    let stats = hub.mqtt.stats();
    assert_eq!(stats.denied_publish_total, 3);
    assert_eq!(stats.denied_subscribe_total, 6);
}

#[tokio::test]
async fn same_client_id_under_two_logins_does_not_kick() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut a = hub.user("cam", "a", "pa").await;
    let _b = hub.user("cam", "b", "pb").await;
    a.subscribe("homehub/dev/a/#", QoS::AtMostOnce).await;
    a.send("homehub/dev/a/state", QoS::AtMostOnce, false, "still here").await;
    assert_eq!(payload(&a.publish().await), "still here");
    assert_eq!(hub.mqtt.stats().live, 2);
}

#[tokio::test]
async fn mixed_subscribe_splices_refusals_into_the_broker_suback() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut a = hub.user("a-1", "a", "pa").await;
    let filters = [
        SubscribeFilter::new("homehub/dev/b/x".into(), QoS::AtMostOnce),
        SubscribeFilter::new("homehub/dev/a/x".into(), QoS::AtLeastOnce),
        SubscribeFilter::new("#".into(), QoS::AtMostOnce),
        SubscribeFilter::new("homehub/dev/a/y".into(), QoS::ExactlyOnce),
    ];
    a.c.subscribe_many(filters).await.expect("subscribe");
    let ack = a.suback().await;
    use SubscribeReasonCode::{Failure, Success};
    assert_eq!(ack.return_codes, [Failure, Success(QoS::AtLeastOnce), Failure, Success(QoS::ExactlyOnce)]);
    // The allowed ones really are subscribed.
    a.send("homehub/dev/a/y", QoS::AtMostOnce, false, "y").await;
    assert_eq!(a.publish().await.topic, "homehub/dev/a/y");
    assert_eq!(hub.mqtt.stats().denied_subscribe_total, 2);
}

#[tokio::test]
async fn unsubscribe_gets_exactly_one_unsuback() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut raw = Raw::login(&hub, "a-raw").await;
    let mut sub = rumqttc::Subscribe::new("homehub/dev/a/x", QoS::AtMostOnce);
    sub.add("homehub/dev/a/y".into(), QoS::AtMostOnce);
    sub.pkid = 1;
    raw.send(Packet::Subscribe(sub)).await;
    assert!(matches!(raw.recv().await, Packet::SubAck(a) if a.pkid == 1 && a.return_codes.len() == 2));
    // Two subscribed filters and one never subscribed: rumqttd alone answers twice.
    let topics = ["homehub/dev/a/x", "homehub/dev/a/y", "homehub/dev/a/z"].map(String::from).to_vec();
    raw.send(Packet::Unsubscribe(rumqttc::Unsubscribe { pkid: 2, topics })).await;
    assert_eq!(raw.recv().await, Packet::UnsubAck(rumqttc::UnsubAck::new(2)));
    // Only never-subscribed filters: rumqttd alone never answers.
    raw.send(Packet::Unsubscribe(rumqttc::Unsubscribe::new("homehub/dev/a/never"))).await;
    assert_eq!(raw.recv().await, Packet::UnsubAck(rumqttc::UnsubAck::new(0)));
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Packet::PingResp, "no stray UNSUBACK");
    let mut keep = rumqttc::Subscribe::new("homehub/dev/a/w", QoS::AtMostOnce);
    keep.pkid = 3;
    raw.send(Packet::Subscribe(keep)).await;
    assert!(matches!(raw.recv().await, Packet::SubAck(a) if a.pkid == 3));
    for topic in ["homehub/dev/a/x", "homehub/dev/a/y", "homehub/dev/a/w"] {
        raw.send(Packet::Publish(Publish::new(topic, QoS::AtMostOnce, "m"))).await;
    }
    assert!(matches!(raw.recv().await, Packet::Publish(p) if p.topic == "homehub/dev/a/w"), "unsubscribed filters still deliver");
}

/// What the front end works around, checked on rumqttd itself so an upgrade that changes
/// it is noticed.
#[tokio::test]
async fn rumqttd_quirks_the_front_end_covers() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let broker = hub.mqtt.shared.broker.addr();
    let secret = hub.mqtt.shared.broker.secret().to_string();
    let internal = Some((broker::INTERNAL_USER, secret.as_str()));
    let short = Duration::from_millis(1500);
    // Refused logins, a '/' in the client id and keepalive 0 all get no CONNACK at all.
    for (id, login, keep_alive) in [("x", Some(("homehub-internal", "wrong")), 30), ("u/x", internal, 30), ("x", internal, 0)] {
        let mut raw = Raw::open(broker, &raw_connect(id, login, keep_alive, None, 4)).await;
        assert_eq!(raw.try_recv(short).await, None, "{id} {keep_alive}");
    }
    let mut raw = Raw::open(broker, &raw_connect("u:x", internal, 30, None, 4)).await;
    assert!(matches!(raw.recv().await, Packet::ConnAck(a) if a.code == ConnectReturnCode::Success));
    // UNSUBSCRIBE: no UNSUBACK for a filter it does not have, one per filter it removes.
    raw.send(Packet::Unsubscribe(rumqttc::Unsubscribe { pkid: 1, topics: vec!["never".into()] })).await;
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Packet::PingResp);
    let mut sub = rumqttc::Subscribe::new("x", QoS::AtMostOnce);
    sub.add("y".into(), QoS::AtMostOnce);
    sub.pkid = 2;
    raw.send(Packet::Subscribe(sub)).await;
    assert!(matches!(raw.recv().await, Packet::SubAck(_)));
    raw.send(Packet::Unsubscribe(rumqttc::Unsubscribe { pkid: 3, topics: vec!["x".into(), "y".into()] })).await;
    raw.send(Packet::PingReq).await;
    let unsuback = Packet::UnsubAck(rumqttc::UnsubAck::new(3));
    assert_eq!([raw.recv().await, raw.recv().await, raw.recv().await], [unsuback.clone(), unsuback, Packet::PingResp]);
}

#[tokio::test]
async fn a_login_revoked_while_it_is_being_checked_is_refused() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let login = tokio::spawn(Client::login(hub.opts("slow-1", Some(("slow", "ps")))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hub.mqtt.revoke("slow"), 0, "not live yet");
    match login.await.expect("task") {
        Err(ConnectionError::ConnectionRefused(code)) => assert_eq!(code, ConnectReturnCode::NotAuthorized),
        Err(e) => panic!("expected a CONNACK refusal, got {e}"),
        Ok(_) => panic!("a revoked login got through"),
    }
    // Later logins of that user are the authenticator's business again.
    hub.user("slow-2", "slow", "ps").await;
}

async fn will_watcher(hub: &Hub) -> Client {
    let mut w = hub.internal("watcher").await;
    w.subscribe("homehub/dev/a/availability", QoS::AtLeastOnce).await;
    w
}

async fn with_will(hub: &Hub, client_id: &str) -> Client {
    let mut o = hub.opts(client_id, Some(("a", "pa")));
    o.set_last_will(LastWill::new("homehub/dev/a/availability", "offline", QoS::AtLeastOnce, false));
    Client::login(o).await.expect("login with will")
}

#[tokio::test]
async fn will_fires_on_abrupt_close_not_on_disconnect() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut w = will_watcher(&hub).await;

    let clean = with_will(&hub, "a-clean").await;
    clean.c.disconnect().await.expect("disconnect");
    clean.closed().await;
    assert!(w.publish_within(Duration::from_secs(1)).await.is_none(), "will fired after DISCONNECT");

    let abrupt = with_will(&hub, "a-abrupt").await;
    abrupt.task.abort(); // drops the socket without DISCONNECT
    let will = w.publish().await;
    assert_eq!((will.topic.as_str(), payload(&will)), ("homehub/dev/a/availability", "offline"));
}

#[tokio::test]
async fn revoke_drops_every_connection_of_the_user_and_fires_wills() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut w = will_watcher(&hub).await;
    let a1 = with_will(&hub, "a-1").await;
    let a2 = hub.user("a-2", "a", "pa").await;
    let mut b = hub.user("b-1", "b", "pb").await;
    assert_eq!(hub.mqtt.stats().live, 3);

    assert_eq!(hub.mqtt.revoke("a"), 2);
    a1.closed().await;
    a2.closed().await;
    assert_eq!(payload(&w.publish().await), "offline");
    assert_eq!(hub.mqtt.revoke("a"), 0);
    assert_eq!(hub.mqtt.revoke("nobody"), 0);

    // b is untouched.
    b.subscribe("homehub/dev/b/#", QoS::AtMostOnce).await;
    b.send("homehub/dev/b/state", QoS::AtMostOnce, false, "fine").await;
    assert_eq!(payload(&b.publish().await), "fine");
    assert_eq!(hub.mqtt.stats().live, 1);
}

#[tokio::test]
async fn silent_client_is_dropped_after_one_and_a_half_keepalives() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut w = will_watcher(&hub).await;
    let will = ("homehub/dev/a/availability", "offline");
    let mut s = TcpStream::connect(hub.plain()).await.expect("connect");
    s.write_all(&raw_connect("a-raw", Some(("a", "pa")), 1, Some(will), 4)).await.expect("write");
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.expect("connack");
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.expect("closed in time");
    assert!(n.is_ok() && rest.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(1400), "closed too early: {:?}", started.elapsed());
    assert_eq!(payload(&w.publish().await), "offline");
}

#[tokio::test]
async fn garbage_and_oversized_packets_are_refused_while_others_keep_working() {
    let hub = Hub::start(4096).await;
    let mut a = hub.user("a-1", "a", "pa").await;
    a.subscribe("homehub/dev/a/#", QoS::AtMostOnce).await;

    for junk in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[0x10, 0xff, 0xff, 0xff, 0x7f], &[0xff; 64]] {
        let mut s = TcpStream::connect(hub.plain()).await.expect("connect");
        s.write_all(junk).await.expect("write");
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(r.is_ok() && rest.is_empty(), "junk {junk:?} was not closed without an answer");
    }

    let mut big = hub.opts("a-big", Some(("a", "pa")));
    big.set_max_packet_size(1 << 20, 1 << 20);
    let big = Client::login(big).await.expect("login");
    big.send("homehub/dev/a/big", QoS::AtMostOnce, false, &"x".repeat(8192)).await;
    big.closed().await;

    a.send("homehub/dev/a/state", QoS::AtMostOnce, false, "alive").await;
    let p = a.publish().await;
    assert_eq!(payload(&p), "alive", "the oversized message must not have been relayed");
    assert_eq!(hub.mqtt.stats().malformed_total, 4);
}

#[tokio::test]
async fn tls_listener_serves_a_client_that_pins_the_certificate_by_ip() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let tls = hub.mqtt.tls_addr().expect("tls listener");
    let pinned = |fp: Vec<u8>| {
        let mut o = MqttOptions::new("a-tls", "127.0.0.1", tls.port());
        o.set_credentials("a", "pa");
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(pinning_client(fp))));
        o
    };
    let mut a = Client::login(pinned(Sha256::digest(&hub.cert_der).to_vec())).await.expect("TLS login");
    a.subscribe("homehub/dev/a/#", QoS::AtLeastOnce).await;
    a.send("homehub/dev/a/state", QoS::AtLeastOnce, false, "over tls").await;
    assert_eq!(payload(&a.publish().await), "over tls");

    match Client::login(pinned(vec![0; 32])).await {
        Err(ConnectionError::Tls(_)) => {}
        Err(e) => panic!("expected a TLS error for a wrong pin, got {e}"),
        Ok(_) => panic!("a wrong pin must not connect"),
    }
}

#[tokio::test]
async fn start_names_the_key_when_a_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let (server, _) = tls_server();
    let stop = Shutdown::new();
    let settings = Settings {
        listen_tls: None,
        listen_plain: Some(addr),
        max_packet_bytes: 1024,
        allow_public_clients: false,
        ..Settings::default()
    };
    let err = Mqtt::start(settings, Arc::new(TestAuth), server, stop).await.err().expect("bind fails");
    assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
    assert!(err.message().contains("mqtt.listen_plain") && err.message().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn stop_closes_listeners_and_connections() {
    let (server, _) = tls_server();
    let stop = Shutdown::new();
    let stop_tx = stop.clone();
    let loopback = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let settings = Settings {
        listen_tls: None,
        listen_plain: loopback,
        max_packet_bytes: 4096,
        allow_public_clients: false,
        ..Settings::default()
    };
    let mqtt = Mqtt::start(settings, Arc::new(TestAuth), server, stop).await.expect("start");
    let port = mqtt.plain_addr().expect("addr").port();
    let mut o = MqttOptions::new("a-1", "127.0.0.1", port);
    o.set_credentials("a", "pa");
    let a = Client::login(o.clone()).await.expect("login");
    stop_tx.trigger();
    a.closed().await;
    tokio::time::timeout(Duration::from_secs(10), mqtt.stopped()).await.expect("listeners and connection tasks end");
    assert!(Client::login(o).await.is_err(), "still accepting after stop");
}

/// A client on a bare socket, for what client libraries never send.
struct Raw {
    s: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn login(hub: &Hub, client_id: &str) -> Raw {
        let connect = raw_connect(client_id, Some(("a", "pa")), 30, None, 4);
        let mut raw = Raw::open(hub.plain(), &connect).await;
        assert!(matches!(raw.recv().await, Packet::ConnAck(a) if a.code == ConnectReturnCode::Success));
        raw
    }

    async fn open(addr: SocketAddr, first: &[u8]) -> Raw {
        Raw::open_from("127.0.0.1", addr, first).await
    }

    /// Connects from the loopback address `local` (127.0.0.2 … stand for other devices).
    async fn open_from(local: &str, addr: SocketAddr, first: &[u8]) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(local.parse().expect("address"), 0)).expect("bind");
        let mut s = socket.connect(addr).await.expect("connect");
        s.write_all(first).await.expect("write");
        Raw { s, buf: BytesMut::new() }
    }

    /// Logs in as "a" from `local`.
    async fn login_from(hub: &Hub, local: &str, client_id: &str) -> Raw {
        let connect = raw_connect(client_id, Some(("a", "pa")), 30, None, 4);
        let mut raw = Raw::open_from(local, hub.plain(), &connect).await;
        assert!(
            matches!(raw.recv().await, Packet::ConnAck(a) if a.code == ConnectReturnCode::Success),
            "{client_id} from {local}"
        );
        raw
    }

    /// The next packet, or `None` when the peer closes or says nothing for `within`.
    async fn try_recv(&mut self, within: Duration) -> Option<Packet> {
        let read = wire::read_packet(&mut self.s, &mut self.buf, 1 << 20);
        tokio::time::timeout(within, read).await.ok().and_then(|r| r.ok())
    }

    async fn send(&mut self, p: Packet) {
        wire::send_packet(&mut self.s, &p).await.expect("send");
    }

    async fn recv(&mut self) -> Packet {
        let read = wire::read_packet(&mut self.s, &mut self.buf, 1 << 20);
        tokio::time::timeout(Duration::from_secs(5), read).await.expect("a packet in time").expect("a packet")
    }
}

/// A CONNECT written by the codec, with its protocol level changed to `level`.
fn raw_connect(client_id: &str, login: Option<(&str, &str)>, keep_alive: u16, will: Option<(&str, &str)>, level: u8) -> Vec<u8> {
    let mut c = rumqttc::Connect::new(client_id);
    c.keep_alive = keep_alive;
    if let Some((u, p)) = login {
        c.set_login(u, p);
    }
    c.last_will = will.map(|(t, m)| LastWill::new(t, m, QoS::AtLeastOnce, false));
    let mut out = BytesMut::new();
    wire::encode(&Packet::Connect(c), &mut out).expect("encode");
    assert!(out[1] < 0x80, "short CONNECT: one remaining-length byte");
    out[8] = level;
    out.to_vec()
}

/// A rustls client that trusts exactly the certificate with this SHA-256, as devices do
/// with the mDNS `fp` record.
fn pinning_client(fingerprint: Vec<u8>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { fingerprint, provider }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"mqtt".to_vec()];
    Arc::new(cfg)
}

#[derive(Debug)]
struct Pinned {
    fingerprint: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.fingerprint.as_slice() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("certificate does not match the pinned fingerprint".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// rumqttd keeps a bounded log per topic filter and lets a subscriber that falls behind
/// it skip ahead, losing messages their publishers were told had arrived. A burst far
/// larger than a whole house sends at once must reach a subscriber that is not reading.
#[tokio::test]
async fn a_subscriber_that_falls_behind_a_burst_loses_nothing() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let (sub, mut sub_loop) = AsyncClient::new(hub.opts("a-sub", Some(("a", "pa"))), 64);
    sub.subscribe("homehub/dev/a/state", QoS::AtLeastOnce).await.expect("queue subscribe");
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = sub_loop.poll().await.expect("subscriber connects") {
            break;
        }
    }
    // The subscriber's event loop is not polled while 3000 messages (about 900 KB) go out.
    const N: usize = 3000;
    let mut publisher = hub.user("a-pub", "a", "pa").await;
    let body = "x".repeat(300);
    for i in 0..N {
        publisher.send("homehub/dev/a/state", QoS::AtLeastOnce, false, &format!("{i:05}{body}")).await;
    }
    let mut acked = 0;
    while acked < N {
        let p = publisher.next(Duration::from_secs(20)).await.expect("every publish is acknowledged");
        if matches!(p, Packet::PubAck(_)) {
            acked += 1;
        }
    }
    let mut got = Vec::with_capacity(N);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < N {
        let ev = tokio::time::timeout_at(deadline, sub_loop.poll()).await.expect("all messages within 30 s").expect("subscriber");
        if let Event::Incoming(Packet::Publish(p)) = ev {
            got.push(String::from_utf8_lossy(&p.payload[..5]).to_string());
        }
    }
    let want: Vec<String> = (0..N).map(|i| format!("{i:05}")).collect();
    assert_eq!(got, want, "every acknowledged message arrives, in order");
}

// ---- pair sessions, caps, retained messages, broker-side ids ----

#[derive(Debug)]
enum DeskEvent {
    Opened(PairSession),
    Message(u64, bytes::Bytes),
    Closed(u64),
}

/// A desk that reports everything it hears.
struct TestDesk(mpsc::UnboundedSender<DeskEvent>);

impl PairDesk for TestDesk {
    fn opened(&self, session: PairSession) {
        let _ = self.0.send(DeskEvent::Opened(session));
    }
    fn message(&self, session_id: u64, payload: bytes::Bytes) {
        let _ = self.0.send(DeskEvent::Message(session_id, payload));
    }
    fn closed(&self, session_id: u64) {
        let _ = self.0.send(DeskEvent::Closed(session_id));
    }
}

struct Desk(mpsc::UnboundedReceiver<DeskEvent>);

impl Desk {
    fn on(hub: &Hub) -> Desk {
        let (tx, rx) = mpsc::unbounded_channel();
        hub.mqtt.set_pair_desk(Arc::new(TestDesk(tx)));
        Desk(rx)
    }

    async fn next(&mut self) -> DeskEvent {
        tokio::time::timeout(Duration::from_secs(5), self.0.recv()).await.expect("a desk event in time").expect("desk open")
    }

    async fn opened(&mut self) -> PairSession {
        match self.next().await {
            DeskEvent::Opened(s) => s,
            other => panic!("expected opened, got {other:?}"),
        }
    }

    async fn message(&mut self, session: u64) -> String {
        match self.next().await {
            DeskEvent::Message(id, p) if id == session => String::from_utf8_lossy(&p).into_owned(),
            other => panic!("expected a message of session {session}, got {other:?}"),
        }
    }

    async fn closed(&mut self, session: u64) {
        match self.next().await {
            DeskEvent::Closed(id) if id == session => {}
            other => panic!("expected session {session} closed, got {other:?}"),
        }
    }

    async fn quiet(&mut self) {
        if let Ok(Some(e)) = tokio::time::timeout(QUIET, self.0.recv()).await {
            panic!("unexpected desk event {e:?}");
        }
    }
}

fn pair_opts(hub: &Hub, device_id: &str) -> MqttOptions {
    hub.opts(device_id, Some(("pair", "pair")))
}

/// Waits (up to 5 s) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn pair_sessions_are_served_by_the_front_end_alone() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut desk = Desk::on(&hub);
    // Nothing of a pair session reaches rumqttd.
    let mut spy = hub.internal("spy").await;
    spy.subscribe("homehub/pair/#", QoS::AtLeastOnce).await;

    let mut dev = Client::login(pair_opts(&hub, "cam-7")).await.expect("pair login");
    let session = desk.opened().await;
    assert_eq!((session.device_id.as_str(), session.peer.ip()), ("cam-7", "127.0.0.1".parse().unwrap()));
    assert_eq!(hub.mqtt.peers("pair"), ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);

    // An answer before the device subscribed is dropped, not kept for later.
    session.out.try_send(b"too early".to_vec()).expect("queue");
    until("early answer consumed", || session.out.capacity() == session.out.max_capacity()).await;

    let ok = SubscribeReasonCode::Success(QoS::AtLeastOnce);
    for other in ["homehub/pair/cam-8/response", "homehub/pair/+/response", "homehub/pair/cam-7/#", "#"] {
        assert_eq!(dev.subscribe(other, QoS::AtLeastOnce).await, [SubscribeReasonCode::Failure], "{other}");
    }
    let filters = [
        SubscribeFilter::new("homehub/dev/cam-7/cmd".into(), QoS::AtMostOnce),
        SubscribeFilter::new("homehub/pair/cam-7/response".into(), QoS::ExactlyOnce),
    ];
    dev.c.subscribe_many(filters).await.expect("subscribe");
    assert_eq!(dev.suback().await.return_codes, [SubscribeReasonCode::Failure, ok], "QoS granted at most 1");
    assert!(dev.publish_within(QUIET).await.is_none(), "an answer queued before subscribing arrived");

    // Denied: another device's topic, retained, oversized. Then one that goes through.
    dev.send("homehub/pair/cam-8/request", QoS::AtLeastOnce, false, "not mine").await;
    dev.send("homehub/pair/cam-7/request", QoS::AtLeastOnce, true, "retained").await;
    dev.send("homehub/pair/cam-7/request", QoS::AtLeastOnce, false, &"x".repeat(PAIR_MAX_PAYLOAD + 1)).await;
    dev.send("homehub/pair/cam-7/request", QoS::AtLeastOnce, false, &"y".repeat(PAIR_MAX_PAYLOAD)).await;
    assert_eq!(desk.message(session.id).await, "y".repeat(PAIR_MAX_PAYLOAD));
    dev.send("homehub/pair/cam-7/request", QoS::ExactlyOnce, false, "{\"v\":2}").await;
    assert_eq!(desk.message(session.id).await, "{\"v\":2}");
    dev.wait_for("PUBCOMP", |p| matches!(p, Packet::PubComp(_))).await;
    desk.quiet().await;
    let stats = hub.mqtt.stats();
    assert_eq!((stats.denied_publish_total, stats.denied_subscribe_total), (3, 5));

    // Answers arrive at QoS 1; more than the in-flight window arrive too, so PUBACKs count.
    for i in 0..20 {
        session.out.send(format!("answer {i}").into_bytes()).await.expect("queue answer");
    }
    for i in 0..20 {
        let p = dev.publish().await;
        assert_eq!(
            (p.topic.as_str(), p.qos, payload(&p)),
            ("homehub/pair/cam-7/response", QoS::AtLeastOnce, &*format!("answer {i}"))
        );
    }
    assert!(spy.publish_within(QUIET).await.is_none(), "a pair message reached the broker");

    dev.c.disconnect().await.expect("disconnect");
    dev.closed().await;
    desk.closed(session.id).await;
    desk.quiet().await;
    until("pair session gone", || hub.mqtt.stats().live == 0).await;
    assert!(hub.mqtt.peers("pair").is_empty());
}

#[tokio::test]
async fn pair_logins_are_checked_at_connect() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    assert_eq!(refusal(pair_opts(&hub, "cam-1")).await, ConnectReturnCode::ServiceUnavailable, "no desk yet");
    let mut desk = Desk::on(&hub);
    for (keep_alive, will, why) in [(0, None, "keepalive 0"), (30, Some(("homehub/pair/cam-1/request", "bye")), "a will")] {
        let mut raw = Raw::open(hub.plain(), &raw_connect("cam-1", Some(("pair", "pair")), keep_alive, will, 4)).await;
        assert!(matches!(raw.recv().await, Packet::ConnAck(a) if a.code == ConnectReturnCode::NotAuthorized), "{why}");
        assert_eq!(raw.try_recv(QUIET).await, None, "closed after {why}");
    }
    desk.quiet().await;
    Client::login(pair_opts(&hub, "cam-1")).await.expect("a proper pair login");
    desk.opened().await;
}

/// A raw `pair` session from `local`; its CONNACK code.
async fn raw_pair(hub: &Hub, local: &str, device_id: &str, keep_alive: u16) -> (Raw, ConnectReturnCode) {
    let mut raw = Raw::open_from(local, hub.plain(), &raw_connect(device_id, Some(("pair", "pair")), keep_alive, None, 4)).await;
    match raw.recv().await {
        Packet::ConnAck(a) => (raw, a.code),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn pair_sessions_are_capped_per_address_and_in_all() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let _desk = Desk::on(&hub);
    let mut held = Vec::new();
    for n in 0..PAIR_MAX_PER_ADDRESS {
        let (raw, code) = raw_pair(&hub, "127.0.0.2", &format!("cam-{n}"), 30).await;
        assert_eq!(code, ConnectReturnCode::Success);
        held.push(raw);
    }
    let (_, code) = raw_pair(&hub, "127.0.0.2", "cam-x", 30).await;
    assert_eq!(code, ConnectReturnCode::ServiceUnavailable, "a fifth from one address");
    // Other addresses fill up the rest, up to the total.
    for a in 3..(3 + PAIR_MAX_TOTAL / PAIR_MAX_PER_ADDRESS - 1) {
        for n in 0..PAIR_MAX_PER_ADDRESS {
            let (raw, code) = raw_pair(&hub, &format!("127.0.0.{a}"), &format!("cam-{a}-{n}"), 30).await;
            assert_eq!(code, ConnectReturnCode::Success, "127.0.0.{a} #{n}");
            held.push(raw);
        }
    }
    assert_eq!(held.len(), PAIR_MAX_TOTAL);
    let (_, code) = raw_pair(&hub, "127.0.0.100", "cam-y", 30).await;
    assert_eq!(code, ConnectReturnCode::ServiceUnavailable, "one over the total");
    // Relayed logins are not affected, and a freed place is taken again.
    hub.user("a-1", "a", "pa").await;
    drop(held.pop());
    let shared = hub.mqtt.shared.clone();
    until("a pair place frees", move || shared.pair_total.available_permits() == 1).await;
    let (_, code) = raw_pair(&hub, "127.0.0.100", "cam-y", 30).await;
    assert_eq!(code, ConnectReturnCode::Success);
}

#[tokio::test]
async fn pair_sessions_end_on_keepalive_and_lifetime() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut desk = Desk::on(&hub);
    let started = std::time::Instant::now();
    let (mut raw, code) = raw_pair(&hub, "127.0.0.1", "cam-k", 1).await;
    assert_eq!(code, ConnectReturnCode::Success);
    let s = desk.opened().await;
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Packet::PingResp);
    // Silent after that: closed 1.5 s after its last packet, not before.
    desk.closed(s.id).await;
    let lasted = started.elapsed();
    assert!(lasted >= Duration::from_millis(1400) && lasted < Duration::from_secs(4), "{lasted:?}");
    assert_eq!(raw.try_recv(QUIET).await, None);

    hub.mqtt.shared.set_pair_lifetime(Duration::from_millis(1200));
    let started = std::time::Instant::now();
    let (mut raw, _) = raw_pair(&hub, "127.0.0.1", "cam-l", 60).await;
    let s = desk.opened().await;
    // Busy all along: it ends anyway when its lifetime is over.
    let pinger = tokio::spawn(async move {
        loop {
            if wire::send_packet(&mut raw.s, &Packet::PingReq).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    desk.closed(s.id).await;
    let lasted = started.elapsed();
    assert!(lasted >= Duration::from_millis(1100) && lasted < Duration::from_secs(4), "{lasted:?}");
    tokio::time::timeout(Duration::from_secs(5), pinger).await.expect("the socket is closed").expect("task");
}

#[tokio::test]
async fn unauthenticated_connections_are_capped_per_address() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut idle = Vec::new();
    for _ in 0..MAX_UNAUTHENTICATED_PER_ADDRESS {
        idle.push(Raw::open_from("127.0.0.9", hub.plain(), &[]).await);
    }
    let connected = hub.mqtt.shared.clone();
    until("all accepted", move || connected.counters.connections_total.load(std::sync::atomic::Ordering::Relaxed) >= 64).await;
    let mut over = Raw::open_from("127.0.0.9", hub.plain(), &raw_connect("a-1", Some(("a", "pa")), 30, None, 4)).await;
    assert_eq!(over.try_recv(Duration::from_secs(2)).await, None, "closed at once without a CONNACK");
    // Another address logs in meanwhile; a freed place is usable again.
    Raw::login_from(&hub, "127.0.0.10", "a-2").await;
    drop(idle.pop());
    let shared = hub.mqtt.shared.clone();
    until("a place frees", move || shared.unauthenticated.count("127.0.0.9".parse().unwrap()) < 64).await;
    Raw::login_from(&hub, "127.0.0.9", "a-3").await;
}

#[tokio::test]
async fn connections_are_capped_per_address_in_all() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut held = Vec::new();
    for n in 0..MAX_CONNECTIONS_PER_ADDRESS {
        held.push(Raw::login_from(&hub, "127.0.0.11", &format!("a-{n}")).await);
    }
    let mut over = Raw::open_from("127.0.0.11", hub.plain(), &raw_connect("a-x", Some(("a", "pa")), 30, None, 4)).await;
    assert_eq!(over.try_recv(Duration::from_secs(2)).await, None, "closed at once without a CONNACK");
    Raw::login_from(&hub, "127.0.0.12", "a-y").await;
    assert_eq!(hub.mqtt.stats().live, MAX_CONNECTIONS_PER_ADDRESS as u64 + 1);
}

#[tokio::test]
async fn descriptor_slots_run_out_and_come_back() {
    // 100 descriptors leave the minimum of 32 slots: 10 logins (3 each) and 2 idle sockets.
    let hub = Hub::start_with(|s| s.descriptors = crate::limits::Descriptors::with_limit(100)).await;
    let slots = hub.mqtt.shared.descriptors.slots().clone();
    assert_eq!(slots.total(), 32);
    let mut logins = Vec::new();
    for n in 0..10 {
        logins.push(Raw::login_from(&hub, "127.0.0.13", &format!("a-{n}")).await);
    }
    let mut idle = vec![Raw::open_from("127.0.0.13", hub.plain(), &[]).await];
    idle.push(Raw::open_from("127.0.0.13", hub.plain(), &[]).await);
    let s = slots.clone();
    until("every slot taken", move || s.free() == 0).await;
    let mut refused = Raw::open_from("127.0.0.14", hub.plain(), &raw_connect("b-1", Some(("b", "pb")), 30, None, 4)).await;
    assert_eq!(refused.try_recv(Duration::from_secs(2)).await, None, "closed at once without a CONNACK");
    assert!(slots.refused_total() >= 1);
    // One slot free: the socket is taken, but its broker session (2 more) is not.
    drop(idle.pop());
    let s = slots.clone();
    until("one slot free", move || s.free() == 1).await;
    let mut half = Raw::open_from("127.0.0.14", hub.plain(), &raw_connect("b-1", Some(("b", "pb")), 30, None, 4)).await;
    assert!(matches!(half.recv().await, Packet::ConnAck(a) if a.code == ConnectReturnCode::ServiceUnavailable));
    // A login gone: another address logs in; recording's reserve was never touched.
    drop(logins.pop());
    let s = slots.clone();
    until("a login's slots free", move || s.free() >= 3).await;
    let mut b = Raw::open_from("127.0.0.14", hub.plain(), &raw_connect("b-2", Some(("b", "pb")), 30, None, 4)).await;
    assert!(matches!(b.recv().await, Packet::ConnAck(a) if a.code == ConnectReturnCode::Success));
    assert_eq!(hub.mqtt.shared.descriptors.reserve(), 68);
}

#[tokio::test]
async fn retained_messages_outside_the_grants_are_not_kept() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut a = hub.user("a-1", "a", "pa").await;
    a.subscribe("homehub/dev/a/#", QoS::AtLeastOnce).await;
    let big = "z".repeat(MAX_RETAINED_PAYLOAD + 1);
    a.send("homehub/dev/a/junk/1", QoS::AtLeastOnce, true, "junk").await;
    a.send("homehub/dev/a/state", QoS::AtLeastOnce, true, &big).await;
    a.send("homehub/dev/a/config", QoS::AtLeastOnce, true, "kept").await;
    // Delivered live all the same.
    let live: Vec<String> = [a.publish().await, a.publish().await, a.publish().await].iter().map(|p| p.topic.clone()).collect();
    assert_eq!(live, ["homehub/dev/a/junk/1", "homehub/dev/a/state", "homehub/dev/a/config"]);
    // A will with retain on a topic it may publish to but not retain on fires, unkept.
    let mut o = hub.opts("a-will", Some(("a", "pa")));
    o.set_last_will(LastWill::new("homehub/dev/a/junk/will", "gone", QoS::AtLeastOnce, true));
    let w = Client::login(o).await.expect("login with will");
    w.task.abort();
    assert_eq!(a.publish().await.topic, "homehub/dev/a/junk/will");

    let mut later = hub.user("a-2", "a", "pa").await;
    later.c.subscribe("homehub/dev/a/#", QoS::AtLeastOnce).await.expect("subscribe");
    let p = later.publish().await;
    assert_eq!((p.topic.as_str(), payload(&p), p.retain), ("homehub/dev/a/config", "kept", true));
    assert!(later.publish_within(QUIET).await.is_none(), "a message outside Grants::retain was retained");
}

#[tokio::test]
async fn clean_sessions_reuse_broker_side_ids() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    for n in 0..1000 {
        let mut raw = Raw::login(&hub, &format!("unique-{n}")).await;
        raw.send(Packet::Disconnect).await;
        assert_eq!(raw.try_recv(Duration::from_secs(5)).await, None, "closed after DISCONNECT");
    }
    let seen = hub.mqtt.shared.registry.broker_ids_seen();
    assert!(seen <= 4, "{seen} broker-side ids for 1000 clean sessions one after another");
    // Still a working session after all that.
    let mut a = hub.user("a-last", "a", "pa").await;
    a.subscribe("homehub/dev/a/x", QoS::AtMostOnce).await;
    a.send("homehub/dev/a/x", QoS::AtMostOnce, false, "fine").await;
    assert_eq!(payload(&a.publish().await), "fine");
}

#[tokio::test]
async fn a_login_has_at_most_four_persistent_ids() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let persistent = |id: &str| {
        let mut o = hub.opts(id, Some(("a", "pa")));
        o.set_clean_session(false);
        o
    };
    for n in 0..MAX_PERSISTENT_IDS {
        let c = Client::login(persistent(&format!("p-{n}"))).await.expect("persistent login");
        c.c.disconnect().await.expect("disconnect");
        c.closed().await;
    }
    assert_eq!(refusal(persistent("p-new")).await, ConnectReturnCode::BadClientId);
    Client::login(persistent("p-0")).await.expect("a known persistent id again");
    Client::login(hub.opts("p-new", Some(("a", "pa")))).await.expect("clean sessions are not counted");
    Client::login(hub.opts("p-new", Some(("b", "pb")))).await.expect("another login has its own");
}

#[tokio::test]
async fn peers_are_the_addresses_of_live_connections() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let one = Raw::login_from(&hub, "127.0.0.16", "a-1").await;
    let two = Raw::login_from(&hub, "127.0.0.15", "a-2").await;
    let _again = Raw::login_from(&hub, "127.0.0.16", "a-3").await;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(hub.mqtt.peers("a"), [ip("127.0.0.15"), ip("127.0.0.16")]);
    assert!(hub.mqtt.peers("b").is_empty());
    drop(one);
    until("a-1 gone", || hub.mqtt.stats().live == 2).await;
    assert_eq!(hub.mqtt.peers("a"), [ip("127.0.0.15"), ip("127.0.0.16")], "127.0.0.16 still has a-3");
    drop(two);
    until("a-2 gone", || hub.mqtt.peers("a") == [ip("127.0.0.16")]).await;
    hub.mqtt.revoke("a");
    assert!(hub.mqtt.peers("a").is_empty());
}

#[tokio::test]
async fn pair_sessions_answer_qos2_once_and_end_on_huge_packets() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut desk = Desk::on(&hub);
    let (mut raw, code) = raw_pair(&hub, "127.0.0.1", "cam-q", 30).await;
    assert_eq!(code, ConnectReturnCode::Success);
    let s = desk.opened().await;
    let mut p = Publish::new("homehub/pair/cam-q/request", QoS::ExactlyOnce, "once");
    p.pkid = 5;
    raw.send(Packet::Publish(p.clone())).await;
    assert_eq!(raw.recv().await, Packet::PubRec(rumqttc::PubRec::new(5)));
    p.dup = true;
    raw.send(Packet::Publish(p)).await;
    assert_eq!(raw.recv().await, Packet::PubRec(rumqttc::PubRec::new(5)), "a resent QoS 2 publish");
    raw.send(Packet::PubRel(rumqttc::PubRel::new(5))).await;
    assert_eq!(raw.recv().await, Packet::PubComp(rumqttc::PubComp::new(5)));
    assert_eq!(desk.message(s.id).await, "once");
    desk.quiet().await;
    // A packet far over the pairing payload cap is not even buffered: the session ends.
    let huge = "h".repeat(pair::PAIR_MAX_PACKET + 1);
    raw.send(Packet::Publish(Publish::new("homehub/pair/cam-q/request", QoS::AtMostOnce, huge))).await;
    desk.closed(s.id).await;
    assert_eq!(raw.try_recv(Duration::from_secs(2)).await, None);
    assert_eq!(hub.mqtt.stats().malformed_total, 1);
}

#[tokio::test]
async fn a_client_id_that_connects_again_takes_over_its_slot_and_fires_the_old_will() {
    let hub = Hub::start(DEFAULT_MAX_PACKET_BYTES).await;
    let mut w = will_watcher(&hub).await;
    let old = with_will(&hub, "cam-a").await;
    let _other = hub.user("cam-b", "a", "pa").await;
    // The device comes back (say after a power cut) before its old connection timed out.
    let mut new = hub.user("cam-a", "a", "pa").await;
    old.closed().await;
    assert_eq!(payload(&w.publish().await), "offline", "the old connection's will fires at the takeover");
    new.subscribe("homehub/dev/a/x", QoS::AtMostOnce).await;
    new.send("homehub/dev/a/x", QoS::AtMostOnce, false, "back").await;
    assert_eq!(payload(&new.publish().await), "back");
    assert_eq!(hub.mqtt.shared.registry.broker_ids_seen(), 2, "cam-a kept its slot, cam-b has the other");
    let shared = hub.mqtt.shared.clone();
    until("the old connection is gone", move || shared.counters.snapshot().live == 2).await;
}
