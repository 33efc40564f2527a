//! The device side against a scripted broker: a TLS listener speaking just enough MQTT 3.1.1
//! (rumqttc's own packet codec) to play the hub, so the whole flow runs without the hub,
//! GStreamer or multicast.

const MODEL: &str = "homehub-camsim";

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::BytesMut;
use rumqttc::{ConnAck, PubAck, Publish, SubAck, SubscribeReasonCode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::pairing::{DeviceMessage, HubExchange, Request, parse_config, parse_device_message, parse_state};

const CODE: &str = "13572468";
const WAIT: Duration = Duration::from_secs(10);

struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
    fingerprint: [u8; 32],
}

fn cert() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = ck.cert.der().clone();
    let fingerprint = Sha256::digest(der.as_ref()).into();
    Cert { der, key: ck.signing_key.serialize_der(), fingerprint }
}

fn server_config(c: &Cert) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.clone()));
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![c.der.clone()], key)
        .unwrap();
    Arc::new(cfg)
}

// ---- pure parts ----

fn device(rtsp: &str) -> Device {
    Device {
        device_id: "cam-t".into(),
        setup_code: CODE.into(),
        name: "Garden".into(),
        ssid: "homehub-sim".into(),
        model: MODEL.into(),
        rtsp: rtsp.parse().unwrap(),
        rtsp_login: None,
        started: Instant::now(),
    }
}

fn hub(port: u16, fingerprint: [u8; 32]) -> Hub {
    Hub { host: "127.0.0.1".into(), port, fingerprint }
}

#[test]
fn stream_urls_carry_the_login_percent_encoded() {
    let v4: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(stream_url(v4, 8554, None, "main"), "rtsp://127.0.0.1:8554/main");
    let login = ("us er".to_string(), "p@ss:w/rd~".to_string());
    assert_eq!(stream_url(v4, 8554, Some(&login), "sub"), "rtsp://us%20er:p%40ss%3Aw%2Frd~@127.0.0.1:8554/sub");
    assert_eq!(stream_url("::1".parse().unwrap(), 9, None, "main"), "rtsp://[::1]:9/main");
    assert_eq!(percent_encode("é"), "%C3%A9");
}

