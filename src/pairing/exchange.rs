//! The two sides of one pairing exchange: SPAKE2 (Ed25519 group) with A = the device id,
//! B = `homehub:` + the hub's certificate fingerprint and the setup code as password; the
//! HKDF-SHA256 key schedule (`k_hub`, `k_dev`, `k_seal`), the confirms, and the credentials
//! sealed under `k_seal` with ChaCha20-Poly1305.
//!
//! Nothing here remembers anything between exchanges: each one is a fresh SPAKE2 run, so a
//! wrong code costs the guesser one exchange, and keys never outlive the values holding them.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

use super::json::Fields;
use super::message::{DeviceMessage, Request, Response, to_json_bytes};
use super::{MAX_PAYLOAD, Reject, check_setup_code};

const MAX_USERNAME: usize = 64;
const MAX_PASSWORD: usize = 256;
/// What the device answers when the hub's confirm does not match (SPEC step 5).
const CONFIRM_MISMATCH: &str = "confirm mismatch";

/// What a paired device logs in with. JSON `{"username":"…","password":"…"}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// A fresh device password: 32 random bytes, base64url without padding (43 characters).
pub fn new_password() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The three keys HKDF-SHA256 (salt empty) derives from the SPAKE2 key.
struct Keys {
    hub: [u8; 32],
    dev: [u8; 32],
    seal: [u8; 32],
}

impl Keys {
    fn derive(spake_key: &[u8]) -> Keys {
        let hk = Hkdf::<Sha256>::new(Some(&[]), spake_key);
        let expand = |info: &[u8]| {
            let mut out = [0u8; 32];
            // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
            hk.expand(info, &mut out).unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF length"));
            out
        };
        Keys {
            hub: expand(b"homehub pair v2 hub"),
            dev: expand(b"homehub pair v2 device"),
            seal: expand(b"homehub pair v2 seal"),
        }
    }
}

fn mac(key: &[u8; 32], label: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    m.update(label);
    m
}

/// HMAC-SHA256(key, label).
fn tag(key: &[u8; 32], label: &[u8]) -> [u8; 32] {
    mac(key, label).finalize().into_bytes().into()
}

/// Compares in constant time.
fn tag_matches(key: &[u8; 32], label: &[u8], got: &[u8; 32]) -> bool {
    mac(key, label).verify_slice(got).is_ok()
}

/// SPAKE2 identity B: the hub as the device pinned it (SPEC: lowercase hex).
fn hub_identity(fingerprint: &str) -> Identity {
    Identity::new(format!("homehub:{}", fingerprint.to_ascii_lowercase()).as_bytes())
}

fn abort(reason: &str) -> Vec<u8> {
    DeviceMessage::Abort(reason.to_string()).to_json()
}

/// Hub side B of one exchange. `fingerprint` = lowercase hex SHA-256 of the hub cert (DER).
pub struct HubExchange {
    keys: Keys,
}

impl std::fmt::Debug for HubExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubExchange { <keys redacted> }")
    }
}

impl HubExchange {
    /// Runs B with the owner's code against the request's A message: the exchange and
    /// the Challenge to publish. Err(Reject) if the A message is not a valid one (or the code
    /// is not 8 digits).
    pub fn start(req: &Request, setup_code: &str, fingerprint: &str) -> Result<(HubExchange, Response), Reject> {
        check_setup_code(setup_code).map_err(|e| Reject::new("setup_code", e))?;
        let (spake, pake) = Spake2::<Ed25519Group>::start_b(
            &Password::new(setup_code.as_bytes()),
            &Identity::new(req.device_id.as_bytes()),
            &hub_identity(fingerprint),
        );
        let key = spake.finish(&req.pake).map_err(|e| Reject::new("pake", format!("not a SPAKE2 message: {e}")))?;
        let keys = Keys::derive(&key);
        let confirm = tag(&keys.hub, b"hub");
        Ok((HubExchange { keys }, Response::Challenge { pake, confirm }))
    }

    /// Checks the device's confirm (constant time).
    pub fn verify(&self, device_confirm: &[u8; 32]) -> bool {
        tag_matches(&self.keys.dev, b"device", device_confirm)
    }

    /// The Accepted answer: `creds` sealed with k_seal (used once; consumes the exchange).
    pub fn accept(self, creds: &Credentials) -> Response {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.keys.seal));
        match cipher.encrypt(&Nonce::default(), to_json_bytes(creds).as_slice()) {
            Ok(sealed) => Response::Accepted { sealed: STANDARD.encode(sealed) },
            // Only plaintexts beyond 256 GiB fail; credentials are a few dozen bytes.
            Err(_) => Response::Rejected { reason: "internal error sealing credentials".into() },
        }
    }
}

/// Device side A.
///
/// The SPAKE2 crate binds both identities when a side starts, but the device's A message
/// does not depend on them, and B's identity (the fingerprint) is only handed over at
/// [`finish`](DeviceExchange::finish). So the exchange keeps the seed of its secret scalar
/// and replays the start with the real identities then: the same scalar gives the same A
/// message, which is checked.
pub struct DeviceExchange {
    device_id: String,
    setup_code: String,
    seed: [u8; 32],
    sent: Vec<u8>,
}

