//! The S3 test harness itself (tests/common/s3.rs): moto behind the recording proxy,
//! its outage controls, and the canary checks.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::s3::{S3, assert_no_canary, canary_forms, find_canary};

/// curl with a body (a file, so any bytes go through), as a client that sends no
/// signature; returns its output.
fn curl(args: &[&str]) -> Output {
    Command::new("curl").args(["-s", "-S", "-o", "-", "-w", "\n%{http_code}"]).args(args).output().expect("curl")
}

fn status(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string()
}

fn put(endpoint: &str, path: &str, body: &[u8], max_time: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, body).unwrap();
    // An explicit content type: moto stores a form-urlencoded body (curl's default) as empty.
    curl(&[
        "--max-time",
        max_time,
        "-X",
        "PUT",
        "-H",
        "content-type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{endpoint}{path}"),
    ])
}

fn pid_alive(pid: u32) -> bool {
    // A zombie would still be "alive" to kill(0); Proc reaps, so this is exact.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

#[test]
fn put_through_the_proxy_is_stored_and_recorded() {
    let s3 = S3::start();
    let pid = s3.moto_pid();
    s3.create_bucket("clips");
    assert!(s3.list("clips").is_empty());

    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let key = "cam 1/2026-11-24/seg+001.age";
    let path = format!("/clips/{}", common::s3::percent_encode(key.as_bytes(), true));
    let out = put(&s3.endpoint(), &path, &body, "20");
    assert_eq!(status(&out), "200", "PUT via proxy: {}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(s3.list("clips"), vec![(key.to_string(), body.len() as u64)]);
    assert_eq!(s3.get("clips", key), body);
    let dir = tempfile::tempdir().unwrap();
    let files = s3.download_all("clips", dir.path());
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, key);
    assert_eq!(files[0].1, dir.path().join("cam 1/2026-11-24/seg+001.age"));
    assert_eq!(std::fs::read(&files[0].1).unwrap(), body);

    // boto3 sees the same object (its requests go to moto directly, unrecorded).
    let listed =
        s3.boto3("print(json.dumps([[o['Key'], o['Size'], o['ETag']] for o in s3.list_objects_v2(Bucket='clips')['Contents']]))");
    let v: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(v[0][0], key);
    assert_eq!(v[0][1], body.len());
    // moto's ETag for a plain PUT: the quoted hex MD5 of the body.
    assert_eq!(v[0][2].as_str().unwrap().len(), 34);

    // The proxy saw exactly the one PUT, key and body included; none of the test's own
    // direct calls.
    let reqs = s3.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(s3.request_count(), 1);
    assert_eq!(reqs[0].method, "PUT");
    assert_eq!(reqs[0].path(), format!("/clips/{key}"));
    assert!(reqs[0].complete);
    assert_eq!(reqs[0].body, body);
    assert_eq!(reqs[0].header("content-type"), Some("application/octet-stream"));
    let sent = s3.client_sent();
    assert!(sent.len() > body.len());
    assert!(sent.windows(path.len()).any(|w| w == path.as_bytes()));
    assert!(String::from_utf8_lossy(&s3.server_sent()).starts_with("HTTP/1.1 200"));

    // Canary checks on the real log: the key is there (percent-encoded), a camera name
    // is not, in any form.
    let r = std::panic::catch_unwind(|| assert_no_canary("client log", &sent, &["seg+001.age"]));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("percent-encoded"), "{msg}");
    assert_no_canary("client log", &sent, &["Betty's Room", "owner@example.com"]);

    drop(s3);
    assert!(!pid_alive(pid), "moto (pid {pid}) still running after drop");
}

#[test]
fn refuse_and_pause_simulate_outages() {
    let s3 = S3::start();
    s3.create_bucket("outage");
    let ep = s3.endpoint();
    let port = s3.proxy_port();
    assert_eq!(status(&put(&ep, "/outage/a", b"first", "10")), "200");

    // A connection open when refusing starts is cut.
    let mut open = TcpStream::connect(("127.0.0.1", port)).unwrap();
    open.write_all(b"PUT /outage/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf").unwrap();
    common::wait_until("the proxy relaying the open connection", Duration::from_secs(5), || {
        s3.client_sent().windows(15).any(|w| w == b"PUT /outage/cut")
    });

    s3.refuse(true);
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    match open.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("cut connection still answered: {:?}", String::from_utf8_lossy(&buf[..n])),
    }
    let err = TcpStream::connect(("127.0.0.1", port)).expect_err("connect while refusing");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    let out = put(&ep, "/outage/b", b"refused", "10");
    // curl's exit 7: could not connect.
    assert_eq!(out.status.code(), Some(7), "curl while refusing: {out:?}");
    s3.refuse(true); // idempotent

    s3.refuse(false);
    assert_eq!(s3.endpoint(), ep, "same port after refusing");
    assert_eq!(status(&put(&ep, "/outage/b", b"second", "10")), "200");
    assert_eq!(s3.list("outage"), vec![("a".to_string(), 5), ("b".to_string(), 6)]);

    // Paused: connections are accepted, nothing is answered.
    s3.pause();
    let t = Instant::now();
    let out = put(&ep, "/outage/c", b"during pause", "2");
    assert_eq!(out.status.code(), Some(28), "curl while paused should time out: {out:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    s3.resume();
    assert_eq!(status(&put(&ep, "/outage/d", b"after", "10")), "200");
    // moto carries out the request that arrived during the pause, though curl gave up.
    common::wait_until("the paused PUT to land after resume", Duration::from_secs(10), || {
        s3.list("outage").iter().any(|(k, _)| k == "c")
    });

    // Every attempt is in the log, the refused one excepted (it never connected).
    let paths: Vec<String> = s3.requests().iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/outage/a", "/outage/cut", "/outage/b", "/outage/c", "/outage/d"]);
    assert!(!s3.requests()[1].complete);
}

