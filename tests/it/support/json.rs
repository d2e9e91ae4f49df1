//! JSON for the tests (the access log's `json` format, `/status`): `serde_json` parses,
//! and `parse` also refuses an object that names a key twice, which `serde_json::Value`
//! would silently resolve to the last one (sidecar writing a field twice is a bug).

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Exactly one JSON value with no key repeated in any object.
pub fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str::<UniqueKeys>(text).map_err(|e| e.to_string())?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Walks a document and fails on the first object with a repeated key.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeys)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(A::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(UniqueKeys)
    }

    fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(UniqueKeys)
    }

    fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(UniqueKeys)
    }

    fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(UniqueKeys)
    }

    fn visit_str<E: Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(UniqueKeys)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(UniqueKeys)
    }
}

#[test]
fn parse_refuses_what_is_not_json_and_repeated_keys() {
    for (text, ok) in [
        (r#"{"a": [1, 2.5, "x", null, true, {"b": {}}]}"#, true),
        (r#"{"a": 1, "b": {"a": 2}}"#, true),
        (r#"{"a": 1, "a": 2}"#, false),
        (r#"[{"b": 1, "b": 1}]"#, false),
        (r#"{"a": 1} x"#, false),
        ("{\"a\": \"raw\u{1}control\"}", false),
        (r#"{'a': 1}"#, false),
    ] {
        assert_eq!(parse(text).is_ok(), ok, "{text}: {:?}", parse(text));
    }
}
