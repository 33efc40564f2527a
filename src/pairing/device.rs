//! What a paired device publishes under `homehub/dev/DEVICE_ID/`: its retained `config`
//! (where its streams are), its retained `state` (free-form, small) and `availability`;
//! and what the hub sends a paired device when it rotates its password (`rotate`), which
//! the device confirms on `rotated`.

use serde::Serialize;
use serde_json::{Map, Value};

use super::json::{Fields, parse_object};
use super::message::to_json_bytes;
use super::{Reject, check_text, shown};

const MAX_URL: usize = 512;
const MAX_NAME: usize = 64;
/// Nesting allowed in `state`: the object itself is depth 1.
const MAX_STATE_DEPTH: usize = 4;

/// A camera's `config`: `{"rtsp_url":"…","substream_url":"…","name":"…"}` (the last two
/// optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceConfig {
    pub rtsp_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub substream_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl DeviceConfig {
    pub fn to_json(&self) -> Vec<u8> {
        to_json_bytes(self)
    }
}

/// Parses and checks a `config` payload.
pub fn parse_config(bytes: &[u8]) -> Result<DeviceConfig, Reject> {
    let mut f = Fields::parse(bytes)?;
    let rtsp_url = f.string("rtsp_url")?;
    check_rtsp_url(&rtsp_url).map_err(|e| Reject::new("rtsp_url", e))?;
    let substream_url = f.opt_string("substream_url")?;
    if let Some(u) = &substream_url {
        check_rtsp_url(u).map_err(|e| Reject::new("substream_url", e))?;
    }
    let name = f.opt_string("name")?;
    if let Some(n) = &name {
        check_name(n).map_err(|e| Reject::new("name", e))?;
    }
    f.finish()?;
    Ok(DeviceConfig { rtsp_url, substream_url, name })
}

/// `rtsp://` or `rtsps://` with something after it, at most 512 characters, no spaces or
/// control characters.
fn check_rtsp_url(s: &str) -> Result<(), String> {
    if s.len() > MAX_URL {
        return Err(format!("at most {MAX_URL} characters, got {}", s.len()));
    }
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let rest = if lower.starts_with("rtsp://") {
        &s[7..]
    } else if lower.starts_with("rtsps://") {
        &s[8..]
    } else {
        return Err(format!("expected an rtsp:// or rtsps:// URL, got '{}'", shown(s)));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("no host in '{}'", shown(s)));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    Ok(())
}

fn check_name(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    check_text(s, MAX_NAME)
}

/// Parses a `state` payload: any JSON object of at most 4 KiB, nested at most 4 deep.
pub fn parse_state(bytes: &[u8]) -> Result<Map<String, Value>, Reject> {
    let map = parse_object(bytes)?;
    for (key, value) in &map {
        if depth(value) + 1 > MAX_STATE_DEPTH {
            return Err(Reject::new(shown(key), format!("nested deeper than {MAX_STATE_DEPTH} levels")));
        }
    }
    Ok(map.into_iter().collect())
}

/// Levels of arrays and objects in `v` (a scalar is 0).
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `online` → true, `offline` → false; nothing else.
pub fn parse_availability(bytes: &[u8]) -> Result<bool, Reject> {
    match bytes {
        b"online" => Ok(true),
        b"offline" => Ok(false),
        other => Err(Reject::new(
            "availability",
            format!("expected online or offline, got '{}'", shown(&String::from_utf8_lossy(&other[..other.len().min(64)]))),
        )),
    }
}

/// The `rotate` message: `{"password":"…"}`, the device's new broker password.
pub fn rotate_message(password: &str) -> Vec<u8> {
    to_json_bytes(&serde_json::json!({ "password": password }))
}

/// Reads a `rotate` message (the device side): a password of 16 to 256 printable ASCII
/// characters and nothing else.
pub fn parse_rotate(bytes: &[u8]) -> Result<String, Reject> {
    let mut f = Fields::parse(bytes)?;
    let password = f.string("password")?;
    if !(16..=256).contains(&password.len()) || !password.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Reject::new("password", "expected 16 to 256 printable ASCII characters"));
    }
    f.finish()?;
    Ok(password)
}

/// What the device publishes on `rotated` once it has the new password.
pub const ROTATED: &[u8] = b"ok";

#[cfg(test)]
mod rotate_tests {
    use super::*;

    #[test]
    fn rotate_messages_round_trip_and_junk_is_refused() {
        let p = super::super::new_password();
        assert_eq!(parse_rotate(&rotate_message(&p)).unwrap(), p);
        assert!(parse_rotate(br#"{"password":"short"}"#).is_err());
        assert!(parse_rotate(br#"{"password":"aaaaaaaaaaaaaaaaaaaa","x":1}"#).is_err());
        assert!(parse_rotate(br#"{"password":"aaaaaaaaaa aaaaaaaaaa"}"#).is_err());
        assert!(parse_rotate(b"not json").is_err());
    }
}
