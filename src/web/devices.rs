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

/// Device and broker lines for `/metrics`.
pub(super) async fn metrics(st: &AppState, out: &mut String) -> ApiResult<()> {
    use std::sync::atomic::Ordering::Relaxed;
    if let Some(d) = st.devices.as_deref() {
        let list = d.list().await?;
        out.push_str("# HELP homehub_devices_paired Devices paired now.\n# TYPE homehub_devices_paired gauge\n");
        out.push_str(&format!("homehub_devices_paired {}\n", list.iter().filter(|x| x.paired).count()));
        out.push_str("# HELP homehub_device_online 1 if the device says it is online.\n# TYPE homehub_device_online gauge\n");
        for x in list.iter().filter(|x| x.paired) {
            out.push_str(&format!("homehub_device_online{{device=\"{}\"}} {}\n", x.id, u8::from(x.availability == "online")));
        }
        out.push_str("# HELP homehub_device_connections_total Broker logins of the device.\n# TYPE homehub_device_connections_total counter\n");
        for x in &list {
            out.push_str(&format!("homehub_device_connections_total{{device=\"{}\"}} {}\n", x.id, x.connections));
        }
        out.push_str("# HELP homehub_device_failed_connections_total Refused broker logins under the device's name.\n# TYPE homehub_device_failed_connections_total counter\n");
        for x in &list {
            out.push_str(&format!("homehub_device_failed_connections_total{{device=\"{}\"}} {}\n", x.id, x.failed_connections));
        }
        out.push_str("# HELP homehub_device_payloads_rejected_total Device messages refused (malformed, oversized, unknown fields, replays).\n# TYPE homehub_device_payloads_rejected_total counter\n");
        out.push_str(&format!("homehub_device_payloads_rejected_total {}\n", d.counters.payloads_rejected.load(Relaxed)));
        out.push_str("# HELP homehub_pairings_total Pairing outcomes.\n# TYPE homehub_pairings_total counter\n");
        out.push_str(&format!("homehub_pairings_total{{outcome=\"accepted\"}} {}\n", d.counters.pairings_accepted.load(Relaxed)));
        out.push_str(&format!("homehub_pairings_total{{outcome=\"rejected\"}} {}\n", d.counters.pairings_rejected.load(Relaxed)));
    }
    if let Some(m) = st.mqtt.as_deref() {
        let s = m.stats();
        for (name, help, v) in [
            ("homehub_mqtt_connections_total", "Broker logins accepted.", s.connections_total),
            ("homehub_mqtt_refused_total", "Broker logins refused (with a CONNACK code).", s.refused_total),
            ("homehub_mqtt_denied_publish_total", "PUBLISH packets outside the client's topics.", s.denied_publish_total),
            ("homehub_mqtt_denied_subscribe_total", "SUBSCRIBE filters outside the client's topics.", s.denied_subscribe_total),
            ("homehub_mqtt_malformed_total", "Connections closed for malformed or oversized packets.", s.malformed_total),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"));
        }
        out.push_str("# HELP homehub_mqtt_live Broker connections open now.\n# TYPE homehub_mqtt_live gauge\n");
        out.push_str(&format!("homehub_mqtt_live {}\n", s.live));
    }
    Ok(())
}
