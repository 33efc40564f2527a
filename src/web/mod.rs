//! The LAN web server: HTTPS only (rustls), sessions, the JSON API and the page.
//!
//! Owns: the listener and TLS, the bounds on each connection and request (descriptor
//! slot, per-address cap, header/body/idle timeouts, body sizes), authentication and
//! CSRF rules, the wire shapes of the API (declared here, apart from the store's rows).
//! Default deny: `/healthz` is the only route that answers without a session (and
//! `/metrics` the only one that takes the scrape token instead); every other path,
//! known or not, gets 401 first. May not touch: GStreamer, media pipelines; it reads camera state through
//! [`CameraView`], the other subsystems through the narrow traits of [`ports`], and the
//! database through the [`Store`].

mod assets;
pub mod auth;
pub mod cameras;
mod devices;
mod export;
mod insight;
mod live;
pub mod metrics;
mod people;
pub mod ports;
mod stills;
mod timeline;
pub mod tls;
pub mod totp;

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

pub use people::{mint_setup_token as people_mint_setup_token, setup_url};

const OPENAPI: &str = include_str!("../../web/openapi.json");

/// A sign-in body: the three short fields with room to spare.
const SESSION_BODY_MAX: usize = 4 * 1024;
/// Any other JSON body (camera settings and motion zones are the largest).
const API_BODY_MAX: usize = 64 * 1024;
/// Argon2 runs at once (19 MiB each), and callers that may wait for one.
const PASSWORD_CHECKS: usize = 2;
const PASSWORD_WAITERS: usize = 16;
/// Connections one client address may hold.
const CONNECTIONS_PER_ADDRESS: usize = 64;
/// From a request's first byte to the end of its header.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// From a request's header to the end of its body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A kept-alive connection with no request closes after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// The cloud relay (it runs with the cloud off too, waiting for a store).
    pub cloud: Arc<dyn ports::CloudStatus>,
    /// What `/api/storage` forecasts with.
    pub retention: crate::recorder::Retention,
    pub allow_public_clients: bool,
    /// How long browser sessions last.
    pub sessions: SessionPolicy,
    /// Seals TOTP secrets at rest.
    pub totp_key: Arc<totp::SealKey>,
    /// `homehub doctor` on the running hub, for the Security page.
    pub self_check: Arc<dyn ports::SelfCheck>,
}

/// How long a browser session lasts: unused, and at most.
#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    pub idle: Duration,
    pub max: Duration,
}

impl SessionPolicy {
    pub fn from_config(w: &crate::config::Web) -> SessionPolicy {
        SessionPolicy {
            idle: Duration::from_secs(u64::from(w.session_idle_hours) * 3600),
            max: Duration::from_secs(u64::from(w.session_max_days) * 86_400),
        }
    }

    fn idle_ms(&self) -> i64 {
        self.idle.as_millis() as i64
    }
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
    cloud: Arc<dyn ports::CloudStatus>,
    allow_public_clients: bool,
    throttle: Arc<auth::Throttle>,
    /// Argon2 runs: 2 at a time, 16 waiting.
    passwords: Arc<auth::Gate>,
    signin: Arc<auth::SigninStats>,
    busy_log: Arc<crate::limits::RateLog>,
    retention: crate::recorder::Retention,
    stills: Arc<stills::Cache>,
    sessions: SessionPolicy,
    totp_key: Arc<totp::SealKey>,
    self_check: Arc<dyn ports::SelfCheck>,
    /// The owner's "require two-factor for everyone" (mirrors the stored setting).
    require_totp: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    pub fn new(p: Parts) -> Self {
        AppState {
            store: p.store,
            clock: p.clock.clone(),
            cameras: p.cameras,
            camera_admin: p.camera_admin,
            devices: p.devices,
            broker: p.broker,
            discovery: p.discovery,
            cloud: p.cloud,
            allow_public_clients: p.allow_public_clients,
            throttle: Arc::new(auth::Throttle::new(p.clock.clone())),
            passwords: Arc::new(auth::Gate::new(PASSWORD_CHECKS, PASSWORD_WAITERS)),
            signin: Arc::default(),
            busy_log: Arc::default(),
            retention: p.retention,
            stills: Arc::new(stills::Cache::default()),
            sessions: p.sessions,
            totp_key: p.totp_key,
            self_check: p.self_check,
            require_totp: Arc::default(),
        }
    }

