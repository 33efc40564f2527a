use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::*;

const CODE: &str = "12345678";
const FP: &str = "5f1c0a8e9b7d6c4a3e2f1d0c9b8a7f6e5d4c3b2a19081726354453627180a9b0";
const OTHER_FP: &str = "0000000000000000000000000000000000000000000000000000000000000001";
const ID: &str = "cam-01";

fn device(code: &str) -> (DeviceExchange, Vec<u8>) {
    DeviceExchange::start(ID, "camera", "homehub-camsim", "0.1.0", code)
}

fn request_of(payload: &[u8]) -> Request {
    match parse_device_message(payload) {
        Ok(DeviceMessage::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn challenge_of(r: &Response) -> (Vec<u8>, [u8; 32]) {
    match r {
        Response::Challenge { pake, confirm } => (pake.clone(), *confirm),
        other => panic!("not a challenge: {other:?}"),
    }
}

fn confirm_of(payload: &[u8]) -> [u8; 32] {
    match parse_device_message(payload) {
        Ok(DeviceMessage::Confirm(c)) => c,
        other => panic!("not a confirm: {other:?}"),
    }
}

fn creds() -> Credentials {
    Credentials { username: ID.into(), password: new_password() }
}

/// A valid request as a JSON value.
fn valid_request() -> Value {
    serde_json::from_slice(&device(CODE).1).unwrap()
}

fn with(mut v: Value, key: &str, value: Value) -> Vec<u8> {
    v[key] = value;
    serde_json::to_vec(&v).unwrap()
}

fn without(mut v: Value, key: &str) -> Vec<u8> {
    v.as_object_mut().unwrap().remove(key);
    serde_json::to_vec(&v).unwrap()
}

fn rejected_field(r: Result<impl std::fmt::Debug, Reject>) -> String {
    let e = r.expect_err("must be rejected");
    assert!(e.to_string().starts_with(&format!("{}: ", e.field())), "{e}");
    e.field().to_string()
}

#[test]
fn topics() {
    assert_eq!(request_topic("cam-1"), "homehub/pair/cam-1/request");
    assert_eq!(response_topic("cam-1"), "homehub/pair/cam-1/response");
    assert_eq!(device_topic("cam-1", "config"), "homehub/dev/cam-1/config");
}

#[test]
fn device_ids_and_setup_codes() {
    assert!(check_device_id("cam-01").is_ok());
    assert!(check_device_id(&"a".repeat(64)).is_ok());
    assert!(check_device_id(&"a".repeat(65)).is_err());
    assert!(check_device_id("").is_err());
    assert!(check_device_id("Cam").is_err());
    assert!(check_device_id("cam_1").is_err());
    assert!(check_device_id("cam/1").is_err());
    assert!(check_setup_code("00001234").is_ok());
    assert_eq!(check_setup_code("1234").unwrap_err(), "expected exactly 8 digits, got '1234'");
    assert!(check_setup_code("1234567a").is_err());
    assert!(check_setup_code("１２３４５６７８").is_err());
}

#[test]
fn request_round_trip() {
    let (_, bytes) = device(CODE);
    assert!(bytes.len() <= MAX_PAYLOAD);
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(
        text.starts_with(r#"{"v":2,"device_id":"cam-01","kind":"camera","model":"homehub-camsim","firmware":"0.1.0","pake":""#),
        "{text}"
    );
    let req = request_of(&bytes);
    assert_eq!(
        (req.device_id.as_str(), req.kind.as_str(), req.model.as_str(), req.firmware.as_str()),
        (ID, "camera", "homehub-camsim", "0.1.0")
    );
    assert_eq!(req.pake.len(), 33);
    assert_eq!(req.pake[0], b'A');
    assert_eq!(DeviceMessage::Request(req.clone()).to_json(), bytes, "written out again, byte for byte");
    assert_ne!(request_of(&device(CODE).1).pake, req.pake, "every exchange has a fresh A message");
}

#[test]
fn confirm_and_abort_round_trip() {
    let c = DeviceMessage::Confirm([0xab; 32]);
    assert_eq!(String::from_utf8(c.to_json()).unwrap(), format!(r#"{{"v":2,"confirm":"{}"}}"#, "ab".repeat(32)));
    assert_eq!(parse_device_message(&c.to_json()).unwrap(), c);
    let a = DeviceMessage::Abort("confirm mismatch".into());
    assert_eq!(a.to_json(), br#"{"v":2,"abort":"confirm mismatch"}"#);
    assert_eq!(parse_device_message(&a.to_json()).unwrap(), a);

    let cases: &[(&str, &str)] = &[
        (r#"{"confirm":"00"}"#, "v"),
        (r#"{"v":2,"confirm":"00"}"#, "confirm"),
        (r#"{"v":2,"confirm":5}"#, "confirm"),
        (r#"{"v":2,"confirm":null}"#, "confirm"),
        (r#"{"v":2,"abort":"a\u0000b"}"#, "abort"),
        (r#"{"v":2,"abort":7}"#, "abort"),
        (r#"{"v":2,"abort":"x","device_id":"cam-01"}"#, "device_id"),
        (r#"{"v":1,"abort":"x"}"#, "v"),
    ];
    for (payload, field) in cases {
        assert_eq!(rejected_field(parse_device_message(payload.as_bytes())), *field, "{payload}");
    }
    let extra = format!(r#"{{"v":2,"confirm":"{}","abort":"x"}}"#, "00".repeat(32));
    assert_eq!(rejected_field(parse_device_message(extra.as_bytes())), "abort");
    let long = format!(r#"{{"v":2,"abort":"{}"}}"#, "x".repeat(201));
    assert_eq!(rejected_field(parse_device_message(long.as_bytes())), "abort");
}

#[test]
fn request_rejections_name_the_field() {
    let v = valid_request();
    let pake = STANDARD.decode(v["pake"].as_str().unwrap()).unwrap();
    let mut as_b = pake.clone();
    as_b[0] = b'B';
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![b' '; MAX_PAYLOAD + 1], "payload"),
        (vec![0xff, 0xfe], "payload"),
        (b"not json".to_vec(), "payload"),
        (b"[1,2]".to_vec(), "payload"),
        (b"{\"v\":2} trailing".to_vec(), "payload"),
        (br#"{"v":2,"v":2}"#.to_vec(), "payload"),
        (without(v.clone(), "v"), "v"),
        (with(v.clone(), "v", json!(1)), "v"),
        (with(v.clone(), "v", json!(3)), "v"),
        (with(v.clone(), "v", json!("2")), "v"),
        (with(v.clone(), "v", json!(2.5)), "v"),
        (with(v.clone(), "extra", json!(1)), "extra"),
        (with(v.clone(), "nonce", json!("00")), "nonce"),
        (with(v.clone(), "proof", json!("00")), "proof"),
        (without(v.clone(), "device_id"), "device_id"),
        (with(v.clone(), "device_id", json!(5)), "device_id"),
        (with(v.clone(), "device_id", json!("Cam")), "device_id"),
        (with(v.clone(), "device_id", json!("a".repeat(65))), "device_id"),
        (with(v.clone(), "kind", json!("")), "kind"),
        (with(v.clone(), "kind", json!("Camera")), "kind"),
        (with(v.clone(), "kind", json!("a".repeat(33))), "kind"),
        (with(v.clone(), "kind", json!(null)), "kind"),
        (with(v.clone(), "model", json!("m".repeat(65))), "model"),
        (with(v.clone(), "model", json!("a\nb")), "model"),
        (with(v.clone(), "model", json!("a\u{202e}b")), "model"),
        (with(v.clone(), "firmware", json!(["1"])), "firmware"),
        (with(v.clone(), "firmware", json!("\u{7}")), "firmware"),
        (without(v.clone(), "pake"), "pake"),
        (with(v.clone(), "pake", json!("")), "pake"),
        (with(v.clone(), "pake", json!("not base64!")), "pake"),
        (with(v.clone(), "pake", json!(STANDARD.encode(&pake[..32]))), "pake"),
        (with(v.clone(), "pake", json!(STANDARD.encode([&pake[..], &[0]].concat()))), "pake"),
        (with(v.clone(), "pake", json!(STANDARD.encode(&as_b))), "pake"),
        (with(v.clone(), "pake", json!("A".repeat(2000))), "pake"),
    ];
    for (bytes, field) in cases {
        let got = rejected_field(parse_device_message(&bytes));
        assert_eq!(got, field, "payload {}", String::from_utf8_lossy(&bytes));
    }
    let dup = String::from_utf8(serde_json::to_vec(&v).unwrap()).unwrap().replacen('{', "{\"pake\":\"x\",", 1);
    let e = parse_device_message(dup.as_bytes()).unwrap_err();
    assert!(e.reason().contains("duplicate field 'pake'"), "{e}");
    assert!(parse_device_message(&serde_json::to_vec(&v).unwrap()).is_ok());
}

#[test]
fn kinds_beyond_the_three_named_are_tokens() {
    let v = valid_request();
    for kind in ["camera", "sensor", "other", "doorbell-2"] {
        assert_eq!(request_of(&with(v.clone(), "kind", json!(kind))).kind, kind);
    }
}

#[test]
fn credentials_and_passwords() {
    let c = Credentials { username: "cam-01".into(), password: "secret".into() };
    assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"username":"cam-01","password":"secret"}"#);
    assert!(!format!("{c:?}").contains("secret"));
    let p = new_password();
    assert_eq!(p.len(), 43);
    assert!(p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{p}");
    assert_ne!(p, new_password());
}

#[test]
fn responses() {
    let c = Response::Challenge { pake: [&b"B"[..], &[7; 32]].concat(), confirm: [0x0f; 32] };
    let text = c.to_json();
    assert_eq!(
        text,
        format!(
            r#"{{"v":2,"status":"challenge","pake":"{}","confirm":"{}"}}"#,
            STANDARD.encode([&b"B"[..], &[7; 32]].concat()),
            "0f".repeat(32)
        )
    );
    assert_eq!(parse_response(text.as_bytes()).unwrap(), c);
    let a = Response::Accepted { sealed: "YWdl".into() };
    assert_eq!(a.to_json(), r#"{"v":2,"status":"accepted","sealed":"YWdl"}"#);
    assert_eq!(parse_response(a.to_json().as_bytes()).unwrap(), a);
    let r = Response::Rejected { reason: "wrong \"code\"".into() };
    assert_eq!(r.to_json(), r#"{"v":2,"status":"rejected","reason":"wrong \"code\""}"#);
    assert_eq!(parse_response(r.to_json().as_bytes()).unwrap(), r);

    let b_pake = STANDARD.encode([&b"B"[..], &[7; 32]].concat());
    let a_pake = STANDARD.encode([&b"A"[..], &[7; 32]].concat());
    let hex = "00".repeat(32);
    let cases: Vec<(String, &str)> = vec![
        (r#"{"status":"accepted","sealed":"YWdl"}"#.into(), "v"),
        (r#"{"v":1,"status":"accepted","sealed":"YWdl"}"#.into(), "v"),
        (r#"{"v":2,"status":"maybe"}"#.into(), "status"),
        (r#"{"v":2}"#.into(), "status"),
        (r#"{"v":2,"status":"accepted"}"#.into(), "sealed"),
        (r#"{"v":2,"status":"accepted","sealed":"***"}"#.into(), "sealed"),
        (r#"{"v":2,"status":"accepted","sealed":""}"#.into(), "sealed"),
        (r#"{"v":2,"status":"accepted","sealed":"YWdl","reason":"x"}"#.into(), "reason"),
        (r#"{"v":2,"status":"rejected"}"#.into(), "reason"),
        (r#"{"v":2,"status":"rejected","reason":"a\u001bb"}"#.into(), "reason"),
        (r#"{"v":2,"status":"rejected","reason":"x","more":1}"#.into(), "more"),
        (format!(r#"{{"v":2,"status":"challenge","confirm":"{hex}"}}"#), "pake"),
        (format!(r#"{{"v":2,"status":"challenge","pake":"{b_pake}"}}"#), "confirm"),
        (format!(r#"{{"v":2,"status":"challenge","pake":"{a_pake}","confirm":"{hex}"}}"#), "pake"),
        (format!(r#"{{"v":2,"status":"challenge","pake":"{b_pake}","confirm":"{}"}}"#, "0".repeat(63)), "confirm"),
        (format!(r#"{{"v":2,"status":"challenge","pake":"{b_pake}","confirm":"{hex}","sealed":"YWdl"}}"#), "sealed"),
        ("[]".into(), "payload"),
    ];
    for (payload, field) in cases {
        assert_eq!(rejected_field(parse_response(payload.as_bytes())), field, "{payload}");
    }
}

/// The whole exchange with the right code and the pinned hub: both sides agree, the device's
/// confirm verifies, and the credentials open on the device.
#[test]
fn right_code_pairs() {
    let (dev, payload) = device(CODE);
    let req = request_of(&payload);
    let (hub, challenge) = HubExchange::start(&req, CODE, FP).unwrap();
    let (pake, hub_confirm) = challenge_of(&parse_response(challenge.to_json().as_bytes()).unwrap());
    // The device pinned FP; an uppercase spelling of the same fingerprint is the same hub.
    let (opened, confirm) = dev.finish(&pake, &hub_confirm, &FP.to_uppercase()).expect("right code pairs");
    assert!(hub.verify(&confirm_of(&confirm)));
    let c = creds();
    let accepted = hub.accept(&c);
    let sealed = match parse_response(accepted.to_json().as_bytes()).unwrap() {
        Response::Accepted { sealed } => sealed,
        other => panic!("{other:?}"),
    };
    assert!(!sealed.contains(&c.password));
    assert!(!accepted.to_json().contains(&c.password));
    assert_eq!(opened.unseal(&sealed).unwrap(), c);
}

#[test]
fn wrong_code_aborts_on_the_device_and_fails_on_the_hub() {
    for wrong in ["12345679", "00000000", "87654321"] {
        let (dev, payload) = device(CODE);
        let req = request_of(&payload);
        let (hub, challenge) = HubExchange::start(&req, wrong, FP).unwrap();
        let (pake, hub_confirm) = challenge_of(&challenge);
        let abort = dev.finish(&pake, &hub_confirm, FP).expect_err("a wrong code must not pair");
        assert_eq!(abort, br#"{"v":2,"abort":"confirm mismatch"}"#);
        assert_eq!(parse_device_message(&abort).unwrap(), DeviceMessage::Abort("confirm mismatch".into()));

        // Even a device that ignored the mismatch and confirmed anyway is refused: its key
        // differs from the hub's.
        let (dev, payload) = device(CODE);
        let (hub2, challenge) = HubExchange::start(&request_of(&payload), wrong, FP).unwrap();
        let (pake, _) = challenge_of(&challenge);
        let forced = dev.confirm_ignoring_hub(&pake, FP).unwrap();
        assert!(!hub2.verify(&forced));
        assert!(!hub.verify(&forced));
        assert!(!hub.verify(&[0; 32]));
        assert!(!hub.verify(&hub_confirm), "the hub's own confirm reflected back is not the device's");
    }
    let (_, payload) = device(CODE);
    let e = HubExchange::start(&request_of(&payload), "1234", FP).unwrap_err();
    assert_eq!(e.field(), "setup_code");
}

/// A hub with another certificate (an impostor advertising itself over mDNS) that knows the
/// right code still cannot pass: B's identity is the fingerprint the device pinned.
#[test]
fn impostor_hub_is_refused_by_the_device() {
    let (dev, payload) = device(CODE);
    let (hub, challenge) = HubExchange::start(&request_of(&payload), CODE, OTHER_FP).unwrap();
    let (pake, hub_confirm) = challenge_of(&challenge);
    let abort = dev.finish(&pake, &hub_confirm, FP).expect_err("an impostor hub must not pair");
    assert_eq!(abort, br#"{"v":2,"abort":"confirm mismatch"}"#);

    let (dev, payload) = device(CODE);
    let (_, challenge) = HubExchange::start(&request_of(&payload), CODE, OTHER_FP).unwrap();
    let forced = dev.confirm_ignoring_hub(&challenge_of(&challenge).0, FP).unwrap();
    assert!(!hub.verify(&forced));
}

#[test]
fn a_confirm_from_one_exchange_does_not_verify_another() {
    let (dev1, p1) = device(CODE);
    let (dev2, p2) = device(CODE);
    let (hub1, c1) = HubExchange::start(&request_of(&p1), CODE, FP).unwrap();
    let (hub2, c2) = HubExchange::start(&request_of(&p2), CODE, FP).unwrap();
    let (pake1, conf1) = challenge_of(&c1);
    let (pake2, conf2) = challenge_of(&c2);
    assert_ne!(conf1, conf2);
    let (_, confirm1) = dev1.finish(&pake1, &conf1, FP).unwrap();
    let confirm1 = confirm_of(&confirm1);
    assert!(hub1.verify(&confirm1));
    assert!(!hub2.verify(&confirm1), "a replayed confirm is useless to another exchange");
    // Nor does one hub's challenge finish another exchange of the same device and code.
    assert!(dev2.finish(&pake1, &conf1, FP).is_err());
    let (dev3, p3) = device(CODE);
    let (_, c3) = HubExchange::start(&request_of(&p3), CODE, FP).unwrap();
    assert!(dev3.finish(&pake2, &challenge_of(&c3).1, FP).is_err());
}

#[test]
fn sealed_credentials_open_only_with_their_exchange() {
    let pair = || {
        let (dev, payload) = device(CODE);
        let (hub, challenge) = HubExchange::start(&request_of(&payload), CODE, FP).unwrap();
        let (pake, conf) = challenge_of(&challenge);
        let (opened, confirm) = dev.finish(&pake, &conf, FP).unwrap();
        assert!(hub.verify(&confirm_of(&confirm)));
        (hub, opened)
    };
    let sealed_of = |r: Response| match r {
        Response::Accepted { sealed } => sealed,
        other => panic!("{other:?}"),
    };
    let c = creds();
    let (hub1, _opened1) = pair();
    let (_, opened2) = pair();
    let sealed = sealed_of(hub1.accept(&c));
    let e = opened2.unseal(&sealed).unwrap_err();
    assert_eq!(e.field(), "sealed");

    let (hub, opened) = pair();
    let mut bytes = STANDARD.decode(sealed_of(hub.accept(&c))).unwrap();
    bytes[3] ^= 1;
    assert_eq!(opened.unseal(&STANDARD.encode(&bytes)).unwrap_err().field(), "sealed", "tampered");

    for bad in ["not base64!", "", "aGVsbG8="] {
        let (_, opened) = pair();
        assert_eq!(opened.unseal(bad).unwrap_err().field(), "sealed");
    }
    let (_, opened) = pair();
    assert_eq!(opened.unseal(&"A".repeat(MAX_PAYLOAD + 4)).unwrap_err().field(), "sealed");

    // Credentials for another device, or junk, sealed with the right key are refused too.
    let (hub, opened) = pair();
    let other = Credentials { username: "cam-02".into(), password: new_password() };
    let e = opened.unseal(&sealed_of(hub.accept(&other))).unwrap_err();
    assert!(e.reason().contains("username"), "{e}");
    let (hub, opened) = pair();
    let empty = Credentials { username: ID.into(), password: String::new() };
    let e = opened.unseal(&sealed_of(hub.accept(&empty))).unwrap_err();
    assert!(e.reason().contains("password"), "{e}");
}

#[test]
fn hub_refuses_a_pake_that_is_not_a_point() {
    let (_, payload) = device(CODE);
    let req = request_of(&payload);
    // Some y coordinates have no point on the curve; at least one of these must be refused,
    // and none may panic.
    let mut refused = 0;
    for y in 0u8..=255 {
        let mut pake = vec![b'A'; 33];
        pake[1..].fill(0);
        pake[1] = y;
        pake[32] = 0x7f;
        let bad = Request { pake, ..req.clone() };
        if let Err(e) = HubExchange::start(&bad, CODE, FP) {
            assert_eq!(e.field(), "pake");
            refused += 1;
        }
    }
    assert!(refused > 0);
}

/// The property v1 lacked (SPEC "Why v2"): a request seen by anyone (an impostor hub, a
/// copy of a log or database) lets nobody test a guessed setup code offline.
///
/// Reasoning: the request's only fields are ids and text the device chose plus `pake`, side
/// A's SPAKE2 message X = x·G + pw·M for a secret random scalar x. For every password pw'
/// there is an x' with X = x'·G + pw'·M, so X is a uniformly random point whatever the code
/// is, and carries no information about it. Consequently running side B with any guess
/// against X always succeeds and yields a well-formed challenge; the keys it derives differ
/// per guess, but there is nothing in the request to check them against (no MAC, no hash,
/// no ciphertext under the code). What tells a right guess from a wrong one is the device's
/// answer to the challenge: its confirm comes only for the right code, and each challenge
/// costs one online exchange with the device, which the hub's lock-out counts.
///
/// The test checks that chain: (1) the request's JSON keys are exactly the ids/text and
/// `pake`, and `pake` is just a side-A group element (33 bytes); (2) `HubExchange::start`
/// with the right code and with many wrong guesses all succeed with well-formed challenges
/// that round-trip through the parser, with a different confirm each (no guess stands out,
/// e.g. by failing or by a shape only the right one has); (3) only the device, finishing
/// the one exchange, separates the right guess from the wrong ones.
#[test]
fn request_carries_nothing_that_tests_a_guessed_code() {
    let (_, payload) = device(CODE);
    let v: Value = serde_json::from_slice(&payload).unwrap();
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["v", "device_id", "kind", "model", "firmware", "pake"]));
    for k in ["device_id", "kind", "model", "firmware"] {
        assert!(!v[k].as_str().unwrap().contains(CODE), "{k} does not carry the code");
    }
    assert!(!String::from_utf8_lossy(&payload).contains(CODE));
    let req = request_of(&payload);
    assert_eq!(req.pake.len(), 33, "one side byte and one compressed point, nothing else");
    assert_eq!(req.pake[0], b'A');

    let mut guesses: Vec<String> = (0..64u32).map(|i| format!("{:08}", i * 1_562_499 + 7)).collect();
    guesses.retain(|g| g != CODE);
    guesses.insert(guesses.len() / 2, CODE.to_string());
    let mut confirms = BTreeSet::new();
    for g in &guesses {
        let (_, challenge) = HubExchange::start(&req, g, FP).expect("every guess runs: nothing in the request refuses it");
        let text = challenge.to_json();
        assert_eq!(parse_response(text.as_bytes()).unwrap(), challenge);
        let (pake, confirm) = challenge_of(&challenge);
        assert_eq!((pake.len(), pake[0]), (33, b'B'));
        confirms.insert(confirm);
    }
    assert_eq!(confirms.len(), guesses.len(), "each guess gives its own key; none is singled out");

    // Only the device tells: a fresh request, one exchange per guess against it.
    let mut paired = Vec::new();
    for g in &guesses {
        let (dev, payload) = device(CODE);
        let (hub, challenge) = HubExchange::start(&request_of(&payload), g, FP).unwrap();
        let (pake, conf) = challenge_of(&challenge);
        if let Ok((_, confirm)) = dev.finish(&pake, &conf, FP) {
            assert!(hub.verify(&confirm_of(&confirm)));
            paired.push(g.clone());
        }
    }
    assert_eq!(paired, vec![CODE.to_string()]);
}

#[test]
fn configs() {
    let c = parse_config(
        br#"{"rtsp_url":"rtsp://u:p@10.0.0.5:8554/main","substream_url":"rtsp://10.0.0.5:8554/sub","name":"Porch"}"#,
    )
    .unwrap();
    assert_eq!(c.rtsp_url, "rtsp://u:p@10.0.0.5:8554/main");
    assert_eq!(c.substream_url.as_deref(), Some("rtsp://10.0.0.5:8554/sub"));
    assert_eq!(c.name.as_deref(), Some("Porch"));
    assert_eq!(parse_config(&c.to_json()).unwrap(), c);
    let minimal = parse_config(br#"{"rtsp_url":"RTSPS://cam.local/x","substream_url":null}"#).unwrap();
    assert_eq!(minimal, DeviceConfig { rtsp_url: "RTSPS://cam.local/x".into(), substream_url: None, name: None });
    assert_eq!(std::str::from_utf8(&minimal.to_json()).unwrap(), r#"{"rtsp_url":"RTSPS://cam.local/x"}"#);

    let long = format!("rtsp://h/{}", "a".repeat(510));
    let cases: Vec<(String, &str)> = vec![
        (r#"{}"#.into(), "rtsp_url"),
        (r#"{"rtsp_url":"http://h/"}"#.into(), "rtsp_url"),
        (r#"{"rtsp_url":"rtsp://"}"#.into(), "rtsp_url"),
        (r#"{"rtsp_url":"rtsp:///x"}"#.into(), "rtsp_url"),
        (r#"{"rtsp_url":"rtsp://h/a b"}"#.into(), "rtsp_url"),
        (format!(r#"{{"rtsp_url":"{long}"}}"#), "rtsp_url"),
        (r#"{"rtsp_url":"rtsp://h/","substream_url":"file:///etc/passwd"}"#.into(), "substream_url"),
        (r#"{"rtsp_url":"rtsp://h/","substream_url":5}"#.into(), "substream_url"),
        (r#"{"rtsp_url":"rtsp://h/","name":" "}"#.into(), "name"),
        (format!(r#"{{"rtsp_url":"rtsp://h/","name":"{}"}}"#, "n".repeat(65)), "name"),
        (r#"{"rtsp_url":"rtsp://h/","name":"a\tb"}"#.into(), "name"),
        (r#"{"rtsp_url":"rtsp://h/","wifi":"x"}"#.into(), "wifi"),
    ];
    for (payload, field) in cases {
        assert_eq!(rejected_field(parse_config(payload.as_bytes())), field, "{payload}");
    }
}

#[test]
fn states() {
    let s = parse_state(br#"{"firmware":"1","uptime_s":5,"a":{"b":{"c":[1]}}}"#).unwrap();
    assert_eq!(s["uptime_s"], json!(5));
    assert!(parse_state(br#"{"a":{"b":{"c":{"d":1}}}}"#).is_ok(), "four levels are fine");
    assert_eq!(rejected_field(parse_state(br#"{"a":{"b":{"c":{"d":{"e":1}}}}}"#)), "a");
    assert_eq!(rejected_field(parse_state(br#"{"a":[[[[1]]]]}"#)), "a");
    assert_eq!(rejected_field(parse_state(b"[1]")), "payload");
    assert_eq!(rejected_field(parse_state(b"\"online\"")), "payload");
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_PAYLOAD));
    assert_eq!(rejected_field(parse_state(big.as_bytes())), "payload");
    assert!(parse_state(b"{}").unwrap().is_empty());
}

#[test]
fn availability() {
    assert_eq!(parse_availability(b"online"), Ok(true));
    assert_eq!(parse_availability(b"offline"), Ok(false));
    for bad in [&b"Online"[..], b"online\n", b"", b"\xff", b"1"] {
        assert_eq!(rejected_field(parse_availability(bad)), "availability");
    }
}