#[test]
fn the_address_given_to_the_hub_is_a_real_one() {
    let lan: IpAddr = "10.0.0.7".parse().unwrap();
    assert_eq!(advertised_host("10.0.0.2".parse().unwrap(), || Some(lan)), "10.0.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(advertised_host("0.0.0.0".parse().unwrap(), || Some(lan)), lan);
    assert_eq!(advertised_host("::".parse().unwrap(), || None), "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(local_ip_toward("127.0.0.1", 8883), Some("127.0.0.1".parse().unwrap()));
    assert_eq!(local_ip_toward("hub.local", 8883), None);
}

#[test]
fn config_and_state_are_what_the_hub_accepts() {
    let mut d = device("0.0.0.0:8554");
    d.rtsp_login = Some(("viewer".into(), "se cret".into()));
    let c = parse_config(&device_config(&d, &hub(1, [0; 32])).to_json()).unwrap();
    assert_eq!(c.rtsp_url, "rtsp://viewer:se%20cret@127.0.0.1:8554/main");
    assert_eq!(c.substream_url.as_deref(), Some("rtsp://viewer:se%20cret@127.0.0.1:8554/sub"));
    assert_eq!(c.name.as_deref(), Some("Garden"));
    let s = parse_state(&state(&d)).unwrap();
    assert_eq!(s["wifi_ssid"], "homehub-sim");
    assert_eq!(s["firmware"], FIRMWARE);
    assert!(s["uptime_s"].is_u64());
}

const FP: [u8; 32] = [0x5a; 32];

fn asker() -> Asker {
    Asker { device_id: "cam-t".into(), setup_code: CODE.into(), model: MODEL.into(), fingerprint: hex::encode(FP) }
}

fn request_of(payload: &[u8]) -> Request {
    match parse_device_message(payload) {
        Ok(DeviceMessage::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

/// The hub's side of one exchange for `request`, with `code` and the certificate `fp`.
fn hub_side(request: &[u8], code: &str, fp: [u8; 32]) -> (HubExchange, Response) {
    HubExchange::start(&request_of(request), code, &hex::encode(fp)).unwrap()
}

#[test]
fn the_request_is_a_v2_request_for_this_device() {
    let a = asker();
    let (_, payload) = a.start();
    let req = request_of(&payload);
    assert_eq!((req.device_id.as_str(), req.kind.as_str(), req.model.as_str()), ("cam-t", "camera", MODEL));
    assert_ne!(request_of(&a.start().1).pake, req.pake, "a fresh exchange each time");
}

fn published(step: Step) -> Vec<u8> {
    match step {
        Step::Publish(p) => p,
        other => panic!("expected something to publish, got {other:?}"),
    }
}

#[test]
fn answers_drive_the_exchange() {
    let a = asker();
    let x: Shared = Arc::default();
    let request = fresh(&x, &a);
    let (hub, challenge) = hub_side(&request, CODE, FP);
    assert!(matches!(on_answer(b"junk", &x, &a), Step::Wait));
    let confirm = published(on_answer(challenge.to_json().as_bytes(), &x, &a));
    let Ok(DeviceMessage::Confirm(c)) = parse_device_message(&confirm) else { panic!("a confirm") };
    assert!(hub.verify(&c));
    assert!(matches!(on_answer(challenge.to_json().as_bytes(), &x, &a), Step::Wait), "one challenge per exchange");
    let creds = Credentials { username: "cam-t".into(), password: pairing::new_password() };
    let accepted = hub.accept(&creds).to_json();
    assert!(matches!(on_answer(accepted.as_bytes(), &x, &a), Step::Paired(c) if c == creds));
    assert!(matches!(on_answer(accepted.as_bytes(), &x, &a), Step::Wait), "the key is used once");
}

#[test]
fn a_wrong_code_or_another_hub_gets_an_abort() {
    let a = asker();
    for (code, fp) in [("13572469", FP), (CODE, [0x11; 32])] {
        let x: Shared = Arc::default();
        let (_, challenge) = hub_side(&fresh(&x, &a), code, fp);
        let abort = published(on_answer(challenge.to_json().as_bytes(), &x, &a));
        assert_eq!(parse_device_message(&abort).unwrap(), DeviceMessage::Abort("confirm mismatch".into()));
    }
}

#[test]
fn rejections_retry_only_for_a_wrong_code() {
    let a = asker();
    let x: Shared = Arc::default();
    let first = fresh(&x, &a);
    let wrong = Response::Rejected { reason: "wrong setup code for cam-t (1 of 5)".into() }.to_json();
    let again = request_of(&published(on_answer(wrong.as_bytes(), &x, &a)));
    assert_ne!(again.pake, request_of(&first).pake, "a fresh exchange");
    for reason in ["wrong setup code; cam-t is locked for 15 minutes", "too many wrong setup codes", "device id is taken"] {
        let r = Response::Rejected { reason: reason.into() }.to_json();
        assert!(matches!(on_answer(r.as_bytes(), &x, &a), Step::Rejected(got) if got == reason));
    }
}

// ---- pinning ----

#[test]
fn the_pinned_verifier_accepts_its_certificate_and_refuses_another() {
    let (a, b) = (cert(), cert());
    let verifier = pin::PinnedCert::new(a.fingerprint);
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let now = rustls::pki_types::UnixTime::now();
    use rustls::client::danger::ServerCertVerifier;
    assert!(verifier.verify_server_cert(&a.der, &[], &name, &[], now).is_ok());
    assert!(verifier.verify_server_cert(&b.der, &[], &name, &[], now).is_err());
    assert!(!verifier.supported_verify_schemes().is_empty());
}

/// A real handshake over a pipe: the pin must also pass rustls' signature checks.
async fn handshake(server: &Cert, pinned: [u8; 32]) -> Result<(), String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(server));
    let server_task = tokio::spawn(async move {
        if let Ok(mut tls) = acceptor.accept(server_io).await {
            let _ = tls.write_all(b"hi").await;
            let _ = tls.flush().await;
        }
    });
    let connector = tokio_rustls::TlsConnector::from(pin::client_config(pinned).unwrap());
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let result = async {
        let mut tls = connector.connect(name, client_io).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 2];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok(())
    }
    .await;
    let _ = server_task.await;
    result
}

#[tokio::test]
async fn a_handshake_succeeds_only_with_the_pinned_certificate() {
    let (a, b) = (cert(), cert());
    handshake(&a, a.fingerprint).await.unwrap();
    let e = handshake(&a, b.fingerprint).await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");
}

// ---- the scripted broker ----

/// What a client did, as the broker saw it.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Connect { client_id: String, username: String, password: String, will: Option<(String, Vec<u8>, bool)> },
    Subscribe(String),
    Publish { topic: String, payload: Vec<u8>, retain: bool },
    Disconnect,
}

/// What the test tells the current connection to do.
enum Cmd {
    Send(Packet),
    Kick,
}

type Policy = Arc<Mutex<Box<dyn Fn(&str, &str) -> ConnectReturnCode + Send>>>;

struct Broker {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    current: Arc<Mutex<Option<mpsc::UnboundedSender<Cmd>>>>,
    policy: Policy,
}

impl Broker {
    async fn start(cert: &Cert) -> Broker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(cert));
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let current = Arc::new(Mutex::new(None));
        let policy: Policy = Arc::new(Mutex::new(Box::new(|_: &str, _: &str| ConnectReturnCode::Success)));
        let (cur, pol) = (Arc::clone(&current), Arc::clone(&policy));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let (tx, rx) = mpsc::unbounded_channel();
                *cur.lock().unwrap() = Some(tx);
                tokio::spawn(connection(tls, rx, seen_tx.clone(), Arc::clone(&pol)));
            }
        });
        Broker { addr, seen, current, policy }
    }

    fn set_policy(&self, f: impl Fn(&str, &str) -> ConnectReturnCode + Send + 'static) {
        *self.policy.lock().unwrap() = Box::new(f);
    }

    fn send(&self, cmd: Cmd) {
        let current = self.current.lock().unwrap();
        current.as_ref().expect("a client is connected").send(cmd).unwrap();
    }

    /// The next thing a client did that `pick` cares about.
    async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(Seen) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(seen)) => {
                    if let Some(v) = pick(seen) {
                        return v;
                    }
                }
                _ => panic!("the broker never saw {what}"),
            }
        }
    }
}