impl std::fmt::Debug for DeviceExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceExchange").field("device_id", &self.device_id).finish_non_exhaustive()
    }
}

impl DeviceExchange {
    /// A fresh exchange and the Request payload to publish.
    pub fn start(device_id: &str, kind: &str, model: &str, firmware: &str, setup_code: &str) -> (DeviceExchange, Vec<u8>) {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let (_, pake) = Self::spake(device_id, setup_code, &Identity::new(b""), seed);
        let request = Request {
            device_id: device_id.to_string(),
            kind: kind.to_string(),
            model: model.to_string(),
            firmware: firmware.to_string(),
            pake: pake.clone(),
        };
        let payload = DeviceMessage::Request(request).to_json();
        (DeviceExchange { device_id: device_id.to_string(), setup_code: setup_code.to_string(), seed, sent: pake }, payload)
    }

    fn spake(device_id: &str, setup_code: &str, hub: &Identity, seed: [u8; 32]) -> (Spake2<Ed25519Group>, Vec<u8>) {
        Spake2::<Ed25519Group>::start_a_with_rng(
            &Password::new(setup_code.as_bytes()),
            &Identity::new(device_id.as_bytes()),
            hub,
            StdRng::from_seed(seed),
        )
    }

    /// On a Challenge: finishes SPAKE2 with the FP of its own TLS connection, checks the
    /// hub's confirm. Ok((opened, confirm payload)) or Err(abort payload) — trusts nothing then.
    pub fn finish(self, pake: &[u8], hub_confirm: &[u8; 32], fingerprint: &str) -> Result<(Opened, Vec<u8>), Vec<u8>> {
        let (spake, again) = Self::spake(&self.device_id, &self.setup_code, &hub_identity(fingerprint), self.seed);
        if again != self.sent {
            return Err(abort("internal error: exchange cannot be replayed"));
        }
        let key = spake.finish(pake).map_err(|_| abort("invalid challenge"))?;
        let keys = Keys::derive(&key);
        if !tag_matches(&keys.hub, b"hub", hub_confirm) {
            return Err(abort(CONFIRM_MISMATCH));
        }
        let confirm = DeviceMessage::Confirm(tag(&keys.dev, b"device")).to_json();
        Ok((Opened { device_id: self.device_id, seal: keys.seal }, confirm))
    }
}

/// A finished device side, holding k_seal until the Accepted answer comes.
pub struct Opened {
    device_id: String,
    seal: [u8; 32],
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("device_id", &self.device_id).finish_non_exhaustive()
    }
}

impl Opened {
    /// Opens the Accepted answer's `sealed`: the credentials, which must be for this device
    /// (`username` = its id). Any tampering, another exchange's key or junk inside is a
    /// [`Reject`] on `sealed`.
    pub fn unseal(self, sealed: &str) -> Result<Credentials, Reject> {
        let reject = |why: String| Reject::new("sealed", why);
        if sealed.len() > MAX_PAYLOAD {
            return Err(reject(format!("{} bytes, at most {MAX_PAYLOAD} allowed", sealed.len())));
        }
        let bytes = STANDARD.decode(sealed).map_err(|_| reject("not base64".into()))?;
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.seal));
        let plain = cipher
            .decrypt(&Nonce::default(), bytes.as_slice())
            .map_err(|_| reject("cannot open: not sealed with this exchange's key".into()))?;
        let mut f = Fields::parse(&plain).map_err(|e| reject(format!("not credentials JSON: {e}")))?;
        let username = f.string("username").map_err(|e| reject(e.to_string()))?;
        let password = f.string("password").map_err(|e| reject(e.to_string()))?;
        f.finish().map_err(|e| reject(e.to_string()))?;
        let creds = Credentials { username, password };
        check_credentials(&creds).map_err(reject)?;
        if creds.username != self.device_id {
            return Err(reject(format!("username: expected this device's id '{}'", self.device_id)));
        }
        Ok(creds)
    }
}

fn check_credentials(c: &Credentials) -> Result<(), String> {
    if c.username.is_empty() || c.username.len() > MAX_USERNAME || c.username.chars().any(char::is_control) {
        return Err(format!("username: expected 1 to {MAX_USERNAME} printable characters"));
    }
    if c.password.is_empty() || c.password.len() > MAX_PASSWORD || c.password.chars().any(char::is_control) {
        return Err(format!("password: expected 1 to {MAX_PASSWORD} printable characters"));
    }
    Ok(())
}

#[cfg(test)]
impl DeviceExchange {
    /// The confirm a device would send if it skipped the check of the hub's confirm: only so
    /// tests can show the hub refuses what a device with the wrong code or the wrong hub
    /// would have computed.
    pub(super) fn confirm_ignoring_hub(self, pake: &[u8], fingerprint: &str) -> Option<[u8; 32]> {
        let (spake, _) = Self::spake(&self.device_id, &self.setup_code, &hub_identity(fingerprint), self.seed);
        let keys = Keys::derive(&spake.finish(pake).ok()?);
        Some(tag(&keys.dev, b"device"))
    }
}
