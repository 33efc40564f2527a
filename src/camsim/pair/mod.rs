//! camsim `--pair`: the device side of the pairing protocol (SPEC "MQTT pairing protocol
//! (v2)"). Finds the hub (mDNS, or `--hub` + `--hub-fp`), advertises `_homehub-dev._tcp` while
//! it waits on mDNS, asks to be paired over MQTT/TLS pinned to the hub's certificate, runs
//! the SPAKE2 exchange with the fingerprint it pinned, then lives as a paired camera:
//! availability, config and state retained, commands logged, reconnecting when dropped.
//!
//! Owns: the camera's MQTT sessions and its stdout lines about pairing. Knows nothing of
//! GStreamer (the RTSP side is `server`); the protocol's bytes come from `crate::pairing`.
//!
//! Stdout lines (each flushed): `camsim pairing ID: waiting for the owner (setup code CODE)`,
//! `camsim paired ID`, `camsim pairing ID: rejected: REASON`,
//! `camsim ID: hub refused our credentials (unpaired)`.

pub mod pin;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    TlsConfiguration, Transport,
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::mdns::{self, DeviceAdvert, FoundHub};
use crate::pairing::{
    self, Credentials, DeviceConfig, DeviceExchange, Opened, PAIR_PASSWORD, PAIR_USERNAME, Response, device_topic, request_topic,
    response_topic,
};

const KIND: &str = "camera";
const FIRMWARE: &str = env!("CARGO_PKG_VERSION");
/// A fresh request (new exchange) this often while the owner has not answered.
const REPUBLISH: Duration = Duration::from_secs(60);
/// `state` is published this often.
const STATE_EVERY: Duration = Duration::from_secs(30);
/// Short, so the hub sees a dead camera within 1.5 × this.
const DEVICE_KEEPALIVE: Duration = Duration::from_secs(5);
const PAIR_KEEPALIVE: Duration = Duration::from_secs(30);
/// Each mDNS look for the hub lasts this long before the next.
const MDNS_TRY: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long closing a session may take.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Who this camera is and where its streams are.
#[derive(Debug, Clone)]
pub struct Device {
    pub device_id: String,
    pub setup_code: String,
    pub name: String,
    pub ssid: String,
    /// Model sent in the pairing request.
    pub model: String,
    /// Where the RTSP server listens (port as bound).
    pub rtsp: SocketAddr,
    /// RTSP user and password, put into the URLs the hub is given.
    pub rtsp_login: Option<(String, String)>,
    pub started: Instant,
}

/// How to find the hub.
#[derive(Debug, Clone)]
pub enum Locate {
    /// `--hub HOST:PORT --hub-fp HEX`: the fingerprint is all the exchange needs of the hub.
    Fixed { host: String, port: u16, fingerprint: [u8; 32] },
    /// `find_hub` on this interface, advertising the device meanwhile.
    Mdns { interface: String },
}

/// The hub to pair with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hub {
    pub host: String,
    /// Its MQTT TLS port.
    pub port: u16,
    /// SHA-256 of its TLS certificate (DER): pinned on the connection and SPAKE2's identity B.
    pub fingerprint: [u8; 32],
}

/// Where the stdout lines go (stdout in camsim, a list in tests).
pub type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// How pairing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The owner (or the hub) said no.
    Rejected,
    /// Paired, then the hub refused our credentials (unpaired).
    Refused,
    /// Asked to stop.
    Stopped,
}

/// Runs the whole device side on the calling thread until it ends or `stop` turns true.
pub fn run(device: Device, locate: Locate, say: Say, stop: watch::Receiver<bool>) -> End {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            warn!("pairing: cannot start a runtime: {e}");
            return End::Stopped;
        }
    };
    let Some((hub, advert)) = locate_hub(&device, &locate, &stop) else {
        return End::Stopped;
    };
    info!(host = %hub.host, port = hub.port, fp = %hex::encode(hub.fingerprint), "pairing with this hub");
    runtime.block_on(pair_and_serve(&device, &hub, advert, &say, stop))
}

