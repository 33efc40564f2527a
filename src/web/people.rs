//! People on the hub: first-run setup, the signed-in user's own account (password,
//! two-factor, sessions), the owner's people and sharing, hub settings, and the audit
//! trail page. Every change here is audited.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, AppState, Items, Session, auth, err, json_body, owner, session, totp};
use crate::clock::rfc3339;
use crate::error::{Error, ErrorKind};
use crate::store::{NewSession, Role, UserRow};

/// The `meta` setting that makes two-factor mandatory.
pub const REQUIRE_TOTP: &str = "require_totp";
/// How long a setup token works.
pub const SETUP_TOKEN_LIFETIME_MS: i64 = 24 * 3600 * 1000;
/// Characters of a browser's User-Agent kept with its session.
const AGENT_MAX: usize = 200;

/// What a user whose second factor is required but missing may still do: see who they
/// are, enrol, and sign out.
pub fn allowed_before_enrolment(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    match (method, path) {
        (&Method::GET, "/api/me") | (&Method::DELETE, "/api/session") => true,
        (&Method::POST, p) => p == "/api/me/totp" || p == "/api/me/totp/confirm",
        (&Method::GET | &Method::HEAD, p) => !p.starts_with("/api/") && p != "/metrics",
        _ => false,
    }
}

pub fn agent_of(h: &HeaderMap) -> String {
    let ua = h.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    crate::store::audit_cut(ua, AGENT_MAX).into_owned()
}

/// 401 asking for the second factor (the sign-in form shows the code field).
pub fn totp_needed(msg: &str) -> Response {
    (StatusCode::UNAUTHORIZED, Json(serde_json::json!({ "error": msg, "totp_required": true }))).into_response()
}

/// Checks a TOTP code (each time step works once) or a recovery code (each works once).
pub async fn second_factor_ok(st: &AppState, user: &UserRow, code: &str) -> ApiResult<bool> {
    let (uid, now) = (user.id, st.clock.now_ms());
    let key = st.totp_key.clone();
    let code = code.to_string();
    let ok = st
        .store
        .call(move |db| {
            let Some((sealed, true, _)) = db.totp_of(uid)? else { return Ok(false) };
            if totp::is_totp_code(&code) {
                let secret = key.open(&totp::context(uid), &sealed)?;
                match totp::verify(&secret, &code, now) {
                    Some(step) => db.use_totp_step(uid, step),
                    None => Ok(false),
                }
            } else {
                db.use_recovery_code(uid, &totp::recovery_hash(&code), now)
            }
        })
        .await?;
    Ok(ok)
}

/// Creates a session for `user` and returns its cookie; audited as `action`.
pub async fn start_session(st: &AppState, user: &UserRow, ip: IpAddr, agent: &str, action: &'static str) -> ApiResult<String> {
    let (token, hash) = auth::new_token();
    let now = st.clock.now_ms();
    let expires = now + st.sessions.max.as_millis() as i64;
    let idle = st.sessions.idle_ms();
    let (uid, e, ip, agent) = (user.id, user.email.clone(), ip.to_string(), agent.to_string());
    st.store
        .call(move |db| {
            db.delete_expired_sessions(now, idle)?;
            db.add_session(&NewSession {
                token_hash: &hash,
                user_id: uid,
                now_ms: now,
                expires_ms: expires,
                address: &ip,
                agent: &agent,
            })?;
            db.audit(&e, action, &ip, now)
        })
        .await?;
    Ok(format!("{}={token}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Strict", auth::COOKIE, st.sessions.max.as_secs()))
}

/// A checked password behind the argon2 gate; "busy" is a 503.
async fn password_matches(st: &AppState, password: String, hash: String) -> ApiResult<bool> {
    let stats = st.signin.clone();
    st.passwords
        .run(move || {
            auth::SigninStats::bump(&stats.password_checks);
            auth::verify_password(&password, &hash)
        })
        .await
        .map_err(gate_error)
}

