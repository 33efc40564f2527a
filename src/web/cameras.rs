//! The camera routes: the list with live status, "test connection" (probe), adding,
//! renaming, per-camera recording mode, motion settings applied live, removal. Wire
//! types are declared here; cameras start and stop through [`ports::CameraAdmin`].
//!
//! URLs may carry credentials (`rtsp://user:pass@host/...`): they are stored only in the
//! database and never leave the hub: the API shows them with the userinfo stripped, logs
//! and the audit trail the same.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Deserializer, Serialize};

use super::{ApiError, ApiResult, AppState, Items, Session, err, require, session};
use crate::camera::CameraStatus;
use crate::camera::probe::{ProbeResult, strip_userinfo};
use crate::config::RecordingMode;
use crate::error::{Error, ErrorKind};
use crate::motion::DetectorConfig;
use crate::store::{CameraRow, Role};

/// Longest accepted URL.
pub const MAX_URL: usize = 1024;
/// Longest accepted name, in characters.
pub const MAX_NAME: usize = 64;
/// Largest accepted request body of these routes.
const MAX_BODY: usize = 16 * 1024;
/// How long "test connection" may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection tests running at once (each holds an RTSP session and a pipeline).
static PROBES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A camera as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CameraInfo {
    pub id: i64,
    pub name: String,
    /// "connecting" | "streaming" | "error" | "stopped"
    pub status: String,
    pub reason: Option<String>,
    pub decoder: Option<String>,
    pub hardware_decoder: bool,
    pub decoded_fps: f64,
    /// "config" | "paired" | "added"
    pub source: String,
    /// Motion going on now.
    pub motion: bool,
    /// Without credentials.
    pub url: String,
    pub has_substream: bool,
    /// The mode in force: the camera's own, or the config's.
    pub recording_mode: &'static str,
    /// The camera's own mode (`null`: the config's).
    pub recording_mode_override: Option<&'static str>,
    /// "tcp" | "udp" (null before the first connect)
    pub transport: Option<&'static str>,
    /// Measured incoming frame rate and bit rate of the main stream.
    pub fps: f64,
    pub bitrate_kbps: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Pipeline runs started since the camera started: a reconnect adds one.
    pub connects: u64,
    /// Recordings and clips on disk.
    pub storage_bytes: u64,
    /// False for cameras from homehub.toml: no rename, removal or URL change here.
    pub editable: bool,
    pub snapshot_url: String,
    pub live_url: String,
}

fn mode_str(m: RecordingMode) -> &'static str {
    match m {
        RecordingMode::Continuous => "continuous",
        RecordingMode::Events => "events",
        RecordingMode::Off => "off",
    }
}

impl CameraInfo {
    /// A running camera's status with what its row adds (URL, modes) and its storage.
    pub fn new(c: CameraStatus, row: Option<&CameraRow>, default_mode: RecordingMode, storage_bytes: u64) -> CameraInfo {
        let own = row.and_then(|r| r.recording_mode);
        let s = c.status;
        CameraInfo {
            id: c.id,
            name: c.name,
            status: s.state.as_str().to_string(),
            reason: s.reason,
            hardware_decoder: s.decoder.as_deref().is_some_and(crate::camera::decoder::is_hardware),
            decoder: s.decoder,
            decoded_fps: s.decoded_fps,
            editable: c.source != "config",
            source: c.source,
            motion: c.motion,
            url: row.map(|r| strip_userinfo(&r.url)).unwrap_or_default(),
            has_substream: row.is_some_and(|r| !r.substream_url.is_empty()),
            recording_mode: mode_str(own.unwrap_or(default_mode)),
            recording_mode_override: own.map(mode_str),
            transport: s.transport,
            fps: s.fps,
            bitrate_kbps: s.bitrate_kbps,
            width: s.width,
            height: s.height,
            connects: s.connects,
            storage_bytes,
            snapshot_url: format!("/api/cameras/{}/snapshot.jpg", c.id),
            live_url: format!("/api/cameras/{}/live", c.id),
        }
    }
}

