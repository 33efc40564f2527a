//! Two owner pages that answer "what does anyone outside learn, and what happens here":
//! `GET /api/cloud/exposure` — what the storage provider can see, read from the bucket's
//! own listing — and `GET /api/insight` — the hub's own figures (motion per camera per day,
//! storage, device connections, sign-ins), which never leave the LAN.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use super::{ApiResult, AppState, Session, err, json_body, owner, require, session};
use crate::clock::rfc3339;
use crate::cloud::relay::{StoreChange, StoreView};
use crate::error::ErrorKind;
use crate::store::Role;

const DAY_MS: i64 = 86_400_000;

#[derive(Serialize)]
pub struct ExposedObject {
    name: String,
    bytes: u64,
    uploaded: String,
}

/// `GET /api/cloud/exposure`.
pub async fn exposure(State(st): State<AppState>, ext: Option<axum::Extension<Session>>) -> ApiResult<Json<serde_json::Value>> {
    owner(ext)?;
    if !st.cloud.store_view().active {
        return Ok(Json(serde_json::json!({ "enabled": false })));
    }
    let e = st.cloud.exposure().await?;
    let recent: Vec<ExposedObject> =
        e.recent.into_iter().map(|(name, bytes, at)| ExposedObject { name, bytes, uploaded: rfc3339(at) }).collect();
    Ok(Json(serde_json::json!({
        "enabled": true,
        "store": e.store,
        "endpoint": e.endpoint,
        "region": e.region,
        "hub_id": e.hub_id,
        "recipients": e.recipients,
        "objects": e.objects,
        "bytes": e.bytes,
        "truncated": e.truncated,
        "listed_at": rfc3339(e.listed_at_ms),
        "recent": recent,
        "uploads_since_start": e.snapshot.uploads,
        "bytes_sent_since_start": e.snapshot.bytes_sent,
        "queue_length": e.snapshot.queue.pending,
        "last_success": e.snapshot.last_success_ms.map(rfc3339),
        "error": e.error,
    })))
}

fn recipients_body(list: Vec<String>, from_hub: bool) -> Json<serde_json::Value> {
    let from = if from_hub {
        "hub"
    } else if list.is_empty() {
        "none"
    } else {
        "config"
    };
    Json(serde_json::json!({ "recipients": list, "from": from }))
}

/// `GET /api/cloud/recipients`.
pub async fn get_recipients(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
) -> ApiResult<Json<serde_json::Value>> {
    owner(ext)?;
    let (list, from_hub) = st.cloud.recipients();
    Ok(recipients_body(list, from_hub))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientsBody {
    recipients: Vec<String>,
}

/// `PUT /api/cloud/recipients`: who new clips are sealed to (public keys only).
pub async fn put_recipients(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let s = owner(ext)?;
    let b: RecipientsBody = json_body(&bytes)?;
    let list = st.cloud.set_recipients(&b.recipients, &s.user.email).await?;
    Ok(recipients_body(list, true))
}

/// Store settings as the owner sends them (`secret_access_key` absent or null: keep it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreBody {
    store: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    secret_access_key: Option<String>,
}

impl From<StoreBody> for StoreChange {
    fn from(b: StoreBody) -> StoreChange {
        StoreChange {
            store: b.store,
            endpoint: b.endpoint,
            region: b.region,
            access_key_id: b.access_key_id,
            secret_access_key: b.secret_access_key,
        }
    }
}

fn store_body(v: StoreView) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "store": v.store,
        "endpoint": v.endpoint,
        "region": v.region,
        "access_key_id": v.access_key_id,
        "secret_set": v.secret_set,
        "from": v.from.as_str(),
        "active": v.active,
        "error": v.error,
    }))
}

/// `GET /api/cloud/settings`: where clips go, never the secret.
pub async fn get_store(State(st): State<AppState>, ext: Option<axum::Extension<Session>>) -> ApiResult<Json<serde_json::Value>> {
    owner(ext)?;
    Ok(store_body(st.cloud.store_view()))
}

/// `PUT /api/cloud/settings`: new store settings, in use at once; `store: ""` turns the cloud off.
pub async fn put_store(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let s = owner(ext)?;
    let b: StoreBody = json_body(&bytes)?;
    Ok(store_body(st.cloud.set_store(b.into(), &s.user.email).await?))
}

/// `POST /api/cloud/test`: one sealed probe written and deleted, to the store in use (`{}`)
/// or the one the body names (not saved); 502 with why not.
pub async fn test_store(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    bytes: axum::body::Bytes,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let s = owner(ext)?;
    let body: serde_json::Value = json_body(&bytes)?;
    let change = match body.as_object() {
        Some(o) if o.is_empty() => None,
        _ => Some(StoreChange::from(json_body::<StoreBody>(&bytes)?)),
    };
    let what = match &change {
        Some(c) => format!("{} (not saved)", c.store),
        None => st.cloud.store_view().store,
    };
    let (now, actor) = (st.clock.now_ms(), s.user.email.clone());
    let (answer, detail) = match st.cloud.probe(change).await {
        Ok(took) => {
            let ms = took.as_millis() as u64;
            (
                (axum::http::StatusCode::OK, Json(serde_json::json!({ "ok": true, "ms": ms }))).into_response(),
                format!("{what}: ok in {ms} ms"),
            )
        }
        Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::Invalid) => return Err(e.into()),
        Err(e) => {
            let msg = e.to_string();
            (
                (axum::http::StatusCode::BAD_GATEWAY, Json(serde_json::json!({ "error": msg }))).into_response(),
                format!("{what}: failed: {msg}"),
            )
        }
    };
    st.store.call(move |db| db.audit(&actor, "cloud.tested", &detail, now)).await?;
    Ok(answer)
}

