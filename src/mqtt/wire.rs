//! Bytes on the wire: framing packets out of a read buffer, writing them back, and the few
//! things the codec does not do for us (the CONNECT protocol level, broker client ids).

use bytes::BytesMut;
use rumqttc::mqttbytes;
use rumqttc::mqttbytes::v4::Packet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a byte stream stopped being MQTT we accept.
#[derive(Debug)]
pub enum WireError {
    /// The peer closed the stream (or it failed) between packets.
    Closed(std::io::Error),
    /// The bytes are not a packet we can parse, or the packet is too big.
    Malformed(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Closed(e) => write!(f, "{e}"),
            WireError::Malformed(why) => f.write_str(why),
        }
    }
}

/// Takes the next complete packet out of `buf`; `Ok(None)` when more bytes are needed.
pub fn take_packet(buf: &mut BytesMut, max: usize) -> Result<Option<Packet>, WireError> {
    match Packet::read(buf, max) {
        Ok(p) => Ok(Some(p)),
        Err(mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(mqttbytes::Error::PayloadSizeLimitExceeded(n)) => {
            Err(WireError::Malformed(format!("packet of {n} bytes is over the limit of {max}")))
        }
        Err(e) => Err(WireError::Malformed(e.to_string())),
    }
}

/// Reads more bytes into `buf`. EOF is reported as `Closed`.
pub async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Result<(), WireError> {
    buf.reserve(8 * 1024);
    match stream.read_buf(buf).await {
        Ok(0) => Err(WireError::Closed(std::io::ErrorKind::UnexpectedEof.into())),
        Ok(_) => Ok(()),
        Err(e) => Err(WireError::Closed(e)),
    }
}

/// Reads until one whole packet is in `buf` and returns it (no time limit: callers add one).
pub async fn read_packet<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut, max: usize) -> Result<Packet, WireError> {
    loop {
        if let Some(p) = take_packet(buf, max)? {
            return Ok(p);
        }
        fill(stream, buf).await?;
    }
}

/// Appends the encoding of `packet` to `out`.
pub fn encode(packet: &Packet, out: &mut BytesMut) -> Result<(), WireError> {
    // Sizes were checked on the way in; the limit here only guards the length prefix.
    packet.write(out, usize::MAX).map(|_| ()).map_err(|e| WireError::Malformed(format!("cannot encode: {e}")))
}

/// Writes all of `out` and flushes (TLS streams buffer), then empties it.
pub async fn send<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut BytesMut) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    stream.write_all(out).await?;
    stream.flush().await?;
    out.clear();
    Ok(())
}

/// Encodes one packet and writes it.
pub async fn send_packet<S: AsyncWrite + Unpin>(stream: &mut S, packet: &Packet) -> Result<(), WireError> {
    let mut out = BytesMut::new();
    encode(packet, &mut out)?;
    send(stream, &mut out).await.map_err(WireError::Closed)
}

/// What the first packet on a connection claims to be, read before the full parse so that
/// a client speaking another MQTT version gets CONNACK 0x01 rather than silence.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// CONNECT for MQTT 3.1.1.
    V311,
    /// CONNECT for MQTT 3.1 (`MQIsdp`) or 5 (or any other level of `MQTT`).
    OtherVersion(u8),
    /// Not a CONNECT, or not one we can read.
    NotConnect(String),
    /// More bytes are needed.
    Incomplete,
}

/// Looks at the start of the first packet in `buf` without consuming it.
pub fn hello(buf: &[u8], max: usize) -> Hello {
    // CONNECT is type 1 with all flag bits clear; decide on the first byte, so junk that
    // happens to announce a long packet is not waited for.
    match buf.first() {
        None => return Hello::Incomplete,
        Some(0x10) => {}
        Some(b) => return Hello::NotConnect(format!("first byte 0x{b:02x} does not start a CONNECT")),
    }
    let header = match mqttbytes::check(buf.iter(), max) {
        Ok(h) => h,
        Err(mqttbytes::Error::InsufficientBytes(_)) => return Hello::Incomplete,
        Err(mqttbytes::Error::PayloadSizeLimitExceeded(n)) => {
            return Hello::NotConnect(format!("first packet of {n} bytes is over the limit of {max}"));
        }
        Err(e) => return Hello::NotConnect(e.to_string()),
    };
    // Skip the type byte and the remaining-length bytes (the last has its top bit clear).
    let Some(len_bytes) = buf[1..].iter().position(|b| b & 0x80 == 0) else {
        return Hello::NotConnect("bad remaining length".into());
    };
    let var = &buf[2 + len_bytes..header.frame_length()];
    let name_len = match var {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => return Hello::NotConnect("CONNECT too short".into()),
    };
    match (var.get(2..2 + name_len), var.get(2 + name_len)) {
        (Some(b"MQTT"), Some(4)) => Hello::V311,
        (Some(b"MQTT" | b"MQIsdp"), Some(level)) => Hello::OtherVersion(*level),
        _ => Hello::NotConnect("CONNECT names no MQTT protocol".into()),
    }
}

