//! The layering of ARCHITECTURE.md, kept by the build. "Nothing else leaves" ("What may
//! leave the house"): only `src/cloud/` may use an HTTP/S3 client or resolve names; the
//! other outbound sockets are the loopback link to the embedded broker. Only `src/store/`
//! touches rusqlite; only `src/camera/` (and the simulator) touches GStreamer. This scans
//! the hub's sources, so a new dependency that phones home, a stray connect or a query
//! outside the store fails here and has to be argued for.

use std::path::{Path, PathBuf};

/// What opens connections to other machines (or looks names up for them).
const OUTBOUND: &[&str] = &[
    "object_store",
    "reqwest",
    "hyper::client",
    "hyper_util::client",
    "TcpStream::connect",
    "UdpSocket",
    "lookup_host",
    "ToSocketAddrs",
    "to_socket_addrs",
    "MqttOptions::new",
    "ureq",
    "curl::",
];

/// Files outside `src/cloud/` allowed a pattern, and why.
const ALLOWED: &[(&str, &str, &str)] = &[
    ("src/mqtt/broker.rs", "TcpStream::connect", "the front end's loopback link to the embedded rumqttd"),
    ("src/mqtt/mod.rs", "MqttOptions::new", "the hub's own client of the embedded broker, on loopback"),
];

/// Crates only some folders may use: (what names the crate in code, folders allowed).
const CONFINED: &[(&[&str], &[&str])] = &[
    (&["rusqlite::", "rusqlite;", "rusqlite as", "rusqlite {"], &["src/store/"]),
    (
        &["gstreamer::", "gstreamer;", "gstreamer as", "gstreamer_app", "gstreamer_video", "gstreamer_rtsp", "gst::", "glib::"],
        &["src/camera/", "src/camsim/"],
    ),
];

/// Modules the lower layers may not reach back into: (what names it, folders that may
/// not use it outside their unit tests). The web is built on the subsystems and reads
/// them through narrow traits (`web::ports`); none of them knows the web exists.
const NO_BACK_REFERENCES: &[(&str, &[&str])] = &[(
    "crate::web",
    &[
        "src/devices/",
        "src/camera/",
        "src/events/",
        "src/recorder/",
        "src/store/",
        "src/cloud/",
        "src/mqtt/",
        "src/motion/",
        "src/pairing/",
        "src/mdns/",
    ],
)];

/// Code lines of `text` (comments skipped), numbered from 1.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(n, l)| (n + 1, l)).filter(|(_, l)| !l.trim_start().starts_with("//"))
}

/// Every use of a confined crate outside its folders, under `root/src`.
fn layering_violations(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut found = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(f).unwrap();
        for (pats, allowed) in CONFINED {
            if allowed.iter().any(|dir| rel.starts_with(dir)) {
                continue;
            }
            for (n, line) in code_lines(&text) {
                if let Some(p) = pats.iter().find(|p| line.contains(*p)) {
                    found.push(format!("{rel}:{n}: {p} outside {}: {}", allowed.join(", "), line.trim()));
                }
            }
        }
    }
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (pat, denied) in NO_BACK_REFERENCES {
            if rel.ends_with("/tests.rs") || !denied.iter().any(|dir| rel.starts_with(dir)) {
                continue;
            }
            for (n, line) in code_lines(code) {
                if line.contains(pat) {
                    found.push(format!("{rel}:{n}: {pat} from a lower layer: {}", line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn rusqlite_stays_in_the_store_gstreamer_in_the_camera_module_and_nothing_reaches_back_into_the_web() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = layering_violations(root);
    assert!(found.is_empty(), "layering broken (see ARCHITECTURE.md, Invariants):\n{}", found.join("\n"));
}

#[test]
fn the_layering_check_catches_a_violation() {
    let tmp = tempfile::tempdir().unwrap();
    let put = |rel: &str, text: &str| {
        let p = tmp.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put("src/store/mod.rs", "use rusqlite::Connection;\n");
    put("src/camera/mod.rs", "use gstreamer as gst;\nfn f() { gst::init(); }\n");
    put("src/web/mod.rs", "// rusqlite:: in a comment is fine\nfn f(c: &rusqlite::Connection) {}\n");
    put("src/events/mod.rs", "fn f() { let _ = gst::ElementFactory::find(\"x\"); }\n");
    put("src/devices/mod.rs", "use crate::web::CameraInfo;\n#[cfg(test)]\nmod tests { use crate::web::tls; }\n");
    let found = layering_violations(tmp.path());
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found.iter().any(|f| f.starts_with("src/devices/mod.rs:1: crate::web from a lower layer")), "{found:?}");
    assert!(
        found[0].starts_with("src/events/mod.rs:1: gst::") || found[1].starts_with("src/events/mod.rs:1: gst::"),
        "{found:?}"
    );
    assert!(found.iter().any(|f| f.starts_with("src/web/mod.rs:2: rusqlite::")), "{found:?}");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn only_the_cloud_module_opens_connections_beyond_the_lan() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut found = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        // The cloud relay; the simulated camera (not part of the hub, not in the .deb);
        // unit tests, which talk to loopback servers they start.
        if rel.starts_with("src/cloud/")
            || rel.starts_with("src/camsim/")
            || rel.starts_with("src/bin/")
            || rel.ends_with("/tests.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        // Code under #[cfg(test)] at the end of a file is a unit test module.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code_lines(code) {
            for pat in OUTBOUND {
                if line.contains(pat) && !ALLOWED.iter().any(|(file, p, _)| *file == rel && p == pat) {
                    found.push(format!("{rel}:{n}: {pat}: {}", line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "outbound connections outside src/cloud/ (see ARCHITECTURE.md):\n{}", found.join("\n"));
    // The scan sees what it is meant to: the relay's client is where it belongs.
    let remote = std::fs::read_to_string(root.join("src/cloud/remote.rs")).unwrap();
    assert!(remote.contains("object_store"), "src/cloud/remote.rs no longer uses object_store: update this test");
}

#[test]
fn the_dependency_tree_has_no_telemetry_or_update_clients() {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    for name in ["sentry", "opentelemetry", "self_update", "update-informer", "posthog", "segment", "rudderstack"] {
        assert!(!lock.contains(&format!("name = \"{name}\"")), "Cargo.lock pulls {name}");
    }
}