/// Every running camera, by id.
async fn camera_infos(st: &AppState) -> ApiResult<Vec<CameraInfo>> {
    let (rows, bytes) = st.store.call(|db| Ok((db.live_cameras()?, db.camera_storage_bytes()?))).await?;
    let rows: HashMap<i64, CameraRow> = rows.into_iter().map(|r| (r.id, r)).collect();
    let mode = st.camera_admin.default_recording_mode();
    Ok(st
        .cameras
        .cameras()
        .into_iter()
        .map(|c| {
            let b = bytes.get(&c.id).copied().unwrap_or(0);
            let row = rows.get(&c.id);
            CameraInfo::new(c, row, mode, b)
        })
        .collect())
}

async fn camera_info(st: &AppState, id: i64) -> ApiResult<CameraInfo> {
    camera_infos(st)
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| err(ErrorKind::NotFound, &format!("camera {id} is not running")))
}

pub(super) async fn list_cameras(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
) -> ApiResult<Json<Items<CameraInfo>>> {
    let s = session(ext)?;
    let mut items = camera_infos(&st).await?;
    items.retain(|c| s.sees(c.id));
    if s.user.role != Role::Owner {
        // Where a camera is (its address) is the owner's business.
        for c in &mut items {
            c.url.clear();
        }
    }
    Ok(Json(Items { items }))
}

/// A JSON body of at most [`MAX_BODY`] bytes; errors name the field.
fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.len() > MAX_BODY {
        return Err(err(ErrorKind::Invalid, &format!("body: larger than {MAX_BODY} bytes")));
    }
    super::json_body(bytes)
}

/// 1..=64 characters, no control characters; surrounding blanks are dropped.
pub fn check_name(name: &str) -> Result<String, String> {
    let n = name.trim();
    if n.is_empty() {
        return Err("name: must not be empty".into());
    }
    if n.chars().count() > MAX_NAME {
        return Err(format!("name: at most {MAX_NAME} characters"));
    }
    if n.chars().any(char::is_control) {
        return Err("name: must not contain control characters".into());
    }
    Ok(n.to_string())
}

/// `rtsp://` or `rtsps://` with a host, at most 1024 bytes, no blanks or control
/// characters. The message never repeats the URL (it may hold a password).
pub fn check_url(field: &str, url: &str) -> Result<(), String> {
    if url.len() > MAX_URL {
        return Err(format!("{field}: at most {MAX_URL} characters"));
    }
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("rtsp://").or_else(|| lower.strip_prefix("rtsps://")) else {
        return Err(format!("{field}: must start with rtsp:// or rtsps://"));
    };
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{field}: must not contain spaces or control characters"));
    }
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{field}: has no host"));
    }
    Ok(())
}

fn invalid(msg: String) -> ApiError {
    ApiError(Error::invalid(msg))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeBody {
    url: String,
}

#[derive(Serialize)]
struct ProbeInfo {
    codec: String,
    width: u32,
    height: u32,
    fps: f64,
    transport: &'static str,
}

impl From<ProbeResult> for ProbeInfo {
    fn from(p: ProbeResult) -> Self {
        ProbeInfo { codec: p.codec, width: p.width, height: p.height, fps: p.fps, transport: p.transport.as_str() }
    }
}

/// `POST /api/cameras/probe`: connects to the URL and says what it streams; 422 with
/// what failed (no credentials in it).
pub(super) async fn probe(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    bytes: axum::body::Bytes,
) -> ApiResult<Response> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    let b: ProbeBody = body(&bytes)?;
    check_url("url", &b.url).map_err(invalid)?;
    let Ok(_permit) = PROBES.try_acquire() else {
        return Err(err(ErrorKind::Unavailable, "two connection tests are running already; try again in a few seconds"));
    };
    let shown = strip_userinfo(&b.url);
    // The probe keeps its own deadline; this one only guards against a stuck library.
    let r = tokio::time::timeout(PROBE_TIMEOUT + Duration::from_secs(5), st.camera_admin.probe(&b.url, PROBE_TIMEOUT)).await;
    match r {
        Ok(Ok(p)) => Ok(Json(ProbeInfo::from(p)).into_response()),
        Ok(Err(e)) => {
            tracing::info!(url = %shown, error = %e, "connection test failed");
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(serde_json::json!({ "error": e.message() }))).into_response())
        }
        Err(_) => Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(serde_json::json!({ "error": format!("timed out ({shown})") })))
            .into_response()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    name: String,
    url: String,
    #[serde(default)]
    substream_url: Option<String>,
}