async fn connection(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    seen: mpsc::UnboundedSender<Seen>,
    policy: Policy,
) {
    let mut buf = BytesMut::new();
    loop {
        tokio::select! {
            n = tls.read_buf(&mut buf) => {
                if !matches!(n, Ok(n) if n > 0) {
                    return;
                }
                while let Ok(packet) = Packet::read(&mut buf, 64 * 1024) {
                    let (reply, keep) = handle(packet, &seen, &policy);
                    for p in reply {
                        write(&mut tls, &p).await;
                    }
                    if !keep {
                        return;
                    }
                }
            }
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Send(p)) => write(&mut tls, &p).await,
                Some(Cmd::Kick) | None => return,
            }
        }
    }
}

/// The broker's answer to one packet, and whether the connection stays.
fn handle(packet: Packet, seen: &mpsc::UnboundedSender<Seen>, policy: &Policy) -> (Vec<Packet>, bool) {
    match packet {
        Packet::Connect(c) => {
            let (username, password) = c.login.map(|l| (l.username, l.password)).unwrap_or_default();
            let code = (policy.lock().unwrap())(&username, &password);
            let will = c.last_will.map(|w| (w.topic, w.message.to_vec(), w.retain));
            let _ = seen.send(Seen::Connect { client_id: c.client_id, username, password, will });
            (vec![Packet::ConnAck(ConnAck::new(code, false))], code == ConnectReturnCode::Success)
        }
        Packet::Subscribe(s) => {
            for f in &s.filters {
                let _ = seen.send(Seen::Subscribe(f.path.clone()));
            }
            let codes = s.filters.iter().map(|_| SubscribeReasonCode::Success(QoS::AtLeastOnce)).collect();
            (vec![Packet::SubAck(SubAck::new(s.pkid, codes))], true)
        }
        Packet::Publish(p) => {
            let _ = seen.send(Seen::Publish { topic: p.topic.clone(), payload: p.payload.to_vec(), retain: p.retain });
            let ack = (p.qos == QoS::AtLeastOnce).then(|| Packet::PubAck(PubAck::new(p.pkid)));
            (ack.into_iter().collect(), true)
        }
        Packet::PingReq => (vec![Packet::PingResp], true),
        Packet::Disconnect => {
            let _ = seen.send(Seen::Disconnect);
            (vec![], false)
        }
        _ => (vec![], true),
    }
}

