//! The embedded rumqttd: one plain MQTT 3.1.1 listener on 127.0.0.1, a free port, and a
//! login known only to this process (a random secret made at every start). Nothing but the
//! front end and the hub's own clients ever talks to it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use rand::RngCore;
use rumqttc::mqttbytes::v4::ConnectReturnCode;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, LastWill, Packet};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::wire::{self, WireError};
use crate::error::{Error, ErrorKind, Result};

/// The broker login of the front end and of in-hub clients. No device may use this name.
pub const INTERNAL_USER: &str = "homehub-internal";

/// Most connections the router keeps: the front end's limit plus room for in-hub clients.
pub const MAX_CONNECTIONS: usize = super::front::MAX_CLIENTS + 64;

/// Per topic filter rumqttd keeps its recent messages in memory, in segments; the oldest is
/// dropped once there are this many full ones, and a subscriber that has not read them yet
/// silently skips ahead: messages already acknowledged to their publisher are lost. So
/// this is the backlog a slow subscriber may have before it loses messages (a burst of
/// 20 000 device states is about 5 MB). Segments fill as messages come: quiet filters
/// cost next to nothing.
const SEGMENT_BYTES: usize = 1024 * 1024;
const SEGMENT_COUNT: usize = 16;

/// How long the broker may take to come up, and to answer a CONNECT.
const START_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A running embedded broker. It cannot be stopped: rumqttd has no shutdown, so its thread
/// lives until the process ends (its listener is on loopback and needs the secret).
pub struct Broker {
    addr: SocketAddr,
    secret: String,
    max_packet_bytes: usize,
}

impl Broker {
    /// Starts rumqttd on its own thread and returns once it has accepted our login.
    pub async fn start(max_packet_bytes: usize) -> Result<Broker> {
        let addr = free_loopback_port()?;
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        let broker = Broker { addr, secret: hex::encode(key), max_packet_bytes };
        let config = broker.config();
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                let mut b = rumqttd::Broker::new(config);
                if let Err(e) = b.start() {
                    tracing::error!(error = %e, "embedded MQTT broker stopped");
                }
            })
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("starting the MQTT broker thread: {e}")))?;
        broker.wait_ready(&thread).await?;
        tracing::debug!(%addr, "embedded MQTT broker is up");
        Ok(broker)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    fn config(&self) -> rumqttd::Config {
        let connections = rumqttd::ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: self.max_packet_bytes,
            max_inflight_count: 100,
            auth: Some(HashMap::from([(INTERNAL_USER.to_string(), self.secret.clone())])),
            external_auth: None,
            dynamic_filters: true,
        };
        let server = rumqttd::ServerSettings {
            name: "homehub-loopback".into(),
            listen: self.addr,
            tls: None,
            next_connection_delay_ms: 0,
            connections,
        };
        rumqttd::Config {
            id: 0,
            router: rumqttd::RouterConfig {
                max_connections: MAX_CONNECTIONS,
                max_outgoing_packet_count: 200,
                max_segment_size: SEGMENT_BYTES,
                max_segment_count: SEGMENT_COUNT,
                ..Default::default()
            },
            v4: Some(HashMap::from([("loopback".to_string(), server)])),
            ..Default::default()
        }
    }

    /// Polls until a login with our secret succeeds; this also proves the port is rumqttd's
    /// and not someone else's who took it between our probe and its bind.
    async fn wait_ready(&self, thread: &std::thread::JoinHandle<()>) -> Result<()> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut last = String::from("no answer");
        while tokio::time::Instant::now() < deadline {
            if thread.is_finished() {
                break;
            }
            match self.connect("homehub-internal:probe", 10, true, None).await {
                Ok((mut s, ack, _)) if ack.code == ConnectReturnCode::Success => {
                    if wire::send_packet(&mut s, &Packet::Disconnect).await.is_ok() {
                        close_after_disconnect(s).await;
                    }
                    return Ok(());
                }
                Ok((_, ack, _)) => last = format!("refused with {:?}", ack.code),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::new(ErrorKind::Unavailable, format!("the embedded MQTT broker did not start on {}: {last}", self.addr)))
    }

    /// Opens a connection to rumqttd with the internal login and returns it with the
    /// broker's CONNACK and any bytes that came after it.
    pub async fn connect(
        &self,
        broker_client_id: &str,
        keep_alive: u16,
        clean_session: bool,
        last_will: Option<LastWill>,
    ) -> std::result::Result<(TcpStream, ConnAck, BytesMut), WireError> {
        let mut connect = Connect::new(broker_client_id);
        connect.keep_alive = keep_alive;
        connect.clean_session = clean_session;
        connect.last_will = last_will;
        connect.set_login(INTERNAL_USER, self.secret.clone());
        let handshake = async {
            let mut stream = TcpStream::connect(self.addr).await.map_err(WireError::Closed)?;
            let _ = stream.set_nodelay(true);
            wire::send_packet(&mut stream, &Packet::Connect(connect)).await?;
            let mut buf = BytesMut::new();
            match wire::read_packet(&mut stream, &mut buf, self.max_packet_bytes).await? {
                Packet::ConnAck(ack) => Ok((stream, ack, buf)),
                other => Err(WireError::Malformed(format!("broker answered CONNECT with {other:?}"))),
            }
        };
        tokio::time::timeout(CONNACK_TIMEOUT, handshake)
            .await
            .unwrap_or_else(|_| Err(WireError::Closed(std::io::ErrorKind::TimedOut.into())))
    }
}

/// Closes a broker connection that has just sent DISCONNECT, once rumqttd has closed its
/// side. Closing first races rumqttd: if its reader sees the close before the router has
/// handled the DISCONNECT, the router later gets a second, stale disconnect for that
/// connection number — which by then may belong to a new client, and drops it.
pub async fn close_after_disconnect(mut stream: TcpStream) {
    let mut sink = [0u8; 512];
    let drained = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drained).await;
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_loopback_port() -> Result<SocketAddr> {
    let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("finding a loopback port for the MQTT broker: {e}")))?;
    Ok(probe)
}
