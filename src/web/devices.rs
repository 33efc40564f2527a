//! Devices, pairing, discovery and the audit trail in the API.
//!
//! Pairing, unpairing, discovery and the audit trail are the owner's; members may see
//! the device list.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use serde::{Deserialize, Serialize};

use super::{ApiResult, AppState, Items, Session, err, require, rfc3339, session};
use crate::devices::{DeviceInfo, Devices, PendingInfo};
use crate::error::ErrorKind;
use crate::store::Role;

fn devices(st: &AppState) -> ApiResult<&Devices> {
    st.devices.as_deref().ok_or_else(|| err(ErrorKind::Unavailable, "devices are not running"))
}

pub(super) async fn list_devices(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
) -> ApiResult<Json<Items<DeviceInfo>>> {
    let s = session(ext)?;
    require(&s, Role::Member)?;
    Ok(Json(Items { items: devices(&st)?.list().await? }))
}

pub(super) async fn unpair(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    devices(&st)?.unpair(&id, &s.user.email).await?;
    Ok(Json(serde_json::json!({ "unpaired": id })))
}

pub(super) async fn list_pairing(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
) -> ApiResult<Json<Items<PendingInfo>>> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    Ok(Json(Items { items: devices(&st)?.pending().await? }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Confirm {
    setup_code: String,
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
    devices(&st)?.confirm(&id, &c.setup_code, &s.user.email).await?;
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
        .mdns
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

#[derive(Serialize)]
pub(super) struct AuditInfo {
    id: i64,
    at: String,
    actor: String,
    action: String,
    detail: String,
}

pub(super) async fn audit(State(st): State<AppState>, ext: Option<axum::Extension<Session>>) -> ApiResult<Json<Items<AuditInfo>>> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    let rows = st.store.call(|db| db.audit_entries(500)).await?;
    let items = rows
        .into_iter()
        .map(|r| AuditInfo { id: r.id, at: rfc3339(r.at_ms), actor: r.actor, action: r.action, detail: r.detail })
        .collect();
    Ok(Json(Items { items }))
}
