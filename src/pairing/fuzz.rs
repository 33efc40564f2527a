//! Property tests standing in for a fuzzer: the parsers take bytes from the network, so no
//! input may make them panic, and a request that parses must be one that could have been sent.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

const CODE: &str = "87654321";
const FP: &str = "aa00000000000000000000000000000000000000000000000000000000000000";
const ID: &str = "cam-7";

/// A finished device side, for `unseal` to be fed junk.
fn opened() -> Opened {
    let (dev, payload) = DeviceExchange::start(ID, "camera", "m", "f", CODE);
    let Ok(DeviceMessage::Request(req)) = parse_device_message(&payload) else { panic!("own request parses") };
    let (_, challenge) = HubExchange::start(&req, CODE, FP).unwrap();
    let Response::Challenge { pake, confirm } = challenge else { panic!("a challenge") };
    dev.finish(&pake, &confirm, FP).unwrap().0
}

/// Runs every parser over `bytes`; each must return, never panic. What parses must be
/// internally valid: written out again, it reads back the same; and what the exchange is
/// handed from a parsed message must not make it panic either.
fn all_parsers(bytes: &[u8]) {
    if let Ok(m) = parse_device_message(bytes) {
        assert_eq!(parse_device_message(&m.to_json()).as_ref(), Ok(&m));
        if let DeviceMessage::Request(req) = &m {
            let _ = HubExchange::start(req, CODE, FP);
        }
    }
    if let Ok(r) = parse_response(bytes) {
        assert_eq!(parse_response(r.to_json().as_bytes()).as_ref(), Ok(&r));
        if let Response::Challenge { pake, confirm } = &r {
            let (dev, _) = DeviceExchange::start(ID, "camera", "m", "f", CODE);
            assert!(dev.finish(pake, confirm, FP).is_err(), "a challenge from nowhere never pairs");
        }
    }
    if let Ok(c) = parse_config(bytes) {
        assert_eq!(parse_config(&c.to_json()).as_ref(), Ok(&c));
    }
    let _ = parse_state(bytes);
    let _ = parse_availability(bytes);
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z0-9 :/@.\\-]{0,40}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Mostly the protocol's own field names, so the parsers get past the unknown-field check.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "v",
            "device_id",
            "kind",
            "model",
            "firmware",
            "pake",
            "confirm",
            "abort",
            "status",
            "sealed",
            "reason",
            "rtsp_url",
            "substream_url",
            "name",
            "username",
            "password",
        ])
        .prop_map(String::from),
        "[a-z_]{1,10}",
    ]
}

fn json_object() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::btree_map(key(), json_value(), 0..10).prop_map(|m| {
        let obj: Map<String, Value> = m.into_iter().collect();
        serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![prop::sample::select(b"\"\\{}[],: 01aAzZ-._e\x00\x7f".to_vec()), Just(0xff_u8), any::<u8>(),]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), interesting_byte()).prop_map(|(i, b)| Mutation::Replace(i.index(usize::MAX), b)),
        (any::<prop::sample::Index>(), interesting_byte()).prop_map(|(i, b)| Mutation::Insert(i.index(usize::MAX), b)),
        any::<prop::sample::Index>().prop_map(|i| Mutation::Delete(i.index(usize::MAX))),
    ]
}

/// Applies `m` to `bytes`; returns the position it touched.
fn apply(bytes: &mut Vec<u8>, m: &Mutation) -> usize {
    match *m {
        Mutation::Replace(i, b) => {
            let i = i % bytes.len();
            bytes[i] = b;
            i
        }
        Mutation::Insert(i, b) => {
            let i = i % (bytes.len() + 1);
            bytes.insert(i, b);
            i
        }
        Mutation::Delete(i) => {
            let i = i % bytes.len();
            bytes.remove(i);
            i
        }
    }
}

/// Byte range of the value of string field `name` in `json`, quotes excluded, end inclusive
/// (an insertion just before the closing quote lands inside the value).
fn value_span(json: &[u8], name: &str) -> std::ops::RangeInclusive<usize> {
    let needle = format!("\"{name}\":\"");
    let text = std::str::from_utf8(json).unwrap();
    let start = text.find(&needle).unwrap() + needle.len();
    let len = text[start..].find('"').unwrap();
    start..=start + len
}

