//! The hub's answer on `homehub/pair/DEVICE_ID/response`, and the credentials sealed inside an
//! accepted one: an age file encrypted to the request's recipient, so that whoever snoops the
//! topic or steals the client id learns nothing.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::json::Fields;
use super::request::to_json_bytes;
use super::{MAX_PAYLOAD, Reject, VERSION, check_text, shown};
use crate::error::{Error, Result};

const MAX_REASON: usize = 200;
const MAX_USERNAME: usize = 64;
const MAX_PASSWORD: usize = 256;

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

/// Base64 (standard alphabet) of a binary age file holding `creds` as JSON, encrypted to
/// `recipient` (`age1…`).
pub fn seal(recipient: &str, creds: &Credentials) -> Result<String> {
    let recipient: age::x25519::Recipient =
        recipient.parse().map_err(|_| Error::invalid(format!("recipient: not an age recipient: '{}'", shown(recipient))))?;
    let plain = to_json_bytes(creds);
    let file = age::encrypt(&recipient, &plain).map_err(|e| Error::internal(format!("sealing credentials: {e}")))?;
    Ok(STANDARD.encode(file))
}

/// Opens what [`seal`] made with the identity whose recipient it was sealed to.
pub fn unseal(identity: &age::x25519::Identity, sealed: &str) -> std::result::Result<Credentials, Reject> {
    let reject = |why: String| Reject::new("sealed", why);
    if sealed.len() > MAX_PAYLOAD {
        return Err(reject(format!("{} bytes, at most {MAX_PAYLOAD} allowed", sealed.len())));
    }
    let file = STANDARD.decode(sealed).map_err(|_| reject("not base64".into()))?;
    let plain = age::decrypt(identity, &file).map_err(|e| reject(format!("cannot open: {e}")))?;
    let creds: Credentials = serde_json::from_slice(&plain).map_err(|e| reject(format!("not credentials JSON: {e}")))?;
    check_credentials(&creds).map_err(reject)?;
    Ok(creds)
}

fn check_credentials(c: &Credentials) -> std::result::Result<(), String> {
    if c.username.is_empty() || c.username.len() > MAX_USERNAME || c.username.chars().any(char::is_control) {
        return Err(format!("username: expected 1 to {MAX_USERNAME} printable characters"));
    }
    if c.password.is_empty() || c.password.len() > MAX_PASSWORD || c.password.chars().any(char::is_control) {
        return Err(format!("password: expected 1 to {MAX_PASSWORD} printable characters"));
    }
    Ok(())
}

/// The hub's answer to a pairing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `sealed` is what [`seal`] returned.
    Accepted { sealed: String },
    /// A short reason a person can read.
    Rejected { reason: String },
}

/// Wire form; field order is the order on the wire.
#[derive(Serialize)]
struct ResponseWire<'a> {
    v: u64,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl Response {
    /// `{"v":1,"status":"accepted","sealed":"…"}` or `{"v":1,"status":"rejected","reason":"…"}`.
    pub fn to_json(&self) -> String {
        let wire = match self {
            Response::Accepted { sealed } => ResponseWire { v: VERSION, status: "accepted", sealed: Some(sealed), reason: None },
            Response::Rejected { reason } => ResponseWire { v: VERSION, status: "rejected", sealed: None, reason: Some(reason) },
        };
        String::from_utf8(to_json_bytes(&wire)).unwrap_or_else(|e| unreachable!("JSON is UTF-8: {e}"))
    }
}

/// Parses and checks a response payload (device side).
pub fn parse_response(bytes: &[u8]) -> std::result::Result<Response, Reject> {
    let mut f = Fields::parse(bytes)?;
    f.version()?;
    let status = f.string("status")?;
    let response = match status.as_str() {
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
            return Err(Reject::new("status", format!("expected accepted or rejected, got '{}'", shown(other))));
        }
    };
    f.finish()?;
    Ok(response)
}
