//! Attribute values as text plus a type code: queryable by key in SQL, and lossless.
//!
//! In storage, attributes are a `Map<Utf8, Utf8>` (key → the value's text), so that
//! `attributes['http.route'] = '/api'` reads naturally and numbers compare after a cast, plus a
//! positional list of type codes, one per entry, left empty when every value is a string (the common
//! case costs nothing). Together they give back exactly the OTLP `AnyValue` that came in:
//!
//! | type | text |
//! |---|---|
//! | string | the string |
//! | bool | `true` / `false` |
//! | int | decimal |
//! | double | shortest text that parses back to the same number (`1e300`, `NaN`, `inf`, `-0.0`) |
//! | bytes | lowercase hex |
//! | array, kvlist | OTLP/JSON, or the protobuf in hex when JSON cannot hold it exactly (NaN inside) |
//! | empty value / no value | empty text |
//!
//! NaN payload bits are not kept (every NaN reads back as the canonical NaN).

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value};
use prost::Message;

/// What kind of value an attribute's text holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AttrType {
    Str = 0,
    Bool = 1,
    Int = 2,
    Double = 3,
    Bytes = 4,
    ArrayJson = 5,
    KvlistJson = 6,
    /// An `AnyValue` with no value set.
    Empty = 7,
    /// A `KeyValue` without an `AnyValue` at all.
    Missing = 8,
    ArrayProto = 9,
    KvlistProto = 10,
    /// A string-table index (profiles).
    StrIndex = 11,
}

impl AttrType {
    pub fn from_code(c: u8) -> Option<AttrType> {
        use AttrType::*;
        [Str, Bool, Int, Double, Bytes, ArrayJson, KvlistJson, Empty, Missing, ArrayProto, KvlistProto, StrIndex]
            .into_iter()
            .find(|t| *t as u8 == c)
    }
}

/// The text and type of one value.
pub fn encode_value(v: Option<&AnyValue>) -> (String, AttrType) {
    let mut text = String::new();
    let t = write_value(v, &mut text);
    (text, t)
}

/// Writes the text of one value to `out` and returns its type: the conversion to Arrow writes each
/// value straight into the column's buffer, without a string of its own in between.
pub fn write_value<W: std::fmt::Write>(v: Option<&AnyValue>, out: &mut W) -> AttrType {
    let Some(v) = v else { return AttrType::Missing };
    // Writing to a `String` or to an Arrow string builder cannot fail; the result says nothing.
    let (_, t) = match &v.value {
        None => (Ok(()), AttrType::Empty),
        Some(Value::StringValue(s)) => (out.write_str(s), AttrType::Str),
        Some(Value::BoolValue(b)) => (write!(out, "{b}"), AttrType::Bool),
        Some(Value::IntValue(i)) => (write!(out, "{i}"), AttrType::Int),
        Some(Value::DoubleValue(d)) => (write!(out, "{d:?}"), AttrType::Double),
        Some(Value::BytesValue(b)) => (out.write_str(&hex::encode(b)), AttrType::Bytes),
        Some(Value::StringValueStrindex(i)) => (write!(out, "{i}"), AttrType::StrIndex),
        Some(Value::ArrayValue(a)) => match serde_json::to_string(a) {
            Ok(j) if serde_json::from_str::<ArrayValue>(&j).is_ok_and(|back| same_array(&back, a)) => {
                (out.write_str(&j), AttrType::ArrayJson)
            }
            _ => (out.write_str(&hex::encode(a.encode_to_vec())), AttrType::ArrayProto),
        },
        Some(Value::KvlistValue(l)) => match serde_json::to_string(l) {
            Ok(j) if serde_json::from_str::<KeyValueList>(&j).is_ok_and(|back| same_kvlist(&back, l)) => {
                (out.write_str(&j), AttrType::KvlistJson)
            }
            _ => (out.write_str(&hex::encode(l.encode_to_vec())), AttrType::KvlistProto),
        },
    };
    t
}