    /// Reads the stored settings the guard needs on every request.
    pub async fn load_settings(&self) -> crate::error::Result<()> {
        let on = self.store.call(|db| db.setting(people::REQUIRE_TOTP)).await?.as_deref() == Some("true");
        self.require_totp.store(on, std::sync::atomic::Ordering::SeqCst);
        Ok(())
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
    /// The session's public id (what `/api/sessions` lists).
    pub id: String,
    pub token_hash: Vec<u8>,
    /// The cameras this user may see: None for an owner (every camera), else the ones
    /// shared with them.
    pub shares: Option<std::collections::HashSet<i64>>,
}

impl Session {
    /// Whether the camera exists for this user at all (unshared ones leave no trace).
    pub fn sees(&self, camera_id: i64) -> bool {
        self.shares.as_ref().is_none_or(|s| s.contains(&camera_id))
    }

    /// The cameras a list may show (None: all), for `SegmentQuery::only`.
    pub fn only(&self) -> Option<Vec<i64>> {
        self.shares.as_ref().map(|s| {
            let mut v: Vec<i64> = s.iter().copied().collect();
            v.sort_unstable();
            v
        })
    }
}

/// A camera route: 404 when the camera is not shared with the user (as if it did not
/// exist), then 403 when their role is below `min`.
fn camera_access(s: &Session, camera_id: i64, min: Role) -> ApiResult<()> {
    if !s.sees(camera_id) {
        return Err(err(ErrorKind::NotFound, &format!("no camera {camera_id}")));
    }
    require(s, min)
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/assets/{*file}", get(assets::asset))
        .route("/api/session", post(login).delete(logout))
        .route("/api/me", get(people::me))
        .route("/api/me/password", post(people::change_password))
        .route("/api/me/totp", post(people::totp_start))
        .route("/api/me/totp/confirm", post(people::totp_confirm))
        .route("/api/me/totp/disable", post(people::totp_disable))
        .route("/api/sessions", get(people::list_sessions))
        .route("/api/sessions/{id}", axum::routing::delete(people::revoke_session))
        .route("/api/setup", get(people::setup_status).post(people::setup))
        .route("/api/users", get(people::list_users).post(people::add_user))
        .route("/api/users/{id}", axum::routing::patch(people::patch_user).delete(people::delete_user))
        .route("/api/users/{id}/cameras", axum::routing::put(people::put_user_cameras))
        .route("/api/users/{id}/sessions", axum::routing::delete(people::revoke_user_sessions))
        .route("/api/settings", get(people::get_settings).patch(people::patch_settings))
        .route("/api/doctor", get(people::doctor))
        .route("/api/signout-everywhere", post(people::signout_everywhere))
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
        .route("/api/audit", get(people::audit_page))
        .route("/api/cloud", get(cloud_status))
        .route("/api/cloud/exposure", get(insight::exposure))
        .route("/api/cloud/recipients", get(insight::get_recipients).put(insight::put_recipients))
        .route("/api/cloud/test", post(insight::test_store))
        .route("/api/cloud/settings", get(insight::get_store).put(insight::put_store))
        .route("/api/cloud/away.html", get(insight::away_page))
        .route("/api/cloud/away", post(insight::put_away_page))
        .route("/api/insight", get(insight::insight))
        .route("/metrics", get(metrics))
        .fallback(assets::fallback)
        .layer(axum::extract::DefaultBodyLimit::max(API_BODY_MAX))
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
    // A scraper's token, when one is given, decides alone (a session beside it is ignored).
    if path == "/metrics" && req.headers().contains_key(header::AUTHORIZATION) {
        return match scrape_token_ok(&st, req.headers()).await {
            Ok(true) => {
                req.extensions_mut().insert(ScrapeToken);
                next.run(req).await
            }
            Ok(false) => err(ErrorKind::Unauthenticated, "wrong scrape token (see homehub metrics-token)").into_response(),
            Err(e) => e.into_response(),
        };
    }
    let session = match session_of(&st, req.headers()).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match session {
        Some(s) => {
            if st.require_totp.load(std::sync::atomic::Ordering::SeqCst)
                && !s.user.totp_enabled
                && !people::allowed_before_enrolment(&method, &path)
            {
                let msg = "the owner requires two-factor sign-in: turn it on in Account first";
                return (StatusCode::FORBIDDEN, Json(serde_json::json!({ "error": msg, "must_enrol": true }))).into_response();
            }
            req.extensions_mut().insert(s);
            let mut resp = next.run(req).await;
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        // Signing in is the one thing to do without a session.
        None if path == "/api/session" && method == Method::POST => next.run(req).await,
        // A hub with no users yet: its one-time setup (the token decides).
        None if path == "/api/setup" && matches!(method, Method::GET | Method::POST) => next.run(req).await,
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

/// Marks a `/metrics` request that showed the scrape token.
#[derive(Clone, Copy)]
struct ScrapeToken;

/// `Authorization: Bearer <token>` against the stored SHA-256 of the scrape token.
async fn scrape_token_ok(st: &AppState, h: &HeaderMap) -> ApiResult<bool> {
    let given = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256);
    let Some(given) = given else { return Ok(false) };
    let given = auth::token_hash(given);
    let Some(stored) = st.store.call(|db| db.metrics_token_hash()).await? else { return Ok(false) };
    Ok(stored.len() == given.len() && stored.iter().zip(&given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
}

async fn session_of(st: &AppState, h: &HeaderMap) -> ApiResult<Option<Session>> {
    let Some(token) = cookie_token(h) else { return Ok(None) };
    let hash = auth::token_hash(&token);
    let now = st.clock.now_ms();
    let idle = st.sessions.idle_ms();
    let key = hash.clone();
    let found = st
        .store
        .call(move |db| {
            let Some((s, user)) = db.session_user(&key, now, idle)? else { return Ok(None) };
            let shares = if user.role == Role::Owner { None } else { Some(db.shares_of(user.id)?.into_iter().collect()) };
            Ok(Some((s, user, shares)))
        })
        .await?;
    Ok(found.map(|(s, user, shares)| Session { user, id: s.public_id, token_hash: hash, shares }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

/// `POST /api/session`. Every bound is checked before any work: the body's size (from
/// its header, then as it is read), the fields' lengths, then the address's budget; only
/// then the database, and an attempt is reserved before argon2 runs.
async fn login(State(st): State<AppState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> ApiResult<Response> {
    let refuse = |status: StatusCode, msg: String| {
        auth::SigninStats::bump(&st.signin.refused);
        (status, Json(serde_json::json!({ "error": msg }))).into_response()
    };
    let too_big = || format!("sign-in body over {SESSION_BODY_MAX} bytes");
    let agent = people::agent_of(req.headers());
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if declared.is_some_and(|n| n > SESSION_BODY_MAX as u64) {
        discard(body, declared.unwrap_or(0)).await;
        return Ok(refuse(StatusCode::PAYLOAD_TOO_LARGE, too_big()));
    }
    let bytes = match read_capped(&mut body, SESSION_BODY_MAX).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            discard(body, u64::MAX).await;
            return Ok(refuse(StatusCode::PAYLOAD_TOO_LARGE, too_big()));
        }
        Err(BodyError::TimedOut) => return Ok(refuse(StatusCode::REQUEST_TIMEOUT, BodyTimeout.to_string())),
        Err(BodyError::Read(e)) => return Ok(refuse(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))),
    };
    let body: LoginBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => return Ok(refuse(StatusCode::BAD_REQUEST, format!("body: {e}"))),
    };
    for (field, value, max) in [
        ("email", Some(&body.email), auth::EMAIL_MAX),
        ("password", Some(&body.password), auth::PASSWORD_MAX),
        ("totp", body.totp.as_ref(), auth::TOTP_MAX),
    ] {
        if value.is_some_and(|v| v.chars().count() > max) {
            return Ok(refuse(StatusCode::BAD_REQUEST, format!("{field}: at most {max} characters")));
        }
    }
    let ip = peer.ip();
    if let Err(r) = st.throttle.check_address(ip) {
        return Ok(throttled(&st, r));
    }
    let email = body.email.trim().to_string();
    let user = {
        let e = email.clone();
        st.store.call(move |db| db.user_by_email(&e)).await?
    };
    let account = auth::Account::of(user.as_ref().map_or(email.as_str(), |u| u.email.as_str()));
    let attempt = match st.throttle.reserve(ip, account, user.is_some()) {
        Ok(a) => a,
        Err(r) => return Ok(throttled(&st, r)),
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let (password, stats) = (body.password, st.signin.clone());
    let checked = st
        .passwords
        .run(move || {
            auth::SigninStats::bump(&stats.password_checks);
            auth::check_password(&password, hash.as_deref())
        })
        .await;
    let ok = match checked {
        Ok(ok) => ok,
        Err(auth::GateError::Busy) => {
            attempt.cancel();
            auth::SigninStats::bump(&st.signin.busy);
            st.busy_log.warn("sign-ins are arriving faster than passwords can be checked; answering 503");
            return Ok((StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "error": "busy, try again" }))).into_response());
        }
        Err(auth::GateError::Failed(e)) => return Err(ApiError(e)),
    };
    let Some(user) = user.filter(|_| ok) else {
        let (ip, e, now) = (ip.to_string(), email, st.clock.now_ms());
        st.store.call(move |db| db.audit(&e, "login.failed", &ip, now)).await?;
        return Err(err(ErrorKind::Unauthenticated, "wrong email or password"));
    };
    // The second factor: the attempt stays counted until it is given and right.
    if user.totp_enabled {
        let given = body.totp.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let Some(code) = given else {
            return Ok(people::totp_needed("enter the 6-digit code from your authenticator app"));
        };
        if !people::second_factor_ok(&st, &user, code).await? {
            let (ip, e, now) = (ip.to_string(), user.email.clone(), st.clock.now_ms());
            st.store.call(move |db| db.audit(&e, "login.failed", &format!("{ip}: wrong authentication code"), now)).await?;
            return Ok(people::totp_needed("wrong authentication code"));
        }
    }
    attempt.succeeded();
    let cookie = people::start_session(&st, &user, ip, &agent, "login").await?;
    Ok(([(header::SET_COOKIE, cookie)], Json(serde_json::json!({ "email": user.email, "role": user.role.as_str() })))
        .into_response())
}

/// 429 with when to come back.
fn throttled(st: &AppState, r: auth::Refusal) -> Response {
    auth::SigninStats::bump(&st.signin.throttled);
    let (whose, after) = match r {
        auth::Refusal::Address { retry_after } => ("from this address", retry_after),
        auth::Refusal::Account { retry_after } => ("for this account", retry_after),
    };
    let secs = after.as_secs().max(1);
    let msg = format!("too many failed sign-ins {whose}; try again in {} minute(s)", secs.div_ceil(60));
    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs.to_string())], Json(serde_json::json!({ "error": msg })))
        .into_response()
}