async fn hash_new(st: &AppState, password: String) -> ApiResult<String> {
    auth::check_new_password(&password)?;
    if password.chars().count() > auth::PASSWORD_MAX {
        return Err(err(ErrorKind::Invalid, &format!("password: at most {} characters", auth::PASSWORD_MAX)));
    }
    st.passwords.run(move || auth::hash_password(&password)).await.map_err(gate_error)?.map_err(ApiError)
}

fn gate_error(e: auth::GateError) -> ApiError {
    match e {
        auth::GateError::Busy => err(ErrorKind::Unavailable, "busy, try again"),
        auth::GateError::Failed(e) => ApiError(e),
    }
}

/// Reserves a password attempt for the user from this address (guessing a password
/// through these routes is throttled like signing in).
fn reserve<'a>(st: &'a AppState, ip: IpAddr, email: &str) -> ApiResult<auth::Attempt<'a>> {
    st.throttle.reserve(ip, auth::Account::of(email), true).map_err(|r| {
        let after = match r {
            auth::Refusal::Address { retry_after } | auth::Refusal::Account { retry_after } => retry_after,
        };
        err(
            ErrorKind::RateLimited,
            &format!("too many wrong passwords; try again in {} minute(s)", after.as_secs().max(1).div_ceil(60)),
        )
    })
}

async fn audit(st: &AppState, actor: &str, action: &'static str, detail: String) -> ApiResult<()> {
    let (a, now) = (actor.to_string(), st.clock.now_ms());
    st.store.call(move |db| db.audit(&a, action, &detail, now)).await?;
    Ok(())
}

// ---- first run ----

/// A new setup token: stored as its hash for 24 hours, returned for the link.
pub fn mint_setup_token(db: &mut crate::store::Db, now_ms: i64) -> crate::error::Result<String> {
    let (token, hash) = auth::new_token();
    db.add_setup_token(&hash, now_ms, now_ms + SETUP_TOKEN_LIFETIME_MS)?;
    Ok(token)
}

/// The setup link for a hub listening on `listen`: the token in the fragment, which a
/// browser never sends (so it reaches no log). A hub listening on every address is named
/// by its host name on mDNS (`NAME.local`, as Pi OS advertises it).
pub fn setup_url(listen: SocketAddr, token: &str) -> String {
    let host = if listen.ip().is_unspecified() {
        format!("{}.local", host_name())
    } else {
        match listen.ip() {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        }
    };
    format!("https://{host}:{}/setup#token={token}", listen.port())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or_else(|| "homehub".into())
}

/// The hub has no user yet and `token_hash` is a live setup token.
fn setup_allowed(db: &mut crate::store::Db, token_hash: &[u8], now_ms: i64) -> crate::error::Result<()> {
    if db.user_count()? > 0 {
        return Err(Error::new(ErrorKind::Conflict, "the hub has its owner already: sign in"));
    }
    if !db.setup_token_valid(token_hash, now_ms)? {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "the setup link is wrong, expired or used: run `sudo homehub setup-link` for a new one",
        ));
    }
    Ok(())
}