/// Finds the hub, retrying until found or stopped. Whenever mDNS is used, the device is
/// advertised from here on, and its daemon does the looking (one multicast join, however
/// long it looks); the advert is handed back so it lasts until pairing ends.
fn locate_hub(device: &Device, locate: &Locate, stop: &watch::Receiver<bool>) -> Option<(Hub, Option<DeviceAdvert>)> {
    match locate {
        Locate::Fixed { host, port, fingerprint } => {
            Some((Hub { host: host.clone(), port: *port, fingerprint: *fingerprint }, None))
        }
        Locate::Mdns { interface } => {
            info!(%interface, "looking for the hub on mDNS");
            let advert = advertise(device, interface);
            let found = retry(stop, || match &advert {
                Some(a) => a.find_hub(MDNS_TRY),
                None => mdns::find_hub(interface, MDNS_TRY),
            })?;
            Some((hub_from_mdns(&found)?, advert))
        }
    }
}

/// `_homehub-dev._tcp` on `interface` while the device waits; pairing goes on without it.
fn advertise(device: &Device, interface: &str) -> Option<DeviceAdvert> {
    match mdns::advertise_device(interface, &device.device_id, device.rtsp.port()) {
        Ok(a) => Some(a),
        Err(e) => {
            warn!("pairing: cannot advertise the device on mDNS: {e}");
            None
        }
    }
}

fn hub_from_mdns(found: &FoundHub) -> Option<Hub> {
    let mut fingerprint = [0u8; 32];
    // mdns::find_hub checked that fp is 64 hex digits.
    hex::decode_to_slice(&found.fp, &mut fingerprint).ok()?;
    Some(Hub { host: found.host.to_string(), port: found.mqtt_port, fingerprint })
}

/// Calls `find` until it succeeds; None once `stop` turns true.
fn retry(stop: &watch::Receiver<bool>, mut find: impl FnMut() -> crate::Result<FoundHub>) -> Option<FoundHub> {
    let mut said = false;
    loop {
        if *stop.borrow() {
            return None;
        }
        match find() {
            Ok(hub) => return Some(hub),
            Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                if !said {
                    info!("{e}; still looking");
                    said = true;
                }
            }
            Err(e) => {
                warn!("pairing: {e}; trying again");
                std::thread::sleep(MDNS_TRY);
            }
        }
    }
}

/// Pairs with `hub`, then serves as a paired camera until refused or stopped.
pub async fn pair_and_serve(
    device: &Device,
    hub: &Hub,
    advert: Option<DeviceAdvert>,
    say: &Say,
    stop: watch::Receiver<bool>,
) -> End {
    let tls = match pin::client_config(hub.fingerprint) {
        Ok(c) => c,
        Err(e) => {
            warn!("pairing: TLS setup: {e}");
            return End::Stopped;
        }
    };
    let outcome = pair(device, hub, &tls, say, stop.clone()).await;
    // Withdrawing the advert waits for goodbye packets; keep that off the runtime.
    if let Some(advert) = advert {
        tokio::task::spawn_blocking(move || advert.stop());
    }
    match outcome {
        Paired::Yes(creds) => serve(device, hub, &tls, &creds, say, stop).await,
        Paired::Rejected => End::Rejected,
        Paired::Stopped => End::Stopped,
    }
}

enum Paired {
    Yes(Credentials),
    Rejected,
    Stopped,
}

/// What a pairing request needs.
struct Asker {
    device_id: String,
    setup_code: String,
    model: String,
    /// The pinned certificate's fingerprint, lowercase hex: SPAKE2's identity B.
    fingerprint: String,
}

impl Asker {
    /// A fresh exchange and its request.
    fn start(&self) -> (DeviceExchange, Vec<u8>) {
        DeviceExchange::start(&self.device_id, KIND, &self.model, FIRMWARE, &self.setup_code)
    }
}

/// Where the device stands in the current exchange. Shared by the event loop (answers) and
/// the republishing task (the 60 s fresh request).
#[derive(Default)]
struct Exchange {
    /// The request went out; no challenge yet.
    waiting: Option<DeviceExchange>,
    /// The challenge was answered with our confirm; the hub's Accepted is due (since when).
    opened: Option<(Opened, Instant)>,
}

type Shared = Arc<Mutex<Exchange>>;

fn lock(x: &Shared) -> MutexGuard<'_, Exchange> {
    // The state is two options; a panic elsewhere cannot leave it torn.
    x.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Forgets the current exchange and starts a fresh one: the request to publish.
