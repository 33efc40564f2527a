//! Pairing protocol v2 (SPEC "MQTT pairing protocol (v2)"): the wire types a device and the
//! hub exchange over MQTT, their parsers, and the SPAKE2 exchange that ties the setup code
//! and the hub's certificate together and seals the device's credentials.
//!
//! Owns: every byte layout under `homehub/pair/…` and `homehub/dev/…`, the checks on it and
//! the pairing key schedule. Pure: no I/O, no MQTT client, no database, no clock. May not
//! touch the store, the broker or the network; the hub (`mqtt/`, `devices/`) and the
//! simulator (`camsim/`) call in here.
//!
//! Every parser takes untrusted bytes, never panics, caps their size at [`MAX_PAYLOAD`] and
//! answers a [`Reject`] that names the field at fault.
//!
//! - `message`: what a device publishes ([`DeviceMessage`]) and the hub's [`Response`].
//! - `exchange`: the two sides of SPAKE2 ([`HubExchange`], [`DeviceExchange`], [`Opened`]),
//!   the confirms and the sealing of [`Credentials`].
//! - `device`: what a paired device publishes (`config`, `state`, `availability`).
//! - `json`: the strict JSON object reader the parsers share.

mod device;
mod exchange;
mod json;
mod message;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

use std::fmt;

pub use device::{DeviceConfig, ROTATED, parse_availability, parse_config, parse_rotate, parse_state, rotate_message};
pub use exchange::{Credentials, DeviceExchange, HubExchange, Opened, new_password};
pub use message::{DeviceMessage, Request, Response, parse_device_message, parse_response};

/// Largest payload any parser here accepts (SPEC: requests are at most 4 KiB).
pub const MAX_PAYLOAD: usize = 4096;

/// The `v` every v2 message carries; anything else is refused.
pub const VERSION: u64 = 2;

/// User name and password of an MQTT session that may only pair.
pub const PAIR_USERNAME: &str = "pair";
pub const PAIR_PASSWORD: &str = "pair";

const MAX_DEVICE_ID: usize = 64;
const SETUP_CODE_DIGITS: usize = 8;

/// `homehub/pair/DEVICE_ID/request`: where a device publishes its [`Request`].
pub fn request_topic(device_id: &str) -> String {
    format!("homehub/pair/{device_id}/request")
}

/// `homehub/pair/DEVICE_ID/response`: where the hub answers with a [`Response`].
pub fn response_topic(device_id: &str) -> String {
    format!("homehub/pair/{device_id}/response")
}

/// `homehub/dev/DEVICE_ID/LEAF`, for the leaves `config`, `state`, `availability`, `cmd`,
/// `rotate` (hub → device: a new password) and `rotated` (device → hub: received).
pub fn device_topic(device_id: &str, leaf: &str) -> String {
    format!("homehub/dev/{device_id}/{leaf}")
}

/// A device id: `[a-z0-9-]`, 1..=64 characters.
pub fn check_device_id(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_DEVICE_ID {
        return Err(format!("at most {MAX_DEVICE_ID} characters, got {}", s.len()));
    }
    if !s.bytes().all(is_token_byte) {
        return Err(format!("only a-z, 0-9 and '-' are allowed, got '{}'", shown(s)));
    }
    Ok(())
}

/// A setup code: exactly 8 ASCII digits.
pub fn check_setup_code(s: &str) -> Result<(), String> {
    if s.len() != SETUP_CODE_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected exactly {SETUP_CODE_DIGITS} digits, got '{}'", shown(s)));
    }
    Ok(())
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

/// Text a person will read (model, firmware, name, reason): at most `max` characters, no
/// control characters and none of the invisible ones that reorder or hide text.
fn check_text(s: &str, max: usize) -> Result<(), String> {
    let n = s.chars().count();
    if n > max {
        return Err(format!("at most {max} characters, got {n}"));
    }
    if s.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err("must not contain control or invisible characters".into());
    }
    Ok(())
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Untrusted text made safe to put in a message: escaped and cut to 40 characters.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).flat_map(char::escape_debug).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

/// Why a payload was refused: the field at fault (`payload` for the whole message) and a
/// short reason. Displays as `FIELD: REASON`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    field: String,
    reason: String,
}

impl Reject {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Reject { field: field.into(), reason: reason.into() }
    }

    /// The field at fault, or `payload` when the message as a whole is wrong.
    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for Reject {}

impl From<Reject> for crate::Error {
    fn from(r: Reject) -> Self {
        crate::Error::invalid(r.to_string())
    }
}
