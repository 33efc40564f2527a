//! The messages of pairing v2: what a device publishes on `homehub/pair/DEVICE_ID/request`
//! (a [`Request`], then a confirm or an abort) and what the hub answers on
//! `homehub/pair/DEVICE_ID/response`. Only the wire form lives here; what the `pake` and
//! `confirm` bytes mean is `exchange`'s business.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::json::Fields;
use super::{Reject, VERSION, check_device_id, check_text, is_token_byte, shown};

const MAX_KIND: usize = 32;
const MAX_TEXT: usize = 64;
const MAX_REASON: usize = 200;
/// A SPAKE2 message in the Ed25519 group: a side byte (`A` or `B`) and a 32-byte point.
pub(super) const PAKE_LEN: usize = 33;
pub(super) const SIDE_A: u8 = b'A';
pub(super) const SIDE_B: u8 = b'B';

/// A parsed, checked pairing request. Nothing in it can be checked against a setup code:
/// `pake` is side A's SPAKE2 message, which only an exchange run with the code can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub device_id: String,
    /// `camera`, `sensor`, `other`, or another short `[a-z0-9-]` token.
    pub kind: String,
    pub model: String,
    pub firmware: String,
    /// Side A's SPAKE2 message (33 bytes: `A` and a compressed Edwards point).
    pub pake: Vec<u8>,
}

/// What a device publishes on its request topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceMessage {
    /// `{"v":2,"device_id","kind","model","firmware","pake"}`: a fresh exchange.
    Request(Request),
    /// `{"v":2,"confirm":"<hex>"}`: HMAC-SHA256(k_dev, "device").
    Confirm([u8; 32]),
    /// `{"v":2,"abort":"…"}`: the device trusts nothing from this exchange.
    Abort(String),
}

/// The hub's answers on the response topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Side B's SPAKE2 message and HMAC-SHA256(k_hub, "hub").
    Challenge { pake: Vec<u8>, confirm: [u8; 32] },
    /// Base64 of the ChaCha20-Poly1305 ciphertext of the credentials under k_seal.
    Accepted { sealed: String },
    /// A short reason a person can read.
    Rejected { reason: String },
}

/// Wire form of a request; field order is the order on the wire.
#[derive(Serialize)]
struct RequestWire<'a> {
    v: u64,
    device_id: &'a str,
    kind: &'a str,
    model: &'a str,
    firmware: &'a str,
    pake: String,
}

#[derive(Serialize)]
struct ConfirmWire {
    v: u64,
    confirm: String,
}

#[derive(Serialize)]
struct AbortWire<'a> {
    v: u64,
    abort: &'a str,
}

/// Wire form of a response; field order is the order on the wire.
#[derive(Serialize)]
struct ResponseWire<'a> {
    v: u64,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pake: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl DeviceMessage {
    /// The wire form; [`parse_device_message`] reads it back to the same value.
    pub fn to_json(&self) -> Vec<u8> {
        match self {
            DeviceMessage::Request(r) => to_json_bytes(&RequestWire {
                v: VERSION,
                device_id: &r.device_id,
                kind: &r.kind,
                model: &r.model,
                firmware: &r.firmware,
                pake: STANDARD.encode(&r.pake),
            }),
            DeviceMessage::Confirm(c) => to_json_bytes(&ConfirmWire { v: VERSION, confirm: hex::encode(c) }),
            DeviceMessage::Abort(reason) => to_json_bytes(&AbortWire { v: VERSION, abort: reason }),
        }
    }
}

/// Parses and checks what a device published; the [`Reject`] names the field at fault. A
/// payload with `confirm` is a confirm, one with `abort` an abort, anything else must be a
/// request; each has exactly its own fields.
pub fn parse_device_message(bytes: &[u8]) -> Result<DeviceMessage, Reject> {
    let mut f = Fields::parse(bytes)?;
    f.version()?;
    let message = if f.has("confirm") {
        DeviceMessage::Confirm(hex_array::<32>(&f.string("confirm")?).map_err(|e| Reject::new("confirm", e))?)
    } else if f.has("abort") {
        let reason = f.string("abort")?;
        check_text(&reason, MAX_REASON).map_err(|e| Reject::new("abort", e))?;
        DeviceMessage::Abort(reason)
    } else {
        let device_id = f.string("device_id")?;
        check_device_id(&device_id).map_err(|e| Reject::new("device_id", e))?;
        let kind = f.string("kind")?;
        check_kind(&kind).map_err(|e| Reject::new("kind", e))?;
        let model = f.string("model")?;
        check_text(&model, MAX_TEXT).map_err(|e| Reject::new("model", e))?;
        let firmware = f.string("firmware")?;
        check_text(&firmware, MAX_TEXT).map_err(|e| Reject::new("firmware", e))?;
        let pake = pake_message(&f.string("pake")?, SIDE_A).map_err(|e| Reject::new("pake", e))?;
        DeviceMessage::Request(Request { device_id, kind, model, firmware, pake })
    };
    f.finish()?;
    Ok(message)
}