async fn write(tls: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>, p: &Packet) {
    let mut out = BytesMut::new();
    p.write(&mut out, 64 * 1024).unwrap();
    let _ = tls.write_all(&out).await;
    let _ = tls.flush().await;
}

fn lines() -> (Say, Arc<Mutex<Vec<String>>>) {
    let said = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&said);
    (Arc::new(move |l: &str| sink.lock().unwrap().push(l.to_string())), said)
}

fn publish_to(topic: &str, payload: impl Into<Vec<u8>>) -> Cmd {
    Cmd::Send(Packet::Publish(Publish::new(topic, QoS::AtMostOnce, payload.into())))
}

#[tokio::test]
async fn pairs_then_lives_as_a_camera_until_the_hub_refuses_it() {
    let c = cert();
    let mut broker = Broker::start(&c).await;
    let (say, said) = lines();
    let (stop_tx, stop) = watch::channel(false);
    let dev = device("127.0.0.1:18554");
    let target = hub(broker.addr.port(), c.fingerprint);
    let run = tokio::spawn(async move { pair_and_serve(&dev, &target, None, &say, stop).await });

    // 1. The pair session: login, subscription, a request.
    let login = broker.expect("the pair login", |s| match s {
        Seen::Connect { client_id, username, password, will } => Some((client_id, username, password, will)),
        _ => None,
    });
    assert_eq!(login.await, ("cam-t".into(), "pair".into(), "pair".into(), None));
    broker.expect("the response subscription", |s| (s == Seen::Subscribe(response_topic("cam-t"))).then_some(())).await;
    let request = broker
        .expect("the request", |s| match s {
            Seen::Publish { topic, payload, .. } if topic == request_topic("cam-t") => Some(payload),
            _ => None,
        })
        .await;
    assert!(said.lock().unwrap().contains(&format!("camsim pairing cam-t: waiting for the owner (setup code {CODE})")));

    // 2. Junk changes nothing; the hub's challenge gets a confirm that verifies.
    broker.send(publish_to(&response_topic("cam-t"), "junk"));
    let (exchange, challenge) = hub_side(&request, CODE, c.fingerprint);
    broker.send(publish_to(&response_topic("cam-t"), challenge.to_json()));
    let confirm = broker
        .expect("the confirm", |s| match s {
            Seen::Publish { topic, payload, retain: false } if topic == request_topic("cam-t") => Some(payload),
            _ => None,
        })
        .await;
    let Ok(DeviceMessage::Confirm(confirm)) = parse_device_message(&confirm) else { panic!("a confirm") };
    assert!(exchange.verify(&confirm));
    let creds = Credentials { username: "cam-t".into(), password: pairing::new_password() };
    let right = exchange.accept(&creds).to_json();
    let password = creds.password.clone();
    broker.set_policy(move |u, p| {
        if (u, p) == ("pair", "pair") || (u, p) == ("cam-t", password.as_str()) {
            ConnectReturnCode::Success
        } else {
            ConnectReturnCode::BadUserNamePassword
        }
    });
    broker.send(publish_to(&response_topic("cam-t"), right));
    broker.expect("the pair session to end", |s| (s == Seen::Disconnect).then_some(())).await;

    // 3. The device session: its own login and will, then online, config, state, commands.
    let (username, pass, will) = broker
        .expect("the device login", |s| match s {
            Seen::Connect { username, password, will, .. } => Some((username, password, will)),
            _ => None,
        })
        .await;
    assert_eq!((username.as_str(), pass.as_str()), ("cam-t", creds.password.as_str()));
    assert_eq!(will, Some((device_topic("cam-t", "availability"), b"offline".to_vec(), true)));
    assert!(said.lock().unwrap().contains(&"camsim paired cam-t".to_string()));
    let mut retained = BTreeMap::new();
    let mut subscribed = false;
    while retained.len() < 3 || !subscribed {
        match broker.expect("the device's publications", Some).await {
            Seen::Publish { topic, payload, retain: true } => {
                retained.insert(topic, payload);
            }
            Seen::Subscribe(t) => {
                assert_eq!(t, device_topic("cam-t", "cmd"));
                subscribed = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(retained[&device_topic("cam-t", "availability")], b"online");
    let config = parse_config(&retained[&device_topic("cam-t", "config")]).unwrap();
    assert_eq!(config.rtsp_url, "rtsp://127.0.0.1:18554/main");
    assert_eq!(config.name.as_deref(), Some("Garden"));
    parse_state(&retained[&device_topic("cam-t", "state")]).unwrap();
    broker.send(publish_to(&device_topic("cam-t", "cmd"), "{\"reboot\":true}"));

    // 4. A dropped connection comes back; a refused login ends MQTT for good.
    broker.send(Cmd::Kick);
    broker.expect("a reconnect", |s| matches!(s, Seen::Connect { .. }).then_some(())).await;
    broker.set_policy(|_, _| ConnectReturnCode::BadUserNamePassword);
    broker.send(Cmd::Kick);
    let end = tokio::time::timeout(WAIT, run).await.expect("ends").unwrap();
    assert_eq!(end, End::Refused);
    assert_eq!(said.lock().unwrap().last().unwrap(), "camsim cam-t: hub refused our credentials (unpaired)");
    drop(stop_tx);
}

#[tokio::test]
async fn a_rejection_is_said_and_ends_pairing() {
    let c = cert();
    let mut broker = Broker::start(&c).await;
    let (say, said) = lines();
    let (_stop_tx, stop) = watch::channel(false);
    let dev = device("127.0.0.1:18555");
    let target = hub(broker.addr.port(), c.fingerprint);
    let run = tokio::spawn(async move { pair_and_serve(&dev, &target, None, &say, stop).await });
    broker
        .expect("the request", |s| matches!(s, Seen::Publish { ref topic, .. } if *topic == request_topic("cam-t")).then_some(()))
        .await;
    broker.send(publish_to(
        &response_topic("cam-t"),
        Response::Rejected { reason: "locked: too many wrong codes".into() }.to_json(),
    ));
    let end = tokio::time::timeout(WAIT, run).await.expect("ends").unwrap();
    assert_eq!(end, End::Rejected);
    assert_eq!(said.lock().unwrap().last().unwrap(), "camsim pairing cam-t: rejected: locked: too many wrong codes");
}

#[tokio::test]
async fn a_hub_with_another_certificate_never_hears_a_request() {
    let (c, other) = (cert(), cert());
    let mut broker = Broker::start(&c).await;
    let (say, said) = lines();
    let (stop_tx, stop) = watch::channel(false);
    let dev = device("127.0.0.1:18556");
    let target = hub(broker.addr.port(), other.fingerprint);
    let run = tokio::spawn(async move { pair_and_serve(&dev, &target, None, &say, stop).await });
    let heard = tokio::time::timeout(Duration::from_millis(1500), broker.seen.recv()).await;
    assert!(heard.is_err(), "the broker heard {heard:?}");
    stop_tx.send(true).unwrap();
    let end = tokio::time::timeout(WAIT, run).await.expect("stops").unwrap();
    assert_eq!(end, End::Stopped);
    assert!(said.lock().unwrap().is_empty());
}

#[tokio::test]
async fn stopping_a_paired_camera_says_offline_first() {
    let c = cert();
    let mut broker = Broker::start(&c).await;
    let (say, _said) = lines();
    let (stop_tx, stop) = watch::channel(false);
    let dev = device("127.0.0.1:18557");
    let creds = Credentials { username: "cam-t".into(), password: "pw".into() };
    let tls = pin::client_config(c.fingerprint).unwrap();
    let target = hub(broker.addr.port(), c.fingerprint);
    let run = tokio::spawn(async move { serve(&dev, &target, &tls, &creds, &say, stop).await });
    broker.expect("the cmd subscription", |s| matches!(s, Seen::Subscribe(_)).then_some(())).await;
    stop_tx.send(true).unwrap();
    broker
        .expect("offline", |s| match s {
            Seen::Publish { topic, payload, retain: true } if topic.ends_with("/availability") && payload == b"offline" => {
                Some(())
            }
            _ => None,
        })
        .await;
    broker.expect("the disconnect", |s| (s == Seen::Disconnect).then_some(())).await;
    assert_eq!(tokio::time::timeout(WAIT, run).await.unwrap().unwrap(), End::Stopped);
}