/// The value a text and type stand for.
pub fn decode_value(text: &str, t: AttrType) -> Result<Option<AnyValue>, String> {
    let bad = |what: &str| format!("attribute text {text:?} is not a valid {what}");
    let v = match t {
        AttrType::Missing => return Ok(None),
        AttrType::Empty => None,
        AttrType::Str => Some(Value::StringValue(text.to_string())),
        AttrType::Bool => Some(Value::BoolValue(text.parse().map_err(|_| bad("bool"))?)),
        AttrType::Int => Some(Value::IntValue(text.parse().map_err(|_| bad("int"))?)),
        AttrType::Double => Some(Value::DoubleValue(text.parse().map_err(|_| bad("double"))?)),
        AttrType::Bytes => Some(Value::BytesValue(hex::decode(text).map_err(|_| bad("hex bytes"))?)),
        AttrType::StrIndex => Some(Value::StringValueStrindex(text.parse().map_err(|_| bad("string index"))?)),
        AttrType::ArrayJson => Some(Value::ArrayValue(serde_json::from_str(text).map_err(|_| bad("JSON array"))?)),
        AttrType::KvlistJson => Some(Value::KvlistValue(serde_json::from_str(text).map_err(|_| bad("JSON kvlist"))?)),
        AttrType::ArrayProto => {
            let b = hex::decode(text).map_err(|_| bad("hex protobuf"))?;
            Some(Value::ArrayValue(ArrayValue::decode(&b[..]).map_err(|_| bad("protobuf array"))?))
        }
        AttrType::KvlistProto => {
            let b = hex::decode(text).map_err(|_| bad("hex protobuf"))?;
            Some(Value::KvlistValue(KeyValueList::decode(&b[..]).map_err(|_| bad("protobuf kvlist"))?))
        }
    };
    Ok(Some(AnyValue { value: v }))
}

/// Whether only a string attribute can have `text` as its text: no other type is written so (see the
/// table above: not empty, not `true`/`false`, not a number, not lowercase hex, not JSON). Then
/// `attributes['k'] = 'text'` can hold only where a string attribute `k` is `text`, which the full-text
/// index holds as the term `k=text`.
pub fn only_a_string_reads_as(text: &str) -> bool {
    let hex = text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    !(hex
        || text == "true"
        || text == "false"
        || text.parse::<f64>().is_ok()
        || text.starts_with('{')
        || text.starts_with('['))
}

/// Attributes as (key, text) entries and their type codes — empty when every value is a string.
pub fn encode_attributes(attrs: &[KeyValue]) -> (Vec<(String, String)>, Vec<u8>) {
    let mut entries = Vec::with_capacity(attrs.len());
    let mut types = Vec::with_capacity(attrs.len());
    for kv in attrs {
        let (text, t) = encode_value(kv.value.as_ref());
        entries.push((kv.key.clone(), text));
        types.push(t as u8);
    }
    if types.iter().all(|t| *t == AttrType::Str as u8) {
        types.clear();
    }
    (entries, types)
}

/// The attributes that `encode_attributes` turned into `entries` and `types`.
pub fn decode_attributes(entries: &[(String, String)], types: &[u8]) -> Result<Vec<KeyValue>, String> {
    if !types.is_empty() && types.len() != entries.len() {
        return Err(format!("{} attribute type codes for {} attributes", types.len(), entries.len()));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, (k, text))| {
            let code = types.get(i).copied().unwrap_or(AttrType::Str as u8);
            let t = AttrType::from_code(code).ok_or_else(|| format!("unknown attribute type code {code}"))?;
            Ok(KeyValue { key: k.clone(), value: decode_value(text, t)?, ..Default::default() })
        })
        .collect()
}

/// Exact equality that treats NaN as equal to NaN (JSON turns NaN into null, which must be caught).
fn same_value(a: &Option<Value>, b: &Option<Value>) -> bool {
    match (a, b) {
        (Some(Value::DoubleValue(x)), Some(Value::DoubleValue(y))) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Some(Value::ArrayValue(x)), Some(Value::ArrayValue(y))) => same_array(x, y),
        (Some(Value::KvlistValue(x)), Some(Value::KvlistValue(y))) => same_kvlist(x, y),
        (x, y) => x == y,
    }
}

fn same_any(a: &Option<AnyValue>, b: &Option<AnyValue>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => same_value(&x.value, &y.value),
        (None, None) => true,
        _ => false,
    }
}

fn same_array(a: &ArrayValue, b: &ArrayValue) -> bool {
    a.values.len() == b.values.len() && a.values.iter().zip(&b.values).all(|(x, y)| same_value(&x.value, &y.value))
}

fn same_kvlist(a: &KeyValueList, b: &KeyValueList) -> bool {
    a.values.len() == b.values.len()
        && a.values.iter().zip(&b.values).all(|(x, y)| x.key == y.key && same_any(&x.value, &y.value))
}

