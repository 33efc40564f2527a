//! A small live-view client for tests and the benchmark: TLS pinned to the hub's
//! certificate fingerprint (hex SHA-256, as the hub reports it), then a WebSocket.
#![allow(dead_code)]

use futures::StreamExt;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Ws = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Opens `path` (`/api/cameras/1/live`) on the hub at 127.0.0.1:`port`. Err: the HTTP
/// status the hub answered instead of upgrading (0: no answer).
pub async fn connect(port: u16, fingerprint: &str, path: &str, cookie: &str, origin: Option<&str>) -> Result<Ws, u16> {
    // The same pinning camsim uses to reach the hub.
    let fp: [u8; 32] = hex::decode(fingerprint).ok().and_then(|b| b.try_into().ok()).expect("a hex SHA-256 fingerprint");
    let cfg = homehub::camsim::pair::pin::client_config(fp).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|_| 0u16)?;
    tcp.set_nodelay(true).ok();
    let tls =
        tokio_rustls::TlsConnector::from(cfg).connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.map_err(|_| 0u16)?;
    let mut req = format!("wss://127.0.0.1:{port}{path}").into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(_) => Err(0),
    }
}

/// What the hub sends.
#[derive(Debug)]
pub enum Msg {
    Text(serde_json::Value),
    Binary(Vec<u8>),
    Closed,
}

/// The next text or binary message (pings and pongs skipped).
pub async fn next(ws: &mut Ws) -> Msg {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Msg::Text(serde_json::from_str(t.as_str()).unwrap_or(serde_json::Value::Null)),
            Some(Ok(Message::Binary(b))) => return Msg::Binary(b.to_vec()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Msg::Closed,
            Some(Ok(_)) => {}
        }
    }
}

/// The type of an ISO BMFF box at the start of `b`.
pub fn box_type(b: &[u8]) -> &str {
    b.get(4..8).and_then(|t| std::str::from_utf8(t).ok()).unwrap_or("")
}

/// The payload of the first top-level box named `name`.
pub fn find_box<'a>(mut b: &'a [u8], name: &str) -> Option<&'a [u8]> {
    while b.len() >= 8 {
        let size = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
        if size < 8 || size > b.len() {
            return None;
        }
        if box_type(b) == name {
            return Some(&b[8..size]);
        }
        b = &b[size..];
    }
    None
}

/// The NAL unit types in a fragment's `mdat` (4-byte length prefixes).
pub fn nal_types(fragment: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(mut d) = find_box(fragment, "mdat") else { return out };
    while d.len() >= 5 {
        let n = u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize;
        if n == 0 || 4 + n > d.len() {
            break;
        }
        out.push(d[4] & 0x1f);
        d = &d[4 + n..];
    }
    out
}
