//! The LAN web server: HTTPS only (rustls), sessions, the JSON API and the page.
//!
//! Owns: the listener and TLS, authentication and CSRF rules, the wire shapes of the
//! API (declared here, apart from the store's rows). Default deny: `/healthz` is the
//! only route that answers without a session; every other path, known or not, gets
//! 401 first. May not touch: GStreamer, media pipelines; it reads camera state through
//! [`CameraView`], the other subsystems through the narrow traits of [`ports`], and the
//! database through the [`Store`].

mod assets;
pub mod auth;
pub mod cameras;
mod devices;
mod export;
mod live;
pub mod metrics;
pub mod ports;
mod stills;
mod timeline;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::camera::CameraView;
use crate::clock::{Clock, rfc3339};
use crate::error::{Error, ErrorKind};
use crate::store::{Role, Store, UserRow};

const OPENAPI: &str = include_str!("../../web/openapi.json");

/// What the hub hands the web when it builds it: the database, the clock, and a narrow
/// view of each subsystem the pages show.
pub struct Parts {
    pub store: Store,
    /// Stamps sessions and the audit trail.
    pub clock: Clock,
    pub cameras: Arc<dyn CameraView>,
    pub camera_admin: Arc<dyn ports::CameraAdmin>,
    pub devices: Arc<dyn ports::DeviceAdmin>,
    pub broker: Arc<dyn ports::BrokerStats>,
    /// None when mDNS is off or could not start.
    pub discovery: Option<Arc<dyn ports::Discovery>>,
    /// None when `cloud.store` is empty.
    pub cloud: Option<Arc<dyn ports::CloudStatus>>,
    /// What `/api/storage` forecasts with.
    pub retention: crate::recorder::Retention,
    pub allow_public_clients: bool,
}

#[derive(Clone)]
pub struct AppState {
    store: Store,
    clock: Clock,
    cameras: Arc<dyn CameraView>,
    camera_admin: Arc<dyn ports::CameraAdmin>,
    devices: Arc<dyn ports::DeviceAdmin>,
    broker: Arc<dyn ports::BrokerStats>,
    discovery: Option<Arc<dyn ports::Discovery>>,
    cloud: Option<Arc<dyn ports::CloudStatus>>,
    allow_public_clients: bool,
    throttle: Arc<auth::Throttle>,
    retention: crate::recorder::Retention,
    stills: Arc<stills::Cache>,
}

impl AppState {
    pub fn new(p: Parts) -> Self {
        AppState {
            store: p.store,
            clock: p.clock,
            cameras: p.cameras,
            camera_admin: p.camera_admin,
            devices: p.devices,
            broker: p.broker,
            discovery: p.discovery,
            cloud: p.cloud,
            allow_public_clients: p.allow_public_clients,
            throttle: Arc::new(auth::Throttle::new(10, Duration::from_secs(300))),
            retention: p.retention,
            stills: Arc::new(stills::Cache::default()),
        }
    }
}