/// The fields in which `a` and `b` differ.
fn differing_fields(a: &Request, b: &Request) -> Vec<&'static str> {
    let pairs: [(&'static str, bool); 5] = [
        ("device_id", a.device_id != b.device_id),
        ("kind", a.kind != b.kind),
        ("model", a.model != b.model),
        ("firmware", a.firmware != b.firmware),
        ("pake", a.pake != b.pake),
    ];
    pairs.into_iter().filter(|(_, differs)| *differs).map(|(name, _)| name).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..5000)) {
        all_parsers(&bytes);
    }

    #[test]
    fn jsonish_text_never_panics(text in "[{}\\[\\]\":,0-9a-z .eE+\\-\\\\]{0,300}") {
        all_parsers(text.as_bytes());
    }

    #[test]
    fn json_objects_never_panic(bytes in json_object()) {
        all_parsers(&bytes);
    }

    #[test]
    fn huge_nesting_never_panics(depth in 1usize..3000) {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        all_parsers(text.as_bytes());
        let text = format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
        all_parsers(text.as_bytes());
    }

    #[test]
    fn arbitrary_text_never_unseals(text in any::<String>()) {
        prop_assert!(opened().unseal(&text).is_err());
    }

    /// A mutated request is refused, or reads as the original, or differs only in the field
    /// whose value the mutation hit; and a changed A message never pairs: the hub either
    /// refuses it or derives keys the device does not share.
    #[test]
    fn mutated_requests(m in mutation()) {
        let (dev, original_bytes) = DeviceExchange::start(ID, "camera", "model-x", "1.2.3", CODE);
        let Ok(DeviceMessage::Request(original)) = parse_device_message(&original_bytes) else { panic!("own request parses") };
        let mut bytes = original_bytes.clone();
        let at = apply(&mut bytes, &m);
        all_parsers(&bytes);
        if let Ok(DeviceMessage::Request(got)) = parse_device_message(&bytes) {
            for field in differing_fields(&original, &got) {
                let span = value_span(&original_bytes, field);
                prop_assert!(span.contains(&at), "{field} changed by a mutation at {at} outside {span:?}");
            }
            let changed = got.pake != original.pake || got.device_id != original.device_id;
            if let (true, Ok((_, Response::Challenge { pake, confirm }))) = (changed, HubExchange::start(&got, CODE, FP)) {
                prop_assert!(dev.finish(&pake, &confirm, FP).is_err());
            }
        }
    }

    /// A mutated challenge never finishes unless it reads as the original; a mutated
    /// accepted answer never opens to other credentials; mutated configs never panic.
    #[test]
    fn mutated_responses_and_configs(m in mutation()) {
        let (dev, payload) = DeviceExchange::start(ID, "camera", "m", "f", CODE);
        let Ok(DeviceMessage::Request(req)) = parse_device_message(&payload) else { panic!("own request parses") };
        let (_, challenge) = HubExchange::start(&req, CODE, FP).unwrap();
        let mut bytes = challenge.to_json().into_bytes();
        apply(&mut bytes, &m);
        all_parsers(&bytes);
        let Response::Challenge { pake, confirm } = challenge else { panic!("a challenge") };
        if let Ok(Response::Challenge { pake: p, confirm: c }) = parse_response(&bytes)
            && (&p, &c) != (&pake, &confirm)
        {
            prop_assert!(dev.finish(&p, &c, FP).is_err(), "a changed challenge never pairs");
        }

        let (dev, payload) = DeviceExchange::start(ID, "camera", "m", "f", CODE);
        let Ok(DeviceMessage::Request(req)) = parse_device_message(&payload) else { panic!("own request parses") };
        let (hub, challenge) = HubExchange::start(&req, CODE, FP).unwrap();
        let Response::Challenge { pake, confirm } = challenge else { panic!("a challenge") };
        let opened = dev.finish(&pake, &confirm, FP).unwrap().0;
        let creds = Credentials { username: ID.into(), password: new_password() };
        let mut bytes = hub.accept(&creds).to_json().into_bytes();
        apply(&mut bytes, &m);
        all_parsers(&bytes);
        if let Ok(Response::Accepted { sealed }) = parse_response(&bytes) {
            // Tampered ciphertext must not open to other credentials.
            if let Ok(got) = opened.unseal(&sealed) {
                prop_assert_eq!(got, creds);
            }
        }
        let config = DeviceConfig {
            rtsp_url: "rtsp://10.0.0.2:8554/main".into(),
            substream_url: Some("rtsp://10.0.0.2:8554/sub".into()),
            name: Some("Porch".into()),
        };
        let mut bytes = config.to_json();
        apply(&mut bytes, &m);
        all_parsers(&bytes);
    }
}