#[test]
fn canary_forms_cover_the_encodings() {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    // Forms that coincide are listed once: with no "+/" in its base64 and a length that
    // needs no padding, this one has a single base64 form per alignment.
    let canary = "Betty's Room";
    let labels: Vec<String> = canary_forms(canary).into_iter().map(|(l, _)| l).collect();
    assert!(!labels.iter().any(|l| l.starts_with("base64url") || l.contains("unpadded")), "{labels:?}");
    // A canary whose encodings differ in every way has every form.
    let wild = "Lena's camera ??~";
    let forms = canary_forms(wild);
    let labels: Vec<&str> = forms.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels.len(), 18, "{labels:?}");
    for want in [
        "raw",
        "hex",
        "HEX",
        "base64",
        "base64 unpadded",
        "base64url",
        "base64url unpadded",
        "base64 at offset 0 mod 3",
        "base64 at offset 1 mod 3",
        "base64 at offset 2 mod 3",
        "base64url at offset 0 mod 3",
        "base64url at offset 1 mod 3",
        "base64url at offset 2 mod 3",
        "UTF-16LE",
        "UTF-16BE",
        "percent-encoded",
        "percent-encoded, lower-case hex",
        "form-encoded",
    ] {
        assert!(labels.contains(&want), "no {want} in {labels:?}");
    }
    for (i, a) in forms.iter().enumerate() {
        assert!(forms[i + 1..].iter().all(|b| b.1 != a.1), "duplicate form {}", a.0);
    }
    // Non-ASCII canaries: UTF-8 bytes everywhere, UTF-16 by code unit.
    let uml = canary_forms("Küche Süd 🏠");
    assert!(uml.iter().any(|(l, b)| l == "percent-encoded" && b.starts_with(b"K%C3%BCche%20")));
    assert!(uml.iter().any(|(l, b)| l == "UTF-16LE" && b.starts_with(&[b'K', 0, 0xfc, 0])));

    // Base64 of the canary inside a longer string, at every offset and in both alphabets.
    for prefix in ["", "x", "xx", "xxx", "{\"name\":\"", "yyyy"] {
        for suffix in ["", "y", "yy", "yyy", "\"}"] {
            let text = format!("{prefix}{canary}{suffix}");
            for enc in [STANDARD.encode(&text), URL_SAFE_NO_PAD.encode(&text)] {
                let hay = format!("GET /?q={enc} HTTP/1.1");
                assert!(find_canary(hay.as_bytes(), &[canary]).is_some(), "missed base64 {enc} of {text:?}");
            }
        }
    }
    let enc = STANDARD.encode("xxBetty's Roomyy");
    assert!(find_canary(enc.as_bytes(), &[canary]).is_some());
    // ... and of one whose two alphabets differ.
    for prefix in ["", "a", "ab"] {
        let text = format!("{prefix}{wild}!");
        for enc in [STANDARD.encode(&text), URL_SAFE_NO_PAD.encode(&text)] {
            assert!(find_canary(enc.as_bytes(), &[wild]).is_some(), "missed base64 {enc} of {text:?}");
        }
    }

    // Each form is caught when embedded in other bytes, and named.
    for (label, bytes) in forms.iter().chain(&canary_forms(canary)) {
        let canary = if forms.iter().any(|(_, b)| b == bytes) { wild } else { canary };
        let prefix = b"PUT /bucket/key HTTP/1.1\r\nx-amz-meta: ";
        let mut hay = prefix.to_vec();
        hay.extend_from_slice(bytes);
        hay.extend_from_slice(b"\r\n\r\nbody");
        let (c, l, off) = find_canary(&hay, &["some other canary", canary]).expect(label);
        assert_eq!(c, canary);
        assert_eq!(off, prefix.len(), "{label} found as {l}");
        let r = std::panic::catch_unwind(|| assert_no_canary("test haystack", &hay, &[canary]));
        let msg = *r.expect_err(label).downcast::<String>().unwrap();
        let at = format!("at byte {} ", prefix.len());
        assert!(msg.contains(&format!("{canary:?}")) && msg.contains(&at) && msg.contains("test haystack"), "{msg}");
    }

    // Clean bytes pass, including near misses.
    let clean = b"PUT /clips/cam-3/2026-11-24T10:00:00Z.age HTTP/1.1\r\nBetty Room Bettys Room Betty'sRoom \
        QmV0dHkn 42657474792 \x00\xff"
        .repeat(100);
    assert_no_canary("clean", &clean, &[canary, "owner@example.com", "Kitchen Cam"]);
    let noise: Vec<u8> = (0..1_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    assert_no_canary("noise", &noise, &[canary]);
    let b64noise = STANDARD.encode(&noise);
    assert_no_canary("base64 noise", b64noise.as_bytes(), &[canary]);
}

#[test]
#[should_panic(expected = "too short")]
fn short_canaries_are_refused() {
    canary_forms("abc");
}
