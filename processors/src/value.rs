//! OTLP attribute values and attribute lists as the Collector's processors see them: lookup by key,
//! insertion at the end, the Collector's text form of any value (`pcommon.Value.AsString`), and values
//! written in a component's YAML section.

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value};

/// The value of `key` (the first entry with that key, as pdata keeps keys unique).
pub fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| kv.value.as_ref().unwrap_or(&EMPTY))
}

static EMPTY: AnyValue = AnyValue { value: None };

/// The value of `key`, to change in place.
pub fn get_mut<'a>(attrs: &'a mut [KeyValue], key: &str) -> Option<&'a mut AnyValue> {
    attrs.iter_mut().find(|kv| kv.key == key).map(|kv| kv.value.get_or_insert_with(AnyValue::default))
}

/// Sets `key` to `value`: in place when the key exists, else appended.
pub fn put(attrs: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match get_mut(attrs, key) {
        Some(v) => *v = value,
        None => attrs.push(KeyValue { key: key.to_string(), value: Some(value), ..Default::default() }),
    }
}

/// Removes `key`; whether it was there.
pub fn remove(attrs: &mut Vec<KeyValue>, key: &str) -> bool {
    let before = attrs.len();
    attrs.retain(|kv| kv.key != key);
    attrs.len() != before
}

pub fn string(s: impl Into<String>) -> AnyValue {
    AnyValue { value: Some(Value::StringValue(s.into())) }
}

/// The value as text, as the Collector writes it (`pcommon.Value.AsString`): strings as they are,
/// numbers in decimal, bytes in base64, arrays and maps as JSON, an empty value as "".
pub fn as_string(v: &AnyValue) -> String {
    match &v.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => format_double(*d),
        Some(Value::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b),
        Some(Value::ArrayValue(_) | Value::KvlistValue(_)) => to_json(v).to_string(),
        Some(Value::StringValueStrindex(i)) => i.to_string(),
    }
}

/// A double as Go's `strconv.FormatFloat(d, 'f', -1, 64)` writes it: the shortest decimal that reads
/// back the same, never an exponent.
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        d.to_string()
    }
}

/// The value as plain JSON (maps as objects, arrays as arrays, bytes as base64 text).
pub fn to_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        None => J::Null,
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(format_double(*d)), J::Number)
        }
        Some(Value::BytesValue(b)) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Some(Value::ArrayValue(a)) => J::Array(a.values.iter().map(to_json).collect()),
        Some(Value::KvlistValue(m)) => {
            J::Object(m.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(J::Null, to_json))).collect())
        }
        Some(Value::StringValueStrindex(i)) => J::from(*i),
    }
}

/// A value from JSON (what `ParseJSON` and config values give): objects become maps, whole numbers ints.
pub fn from_json(j: &serde_json::Value) -> AnyValue {
    use serde_json::Value as J;
    let value = match j {
        J::Null => None,
        J::Bool(b) => Some(Value::BoolValue(*b)),
        J::Number(n) => Some(match n.as_i64() {
            Some(i) => Value::IntValue(i),
            None => Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        J::String(s) => Some(Value::StringValue(s.clone())),
        J::Array(a) => Some(Value::ArrayValue(ArrayValue { values: a.iter().map(from_json).collect() })),
        J::Object(m) => Some(Value::KvlistValue(KeyValueList {
            values: m
                .iter()
                .map(|(k, v)| KeyValue { key: k.clone(), value: Some(from_json(v)), ..Default::default() })
                .collect(),
        })),
    };
    AnyValue { value }
}

/// A value written in YAML (`value:` of an action, of a match): its YAML type decides the OTLP type, as
/// the Collector's `pcommon.Value.FromRaw` does. `None` for `null` (no value given).
pub fn from_yaml(y: &serde_yaml_ng::Value) -> Result<Option<AnyValue>, String> {
    use serde_yaml_ng::Value as Y;
    let value = match y {
        Y::Null => return Ok(None),
        Y::Bool(b) => Value::BoolValue(*b),
        Y::Number(n) => match n.as_i64() {
            Some(i) => Value::IntValue(i),
            None => Value::DoubleValue(n.as_f64().ok_or_else(|| format!("{n} does not fit a 64-bit number"))?),
        },
        Y::String(s) => Value::StringValue(s.clone()),
        Y::Sequence(items) => Value::ArrayValue(ArrayValue {
            values: items.iter().map(|i| Ok(from_yaml(i)?.unwrap_or_default())).collect::<Result<_, String>>()?,
        }),
        Y::Mapping(m) => Value::KvlistValue(KeyValueList {
            values: m
                .iter()
                .map(|(k, v)| {
                    let key = k.as_str().ok_or_else(|| format!("map key {k:?} is not text"))?.to_string();
                    Ok(KeyValue { key, value: Some(from_yaml(v)?.unwrap_or_default()), ..Default::default() })
                })
                .collect::<Result<_, String>>()?,
        }),
        Y::Tagged(t) => return from_yaml(&t.value),
    };
    Ok(Some(AnyValue { value: Some(value) }))
}

/// The value's type as the Collector names it (`Str`, `Int`, …), for messages.
pub fn type_name(v: &AnyValue) -> &'static str {
    match &v.value {
        None => "Empty",
        Some(Value::StringValue(_)) => "Str",
        Some(Value::BoolValue(_)) => "Bool",
        Some(Value::IntValue(_)) => "Int",
        Some(Value::DoubleValue(_)) => "Double",
        Some(Value::BytesValue(_)) => "Bytes",
        Some(Value::ArrayValue(_)) => "Slice",
        Some(Value::KvlistValue(_)) => "Map",
        Some(Value::StringValueStrindex(_)) => "Int",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(value: Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    #[test]
    fn text_form_is_the_collectors() {
        assert_eq!(as_string(&v(Value::DoubleValue(1.5))), "1.5");
        assert_eq!(as_string(&v(Value::DoubleValue(2.0))), "2");
        assert_eq!(as_string(&v(Value::DoubleValue(1e21))), "1000000000000000000000");
        assert_eq!(as_string(&v(Value::DoubleValue(f64::INFINITY))), "+Inf");
        assert_eq!(as_string(&v(Value::BytesValue(vec![1, 2, 3]))), "AQID");
        let map = from_json(&serde_json::json!({"a": 1, "b": [true, "x"]}));
        assert_eq!(as_string(&map), r#"{"a":1,"b":[true,"x"]}"#);
        assert_eq!(as_string(&AnyValue::default()), "");
    }

    #[test]
    fn yaml_values_keep_their_type() {
        let y: serde_yaml_ng::Value = serde_yaml_ng::from_str("[1, 2.5, true, x, {k: v}]").unwrap();
        let got = from_yaml(&y).unwrap().unwrap();
        assert_eq!(as_string(&got), r#"[1,2.5,true,"x",{"k":"v"}]"#);
        assert_eq!(from_yaml(&serde_yaml_ng::Value::Null).unwrap(), None);
    }

    #[test]
    fn put_replaces_in_place_and_appends_new_keys() {
        let mut attrs = Vec::new();
        put(&mut attrs, "a", string("1"));
        put(&mut attrs, "b", string("2"));
        put(&mut attrs, "a", string("3"));
        assert_eq!(
            attrs.iter().map(|kv| (kv.key.as_str(), as_string(kv.value.as_ref().unwrap()))).collect::<Vec<_>>(),
            [("a", "3".to_string()), ("b", "2".to_string())]
        );
        assert!(remove(&mut attrs, "a"));
        assert!(!remove(&mut attrs, "a"));
        assert_eq!(attrs.len(), 1);
    }
}
