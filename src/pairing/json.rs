//! A strict reader for the JSON objects of the protocol: size cap, UTF-8, exactly one object,
//! no duplicate keys; each getter names its field when the value is wrong, and
//! [`Fields::finish`] refuses any field nobody asked for.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::{MAX_PAYLOAD, Reject, VERSION, shown};

/// The fields of one JSON object, taken out one by one.
pub(super) struct Fields {
    map: BTreeMap<String, Value>,
}

impl Fields {
    /// Reads `bytes` as one JSON object with unique keys, at most [`MAX_PAYLOAD`] bytes.
    pub(super) fn parse(bytes: &[u8]) -> Result<Fields, Reject> {
        Ok(Fields { map: parse_object(bytes)? })
    }

    /// `v` must be present and be [`VERSION`].
    pub(super) fn version(&mut self) -> Result<(), Reject> {
        match self.map.remove("v") {
            Some(v) if v.as_u64() == Some(VERSION) => Ok(()),
            Some(v) => Err(Reject::new("v", format!("unsupported version {}", shown(&v.to_string())))),
            None => Err(missing("v")),
        }
    }

    /// Whether field `name` is there (present at all, whatever its value).
    pub(super) fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// A string field that must be there.
    pub(super) fn string(&mut self, name: &str) -> Result<String, Reject> {
        self.opt_string(name)?.ok_or_else(|| missing(name))
    }

    /// A string field that may be absent or `null`.
    pub(super) fn opt_string(&mut self, name: &str) -> Result<Option<String>, Reject> {
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(Reject::new(name, format!("expected a string, got {}", type_name(&other)))),
        }
    }

    /// Refuses the first field that was not taken.
    pub(super) fn finish(self) -> Result<(), Reject> {
        match self.map.into_keys().next() {
            None => Ok(()),
            Some(k) => Err(Reject::new(shown(&k), "unknown field")),
        }
    }
}

pub(super) fn missing(name: &str) -> Reject {
    Reject::new(name, "missing")
}

/// Checks the size and encoding, then reads exactly one JSON object with unique keys.
pub(super) fn parse_object(bytes: &[u8]) -> Result<BTreeMap<String, Value>, Reject> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(Reject::new("payload", format!("{} bytes, at most {MAX_PAYLOAD} allowed", bytes.len())));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| Reject::new("payload", "not UTF-8"))?;
    let obj: UniqueObject = serde_json::from_str(text).map_err(|e| Reject::new("payload", format!("not a JSON object: {e}")))?;
    Ok(obj.0)
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object whose keys are unique: a second `"nonce"` must not quietly win, or two
/// readers of the same bytes could disagree about what was asked.
struct UniqueObject(BTreeMap<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(UniqueObjectVisitor)
    }
}

struct UniqueObjectVisitor;

impl<'de> Visitor<'de> for UniqueObjectVisitor {
    type Value = UniqueObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
        let mut map = BTreeMap::new();
        while let Some((key, value)) = access.next_entry::<String, Value>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate field '{}'", shown(&key))));
            }
            map.insert(key, value);
        }
        Ok(UniqueObject(map))
    }
}