impl Response {
    /// `{"v":2,"status":"challenge","pake":"…","confirm":"…"}`,
    /// `{"v":2,"status":"accepted","sealed":"…"}` or `{"v":2,"status":"rejected","reason":"…"}`.
    pub fn to_json(&self) -> String {
        let none = ResponseWire { v: VERSION, status: "", pake: None, confirm: None, sealed: None, reason: None };
        let wire = match self {
            Response::Challenge { pake, confirm } => ResponseWire {
                status: "challenge",
                pake: Some(STANDARD.encode(pake)),
                confirm: Some(hex::encode(confirm)),
                ..none
            },
            Response::Accepted { sealed } => ResponseWire { status: "accepted", sealed: Some(sealed), ..none },
            Response::Rejected { reason } => ResponseWire { status: "rejected", reason: Some(reason), ..none },
        };
        String::from_utf8(to_json_bytes(&wire)).unwrap_or_else(|e| unreachable!("JSON is UTF-8: {e}"))
    }
}

/// Parses and checks a response payload (device side).
pub fn parse_response(bytes: &[u8]) -> Result<Response, Reject> {
    let mut f = Fields::parse(bytes)?;
    f.version()?;
    let status = f.string("status")?;
    let response = match status.as_str() {
        "challenge" => {
            let pake = pake_message(&f.string("pake")?, SIDE_B).map_err(|e| Reject::new("pake", e))?;
            let confirm = hex_array::<32>(&f.string("confirm")?).map_err(|e| Reject::new("confirm", e))?;
            Response::Challenge { pake, confirm }
        }
        "accepted" => {
            let sealed = f.string("sealed")?;
            if sealed.is_empty() || STANDARD.decode(&sealed).is_err() {
                return Err(Reject::new("sealed", "expected base64"));
            }
            Response::Accepted { sealed }
        }
        "rejected" => {
            let reason = f.string("reason")?;
            check_text(&reason, MAX_REASON).map_err(|e| Reject::new("reason", e))?;
            Response::Rejected { reason }
        }
        other => {
            return Err(Reject::new("status", format!("expected challenge, accepted or rejected, got '{}'", shown(other))));
        }
    };
    f.finish()?;
    Ok(response)
}

fn check_kind(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_KIND || !s.bytes().all(is_token_byte) {
        return Err(format!(
            "expected camera, sensor, other or a [a-z0-9-] word of at most {MAX_KIND} characters, got '{}'",
            shown(s)
        ));
    }
    Ok(())
}

/// Base64 of a SPAKE2 message from `side`. Whether the point is on the curve is for the
/// exchange to find out; here only the shape is checked.
fn pake_message(s: &str, side: u8) -> Result<Vec<u8>, String> {
    let bad = || format!("expected base64 of a {PAKE_LEN}-byte SPAKE2 message from side {}", side as char);
    if s.len() > 2 * PAKE_LEN {
        return Err(bad());
    }
    let bytes = STANDARD.decode(s).map_err(|_| bad())?;
    if bytes.len() != PAKE_LEN || bytes[0] != side {
        return Err(bad());
    }
    Ok(bytes)
}

/// Exactly `2 * N` hex digits.
fn hex_array<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    if s.len() != 2 * N || hex::decode_to_slice(s, &mut out).is_err() {
        return Err(format!("expected {} hex digits, got '{}'", 2 * N, shown(s)));
    }
    Ok(out)
}

/// Serialising a struct of strings and numbers to JSON cannot fail.
pub(super) fn to_json_bytes(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| unreachable!("plain struct serialises: {e}"))
}