/// The client id rumqttd sees for a persistent front-end session: `"{username}:{client_id}"`
/// with `%`, `:`, `~` and the characters rumqttd refuses in a client id (`+ $ # /`, it drops
/// such logins without a CONNACK) written as `%XX`. The escaping keeps the mapping
/// one-to-one, so no login can take over another login's session, and no escaped client
/// id starts with `~`, which [`broker_slot_id`] uses.
pub fn broker_client_id(username: &str, client_id: &str) -> String {
    format!("{}:{}", escape(username), escape(client_id))
}

/// The client id rumqttd sees for a clean session: `"{username}:~{slot}"` (username
/// escaped as in [`broker_client_id`]). Slots are reused, so unique client ids leave no
/// state behind at the broker.
pub fn broker_slot_id(username: &str, slot: u32) -> String {
    format!("{}:~{slot}", escape(username))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | ':' | '~' | '+' | '$' | '#' | '/' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::Connect;

    fn connect_bytes(level: u8, name: &str) -> BytesMut {
        let mut out = BytesMut::new();
        encode(&Packet::Connect(Connect::new("dev-1")), &mut out).unwrap();
        // Patch the protocol name and level written by the codec (name is at offset 4).
        let mut v = out.to_vec();
        if name != "MQTT" {
            let body: Vec<u8> = [&[0, name.len() as u8][..], name.as_bytes(), &[level], &v[9..]].concat();
            v = [&[0x10, body.len() as u8][..], &body].concat();
        } else {
            v[8] = level;
        }
        BytesMut::from(&v[..])
    }

    #[test]
    fn hello_reads_the_protocol_level() {
        assert_eq!(hello(&connect_bytes(4, "MQTT"), 1024), Hello::V311);
        assert_eq!(hello(&connect_bytes(5, "MQTT"), 1024), Hello::OtherVersion(5));
        assert_eq!(hello(&connect_bytes(3, "MQIsdp"), 1024), Hello::OtherVersion(3));
        assert!(matches!(hello(&connect_bytes(4, "XMPP"), 1024), Hello::NotConnect(_)));
        assert_eq!(hello(&connect_bytes(4, "MQTT")[..5], 1024), Hello::Incomplete);
        assert!(matches!(hello(b"GET / HTTP/1.1\r\n", 1024), Hello::NotConnect(_)));
        assert!(matches!(hello(&[0x10, 0xff, 0xff, 0xff, 0x7f], 1024), Hello::NotConnect(_)));
        assert!(matches!(hello(&[0x10, 0x00], 1024), Hello::NotConnect(_)));
    }

    #[test]
    fn broker_ids_are_unambiguous() {
        assert_eq!(broker_client_id("cam-1", "cam-1"), "cam-1:cam-1");
        assert_ne!(broker_client_id("a:b", "c"), broker_client_id("a", "b:c"));
        assert_ne!(broker_client_id("a/b", "c"), broker_client_id("a", "b/c"));
        assert_eq!(broker_client_id("u", "x/+#$%"), "u:x%2F%2B%23%24%25");
        assert!(!broker_client_id("a/$", "#+/").contains(['/', '+', '#', '$']));
        // Clean-session slots never collide with a client id, nor one user's with another's.
        assert_eq!(broker_slot_id("cam-1", 0), "cam-1:~0");
        assert_eq!(broker_client_id("cam-1", "~0"), "cam-1:%7E0");
        assert_ne!(broker_slot_id("a:~0", 1), broker_slot_id("a", 0));
        assert_ne!(broker_slot_id("a", 1), broker_client_id("a", "~1"));
        assert!(!broker_slot_id("a/$#+", 3).contains(['/', '+', '#', '$']));
    }
}