/// `GET /api/cloud/away.html` (member or owner): the away page, to keep or to put in the
/// bucket by hand. The same file on every hub, with no data in it.
pub async fn away_page(ext: Option<axum::Extension<Session>>) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let s = session(ext)?;
    require(&s, Role::Member)?;
    use axum::http::header;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"homehub-away.html\""),
            (header::CACHE_CONTROL, "no-store"),
        ],
        super::assets::away_html(),
    )
        .into_response())
}

/// `POST /api/cloud/away`: the away page into the bucket, beside the clips.
pub async fn put_away_page(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let s = owner(ext)?;
    let _: serde_json::Map<String, serde_json::Value> = json_body(&bytes)?;
    let a = st.cloud.put_away_page(super::assets::away_html(), &s.user.email).await?;
    Ok(Json(serde_json::json!({
        "key": a.key,
        "address": a.address,
        "url": a.link.clone().unwrap_or_else(|| a.address.clone()),
        "expires": a.expires_ms.map(rfc3339),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsightQuery {
    days: Option<i64>,
}

#[derive(Serialize)]
pub struct CameraSeries {
    camera_id: i64,
    name: String,
    per_day: Vec<i64>,
}

#[derive(Serialize)]
pub struct CameraBytes {
    camera_id: i64,
    name: String,
    bytes: u64,
}

#[derive(Serialize)]
pub struct DeviceFigures {
    id: String,
    connections: i64,
    failed_connections: i64,
    paired: bool,
}

/// Counts per day (days since the epoch) laid out over `first..first + n`.
fn spread(counts: impl IntoIterator<Item = (i64, i64)>, first: i64, n: i64) -> Vec<i64> {
    let mut out = vec![0; n as usize];
    for (day, c) in counts {
        if (first..first + n).contains(&day) {
            out[(day - first) as usize] += c;
        }
    }
    out
}

/// `GET /api/insight?days=N` (1..=60, default 14): the last N UTC days, today included.
pub async fn insight(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    q: Result<Query<InsightQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    owner(ext)?;
    let Query(q) = q.map_err(|e| err(ErrorKind::Invalid, &e.body_text()))?;
    let n = q.days.unwrap_or(14);
    if !(1..=60).contains(&n) {
        return Err(err(ErrorKind::Invalid, "days: 1..=60"));
    }
    let today = st.clock.now_ms().div_euclid(DAY_MS);
    let first = today - n + 1;
    let since = first * DAY_MS;
    let (events, cams, live, bytes, devices, logins, failed) = st
        .store
        .call(move |db| {
            Ok((
                db.events_per_day(since)?,
                db.cameras()?,
                db.live_cameras()?.into_iter().map(|c| c.id).collect::<Vec<i64>>(),
                db.media_bytes_by_camera()?,
                db.devices()?,
                db.audit_per_day("login", since)?,
                db.audit_per_day("login.failed", since)?,
            ))
        })
        .await?;
    let name = |id: i64| cams.iter().find(|c| c.id == id).map_or_else(|| format!("camera {id}"), |c| c.name.clone());
    // Every camera running now, and any other that had events in the window.
    let mut ids: Vec<i64> = live.clone();
    ids.extend(events.iter().map(|e| e.0));
    ids.sort_unstable();
    ids.dedup();
    let motion: Vec<CameraSeries> = ids
        .into_iter()
        .map(|id| CameraSeries {
            camera_id: id,
            name: name(id),
            per_day: spread(events.iter().filter(|e| e.0 == id).map(|e| (e.1, e.2)), first, n),
        })
        .collect();
    let storage: Vec<CameraBytes> = bytes
        .into_iter()
        .filter(|b| b.recordings_bytes + b.clips_bytes > 0 || live.contains(&b.camera_id))
        .map(|b| CameraBytes { camera_id: b.camera_id, name: name(b.camera_id), bytes: b.recordings_bytes + b.clips_bytes })
        .collect();
    let devices: Vec<DeviceFigures> = devices
        .into_iter()
        .map(|d| DeviceFigures {
            paired: d.unpaired_ms.is_none(),
            id: d.id,
            connections: d.connections,
            failed_connections: d.failed_connections,
        })
        .collect();
    let days: Vec<String> = (first..=today).map(|d| rfc3339(d * DAY_MS)[..10].to_string()).collect();
    Ok(Json(serde_json::json!({
        "days": days,
        "motion": motion,
        "storage": storage,
        "devices": devices,
        "sign_ins": { "per_day": spread(logins, first, n), "failed_per_day": spread(failed, first, n) },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_on_their_day_and_others_are_dropped() {
        assert_eq!(spread([(10, 2), (12, 1), (12, 3), (9, 7), (13, 1)], 10, 3), vec![2, 0, 4]);
    }
}