fn fresh(x: &Shared, asker: &Asker) -> Vec<u8> {
    let (exchange, request) = asker.start();
    let mut state = lock(x);
    state.opened = None;
    state.waiting = Some(exchange);
    request
}

/// Logs in as `pair`, asks, and runs the exchange until paired, rejected or stopped.
async fn pair(device: &Device, hub: &Hub, tls: &Arc<rustls::ClientConfig>, say: &Say, stop: watch::Receiver<bool>) -> Paired {
    let id = &device.device_id;
    let asker = Arc::new(Asker {
        device_id: id.clone(),
        setup_code: device.setup_code.clone(),
        model: device.model.clone(),
        fingerprint: hex::encode(hub.fingerprint),
    });
    let exchange: Shared = Arc::default();
    let opts = options(id, hub, tls, (PAIR_USERNAME, PAIR_PASSWORD), PAIR_KEEPALIVE, None);
    let (client, mut events) = AsyncClient::new(opts, 16);
    let side = tokio::spawn(republish(client.clone(), Arc::clone(&asker), Arc::clone(&exchange), stop.clone()));
    let (req_topic, resp_topic) = (request_topic(id), response_topic(id));
    let mut announced = false;
    let mut backoff = MIN_BACKOFF;
    let outcome = loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = MIN_BACKOFF;
                // A new session: whatever the hub had of the last one is gone with it.
                let _ = client.try_subscribe(resp_topic.as_str(), QoS::AtLeastOnce);
                let _ = client.try_publish(req_topic.as_str(), QoS::AtLeastOnce, false, fresh(&exchange, &asker));
                if !announced {
                    say(&format!("camsim pairing {id}: waiting for the owner (setup code {})", device.setup_code));
                    announced = true;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == resp_topic => match on_answer(&p.payload, &exchange, &asker) {
                Step::Wait => {}
                Step::Publish(payload) => {
                    let _ = client.try_publish(req_topic.as_str(), QoS::AtLeastOnce, false, payload);
                }
                Step::Paired(creds) => break Paired::Yes(creds),
                Step::Rejected(reason) => {
                    say(&format!("camsim pairing {id}: rejected: {reason}"));
                    break Paired::Rejected;
                }
            },
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break Paired::Stopped,
            Ok(_) => {}
            Err(e) => {
                if *stop.borrow() {
                    break Paired::Stopped;
                }
                warn!("pairing connection to {}:{}: {e}; again in {backoff:?}", hub.host, hub.port);
                if !sleep_unless_stopped(backoff, stop.clone()).await {
                    break Paired::Stopped;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    side.abort();
    match outcome {
        Paired::Yes(_) => {
            say(&format!("camsim paired {id}"));
            close(&client, &mut events).await;
        }
        Paired::Rejected => close(&client, &mut events).await,
        // Stopped: DISCONNECT went out already, or there is no connection.
        Paired::Stopped => {}
    }
    outcome
}

/// What to do after one answer of the hub.
#[derive(Debug)]
enum Step {
    /// Nothing to send; keep waiting.
    Wait,
    /// Publish this on the request topic (a confirm, an abort or a fresh request).
    Publish(Vec<u8>),
    Paired(Credentials),
    /// The pairing is over: this is the hub's reason.
    Rejected(String),
}

/// Handles one payload from the response topic. Malformed answers, answers to no exchange
/// and credentials that do not open are logged and ignored: only the exchange decides.
fn on_answer(payload: &[u8], exchange: &Shared, asker: &Asker) -> Step {
    match pairing::parse_response(payload) {
        Ok(Response::Challenge { pake, confirm }) => {
            let Some(waiting) = lock(exchange).waiting.take() else {
                warn!("pairing: ignoring a challenge to no request of ours");
                return Step::Wait;
            };
            match waiting.finish(&pake, &confirm, &asker.fingerprint) {
                Ok((opened, confirm)) => {
                    lock(exchange).opened = Some((opened, Instant::now()));
                    info!("pairing: the hub knows the setup code; confirming");
                    Step::Publish(confirm)
                }
                Err(abort) => {
                    warn!("pairing: the hub's confirm does not match (a wrong setup code, or not the hub we pinned): aborting");
                    Step::Publish(abort)
                }
            }
        }
        Ok(Response::Accepted { sealed }) => {
            let Some((opened, _)) = lock(exchange).opened.take() else {
                warn!("pairing: ignoring an accepted answer to no exchange of ours");
                return Step::Wait;
            };
            match opened.unseal(&sealed) {
                Ok(creds) => Step::Paired(creds),
                Err(e) => {
                    warn!("pairing: ignoring credentials we cannot open: {e}");
                    Step::Wait
                }
            }
        }
        Ok(Response::Rejected { reason }) if may_retry(&reason) => {
            info!(%reason, "pairing: the owner may type the code again; asking afresh");
            Step::Publish(fresh(exchange, asker))
        }
        Ok(Response::Rejected { reason }) => Step::Rejected(reason),
        Err(e) => {
            warn!("pairing: ignoring a malformed answer: {e}");
            Step::Wait
        }
    }
}

/// A rejection for a wrong code that did not lock the device id: the owner may try again,
/// so the device asks again on the same session. A lock-out or any other reason ends it.
fn may_retry(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    (r.contains("wrong setup code") || r.contains("wrong code")) && !r.contains("locked") && !r.contains("too many")
}

/// Asks again with a fresh exchange every [`REPUBLISH`] unless a challenge is in flight
/// (our confirm went out less than [`REPUBLISH`] ago); on stop, ends the session.
async fn republish(client: AsyncClient, asker: Arc<Asker>, exchange: Shared, mut stop: watch::Receiver<bool>) {
    let topic = request_topic(&asker.device_id);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REPUBLISH) => {
                let in_flight = lock(&exchange).opened.as_ref().is_some_and(|(_, at)| at.elapsed() < REPUBLISH);
                if in_flight {
                    debug!("pairing: a challenge is in flight; not asking again yet");
                    continue;
                }
                debug!("pairing: asking again");
                let request = fresh(&exchange, &asker);
                let _ = client.publish(topic.as_str(), QoS::AtLeastOnce, false, request).await;
            }
            _ = stopped(&mut stop) => {
                let _ = client.disconnect().await;
                return;
            }
        }
    }
}

