use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::*;

const CODE: &str = "12345678";
const HUB: &str = "hub-0123456789abcdef";

fn identity() -> age::x25519::Identity {
    age::x25519::Identity::generate()
}

/// A valid request as a JSON value, with the proof made for `CODE` and `HUB`.
fn valid_request(id: &age::x25519::Identity) -> Value {
    let (bytes, _) = build_request("cam-01", "camera", "homehub-camsim", "0.1.0", CODE, HUB, id);
    serde_json::from_slice(&bytes).unwrap()
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
fn request_round_trip_and_proof() {
    let id = identity();
    let (bytes, nonce) = build_request("cam-01", "camera", "homehub-camsim", "0.1.0", CODE, HUB, &id);
    assert!(bytes.len() <= MAX_PAYLOAD);
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.starts_with(r#"{"v":1,"device_id":"cam-01","kind":"camera","#), "{text}");
    let req = parse_request(&bytes).unwrap();
    assert_eq!(req.device_id, "cam-01");
    assert_eq!(req.kind, "camera");
    assert_eq!(req.model, "homehub-camsim");
    assert_eq!(req.firmware, "0.1.0");
    assert_eq!(req.nonce, nonce);
    assert_eq!(req.recipient, id.to_public().to_string());
    assert!(verify_proof(&req, CODE, HUB));
    assert!(!verify_proof(&req, "12345679", HUB));
    assert!(!verify_proof(&req, CODE, "hub-other"));
    let other = identity();
    let swapped = Request { recipient: other.to_public().to_string(), ..req.clone() };
    assert!(!verify_proof(&swapped, CODE, HUB), "the proof binds the recipient");

    let (again, nonce2) = build_request("cam-01", "camera", "m", "f", CODE, HUB, &id);
    assert_ne!(nonce, nonce2, "every request has a fresh nonce");
    assert!(verify_proof(&parse_request(&again).unwrap(), CODE, HUB));
}

#[test]
fn proof_known_answer() {
    let nonce: [u8; 16] = core::array::from_fn(|i| i as u8);
    let recipient = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq";
    // Computed with Python's hmac module: hmac.new(b"12345678", nonce + hub + recipient, sha256).
    let expected = "c3b4518f7c0ff2eb32b6a8b1cc5f0ceecaf84abfc76652f3234d19aad168fc59";
    assert_eq!(hex::encode(proof(CODE, &nonce, HUB, recipient)), expected);

    let mut mac = Hmac::<Sha256>::new_from_slice(b"12345678").unwrap();
    let mut msg = nonce.to_vec();
    msg.extend_from_slice(HUB.as_bytes());
    msg.extend_from_slice(recipient.as_bytes());
    mac.update(&msg);
    assert_eq!(hex::encode(mac.finalize().into_bytes()), expected);
}

#[test]
fn request_rejections_name_the_field() {
    let id = identity();
    let v = valid_request(&id);
    let recipient = v["recipient"].as_str().unwrap().to_string();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![b' '; MAX_PAYLOAD + 1], "payload"),
        (vec![0xff, 0xfe], "payload"),
        (b"not json".to_vec(), "payload"),
        (b"[1,2]".to_vec(), "payload"),
        (b"{\"v\":1} trailing".to_vec(), "payload"),
        (br#"{"v":1,"v":1}"#.to_vec(), "payload"),
        (without(v.clone(), "v"), "v"),
        (with(v.clone(), "v", json!(2)), "v"),
        (with(v.clone(), "v", json!("1")), "v"),
        (with(v.clone(), "v", json!(1.5)), "v"),
        (with(v.clone(), "extra", json!(1)), "extra"),
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
        (with(v.clone(), "nonce", json!("00".repeat(15))), "nonce"),
        (with(v.clone(), "nonce", json!("zz".repeat(16))), "nonce"),
        (with(v.clone(), "nonce", json!("00".repeat(17))), "nonce"),
        (with(v.clone(), "recipient", json!("age1xyz")), "recipient"),
        (with(v.clone(), "recipient", json!(recipient.to_uppercase())), "recipient"),
        (with(v.clone(), "recipient", json!("a".repeat(200))), "recipient"),
        (with(v.clone(), "recipient", json!(secret_key(&id))), "recipient"),
        (with(v.clone(), "proof", json!("00".repeat(31))), "proof"),
        (without(v.clone(), "proof"), "proof"),
    ];
    for (bytes, field) in cases {
        let got = rejected_field(parse_request(&bytes));
        assert_eq!(got, field, "payload {}", String::from_utf8_lossy(&bytes));
    }
    let dup = String::from_utf8(serde_json::to_vec(&v).unwrap()).unwrap().replacen("{", "{\"nonce\":\"x\",", 1);
    let e = parse_request(dup.as_bytes()).unwrap_err();
    assert!(e.reason().contains("duplicate field 'nonce'"), "{e}");
    assert!(parse_request(&serde_json::to_vec(&v).unwrap()).is_ok());
}

/// The secret key string, only so a test can send it where a recipient belongs.
fn secret_key(id: &age::x25519::Identity) -> String {
    use age::secrecy::ExposeSecret;
    id.to_string().expose_secret().to_string()
}

#[test]
fn kinds_beyond_the_three_named_are_tokens() {
    let v = valid_request(&identity());
    for kind in ["camera", "sensor", "other", "doorbell-2"] {
        assert_eq!(parse_request(&with(v.clone(), "kind", json!(kind))).unwrap().kind, kind);
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
fn seal_unseal_round_trip() {
    let id = identity();
    let creds = Credentials { username: "cam-01".into(), password: new_password() };
    let sealed = seal(&id.to_public().to_string(), &creds).unwrap();
    assert!(!sealed.contains(&creds.password));
    use base64::Engine;
    let file = base64::engine::general_purpose::STANDARD.decode(&sealed).unwrap();
    assert!(file.starts_with(b"age-encryption.org/v1"), "a binary age file");
    assert_eq!(unseal(&id, &sealed).unwrap(), creds);

    let e = unseal(&identity(), &sealed).unwrap_err();
    assert_eq!(e.field(), "sealed");
    assert_eq!(unseal(&id, "not base64!").unwrap_err().field(), "sealed");
    assert_eq!(unseal(&id, "aGVsbG8=").unwrap_err().field(), "sealed");
    let e = seal("age1nope", &creds).unwrap_err();
    assert!(e.message().starts_with("recipient: "), "{e}");
}

#[test]
fn unseal_refuses_sealed_junk() {
    let id = identity();
    let recipient = id.to_public();
    let file = age::encrypt(&recipient, br#"{"username":"u"}"#).unwrap();
    use base64::Engine;
    let sealed = base64::engine::general_purpose::STANDARD.encode(file);
    assert_eq!(unseal(&id, &sealed).unwrap_err().field(), "sealed");
    let file = age::encrypt(&recipient, br#"{"username":"","password":"p"}"#).unwrap();
    let sealed = base64::engine::general_purpose::STANDARD.encode(file);
    assert!(unseal(&id, &sealed).unwrap_err().reason().contains("username"));
}

#[test]
fn responses() {
    let a = Response::Accepted { sealed: "YWdl".into() };
    assert_eq!(a.to_json(), r#"{"v":1,"status":"accepted","sealed":"YWdl"}"#);
    assert_eq!(parse_response(a.to_json().as_bytes()).unwrap(), a);
    let r = Response::Rejected { reason: "wrong \"code\"".into() };
    assert_eq!(r.to_json(), r#"{"v":1,"status":"rejected","reason":"wrong \"code\""}"#);
    assert_eq!(parse_response(r.to_json().as_bytes()).unwrap(), r);

    let cases: &[(&str, &str)] = &[
        (r#"{"status":"accepted","sealed":"YWdl"}"#, "v"),
        (r#"{"v":1,"status":"maybe"}"#, "status"),
        (r#"{"v":1}"#, "status"),
        (r#"{"v":1,"status":"accepted"}"#, "sealed"),
        (r#"{"v":1,"status":"accepted","sealed":"***"}"#, "sealed"),
        (r#"{"v":1,"status":"accepted","sealed":""}"#, "sealed"),
        (r#"{"v":1,"status":"accepted","sealed":"YWdl","reason":"x"}"#, "reason"),
        (r#"{"v":1,"status":"rejected"}"#, "reason"),
        (r#"{"v":1,"status":"rejected","reason":"a\u001bb"}"#, "reason"),
        (r#"{"v":1,"status":"rejected","reason":"x","more":1}"#, "more"),
        ("[]", "payload"),
    ];
    for (payload, field) in cases {
        assert_eq!(rejected_field(parse_response(payload.as_bytes())), *field, "{payload}");
    }
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