/// Up to [`DISCARD_MAX`] bytes of a refused body are read and dropped (within the body
/// timeout), so that the client, still sending, reads the refusal instead of a reset.
const DISCARD_MAX: u64 = 2 * 1024 * 1024;

async fn discard(mut body: axum::body::Body, declared: u64) {
    if declared > DISCARD_MAX {
        return;
    }
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = next_chunk(&mut body).await {
        seen += chunk.len() as u64;
        if seen > DISCARD_MAX {
            return;
        }
    }
}

async fn next_chunk(body: &mut axum::body::Body) -> Option<Result<bytes::Bytes, axum::Error>> {
    use axum::body::HttpBody;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

enum BodyError {
    TooLarge,
    TimedOut,
    Read(axum::Error),
}

/// The whole body, refused as soon as it passes `max` bytes.
async fn read_capped(body: &mut axum::body::Body, max: usize) -> Result<bytes::Bytes, BodyError> {
    let mut buf = Vec::new();
    while let Some(chunk) = next_chunk(body).await {
        let chunk = chunk.map_err(|e| {
            let inner = e.into_inner();
            if inner.downcast_ref::<BodyTimeout>().is_some() {
                BodyError::TimedOut
            } else {
                BodyError::Read(axum::Error::new(inner))
            }
        })?;
        if buf.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

async fn logout(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = cookie_token(&headers) {
        let hash = auth::token_hash(&token);
        st.store.call(move |db| db.delete_session(&hash)).await?;
    }
    let cookie = format!("{}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict", auth::COOKIE);
    Ok(([(header::SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response())
}

pub(super) fn session(req_ext: Option<axum::Extension<Session>>) -> ApiResult<Session> {
    req_ext.map(|e| e.0).ok_or_else(|| err(ErrorKind::Unauthenticated, "sign in first"))
}

/// The session of an owner-only route: 401 without one, 403 below owner.
fn owner(ext: Option<axum::Extension<Session>>) -> ApiResult<Session> {
    let s = session(ext)?;
    require(&s, Role::Owner)?;
    Ok(s)
}

/// A JSON body (bounded by the router's body limit, or the route's own); errors name the field.
fn json_body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| err(ErrorKind::Invalid, &format!("body: {e}")))
}

/// Refuses users whose role is below `min`.
pub(super) fn require(s: &Session, min: Role) -> ApiResult<()> {
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
    let s = session(ext)?;
    let row = st.store.call(move |db| db.segment(id)).await?.ok_or_else(|| err(ErrorKind::NotFound, "no such recording"))?;
    if !s.sees(row.segment.camera_id) {
        return Err(err(ErrorKind::NotFound, "no such recording"));
    }
    require(&s, Role::Member)?;
    serve_file(&st, &row.segment.path, "video/mp4", req).await
}

/// `/api/events/{id}/clip` (MP4) and `/api/events/{id}/thumbnail` (JPEG).
async fn event_media(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    UrlPath((id, media)): UrlPath<(i64, String)>,
    req: Request,
) -> ApiResult<Response> {
    let s = session(ext)?;
    let row = st.store.call(move |db| db.event(id)).await?;
    let Some(row) = row.filter(|e| s.sees(e.camera_id)) else { return Err(err(ErrorKind::NotFound, "no such event")) };
    require(&s, Role::Member)?;
    let row = Some(row);
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
    let snap = st.cloud.snapshot().await?;
    if !snap.active {
        // Off: only what waits in the queue for a store.
        return Ok(Json(serde_json::json!({
            "enabled": false,
            "queue_length": snap.queue.pending,
            "bytes_pending": snap.queue.bytes_pending,
        })));
    }
    let status = CloudInfo::from(snap);
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
    /// The last object that went up.
    last_upload: Option<UploadInfo>,
    /// The upload in flight (`bytes`: before sealing and padding).
    sending: Option<SendingInfo>,
}

#[derive(Serialize)]
struct SendingInfo {
    kind: &'static str,
    bytes: u64,
    since: String,
}

#[derive(Serialize)]
struct UploadInfo {
    kind: &'static str,
    bytes: u64,
    at: String,
}

impl UploadInfo {
    fn of(u: Option<(crate::store::UploadKind, u64, i64)>) -> Option<UploadInfo> {
        u.map(|(kind, bytes, at)| UploadInfo { kind: kind.as_str(), bytes, at: rfc3339(at) })
    }
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
            last_upload: UploadInfo::of(s.last_upload),
            sending: s.sending.map(|(kind, bytes, at)| SendingInfo { kind: kind.as_str(), bytes, since: rfc3339(at) }),
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

/// `GET /metrics`: members and the owner, or a scraper with the token. Viewers may not see
/// device ids and queue figures that the API keeps from them; members see only the cameras
/// shared with them, and no devices or broker.
async fn metrics(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    token: Option<axum::Extension<ScrapeToken>>,
) -> ApiResult<Response> {
    // The scraper sees all; a member only the cameras shared with them, and no devices.
    let who = match token {
        Some(_) => None,
        None => {
            let s = session(ext)?;
            require(&s, Role::Member)?;
            Some(s)
        }
    };
    let sees = |id: i64| who.as_ref().is_none_or(|s| s.sees(id));
    let everything = who.as_ref().is_none_or(|s| s.user.role == Role::Owner);
    let mut scrape = metrics::Scrape::default();
    scrape.signin(&st.signin);
    let cams: Vec<_> = st.cameras.cameras().into_iter().filter(|c| sees(c.id)).collect();
    scrape.cameras(&cams);
    let live: Vec<_> = live::stats(&st).into_iter().filter(|(id, _, _)| sees(*id)).collect();
    scrape.live(&live);
    let (bytes, events) = st.store.call(|db| Ok((db.media_bytes_total()?, db.event_count()?))).await?;
    scrape.media(events, bytes);
    if everything {
        scrape.devices(&st.devices.devices().await?, st.devices.counts());
        scrape.broker(&st.broker.broker_stats());
    }
    let cloud = st.cloud.snapshot().await?;
    if cloud.active {
        scrape.cloud(&cloud);
    }
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], scrape.encode()?).into_response())
}

/// Accepts TLS connections on `listener` until `shutdown`; returns once every connection
/// it accepted has ended too (each is dropped on `shutdown`).
///
/// Each connection takes one descriptor slot from `descriptors` and one of its address's
/// [`CONNECTIONS_PER_ADDRESS`] places before anything else, and is closed at once when
/// either is used up; both are held as long as the socket is (a WebSocket included). A
/// request's header must arrive within [`HEADER_READ_TIMEOUT`] of its first byte and its
/// body within [`BODY_READ_TIMEOUT`]; a connection idle for [`IDLE_TIMEOUT`] closes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: crate::shutdown::Shutdown,
    descriptors: crate::limits::Descriptors,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let connections = tokio_util::task::TaskTracker::new();
    let per_address = crate::limits::PerAddress::new(CONNECTIONS_PER_ADDRESS, "web");
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
        let Some(slot) = descriptors.slots().take(1, "a web connection") else { continue };
        let Some(place) = per_address.enter(peer.ip()) else { continue };
        let activity = Arc::new(conn::Activity::default());
        let tcp = conn::Watched::new(tcp, activity.clone(), (slot, place));
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
            activity.await_request();
            let stop = shutdown.clone();
            let seen = activity.clone();
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                seen.request_arrived();
                let mut req = req.map(|b| axum::body::Body::new(conn::TimedBody::new(b, BODY_READ_TIMEOUT)));
                req.extensions_mut().insert(ConnectInfo(peer));
                // A WebSocket outlives its HTTP connection: it stops with these, and is waited for.
                req.extensions_mut().insert(stop.clone());
                req.extensions_mut().insert(tracker.clone());
                let answer = app.clone().oneshot(req);
                let seen = seen.clone();
                async move {
                    let r = answer.await;
                    seen.await_request();
                    r
                }
            });
            // Hyper's header timer runs from the moment it waits for a request, so it is
            // the idle limit; the header's own limit is counted from its first byte below.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(IDLE_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.wait() => {}
                _ = activity.header_overdue(HEADER_READ_TIMEOUT) => {
                    tracing::debug!(%peer, "request header not received within {} s; closing", HEADER_READ_TIMEOUT.as_secs());
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// What `serve` wraps around each connection: the socket (holding its slots, and noting
/// when a request's first byte comes) and each request's body (with a deadline).
mod conn {
    use std::io;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll};
    use std::time::Duration;

    use hyper::body::{Body, Frame, Incoming, SizeHint};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::time::{Instant, Sleep};

    use crate::limits::{AddressSlot, Slot};
    use crate::sync::lock;

    /// Where a connection is between requests.
    #[derive(Default)]
    pub struct Activity {
        /// True between requests (after a response, before the next header).
        awaiting: AtomicBool,
        /// When the first byte of the awaited request came.
        first_byte: Mutex<Option<Instant>>,
    }

    impl Activity {
        pub fn await_request(&self) {
            *lock(&self.first_byte) = None;
            self.awaiting.store(true, Ordering::SeqCst);
        }

        pub fn request_arrived(&self) {
            self.awaiting.store(false, Ordering::SeqCst);
            *lock(&self.first_byte) = None;
        }

        fn bytes_read(&self) {
            if self.awaiting.load(Ordering::Relaxed) {
                lock(&self.first_byte).get_or_insert_with(Instant::now);
            }
        }

        /// Resolves once a request's header has been arriving for longer than `limit`.
        pub async fn header_overdue(&self, limit: Duration) {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if lock(&self.first_byte).is_some_and(|t| t.elapsed() > limit) {
                    return;
                }
            }
        }
    }

    /// The TCP socket, with the slots it holds and a note of reads between requests.
    pub struct Watched {
        tcp: tokio::net::TcpStream,
        activity: std::sync::Arc<Activity>,
        _held: (Slot, AddressSlot),
    }

    impl Watched {
        pub fn new(tcp: tokio::net::TcpStream, activity: std::sync::Arc<Activity>, held: (Slot, AddressSlot)) -> Watched {
            Watched { tcp, activity, _held: held }
        }
    }

    impl AsyncRead for Watched {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let before = buf.filled().len();
            let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
            if buf.filled().len() > before {
                self.activity.bytes_read();
            }
            r
        }
    }

    impl AsyncWrite for Watched {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.tcp).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.tcp).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.tcp).poll_shutdown(cx)
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
        }
        fn is_write_vectored(&self) -> bool {
            self.tcp.is_write_vectored()
        }
    }

    /// A request body that fails once its deadline (set when its header arrived) passes.
    pub struct TimedBody {
        inner: Incoming,
        deadline: Instant,
        sleep: Option<Pin<Box<Sleep>>>,
    }

    impl TimedBody {
        pub fn new(inner: Incoming, limit: Duration) -> TimedBody {
            TimedBody { inner, deadline: Instant::now() + limit, sleep: None }
        }
    }

    impl Body for TimedBody {
        type Data = bytes::Bytes;
        type Error = axum::BoxError;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            let this = &mut *self;
            if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
                return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
            }
            let deadline = this.deadline;
            let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(super::BodyTimeout)))),
                Poll::Pending => Poll::Pending,
            }
        }

        fn is_end_stream(&self) -> bool {
            self.inner.is_end_stream()
        }

        fn size_hint(&self) -> SizeHint {
            self.inner.size_hint()
        }
    }
}

/// A request body that did not arrive in time.
#[derive(Debug)]
struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body not received within {} s", BODY_READ_TIMEOUT.as_secs())
    }
}

impl std::error::Error for BodyTimeout {}

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