/// An API error: status from the error kind, body `{"error": "..."}`.
pub struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "request failed");
        }
        (status, Json(serde_json::json!({ "error": self.0.message() }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn err(kind: ErrorKind, msg: &str) -> ApiError {
    ApiError(Error::new(kind, msg))
}

/// The signed-in user of a request, put there by the auth layer.
#[derive(Clone)]
pub struct Session {
    pub user: UserRow,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/assets/{*file}", get(assets::asset))
        .route("/api/session", post(login).delete(logout))
        .route("/api/me", get(me))
        .route("/api/cameras", get(cameras::list_cameras).post(cameras::add))
        .route("/api/cameras/probe", post(cameras::probe))
        .route("/api/cameras/{id}", axum::routing::patch(cameras::patch).delete(cameras::remove))
        .route("/api/recordings", get(timeline::list_recordings))
        .route("/api/recordings/spans", get(timeline::spans))
        .route("/api/storage", get(timeline::storage))
        .route("/api/cameras/{id}/snapshot.jpg", get(stills::snapshot))
        .route("/api/recordings/{id}/media", get(recording_media))
        .route("/api/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route("/api/cameras/{id}/motion", get(cameras::get_motion).put(cameras::put_motion))
        .route("/api/cameras/{id}/live", get(live::live))
        .route("/api/cameras/{id}/export", get(export::export))
        .route("/api/events", get(timeline::list_events))
        .route("/api/events/{id}/{media}", get(event_media))
        .route("/api/devices", get(devices::list_devices))
        .route("/api/devices/{id}", axum::routing::delete(devices::unpair))
        .route("/api/devices/{id}/hosts", post(devices::approve_host))
        .route("/api/devices/{id}/hosts/{host}", axum::routing::delete(devices::remove_host))
        .route("/api/pairing", get(devices::list_pairing))
        .route("/api/pairing/{device_id}", post(devices::confirm))
        .route("/api/discovery", get(devices::discovery))
        .route("/api/audit", get(devices::audit))
        .route("/api/cloud", get(cloud_status))
        .route("/metrics", get(metrics))
        .fallback(assets::fallback)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::from_fn(assets::security_headers))
        .with_state(state)
}

/// Runs before every route: LAN-only clients, CSRF rules, then the session check.
async fn guard(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(ip) = peer
        && !st.allow_public_clients
        && !crate::lan::is_lan(ip)
    {
        return (StatusCode::FORBIDDEN, "homehub answers only clients on the local network\n").into_response();
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    // Health, and the bundle's static files (the same code on every hub, no data).
    if (path == "/healthz" || path.starts_with("/assets/")) && (method == Method::GET || method == Method::HEAD) {
        return next.run(req).await;
    }
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
        && let Err(why) = csrf_ok(req.headers())
    {
        return (StatusCode::FORBIDDEN, Json(serde_json::json!({ "error": why }))).into_response();
    }
    let session = match session_of(&st, req.headers()).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match session {
        Some(s) => {
            req.extensions_mut().insert(s);
            let mut resp = next.run(req).await;
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        // Signing in is the one thing to do without a session.
        None if path == "/api/session" && method == Method::POST => next.run(req).await,
        None if path == "/metrics" && peer.is_some_and(|ip| ip.is_loopback()) => next.run(req).await,
        None if matches!(method, Method::GET | Method::HEAD) && assets::is_page_path(&path) => {
            // Browsers get the app shell, still with 401: it holds no data and shows sign-in.
            assets::shell(StatusCode::UNAUTHORIZED)
        }
        None => err(ErrorKind::Unauthenticated, "sign in first").into_response(),
    }
}

/// A state-changing request must say it is JSON (a form cannot), and come from our own
/// origin when it names one.
fn csrf_ok(h: &HeaderMap) -> Result<(), &'static str> {
    let ct = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err("state-changing requests must have content-type: application/json");
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        if origin.to_str().ok() != Some(format!("https://{host}").as_str()) {
            return Err("request from another origin");
        }
    }
    Ok(())
}

fn cookie_token(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == auth::COOKIE)
        .map(|(_, v)| v.to_string())
}

async fn session_of(st: &AppState, h: &HeaderMap) -> ApiResult<Option<Session>> {
    let Some(token) = cookie_token(h) else { return Ok(None) };
    let hash = auth::token_hash(&token);
    let now = st.clock.now_ms();
    let user = st.store.call(move |db| db.session_user(&hash, now)).await?;
    Ok(user.map(|user| Session { user }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let body: LoginBody = serde_json::from_slice(&body).map_err(|e| err(ErrorKind::Invalid, &format!("body: {e}")))?;
    let _ = body.totp; // two-factor arrives with the users issue; accepted and ignored until then
    if !st.throttle.allowed(peer.ip()) {
        return Ok((
            StatusCode::TOO_MANY_REQUESTS,
            Json(serde_json::json!({"error": "too many failed sign-ins; wait a few minutes"})),
        )
            .into_response());
    }
    let email = body.email.trim().to_string();
    let user = {
        let e = email.clone();
        st.store.call(move |db| db.user_by_email(&e)).await?
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| auth::dummy_hash().to_string());
    let password = body.password;
    let ok =
        crate::error::blocking("checking a password", move || auth::verify_password(&password, &hash)).await.map_err(ApiError)?;
    let Some(user) = user.filter(|_| ok) else {
        st.throttle.failed(peer.ip());
        let (ip, e, now) = (peer.ip().to_string(), email.clone(), st.clock.now_ms());
        st.store.call(move |db| db.audit(&e, "login.failed", &ip, now)).await?;
        return Err(err(ErrorKind::Unauthenticated, "wrong email or password"));
    };
    st.throttle.succeeded(peer.ip());
    let (token, hash) = auth::new_token();
    let now = st.clock.now_ms();
    let expires = now + auth::SESSION_LIFETIME.as_millis() as i64;
    let (uid, e, ip) = (user.id, user.email.clone(), peer.ip().to_string());
    st.store
        .call(move |db| {
            db.delete_expired_sessions(now)?;
            db.add_session(&hash, uid, now, expires)?;
            db.audit(&e, "login", &ip, now)
        })
        .await?;
    let cookie = format!(
        "{}={token}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
        auth::COOKIE,
        auth::SESSION_LIFETIME.as_secs()
    );
    Ok(([(header::SET_COOKIE, cookie)], Json(serde_json::json!({ "email": user.email, "role": user.role.as_str() })))
        .into_response())
}

async fn logout(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = cookie_token(&headers) {
        let hash = auth::token_hash(&token);
        st.store.call(move |db| db.delete_session(&hash)).await?;
    }
    let cookie = format!("{}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict", auth::COOKIE);
    Ok(([(header::SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response())
}

fn session(req_ext: Option<axum::Extension<Session>>) -> ApiResult<Session> {
    req_ext.map(|e| e.0).ok_or_else(|| err(ErrorKind::Unauthenticated, "sign in first"))
}

/// Refuses users whose role is below `min`.
fn require(s: &Session, min: Role) -> ApiResult<()> {
    let rank = |r: Role| match r {
        Role::Viewer => 0,
        Role::Member => 1,
        Role::Owner => 2,
    };
    if rank(s.user.role) < rank(min) {
        return Err(err(ErrorKind::Forbidden, "your role does not allow this"));
    }
    Ok(())
}

async fn me(ext: Option<axum::Extension<Session>>) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    Ok(Json(serde_json::json!({ "email": s.user.email, "role": s.user.role.as_str() })))
}

#[derive(Serialize)]
struct Items<T> {
    items: Vec<T>,
}

fn parse_time(key: &str, v: &Option<String>) -> ApiResult<Option<i64>> {
    v.as_deref()
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .map_err(|_| err(ErrorKind::Invalid, &format!("{key}: expected an RFC 3339 time, got {s:?}")))
        })
        .transpose()
}

async fn recording_media(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    UrlPath(id): UrlPath<i64>,
    req: Request,
) -> ApiResult<Response> {
    session(ext)?;
    let row = st.store.call(move |db| db.segment(id)).await?.ok_or_else(|| err(ErrorKind::NotFound, "no such recording"))?;
    serve_file(&st, &row.segment.path, "video/mp4", req).await
}

/// `/api/events/{id}/clip` (MP4) and `/api/events/{id}/thumbnail` (JPEG).
async fn event_media(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    UrlPath((id, media)): UrlPath<(i64, String)>,
    req: Request,
) -> ApiResult<Response> {
    session(ext)?;
    let row = st.store.call(move |db| db.event(id)).await?;
    let (path, mime) = match media.as_str() {
        "clip" => (row.and_then(|e| e.clip_path), "video/mp4"),
        "thumbnail" => (row.and_then(|e| e.thumb_path), "image/jpeg"),
        _ => return Err(err(ErrorKind::NotFound, "no such route")),
    };
    let path = path.ok_or_else(|| err(ErrorKind::NotFound, &format!("no {media} for this event")))?;
    serve_file(&st, &path, mime, req).await
}

/// The cloud relay's state and queue (`{"enabled": false}` when no cloud is set).
async fn cloud_status(State(st): State<AppState>, ext: Option<axum::Extension<Session>>) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    require(&s, Role::Member)?;
    let Some(cloud) = &st.cloud else { return Ok(Json(serde_json::json!({ "enabled": false }))) };
    let status = CloudInfo::from(cloud.snapshot().await?);
    Ok(Json(serde_json::to_value(status).map_err(|e| ApiError(Error::internal(format!("encoding /api/cloud: {e}"))))?))
}

/// `GET /api/cloud`.
#[derive(Serialize)]
struct CloudInfo {
    enabled: bool,
    store: String,
    recipients: usize,
    queue_length: u64,
    bytes_pending: u64,
    oldest_pending: Option<String>,
    failed: u64,
    uploaded: u64,
    uploads_since_start: u64,
    failures_since_start: u64,
    bytes_sent_since_start: u64,
    last_success: Option<String>,
    last_error: Option<String>,
    last_error_at: Option<String>,
    reachable: bool,
    max_upload_kbps: u64,
}

impl From<crate::cloud::relay::Snapshot> for CloudInfo {
    fn from(s: crate::cloud::relay::Snapshot) -> Self {
        CloudInfo {
            enabled: true,
            store: s.store,
            recipients: s.recipients,
            queue_length: s.queue.pending,
            bytes_pending: s.queue.bytes_pending,
            oldest_pending: s.queue.oldest_pending_ms.map(rfc3339),
            failed: s.queue.failed,
            uploaded: s.queue.uploaded,
            uploads_since_start: s.uploads,
            failures_since_start: s.failures,
            bytes_sent_since_start: s.bytes_sent,
            last_success: s.last_success_ms.map(rfc3339),
            last_error: s.last_error,
            last_error_at: s.last_error_ms.map(rfc3339),
            reachable: s.reachable,
            max_upload_kbps: s.max_upload_kbps,
        }
    }
}

/// Serves a file under the data dir with HTTP Range support.
async fn serve_file(st: &AppState, rel: &str, mime: &str, req: Request) -> ApiResult<Response> {
    let path = st.store.data_dir().join(rel);
    let resp = tower_http::services::ServeFile::new_with_mime(&path, &mime.parse().expect("mime"))
        .oneshot(req)
        .await
        .map_err(|e| ApiError(Error::internal(format!("serving {rel}: {e}"))))?;
    Ok(resp.into_response())
}

async fn metrics(State(st): State<AppState>) -> ApiResult<Response> {
    let mut scrape = metrics::Scrape::default();
    scrape.cameras(&st.cameras.cameras());
    scrape.live(&live::stats(&st));
    let (bytes, events) = st.store.call(|db| Ok((db.media_bytes_total()?, db.event_count()?))).await?;
    scrape.media(events, bytes);
    scrape.devices(&st.devices.devices().await?, st.devices.counts());
    scrape.broker(&st.broker.broker_stats());
    if let Some(cloud) = &st.cloud {
        scrape.cloud(&cloud.snapshot().await?);
    }
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], scrape.encode()?).into_response())
}

/// Accepts TLS connections on `listener` until `shutdown`; returns once every connection
/// it accepted has ended too (each is dropped on `shutdown`).
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, app: Router, shutdown: crate::shutdown::Shutdown) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        let tracker = connections.clone();
        connections.spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let stop = shutdown.clone();
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                // A WebSocket outlives its HTTP connection: it stops with these, and is waited for.
                req.extensions_mut().insert(stop.clone());
                req.extensions_mut().insert(tracker.clone());
                app.clone().oneshot(req)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(20))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.wait() => {}
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_rules() {
        let mut h = HeaderMap::new();
        assert!(csrf_ok(&h).is_err());
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(csrf_ok(&h).is_ok(), "scripts without Origin work");
        h.insert(header::HOST, "hub.local:8443".parse().unwrap());
        h.insert(header::ORIGIN, "https://hub.local:8443".parse().unwrap());
        assert!(csrf_ok(&h).is_ok());
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(csrf_ok(&h).is_err());
        h.insert(header::ORIGIN, "https://hub.local:8443".parse().unwrap());
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(csrf_ok(&h).is_err());
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=b; homehub_session=tok123; c=d".parse().unwrap());
        assert_eq!(cookie_token(&h).as_deref(), Some("tok123"));
    }
}