/// Lives as a paired camera: `online`, `config` and `state` retained on every connect,
/// `state` again every [`STATE_EVERY`], commands logged; ends when refused or stopped.
async fn serve(
    device: &Device,
    hub: &Hub,
    tls: &Arc<rustls::ClientConfig>,
    creds: &Credentials,
    say: &Say,
    stop: watch::Receiver<bool>,
) -> End {
    let id = &device.device_id;
    let availability = device_topic(id, "availability");
    let will = LastWill::new(availability.as_str(), "offline", QoS::AtLeastOnce, true);
    let opts = options(id, hub, tls, (&creds.username, &creds.password), DEVICE_KEEPALIVE, Some(will));
    let (client, mut events) = AsyncClient::new(opts, 16);
    let config = device_config(device, hub).to_json();
    let cmd_topic = device_topic(id, "cmd");
    let rotate_topic = device_topic(id, "rotate");
    let side = tokio::spawn(report(client.clone(), device.clone(), stop.clone()));
    let mut backoff = MIN_BACKOFF;
    let end = loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = MIN_BACKOFF;
                info!("connected to the hub as a paired camera");
                let retained = [("availability", b"online".to_vec()), ("config", config.clone()), ("state", state(device))];
                for (leaf, payload) in retained {
                    let _ = client.try_publish(device_topic(id, leaf), QoS::AtLeastOnce, true, payload);
                }
                let _ = client.try_subscribe(cmd_topic.as_str(), QoS::AtLeastOnce);
                let _ = client.try_subscribe(rotate_topic.as_str(), QoS::AtLeastOnce);
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == rotate_topic => {
                match crate::pairing::parse_rotate(&p.payload) {
                    // The next login uses the new password; the hub drops this connection once
                    // it hears `rotated`, and the event loop logs in again.
                    Ok(password) => {
                        events.mqtt_options.set_credentials(creds.username.clone(), password);
                        let _ = client.try_publish(device_topic(id, "rotated"), QoS::AtLeastOnce, false, crate::pairing::ROTATED);
                        say(&format!("camsim {id}: the hub rotated our password"));
                    }
                    Err(e) => warn!("ignoring a rotate message we cannot read: {e}"),
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == cmd_topic => {
                let shown: String = String::from_utf8_lossy(&p.payload).chars().take(200).collect();
                info!(command = %shown.escape_debug(), "command from the hub");
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break End::Stopped,
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(
                ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
            )) => {
                say(&format!("camsim {id}: hub refused our credentials (unpaired)"));
                break End::Refused;
            }
            Err(e) => {
                if *stop.borrow() {
                    break End::Stopped;
                }
                warn!("connection to the hub {}:{}: {e}; again in {backoff:?}", hub.host, hub.port);
                if !sleep_unless_stopped(backoff, stop.clone()).await {
                    break End::Stopped;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    // Stopped: `report` sent `offline` and DISCONNECT already, or there is no connection.
    side.abort();
    end
}

/// Publishes `state` every [`STATE_EVERY`]; on stop, says `offline` and ends the session
/// (a clean disconnect does not fire the will).
async fn report(client: AsyncClient, device: Device, mut stop: watch::Receiver<bool>) {
    let topic = device_topic(&device.device_id, "state");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(STATE_EVERY) => {
                let _ = client.publish(topic.as_str(), QoS::AtLeastOnce, true, state(&device)).await;
            }
            _ = stopped(&mut stop) => {
                let offline = device_topic(&device.device_id, "availability");
                let _ = client.publish(offline, QoS::AtLeastOnce, true, "offline").await;
                let _ = client.disconnect().await;
                return;
            }
        }
    }
}

fn options(
    client_id: &str,
    hub: &Hub,
    tls: &Arc<rustls::ClientConfig>,
    login: (&str, &str),
    keepalive: Duration,
    will: Option<LastWill>,
) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, hub.host.as_str(), hub.port);
    opts.set_credentials(login.0, login.1)
        .set_keep_alive(keepalive)
        .set_clean_session(true)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::clone(tls))));
    if let Some(will) = will {
        opts.set_last_will(will);
    }
    opts
}