/// `GET /api/setup`: whether the hub still needs its first owner.
pub async fn setup_status(State(st): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let n = st.store.call(|db| db.user_count()).await?;
    Ok(Json(serde_json::json!({ "needed": n == 0 })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupBody {
    token: String,
    email: String,
    password: String,
}

/// `POST /api/setup`: with a setup token, creates the first owner and signs them in; the
/// tokens then die.
pub async fn setup(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult<Response> {
    if bytes.len() > 4096 {
        return Err(err(ErrorKind::Invalid, "body: at most 4096 bytes"));
    }
    let b: SetupBody = json_body(&bytes)?;
    if b.token.len() > 128 {
        return Err(err(ErrorKind::Forbidden, "the setup link is wrong or has been used"));
    }
    // Guessing tokens is throttled per address (an account of its own per address, so no
    // one elsewhere on the LAN can spend the owner's budget).
    let attempt = st
        .throttle
        .reserve(peer.ip(), auth::Account::of(&format!("setup token from {}", peer.ip())), true)
        .map_err(|_| err(ErrorKind::RateLimited, "too many wrong setup links from this address; try again later"))?;
    let email = auth::check_email(&b.email).map_err(ApiError)?;
    auth::check_new_password(&b.password)?;
    // The token is checked before the password is hashed: a wrong one costs no argon2.
    let (th, now) = (auth::token_hash(b.token.trim()), st.clock.now_ms());
    let check = th.clone();
    st.store.call(move |db| setup_allowed(db, &check, now)).await?;
    let hash = hash_new(&st, b.password).await?;
    let e = email.clone();
    let created = st
        .store
        .call(move |db| {
            // Again, in the transaction that creates the owner: two racing setups, one owner.
            setup_allowed(db, &th, now)?;
            let id = db.add_user(&e, Role::Owner, &hash, now)?;
            db.clear_setup_tokens()?;
            db.audit(&e, "setup.owner_created", "", now)?;
            db.user(id)?.ok_or_else(|| Error::internal("new owner vanished"))
        })
        .await?;
    attempt.succeeded();
    let cookie = start_session(&st, &created, peer.ip(), &agent_of(&headers), "login").await?;
    tracing::info!("first owner created through the setup link; setup tokens removed");
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        Json(serde_json::json!({ "email": created.email, "role": "owner" })),
    )
        .into_response())
}

// ---- the signed-in user ----

pub async fn me(State(st): State<AppState>, ext: Option<Extension<Session>>) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    let required = st.require_totp.load(std::sync::atomic::Ordering::SeqCst);
    Ok(Json(serde_json::json!({
        "id": s.user.id,
        "email": s.user.email,
        "role": s.user.role.as_str(),
        "totp": s.user.totp_enabled,
        "require_totp": required,
        "must_enrol": required && !s.user.totp_enabled,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current: String,
    new: String,
}

/// `POST /api/me/password`: every other session of the user ends.
pub async fn change_password(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    let b: PasswordBody = json_body(&bytes)?;
    if b.current.chars().count() > auth::PASSWORD_MAX {
        return Err(err(ErrorKind::Forbidden, "the current password is wrong"));
    }
    auth::check_new_password(&b.new)?;
    let attempt = reserve(&st, peer.ip(), &s.user.email)?;
    if !password_matches(&st, b.current, s.user.password_hash.clone()).await? {
        audit(&st, &s.user.email, "password.change_failed", peer.ip().to_string()).await?;
        return Err(err(ErrorKind::Forbidden, "the current password is wrong"));
    }
    attempt.succeeded();
    let hash = hash_new(&st, b.new).await?;
    let (uid, keep) = (s.user.id, s.token_hash.clone());
    let revoked = st.store.call(move |db| db.set_password(uid, &hash, Some(&keep))).await?;
    audit(&st, &s.user.email, "password.changed", format!("{revoked} other session(s) signed out")).await?;
    Ok(Json(serde_json::json!({ "revoked": revoked })))
}

/// `POST /api/me/totp`: a new secret, waiting for a code before 2FA is on.
pub async fn totp_start(State(st): State<AppState>, ext: Option<Extension<Session>>) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    if s.user.totp_enabled {
        return Err(err(ErrorKind::Conflict, "two-factor is on already: turn it off first to enrol again"));
    }
    let secret = totp::new_secret();
    let sealed = st.totp_key.seal(&totp::context(s.user.id), &secret)?;
    let uid = s.user.id;
    st.store.call(move |db| db.set_totp_pending(uid, &sealed)).await?;
    let uri = totp::otpauth_uri(&s.user.email, &secret);
    Ok(Json(serde_json::json!({ "secret": totp::base32(&secret), "qr_svg": totp::qr_svg(&uri)?, "uri": uri })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

/// `POST /api/me/totp/confirm`: the first code turns 2FA on; the recovery codes are
/// shown this once.
pub async fn totp_confirm(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let s = session(ext)?;
    let b: CodeBody = json_body(&bytes)?;
    let attempt = reserve(&st, peer.ip(), &s.user.email)?;
    let (uid, now, key) = (s.user.id, st.clock.now_ms(), st.totp_key.clone());
    let codes = totp::new_recovery_codes();
    let hashes: Vec<Vec<u8>> = codes.iter().map(|c| totp::recovery_hash(c)).collect();
    let code = b.code;
    let on = st
        .store
        .call(move |db| {
            let Some((sealed, enabled, _)) = db.totp_of(uid)? else {
                return Err(Error::new(ErrorKind::Conflict, "start the enrolment first"));
            };
            if enabled {
                return Err(Error::new(ErrorKind::Conflict, "two-factor is on already"));
            }
            let secret = key.open(&totp::context(uid), &sealed)?;
            let Some(step) = totp::verify(&secret, &code, now) else { return Ok(false) };
            db.enable_totp(uid, step, &hashes)?;
            Ok(true)
        })
        .await?;
    if !on {
        return Err(err(ErrorKind::Forbidden, "wrong code: check the time on your phone and try the next one"));
    }
    attempt.succeeded();
    audit(&st, &s.user.email, "totp.enabled", String::new()).await?;
    Ok(Json(serde_json::json!({ "recovery_codes": codes })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisableBody {
    password: String,
}

/// `POST /api/me/totp/disable`, with the password.
pub async fn totp_disable(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    bytes: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let s = session(ext)?;
    let b: DisableBody = json_body(&bytes)?;
    if st.require_totp.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(err(ErrorKind::Conflict, "the owner requires two-factor for everyone"));
    }
    if b.password.chars().count() > auth::PASSWORD_MAX {
        return Err(err(ErrorKind::Forbidden, "wrong password"));
    }
    let attempt = reserve(&st, peer.ip(), &s.user.email)?;
    if !password_matches(&st, b.password, s.user.password_hash.clone()).await? {
        return Err(err(ErrorKind::Forbidden, "wrong password"));
    }
    attempt.succeeded();
    let uid = s.user.id;
    st.store.call(move |db| db.disable_totp(uid)).await?;
    audit(&st, &s.user.email, "totp.disabled", String::new()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub struct SessionInfo {
    id: String,
    current: bool,
    created: String,
    last_seen: String,
    expires: String,
    address: String,
    agent: String,
}

/// `GET /api/sessions`: the user's own.
pub async fn list_sessions(State(st): State<AppState>, ext: Option<Extension<Session>>) -> ApiResult<Json<Items<SessionInfo>>> {
    let s = session(ext)?;
    let (uid, now, idle) = (s.user.id, st.clock.now_ms(), st.sessions.idle_ms());
    let rows = st.store.call(move |db| db.sessions_of(uid, now, idle)).await?;
    let items = rows
        .into_iter()
        .map(|r| SessionInfo {
            current: r.public_id == s.id,
            id: r.public_id,
            created: rfc3339(r.created_ms),
            last_seen: rfc3339(r.last_seen_ms),
            expires: rfc3339(r.expires_ms.min(r.last_seen_ms + idle)),
            address: r.address,
            agent: r.agent,
        })
        .collect();
    Ok(Json(Items { items }))
}

/// `DELETE /api/sessions/{id}`: one of the user's own.
pub async fn revoke_session(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    let s = session(ext)?;
    let (uid, sid) = (s.user.id, id.clone());
    if !st.store.call(move |db| db.delete_session_of(uid, &sid)).await? {
        return Err(err(ErrorKind::NotFound, "no such session"));
    }
    audit(&st, &s.user.email, "session.revoked", id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- people (owner) ----

#[derive(Serialize)]
pub struct UserInfo {
    id: i64,
    email: String,
    role: &'static str,
    totp: bool,
    created: String,
    sessions: i64,
    cameras: Vec<i64>,
}

async fn user_info(st: &AppState, id: i64) -> ApiResult<UserInfo> {
    let (now, idle) = (st.clock.now_ms(), st.sessions.idle_ms());
    let (u, cams, n) = st
        .store
        .call(move |db| {
            let u = db.existing_user(id)?;
            let n = db.session_counts(now, idle)?.get(&id).copied().unwrap_or(0);
            Ok((u, db.shares_of(id)?, n))
        })
        .await?;
    Ok(info(u, cams, n))
}

fn info(u: UserRow, cameras: Vec<i64>, sessions: i64) -> UserInfo {
    UserInfo {
        id: u.id,
        email: u.email,
        role: u.role.as_str(),
        totp: u.totp_enabled,
        created: rfc3339(u.created_ms),
        sessions,
        cameras,
    }
}

pub async fn list_users(State(st): State<AppState>, ext: Option<Extension<Session>>) -> ApiResult<Json<Items<UserInfo>>> {
    owner(ext)?;
    let (now, idle) = (st.clock.now_ms(), st.sessions.idle_ms());
    let rows = st
        .store
        .call(move |db| {
            let counts = db.session_counts(now, idle)?;
            let mut out = Vec::new();
            for u in db.users()? {
                let cams = db.shares_of(u.id)?;
                let n = counts.get(&u.id).copied().unwrap_or(0);
                out.push((u, cams, n));
            }
            Ok(out)
        })
        .await?;
    Ok(Json(Items { items: rows.into_iter().map(|(u, c, n)| info(u, c, n)).collect() }))
}

fn parse_role(r: &str) -> ApiResult<Role> {
    Role::parse(r).ok_or_else(|| err(ErrorKind::Invalid, &format!("role: expected owner, member or viewer, got {r:?}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    email: String,
    role: String,
    password: String,
}

pub async fn add_user(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    bytes: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<UserInfo>)> {
    let s = owner(ext)?;
    let b: NewUserBody = json_body(&bytes)?;
    let role = parse_role(&b.role)?;
    let email = auth::check_email(&b.email).map_err(ApiError)?;
    let hash = hash_new(&st, b.password).await?;
    let (e, now, by) = (email.clone(), st.clock.now_ms(), s.user.email.clone());
    let id = st
        .store
        .call(move |db| {
            let id = db.add_user(&e, role, &hash, now)?;
            db.audit(&by, "user.added", &format!("{e} as {}", role.as_str()), now)?;
            Ok(id)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(user_info(&st, id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchUserBody {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `PATCH /api/users/{id}`: role and/or password (a new password signs them out).
pub async fn patch_user(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    UrlPath(id): UrlPath<i64>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<UserInfo>> {
    let s = owner(ext)?;
    let b: PatchUserBody = json_body(&bytes)?;
    let role = b.role.as_deref().map(parse_role).transpose()?;
    let hash = match b.password {
        Some(p) => Some(hash_new(&st, p).await?),
        None => None,
    };
    let (now, by) = (st.clock.now_ms(), s.user.email.clone());
    st.store
        .call(move |db| {
            let who = db.existing_user(id)?.email;
            if let Some(role) = role {
                db.set_role(id, role)?;
                db.audit(&by, "user.role_changed", &format!("{who} is now {}", role.as_str()), now)?;
            }
            if let Some(hash) = hash {
                let n = db.set_password(id, &hash, None)?;
                db.audit(&by, "user.password_reset", &format!("{who}: {n} session(s) signed out"), now)?;
            }
            Ok(())
        })
        .await?;
    Ok(Json(user_info(&st, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CamerasBody {
    cameras: Vec<i64>,
}

/// `PUT /api/users/{id}/cameras`: the cameras shared with them, replacing the list.
pub async fn put_user_cameras(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    UrlPath(id): UrlPath<i64>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<UserInfo>> {
    let s = owner(ext)?;
    let b: CamerasBody = json_body(&bytes)?;
    if b.cameras.len() > 1000 {
        return Err(err(ErrorKind::Invalid, "cameras: at most 1000"));
    }
    let (now, by) = (st.clock.now_ms(), s.user.email.clone());
    st.store
        .call(move |db| {
            let who = db.existing_user(id)?.email;
            let before = db.shares_of(id)?;
            let after = db.set_shares(id, &b.cameras)?;
            if before != after {
                let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
                db.audit(
                    &by,
                    "user.shares_changed",
                    &format!("{who}: cameras [{}] (were [{}])", list(&after), list(&before)),
                    now,
                )?;
            }
            Ok(())
        })
        .await?;
    Ok(Json(user_info(&st, id).await?))
}

pub async fn delete_user(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    UrlPath(id): UrlPath<i64>,
) -> ApiResult<StatusCode> {
    let s = owner(ext)?;
    if id == s.user.id {
        return Err(err(ErrorKind::Conflict, "you cannot remove yourself: another owner can"));
    }
    let (now, by) = (st.clock.now_ms(), s.user.email.clone());
    st.store
        .call(move |db| {
            let gone = db.delete_user(id)?;
            db.audit(&by, "user.removed", &gone.email, now)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/users/{id}/sessions`: signs that person out everywhere.
pub async fn revoke_user_sessions(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    UrlPath(id): UrlPath<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    let s = owner(ext)?;
    let (now, by) = (st.clock.now_ms(), s.user.email.clone());
    let n = st
        .store
        .call(move |db| {
            let who = db.existing_user(id)?.email;
            let n = db.delete_sessions_of(id, None)?;
            db.audit(&by, "user.signed_out", &format!("{who}: {n} session(s)"), now)?;
            Ok(n)
        })
        .await?;
    Ok(Json(serde_json::json!({ "revoked": n })))
}

// ---- settings (owner) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    #[serde(default)]
    require_totp: Option<bool>,
}

pub async fn get_settings(State(st): State<AppState>, ext: Option<Extension<Session>>) -> ApiResult<Json<serde_json::Value>> {
    owner(ext)?;
    Ok(Json(serde_json::json!({ "require_totp": st.require_totp.load(std::sync::atomic::Ordering::SeqCst) })))
}

pub async fn patch_settings(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let s = owner(ext)?;
    let b: SettingsBody = json_body(&bytes)?;
    if let Some(on) = b.require_totp {
        if on && !s.user.totp_enabled {
            return Err(err(ErrorKind::Conflict, "turn on two-factor for yourself first (Account), then require it of everyone"));
        }
        let (now, by) = (st.clock.now_ms(), s.user.email.clone());
        st.store
            .call(move |db| {
                db.set_setting(REQUIRE_TOTP, if on { "true" } else { "false" })?;
                db.audit(&by, "settings.changed", &format!("require_totp = {on}"), now)
            })
            .await?;
        st.require_totp.store(on, std::sync::atomic::Ordering::SeqCst);
    }
    get_settings(State(st), Some(Extension(s))).await
}

// ---- security (owner) ----

/// `GET /api/doctor`: `homehub doctor`'s findings about this hub, each with its fix.
pub async fn doctor(State(st): State<AppState>, ext: Option<Extension<Session>>) -> ApiResult<Json<serde_json::Value>> {
    owner(ext)?;
    let check = st.self_check.clone();
    let findings = crate::error::blocking("running the self-check", move || check.run()).await?;
    Ok(Json(serde_json::json!({ "findings": findings })))
}

/// What the owner types (or the page sends) to confirm the big button.
pub const SIGN_OUT_EVERYWHERE: &str = "sign out everywhere";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EverywhereBody {
    confirm: String,
}

/// `POST /api/signout-everywhere`: every browser session ends (the caller's too), every
/// paired device's password is rotated over its live connection (the rest must pair
/// again), every broker user is removed; audited.
pub async fn signout_everywhere(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    bytes: axum::body::Bytes,
) -> ApiResult<Response> {
    let s = owner(ext)?;
    let b: EverywhereBody = json_body(&bytes)?;
    if b.confirm.trim() != SIGN_OUT_EVERYWHERE {
        return Err(err(ErrorKind::Invalid, &format!("confirm: must be {SIGN_OUT_EVERYWHERE:?}")));
    }
    // Browser sessions first: they end at once, whatever the devices do.
    let sessions = st.store.call(|db| db.delete_all_sessions()).await?;
    let r = st.devices.rotate_all(&s.user.email).await?;
    let again = match r.devices_offline.as_slice() {
        [] => "none must pair again".to_string(),
        ids => format!("{} must pair again ({})", ids.len(), ids.join(", ")),
    };
    let detail = format!(
        "{sessions} session(s) ended; {} device(s) got new passwords; {again}; {} broker user(s) removed",
        r.devices_rotated.len(),
        r.broker_users.len()
    );
    audit(&st, &s.user.email, "security.signed_out_everywhere", detail).await?;
    let clear = format!("{}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict", auth::COOKIE);
    let body = serde_json::json!({
        "sessions": sessions,
        "devices_rotated": r.devices_rotated,
        "devices_offline": r.devices_offline,
        "broker_users": r.broker_users.len(),
    });
    Ok(([(header::SET_COOKIE, clear)], Json(body)).into_response())
}

// ---- audit (owner) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

#[derive(Serialize)]
pub struct AuditInfo {
    id: i64,
    at: String,
    actor: String,
    action: String,
    detail: String,
}

/// What the bounded trail folded away, per action.
#[derive(Serialize)]
pub struct RolledUp {
    action: String,
    count: i64,
    first: String,
    last: String,
}

#[derive(Serialize)]
pub struct AuditList {
    items: Vec<AuditInfo>,
    next: Option<i64>,
    rolled_up: Vec<RolledUp>,
    actions: Vec<String>,
}

/// `GET /api/audit`: newest first, filtered by action prefix and actor, paged by id.
pub async fn audit_page(
    State(st): State<AppState>,
    ext: Option<Extension<Session>>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditList>> {
    owner(ext)?;
    let Query(q) = q.map_err(|e| err(ErrorKind::Invalid, &e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(err(ErrorKind::Invalid, "limit: 1..=200"));
    }
    let cut = |v: Option<String>| v.map(|s| s.chars().take(254).collect::<String>()).filter(|s| !s.is_empty());
    let (action, actor, before) = (cut(q.action), cut(q.actor), q.before);
    let (mut rows, rolled, actions) = st
        .store
        .call(move |db| {
            Ok((db.audit_page(action.as_deref(), actor.as_deref(), before, limit + 1)?, db.audit_rollup()?, db.audit_actions()?))
        })
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(|r| r.id) } else { None };
    let items = rows
        .into_iter()
        .map(|r| AuditInfo { id: r.id, at: rfc3339(r.at_ms), actor: r.actor, action: r.action, detail: r.detail })
        .collect();
    let rolled_up = rolled
        .into_iter()
        .map(|r| RolledUp { action: r.action, count: r.count, first: rfc3339(r.first_ms), last: rfc3339(r.last_ms) })
        .collect();
    Ok(Json(AuditList { items, next, rolled_up, actions }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn setup_links_carry_the_token_in_the_fragment() {
        let url = setup_url("192.168.1.5:8443".parse().unwrap(), "tok");
        assert_eq!(url, "https://192.168.1.5:8443/setup#token=tok");
        assert!(setup_url("0.0.0.0:8443".parse().unwrap(), "t").ends_with(".local:8443/setup#token=t"));
        assert_eq!(setup_url("[::1]:9".parse().unwrap(), "t"), "https://[::1]:9/setup#token=t");
    }

    #[test]
    fn before_enrolment_only_me_enrolment_and_pages_answer() {
        assert!(allowed_before_enrolment(&Method::GET, "/api/me"));
        assert!(allowed_before_enrolment(&Method::POST, "/api/me/totp"));
        assert!(allowed_before_enrolment(&Method::POST, "/api/me/totp/confirm"));
        assert!(allowed_before_enrolment(&Method::DELETE, "/api/session"));
        assert!(allowed_before_enrolment(&Method::GET, "/account"));
        assert!(!allowed_before_enrolment(&Method::GET, "/api/cameras"));
        assert!(!allowed_before_enrolment(&Method::GET, "/metrics"));
        assert!(!allowed_before_enrolment(&Method::POST, "/api/me/totp/disable"));
        assert!(!allowed_before_enrolment(&Method::POST, "/api/me/password"));
    }
}