/// `POST /api/cameras`: stores the camera (source "added") and starts it at once.
pub(super) async fn add(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    bytes: axum::body::Bytes,
) -> ApiResult<Response> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    let b: AddBody = body(&bytes)?;
    let name = check_name(&b.name).map_err(invalid)?;
    check_url("url", &b.url).map_err(invalid)?;
    let sub = b.substream_url.unwrap_or_default();
    if !sub.is_empty() {
        check_url("substream_url", &sub).map_err(invalid)?;
    }
    let (who, now) = (s.user.email.clone(), st.clock.now_ms());
    let row = st
        .store
        .call(move |db| {
            let row = db.add_camera(&name, &b.url, &sub, now)?;
            let detail = format!("camera {} {:?} {}", row.id, row.name, strip_userinfo(&row.url));
            db.audit(&who, "camera.add", &detail, now)?;
            Ok(row)
        })
        .await?;
    let id = row.id;
    tracing::info!(camera = %row.name, id, url = %strip_userinfo(&row.url), "camera added");
    st.camera_admin.start(row).await?;
    Ok((StatusCode::CREATED, Json(camera_info(&st, id).await?)).into_response())
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ModeWire {
    Continuous,
    Events,
    Off,
}

impl From<ModeWire> for RecordingMode {
    fn from(m: ModeWire) -> Self {
        match m {
            ModeWire::Continuous => RecordingMode::Continuous,
            ModeWire::Events => RecordingMode::Events,
            ModeWire::Off => RecordingMode::Off,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    recording_mode: Option<Option<ModeWire>>,
}

fn defined_in_config() -> ApiError {
    err(ErrorKind::Conflict, "this camera is defined in homehub.toml: change it there")
}

/// `PATCH /api/cameras/{id}`: a rename applies at once, without a restart; a
/// recording-mode change restarts the camera's pipeline.
pub(super) async fn patch(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    UrlPath(id): UrlPath<i64>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<CameraInfo>> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    let b: PatchBody = body(&bytes)?;
    let name = b.name.as_deref().map(check_name).transpose().map_err(invalid)?;
    let row =
        st.store.call(move |db| db.live_camera(id)).await?.ok_or_else(|| err(ErrorKind::NotFound, &format!("no camera {id}")))?;
    if name.is_some() && row.source == "config" {
        return Err(defined_in_config());
    }
    let mode = b.recording_mode.map(|m| m.map(RecordingMode::from));
    let (who, now) = (s.user.email.clone(), st.clock.now_ms());
    let (row, restart) = {
        let name = name.clone();
        st.store
            .call(move |db| {
                let mut r = row;
                if let Some(n) = name.filter(|n| *n != r.name) {
                    let old = r.name.clone();
                    r = db.rename_camera(id, &n)?;
                    db.audit(&who, "camera.rename", &format!("camera {id} {old:?} -> {n:?}"), now)?;
                }
                let mut restart = false;
                if let Some(m) = mode.filter(|m| *m != r.recording_mode) {
                    r = db.set_camera_recording_mode(id, m)?;
                    db.audit(&who, "camera.recording_mode", &format!("camera {id} {}", m.map_or("default", mode_str)), now)?;
                    restart = true;
                }
                Ok((r, restart))
            })
            .await?
    };
    st.camera_admin.rename(id, &row.name);
    if restart {
        st.camera_admin.start(row).await?;
    }
    Ok(Json(camera_info(&st, id).await?))
}

/// `DELETE /api/cameras/{id}`: stops the camera; its recordings stay until retention
/// removes them.
pub(super) async fn remove(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    UrlPath(id): UrlPath<i64>,
) -> ApiResult<StatusCode> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    let row =
        st.store.call(move |db| db.live_camera(id)).await?.ok_or_else(|| err(ErrorKind::NotFound, &format!("no camera {id}")))?;
    match row.source.as_str() {
        "config" => return Err(defined_in_config()),
        // The device would offer it again; unpairing is what removes it.
        "paired" => return Err(err(ErrorKind::Conflict, "this camera belongs to a paired device: unpair the device instead")),
        _ => {}
    }
    // Stopped first: its last segment is indexed under the row, which stays (marked).
    st.camera_admin.stop(id).await?;
    let (who, now) = (s.user.email.clone(), st.clock.now_ms());
    st.store
        .call(move |db| {
            db.remove_camera(id, now)?;
            db.audit(&who, "camera.remove", &format!("camera {id} {:?}", row.name), now)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn get_motion(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    UrlPath(id): UrlPath<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    super::camera_access(&s, id, Role::Member)?;
    let json = st.store.call(move |db| db.camera_motion(id)).await?.ok_or_else(|| err(ErrorKind::NotFound, "no such camera"))?;
    let cfg: DetectorConfig = serde_json::from_str(&json).unwrap_or_default();
    Ok(Json(serde_json::to_value(cfg).map_err(|e| ApiError(Error::internal(format!("encoding motion settings: {e}"))))?))
}

/// Sets a camera's motion sensitivity and zones; a running camera's detector takes them
/// at its next frame (no pipeline restart).
pub(super) async fn put_motion(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    UrlPath(id): UrlPath<i64>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    let cfg: DetectorConfig = body(&bytes)?;
    cfg.validate().map_err(|e| err(ErrorKind::Invalid, &e.to_string()))?;
    let json = serde_json::to_string(&cfg).map_err(|e| ApiError(Error::internal(format!("encoding motion settings: {e}"))))?;
    let (who, now) = (s.user.email.clone(), st.clock.now_ms());
    st.store
        .call(move |db| {
            db.set_camera_motion(id, &json)?;
            db.audit(&who, "camera.motion", &format!("camera {id}"), now)
        })
        .await?;
    let live = st.camera_admin.retune(id, cfg.clone());
    tracing::info!(id, live, "motion settings saved");
    Ok(Json(serde_json::to_value(cfg).map_err(|e| ApiError(Error::internal(format!("encoding motion settings: {e}"))))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded() {
        assert_eq!(check_name("  Porch ").unwrap(), "Porch");
        assert!(check_name(" ").unwrap_err().starts_with("name:"));
        assert!(check_name(&"x".repeat(65)).unwrap_err().contains("64"));
        assert_eq!(check_name(&"é".repeat(64)).unwrap().chars().count(), 64);
        assert!(check_name("a\nb").is_err());
    }

    #[test]
    fn urls_are_rtsp_with_a_host_and_never_echoed() {
        assert!(check_url("url", "rtsp://192.0.2.1:554/s").is_ok());
        assert!(check_url("url", "RTSPS://cam.local/s").is_ok());
        assert!(check_url("url", "rtsp://u:p@192.0.2.1/s").is_ok());
        let e = check_url("url", "http://u:secret@192.0.2.1/s").unwrap_err();
        assert!(e.starts_with("url:") && !e.contains("secret"), "{e}");
        assert!(check_url("url", "rtsp:///s").unwrap_err().contains("no host"));
        assert!(check_url("url", "rtsp://u:p@/s").unwrap_err().contains("no host"));
        assert!(check_url("url", "rtsp://h/a b").is_err());
        assert!(check_url("substream_url", &format!("rtsp://h/{}", "a".repeat(1020))).unwrap_err().starts_with("substream_url:"));
    }

    #[test]
    fn a_patch_tells_null_from_absent() {
        let p: PatchBody = serde_json::from_str(r#"{"recording_mode":null}"#).unwrap();
        assert!(matches!(p.recording_mode, Some(None)));
        let p: PatchBody = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
        assert!(p.recording_mode.is_none());
        let p: PatchBody = serde_json::from_str(r#"{"recording_mode":"off"}"#).unwrap();
        assert!(matches!(p.recording_mode, Some(Some(ModeWire::Off))));
        assert!(serde_json::from_str::<PatchBody>(r#"{"recording_mode":"sometimes"}"#).is_err());
        assert!(serde_json::from_str::<PatchBody>(r#"{"url":"rtsp://h/x"}"#).is_err(), "no URL change here");
    }
}