/// Sends DISCONNECT and lets it go out, briefly.
async fn close(client: &AsyncClient, events: &mut EventLoop) {
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Sleeps `d`; false if `stop` turned true first.
async fn sleep_unless_stopped(d: Duration, mut stop: watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stopped(&mut stop) => return false,
    }
    !*stop.borrow()
}

/// Returns once `stop` is true (or its sender is gone, which means the same).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn device_config(device: &Device, hub: &Hub) -> DeviceConfig {
    let host = advertised_host(device.rtsp.ip(), || local_ip_toward(&hub.host, hub.port));
    let login = device.rtsp_login.as_ref();
    DeviceConfig {
        rtsp_url: stream_url(host, device.rtsp.port(), login, "main"),
        substream_url: Some(stream_url(host, device.rtsp.port(), login, "sub")),
        name: Some(device.name.clone()),
    }
}

fn state(device: &Device) -> Vec<u8> {
    let state = serde_json::json!({
        "firmware": FIRMWARE,
        "uptime_s": device.started.elapsed().as_secs(),
        "wifi_ssid": device.ssid,
    });
    state.to_string().into_bytes()
}

/// The address to give the hub: the bound one, or, when bound to every address, the one this
/// machine uses toward the hub (127.0.0.1 if that cannot be told).
fn advertised_host(bound: IpAddr, toward_hub: impl FnOnce() -> Option<IpAddr>) -> IpAddr {
    if bound.is_unspecified() { toward_hub().unwrap_or(IpAddr::from([127, 0, 0, 1])) } else { bound }
}

/// The local address of a route to the hub; connecting a UDP socket sends nothing.
fn local_ip_toward(host: &str, port: u16) -> Option<IpAddr> {
    let ip: IpAddr = host.parse().ok()?;
    let bind: SocketAddr = if ip.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect((ip, port)).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// `rtsp://[user:password@]host:port/mount`, the login percent-encoded.
fn stream_url(host: IpAddr, port: u16, login: Option<&(String, String)>, mount: &str) -> String {
    let userinfo = login.map(|(u, p)| format!("{}:{}@", percent_encode(u), percent_encode(p))).unwrap_or_default();
    format!("rtsp://{userinfo}{}/{mount}", SocketAddr::new(host, port))
}

/// Everything but RFC 3986 unreserved characters as %XX.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