/// Generators for property tests of anything that carries attributes.
#[cfg(test)]
pub(crate) mod strategies {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value};
    use proptest::prelude::*;

    /// Doubles of every kind, with NaN only in its canonical form (payload bits are not kept).
    fn double() -> impl Strategy<Value = f64> {
        use prop::num::f64::{INFINITE, NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
        prop_oneof![POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO | INFINITE, Just(f64::NAN), Just(-0.0), Just(1e300)]
    }

    pub fn any_value() -> impl Strategy<Value = Option<Value>> {
        let leaf = prop_oneof![
            Just(None),
            ".*".prop_map(|s| Some(Value::StringValue(s))),
            any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
            any::<i64>().prop_map(|i| Some(Value::IntValue(i))),
            double().prop_map(|d| Some(Value::DoubleValue(d))),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(|b| Some(Value::BytesValue(b))),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|vs| {
                    Some(Value::ArrayValue(ArrayValue {
                        values: vs.into_iter().map(|value| AnyValue { value }).collect(),
                    }))
                }),
                prop::collection::vec(("[a-z.]{0,6}", inner), 0..4).prop_map(|kvs| {
                    Some(Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, value)| KeyValue { key, value: Some(AnyValue { value }), ..Default::default() })
                            .collect(),
                    }))
                }),
            ]
        })
    }

    /// Attribute lists, duplicate keys and missing values included.
    pub fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
        prop::collection::vec(("[a-z._]{0,8}", prop::option::of(any_value())), 0..5).prop_map(|kvs| {
            kvs.into_iter()
                .map(|(key, v)| KeyValue { key, value: v.map(|value| AnyValue { value }), ..Default::default() })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use super::strategies::any_value;

    #[test]
    fn texts_only_a_string_is_written_as() {
        for other in ["", "true", "false", "-12", "7", "1e300", "NaN", "inf", "-0.0", "00ff", "{\"values\":[]}", "[1]"]
        {
            assert!(!only_a_string_reads_as(other), "{other:?}");
        }
        for string in ["/api/cart", "GET", "True", "ABCDEF", "0x1f", "node-2", " 7"] {
            assert!(only_a_string_reads_as(string), "{string:?}");
        }
        let (missing, _) = encode_value(None);
        let (index, _) = encode_value(Some(&AnyValue { value: Some(Value::StringValueStrindex(42)) }));
        assert!(!only_a_string_reads_as(&missing) && !only_a_string_reads_as(&index));
    }

    proptest! {
        #[test]
        fn no_other_type_reads_as_what_only_a_string_reads_as(v in any_value()) {
            let (text, t) = encode_value(Some(&AnyValue { value: v }));
            if t != AttrType::Str {
                prop_assert!(!only_a_string_reads_as(&text), "{t:?} written as {text:?}");
            }
        }

        #[test]
        fn every_value_round_trips(v in any_value()) {
            let original = Some(AnyValue { value: v });
            let (text, t) = encode_value(original.as_ref());
            let back = decode_value(&text, t).unwrap();
            prop_assert!(same_any(&original, &back), "{original:?} -> {text:?} ({t:?}) -> {back:?}");
        }

        #[test]
        fn attribute_lists_round_trip(kvs in prop::collection::vec(("[a-z._]{0,8}", prop::option::of(any_value())), 0..8)) {
            let attrs: Vec<KeyValue> = kvs
                .into_iter()
                .map(|(key, v)| KeyValue { key, value: v.map(|value| AnyValue { value }), ..Default::default() })
                .collect();
            let (entries, types) = encode_attributes(&attrs);
            let back = decode_attributes(&entries, &types).unwrap();
            prop_assert_eq!(back.len(), attrs.len());
            for (a, b) in attrs.iter().zip(&back) {
                prop_assert!(a.key == b.key && same_any(&a.value, &b.value), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn text_is_what_sql_users_expect() {
        let v = |value| Some(AnyValue { value: Some(value) });
        assert_eq!(encode_value(v(Value::StringValue("/api".into())).as_ref()), ("/api".into(), AttrType::Str));
        assert_eq!(encode_value(v(Value::IntValue(200)).as_ref()), ("200".into(), AttrType::Int));
        assert_eq!(encode_value(v(Value::DoubleValue(0.25)).as_ref()), ("0.25".into(), AttrType::Double));
        assert_eq!(encode_value(v(Value::BoolValue(true)).as_ref()), ("true".into(), AttrType::Bool));
        assert_eq!(encode_value(v(Value::BytesValue(vec![0xab, 1])).as_ref()), ("ab01".into(), AttrType::Bytes));
        let arr =
            Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::StringValue("a".into())) }] });
        assert_eq!(encode_value(v(arr).as_ref()), (r#"{"values":[{"stringValue":"a"}]}"#.into(), AttrType::ArrayJson));
        let nan =
            Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::DoubleValue(f64::NAN)) }] });
        assert_eq!(encode_value(v(nan).as_ref()).1, AttrType::ArrayProto, "JSON cannot hold NaN: protobuf instead");
    }

    #[test]
    fn string_only_lists_carry_no_type_codes_and_bad_input_is_an_error() {
        let kv = |k: &str, s: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(Value::StringValue(s.into())) }),
            ..Default::default()
        };
        let (entries, types) = encode_attributes(&[kv("a", "1"), kv("b", "2")]);
        assert!(types.is_empty());
        assert_eq!(entries, vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
        assert!(decode_attributes(&entries, &[2]).unwrap_err().contains("1 attribute type codes for 2"));
        assert!(decode_value("x", AttrType::Int).unwrap_err().contains("not a valid int"));
        assert!(decode_attributes(&entries, &[99, 0]).unwrap_err().contains("unknown attribute type code 99"));
    }
}
