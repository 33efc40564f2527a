//! The pairing request a device publishes on `homehub/pair/DEVICE_ID/request`, and the
//! setup-code proof that binds its age recipient to whoever knows the code.

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Serialize;
use sha2::Sha256;

use super::json::Fields;
use super::{Reject, VERSION, check_device_id, check_text, is_token_byte, shown};

const MAX_KIND: usize = 32;
const MAX_TEXT: usize = 64;
/// An age x25519 recipient is 62 characters; anything much longer is not one.
const MAX_RECIPIENT: usize = 100;

/// A parsed, checked pairing request. The proof is not checked here: only the owner's
/// setup code can do that ([`verify_proof`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub device_id: String,
    /// `camera`, `sensor`, `other`, or another short `[a-z0-9-]` token.
    pub kind: String,
    pub model: String,
    pub firmware: String,
    pub nonce: [u8; 16],
    /// The age recipient (`age1…`) the credentials are to be sealed to, as sent (canonical).
    pub recipient: String,
    pub proof: [u8; 32],
}

/// Wire form of a request; field order is the order on the wire.
#[derive(Serialize)]
struct RequestWire<'a> {
    v: u64,
    device_id: &'a str,
    kind: &'a str,
    model: &'a str,
    firmware: &'a str,
    nonce: String,
    recipient: &'a str,
    proof: String,
}

/// Parses and checks a request payload; the [`Reject`] names the field at fault.
pub fn parse_request(bytes: &[u8]) -> Result<Request, Reject> {
    let mut f = Fields::parse(bytes)?;
    f.version()?;
    let device_id = f.string("device_id")?;
    check_device_id(&device_id).map_err(|e| Reject::new("device_id", e))?;
    let kind = f.string("kind")?;
    check_kind(&kind).map_err(|e| Reject::new("kind", e))?;
    let model = f.string("model")?;
    check_text(&model, MAX_TEXT).map_err(|e| Reject::new("model", e))?;
    let firmware = f.string("firmware")?;
    check_text(&firmware, MAX_TEXT).map_err(|e| Reject::new("firmware", e))?;
    let nonce = hex_array::<16>(&f.string("nonce")?).map_err(|e| Reject::new("nonce", e))?;
    let recipient = f.string("recipient")?;
    check_recipient(&recipient).map_err(|e| Reject::new("recipient", e))?;
    let proof = hex_array::<32>(&f.string("proof")?).map_err(|e| Reject::new("proof", e))?;
    f.finish()?;
    Ok(Request { device_id, kind, model, firmware, nonce, recipient, proof })
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

/// An age x25519 recipient in its canonical (lowercase bech32) spelling, so that the bytes
/// the proof covers are the bytes the hub seals to.
fn check_recipient(s: &str) -> Result<(), String> {
    let bad = || format!("expected an age recipient (age1…), got '{}'", shown(s));
    if s.len() > MAX_RECIPIENT {
        return Err(bad());
    }
    let parsed: age::x25519::Recipient = s.parse().map_err(|_| bad())?;
    if parsed.to_string() != s {
        return Err(format!("not in canonical (lowercase) form: '{}'", shown(s)));
    }
    Ok(())
}

/// Exactly `2 * N` hex digits.
fn hex_array<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    if s.len() != 2 * N || hex::decode_to_slice(s, &mut out).is_err() {
        return Err(format!("expected {} hex digits, got '{}'", 2 * N, shown(s)));
    }
    Ok(out)
}

fn proof_mac(setup_code: &str, nonce: &[u8; 16], hub_id: &str, recipient: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(setup_code.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(nonce);
    mac.update(hub_id.as_bytes());
    mac.update(recipient.as_bytes());
    mac
}

/// HMAC-SHA256(key = setup code as ASCII, msg = nonce bytes || hub id || recipient).
pub fn proof(setup_code: &str, nonce: &[u8; 16], hub_id: &str, recipient: &str) -> [u8; 32] {
    proof_mac(setup_code, nonce, hub_id, recipient).finalize().into_bytes().into()
}

/// True when the request's proof was made with this setup code for this hub; compares in
/// constant time.
pub fn verify_proof(req: &Request, setup_code: &str, hub_id: &str) -> bool {
    proof_mac(setup_code, &req.nonce, hub_id, &req.recipient).verify_slice(&req.proof).is_ok()
}

impl Request {
    /// The wire form; [`parse_request`] reads it back to the same value.
    pub fn to_json(&self) -> Vec<u8> {
        to_json_bytes(&RequestWire {
            v: VERSION,
            device_id: &self.device_id,
            kind: &self.kind,
            model: &self.model,
            firmware: &self.firmware,
            nonce: hex::encode(self.nonce),
            recipient: &self.recipient,
            proof: hex::encode(self.proof),
        })
    }
}

/// Device side: a request payload for this identity with a fresh random nonce, and that nonce.
pub fn build_request(
    device_id: &str,
    kind: &str,
    model: &str,
    firmware: &str,
    setup_code: &str,
    hub_id: &str,
    identity: &age::x25519::Identity,
) -> (Vec<u8>, [u8; 16]) {
    let mut nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    let recipient = identity.to_public().to_string();
    let req = Request {
        device_id: device_id.to_string(),
        kind: kind.to_string(),
        model: model.to_string(),
        firmware: firmware.to_string(),
        nonce,
        proof: proof(setup_code, &nonce, hub_id, &recipient),
        recipient,
    };
    (req.to_json(), nonce)
}

/// Serialising a struct of strings and numbers to JSON cannot fail.
pub(super) fn to_json_bytes(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| unreachable!("plain struct serialises: {e}"))
}
