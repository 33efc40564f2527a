//! The web app as the hub serves it: the embedded bundle, the app shell on every page
//! path (401 without a session, 200 with one), the static assets open and cached, and the
//! security headers on every answer, the guard's refusals included.

mod common;

use common::*;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

fn assert_security_headers(what: &str, head: &str) {
    assert_eq!(header(head, "content-security-policy"), Some(CSP), "{what}: {head}");
    assert_eq!(header(head, "x-content-type-options"), Some("nosniff"), "{what}: {head}");
    assert_eq!(header(head, "referrer-policy"), Some("no-referrer"), "{what}: {head}");
}

/// The `/assets/...` paths the shell names.
fn asset_paths(html: &str) -> Vec<String> {
    html.split(['"', '\'']).filter(|s| s.starts_with("/assets/")).map(str::to_string).collect()
}

#[test]
fn the_app_shell_and_its_assets_are_served_with_the_security_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "[recording]\nmode = \"off\"\n");
    hub.add_user(EMAIL, "owner", PASSWORD);

    // Without a session: every page path is the shell, with 401; it holds no data.
    let (st, head, body) = hub.get("/timeline?day=2026-01-01", None);
    assert_eq!(st, 401);
    assert_security_headers("shell without a session", &head);
    assert!(header(&head, "content-type").is_some_and(|v| v.starts_with("text/html")), "{head}");
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("<div id=\"app\">"), "{html}");
    assert!(!html.contains("<style") && !html.contains(" style=") && !html.contains("<script>"), "no inline code: {html}");

    // The bundle is open without a session, with its content type; hashed names cached for long.
    let assets = asset_paths(&html);
    let js = assets.iter().find(|p| p.ends_with(".js")).expect("a script");
    let css = assets.iter().find(|p| p.ends_with(".css")).expect("a stylesheet");
    for (path, mime) in [(js, "text/javascript"), (css, "text/css")] {
        let (st, head, body) = hub.get(path, None);
        assert_eq!(st, 200, "{path}: {head}");
        assert!(header(&head, "content-type").is_some_and(|v| v.starts_with(mime)), "{path}: {head}");
        assert!(header(&head, "cache-control").is_some_and(|v| v.contains("immutable")), "{path}: {head}");
        assert!(!body.is_empty());
        assert_security_headers(path, &head);
    }
    for path in &assets {
        assert_eq!(hub.get(path, None).0, 200, "{path}, named by the shell");
    }
    let (st, head, _) = hub.get("/assets/nope.js", None);
    assert_eq!(st, 404);
    assert_security_headers("a missing asset", &head);

    // The guard's refusals carry the headers too.
    let (st, head, _) = hub.get("/api/cameras", None);
    assert_eq!(st, 401);
    assert_security_headers("401 from the guard", &head);
    let (st, head, _) = hub.curl(&["-X", "POST", "-H", "content-type: text/plain", "--data", "x", &hub.url("/api/session")]);
    assert_eq!(st, 403);
    assert_security_headers("403 CSRF", &head);
    let (st, head, _) = hub.get("/healthz", None);
    assert_eq!(st, 200);
    assert_security_headers("healthz", &head);

    // With a session: the shell with 200 on every route of the app; unknown API paths are JSON 404s.
    let cookie = hub.login(EMAIL, PASSWORD).1.expect("signed in").0;
    for path in ["/", "/camera/1", "/timeline?camera=1&day=2026-12-01", "/cameras", "/devices", "/storage"] {
        let (st, head, body) = hub.get(path, Some(&cookie));
        assert_eq!(st, 200, "{path}");
        assert_eq!(String::from_utf8(body).unwrap(), html, "{path} is the same shell");
        assert_eq!(header(&head, "cache-control"), Some("no-store"), "{path}");
        assert_security_headers(path, &head);
    }
    let (st, head, body) = hub.get("/api/nope", Some(&cookie));
    assert_eq!(st, 404);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("/api/nope")), "{v}");
    assert_security_headers("API 404", &head);
    // The API still answers as before.
    assert_eq!(hub.get_json("/api/me", &cookie)["email"], EMAIL);
}
