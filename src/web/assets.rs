//! The web app's files, embedded from `web/dist/` (built by `make web`; `build.rs` stops
//! the build when it is missing), and the headers every response carries.
//!
//! `/assets/*` are the bundle's static files, the same on every hub and free of data,
//! so they are served without a session; content-hashed names are cached for a year.
//! Every other page path is the app shell `index.html` (its client-side router picks
//! the screen): 200 with a session, 401 without (the guard answers then, and the app
//! shows its sign-in form).

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/dist/"]
struct Dist;

/// The policy of every response: our own scripts, styles, media and connections only;
/// pictures also from blobs and data URLs (snapshots, canvas), media from blobs (MSE).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
media-src 'self' blob:; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

const YEAR: &str = "public, max-age=31536000, immutable";
const SHORT: &str = "public, max-age=300";

/// The app shell (read once; embedded in every build, debug ones too).
pub fn index_html() -> &'static [u8] {
    static SHELL: OnceLock<Cow<'static, [u8]>> = OnceLock::new();
    SHELL.get_or_init(|| {
        Dist::get("index.html").map_or(Cow::Borrowed(b"web/dist/index.html is missing from this build"), |f| f.data)
    })
}

/// The away page (`web/dist/away.html`, built from `web/away/`): one self-contained file.
pub fn away_html() -> &'static [u8] {
    static PAGE: OnceLock<Cow<'static, [u8]>> = OnceLock::new();
    PAGE.get_or_init(|| {
        Dist::get("away.html").map_or(Cow::Borrowed(b"web/dist/away.html is missing from this build"), |f| f.data)
    })
}

/// The app shell as a response with `status` (200 with a session, 401 without).
pub fn shell(status: StatusCode) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], index_html())
        .into_response()
}

/// True for paths the page's router owns (not the API, metrics or health).
pub fn is_page_path(path: &str) -> bool {
    !(path == "/api" || path.starts_with("/api/") || path == "/metrics" || path == "/healthz" || path.starts_with("/assets/"))
}

/// `GET /assets/{*file}`: a file of the bundle, or 404.
pub async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let Some(f) = Dist::get(&format!("assets/{file}")) else {
        return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "no such file\n").into_response();
    };
    let mime = f.metadata.mimetype();
    let mime = if file.ends_with(".webmanifest") { "application/manifest+json" } else { mime };
    let cache = if is_hashed(&file) { YEAR } else { SHORT };
    Response::builder()
        .header(header::CONTENT_TYPE, mime)
        .header(header::CACHE_CONTROL, cache)
        .header(header::ETAG, format!("\"{}\"", hex::encode(&f.metadata.sha256_hash()[..8])))
        .body(Body::from(f.data))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// esbuild names its outputs `app-XXXXXXXX.js` (8 characters of content hash).
fn is_hashed(file: &str) -> bool {
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    stem.rsplit_once('-').is_some_and(|(_, h)| h.len() == 8 && h.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The fallback route: the app shell for page paths (the guard has let only sessions
/// through), a JSON 404 for unknown API paths.
pub async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    if matches!(*req.method(), Method::GET | Method::HEAD) && is_page_path(path) {
        return shell(StatusCode::OK);
    }
    (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({ "error": format!("no such route: {path}") }))).into_response()
}

/// Outermost layer: the security headers on every response, the guard's answers included.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_embedded_and_its_shell_names_only_our_assets() {
        let html = std::str::from_utf8(index_html()).expect("utf-8");
        assert!(html.contains("<div id=\"app\">"), "{html}");
        assert!(!html.contains("<style") && !html.contains("style="), "no inline styles: {html}");
        let scripts: Vec<&str> = html.split("<script").skip(1).collect();
        assert_eq!(scripts.len(), 1, "one script: {html}");
        let src = scripts[0].split("src=\"").nth(1).and_then(|s| s.split('"').next()).expect("script src");
        assert!(src.starts_with("/assets/app-") && src.ends_with(".js"), "{src}");
        assert!(Dist::get(src.trim_start_matches('/')).is_some(), "{src} is embedded");
        assert!(is_hashed(src.trim_start_matches("/assets/")));
    }

    #[test]
    fn page_paths() {
        for p in ["/", "/camera/3", "/timeline", "/cameras", "/nope"] {
            assert!(is_page_path(p), "{p}");
        }
        for p in ["/api", "/api/x", "/metrics", "/healthz", "/assets/app.js"] {
            assert!(!is_page_path(p), "{p}");
        }
        assert!(!is_hashed("icon.svg"));
        assert!(!is_hashed("manifest.webmanifest"));
    }
}
