//! Devices, pairing, discovery and the audit trail in the API.
//!
//! Pairing, unpairing, discovery and the audit trail are the owner's; members may see
//! the device list.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use serde::{Deserialize, Serialize};

use super::{ApiResult, AppState, Items, Session, err, require, rfc3339, session};
use crate::devices::{Device, Pending};
use crate::error::ErrorKind;
use crate::store::Role;

/// A paired (or once paired) device as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct DeviceInfo {
    id: String,
    kind: String,
    model: String,
    firmware: String,
    paired: bool,
    paired_at: String,
    unpaired_at: Option<String>,
    last_seen: Option<String>,
    /// "online" | "offline" | "unknown"
    availability: String,
    connections: i64,
    failed_connections: i64,
    camera_id: Option<i64>,
    /// The device's last retained `state`, as it sent it.
    state: Option<serde_json::Map<String, serde_json::Value>>,
    /// Why its last config was refused (its camera did not start); null once accepted.
    config_refused: Option<String>,
    /// Private hosts the owner allowed its config to name besides its own address.
    approved_hosts: Vec<String>,
}

impl From<Device> for DeviceInfo {
    fn from(d: Device) -> Self {
        DeviceInfo {
            paired: d.paired(),
            paired_at: rfc3339(d.paired_ms),
            unpaired_at: d.unpaired_ms.map(rfc3339),
            last_seen: d.last_seen_ms.map(rfc3339),
            id: d.id,
            kind: d.kind,
            model: d.model,
            firmware: d.firmware,
            availability: d.availability,
            connections: d.connections,
            failed_connections: d.failed_connections,
            camera_id: d.camera_id,
            state: d.state,
            config_refused: d.config_refused,
            approved_hosts: d.approved_hosts,
        }
    }
}

/// A pairing request waiting for the owner (api12: `GET /api/pairing` items).
#[derive(Debug, Serialize)]
pub(super) struct PendingInfo {
    device_id: String,
    /// Names this request when several compete for one device id.
    request_id: String,
    kind: String,
    model: String,
    firmware: String,
    /// The address the request came from.
    peer: String,
    received: String,
    expires: String,
    /// Another connection asks for the same device id: only one of them is the device.
    competing: bool,
}

impl From<Pending> for PendingInfo {
    fn from(p: Pending) -> Self {
        PendingInfo {
            received: rfc3339(p.received_ms),
            expires: rfc3339(p.expires_ms),
            peer: p.peer.to_string(),
            device_id: p.device_id,
            request_id: p.request_id,
            kind: p.kind,
            model: p.model,
            firmware: p.firmware,
            competing: p.competing,
        }
    }
}

pub(super) async fn list_devices(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
) -> ApiResult<Json<Items<DeviceInfo>>> {
    let s = session(ext)?;
    // Device names and ids name cameras: the owner's, like every other device route.
    require(&s, Role::Owner)?;
    Ok(Json(Items { items: st.devices.devices().await?.into_iter().map(DeviceInfo::from).collect() }))
}

pub(super) async fn unpair(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    st.devices.unpair(&id, &s.user.email).await?;
    Ok(Json(serde_json::json!({ "unpaired": id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Host {
    host: String,
}

/// The owner allows a device's config to name a private host (the device's camera at
/// another address, an NVR); a config refused for it starts.
pub(super) async fn approve_host(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    if body.len() > 1024 {
        return Err(err(ErrorKind::Invalid, "body: at most 1024 bytes"));
    }
    let h: Host = serde_json::from_slice(&body).map_err(|e| err(ErrorKind::Invalid, &format!("body: {e}")))?;
    let host = st.devices.approve_host(&id, &h.host, &s.user.email).await?;
    Ok(Json(serde_json::json!({ "device_id": id, "approved": host })))
}

pub(super) async fn remove_host(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    UrlPath((id, host)): UrlPath<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    let host = st.devices.remove_host(&id, &host, &s.user.email).await?;
    Ok(Json(serde_json::json!({ "device_id": id, "removed": host })))
}

pub(super) async fn list_pairing(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
) -> ApiResult<Json<Items<PendingInfo>>> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    Ok(Json(Items { items: st.devices.pending().await?.into_iter().map(PendingInfo::from).collect() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Confirm {
    setup_code: String,
    /// The `request_id` of the request meant, when several compete.
    #[serde(default)]
    request: Option<String>,
}

pub(super) async fn confirm(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    let c: Confirm = serde_json::from_slice(&body).map_err(|e| err(ErrorKind::Invalid, &format!("body: {e}")))?;
    // Answers once the device has answered the challenge (at most ~30 s).
    st.devices.confirm(&id, &c.setup_code, c.request.as_deref(), &s.user.email).await?;
    Ok(Json(serde_json::json!({ "paired": id })))
}

#[derive(Serialize)]
pub(super) struct CandidateInfo {
    /// "device" (waiting to pair) | "rtsp" (a camera that may be added by hand)
    kind: &'static str,
    instance: String,
    addresses: Vec<String>,
    port: u16,
    txt: std::collections::BTreeMap<String, String>,
}

/// What mDNS found on the LAN.
pub(super) async fn discovery(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
) -> ApiResult<Json<Items<CandidateInfo>>> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    let items = st
        .discovery
        .as_ref()
        .map(|m| m.candidates())
        .unwrap_or_default()
        .into_iter()
        .map(|c| CandidateInfo {
            kind: c.kind,
            instance: c.instance,
            addresses: c.addrs.iter().map(|a| a.to_string()).collect(),
            port: c.port,
            txt: c.txt,
        })
        .collect();
    Ok(Json(Items { items }))
}
