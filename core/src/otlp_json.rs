//! OTLP/JSON, decoded as leniently as the Collector decodes it.
//!
//! The generated types' serde implementation already follows the OTLP/JSON mapping (lowerCamelCase
//! keys, hex trace and span ids, 64-bit integers as strings or numbers, unknown fields ignored). The
//! Collector also accepts the proto's own snake_case field names and enum values by name
//! (`"kind": "SPAN_KIND_SERVER"`); a pass over the parsed tree rewrites those into the canonical form
//! before the typed decode. OTLP/JSON never uses user data as object keys (attributes are
//! `{"key": …, "value": …}` lists), so renaming every object key is safe.
//!
//! A key given twice in one object (`"resourceLogs"` twice, or `resource_logs` beside `resourceLogs`) is
//! refused, as protobuf's JSON mapping says: taking one of them would drop the other's data silently.

use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Decodes an OTLP/JSON message.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let Strict(mut tree) = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    if !tree.is_object() {
        return Err("invalid OTLP/JSON: the body must be a JSON object".to_string());
    }
    normalize(&mut tree)?;
    serde_json::from_value(tree).map_err(|e| format!("invalid OTLP/JSON: {e}"))
}

/// A JSON value parsed with duplicate object keys refused (serde_json's own `Value` keeps the last).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.contains_key(&k) {
                return Err(serde::de::Error::custom(format!("key {k:?} appears twice in one object")));
            }
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Encodes a message as OTLP/JSON.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising generated structs into a Vec cannot fail (no maps with non-string keys).
    serde_json::to_vec(msg).unwrap_or_default()
}

fn normalize(v: &mut Value) -> Result<(), String> {
    match v {
        Value::Array(items) => items.iter_mut().try_for_each(normalize),
        Value::Object(map) => {
            let old = std::mem::take(map);
            let mut new = Map::with_capacity(old.len());
            for (k, mut val) in old {
                let key = if k.contains('_') { snake_to_camel(&k) } else { k };
                enum_name_to_number(&key, &mut val);
                normalize(&mut val)?;
                if new.contains_key(&key) {
                    return Err(format!(
                        "invalid OTLP/JSON: field {key:?} is given twice (in snake_case and camelCase)"
                    ));
                }
                new.insert(key, val);
            }
            *map = new;
            Ok(())
        }
        _ => Ok(()),
    }
}

fn snake_to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Enum fields may carry the value's name, or its number as a string.
fn enum_name_to_number(key: &str, val: &mut Value) {
    let Value::String(s) = val else { return };
    let number = match key {
        "kind" => SpanKind::from_str_name(s).map(|e| e as i32),
        "code" => StatusCode::from_str_name(s).map(|e| e as i32),
        "severityNumber" => SeverityNumber::from_str_name(s).map(|e| e as i32),
        "aggregationTemporality" => AggregationTemporality::from_str_name(s).map(|e| e as i32),
        _ => return,
    };
    if let Some(n) = number.or_else(|| s.parse::<i32>().ok()) {
        *val = Value::from(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;

    #[test]
    fn decodes_canonical_otlp_json() {
        let body =
            br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
          "scopeSpans":[{"scope":{"name":"lib"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
          "spanId":"eee19b7ec3c1b174","name":"op","kind":2,"startTimeUnixNano":"1544712660000000000",
          "endTimeUnixNano":1544712661000000000,"attributes":[{"key":"n","value":{"intValue":"42"}}],
          "status":{"code":2,"message":"boom"},"futureField":{"x":1}}]}]}]}"#;
        let req: ExportTraceServiceRequest = decode(body).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(hex::encode(&span.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(span.kind, 2);
        assert_eq!(span.attributes[0].value.as_ref().unwrap().value, Some(Av::IntValue(42)));
        assert_eq!(span.status.as_ref().unwrap().code, 2);
    }

    #[test]
    fn accepts_snake_case_keys_and_enum_names_like_the_collector() {
        let body = br#"{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"5b8efff798038103d269b633813fc60c",
          "span_id":"eee19b7ec3c1b174","name":"op","kind":"SPAN_KIND_CLIENT","start_time_unix_nano":"5",
          "status":{"code":"STATUS_CODE_ERROR"}}]}]}]}"#;
        let req: ExportTraceServiceRequest = decode(body).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(span.start_time_unix_nano, 5);
        assert_eq!(span.status.as_ref().unwrap().code, StatusCode::Error as i32);
    }

    #[test]
    fn round_trips_through_encode() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
          "spanId":"eee19b7ec3c1b174","name":"op","attributes":[{"key":"b","value":{"bytesValue":"AAE="}}]}]}]}]}"#;
        let req: ExportTraceServiceRequest = decode(body).unwrap();
        let again: ExportTraceServiceRequest = decode(&encode(&req)).unwrap();
        assert_eq!(req, again);
    }

    #[test]
    fn refuses_keys_given_twice() {
        let twice = br#"{"resourceLogs":[],"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}]}]}"#;
        let e = decode::<ExportLogsServiceRequest>(twice).unwrap_err();
        assert!(e.contains("\"resourceLogs\" appears twice"), "{e}");
        let both = br#"{"resource_logs":[],"resourceLogs":[]}"#;
        assert!(decode::<ExportLogsServiceRequest>(both).unwrap_err().contains("given twice"));
        // Numbers keep working, small and large.
        let n = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":1544712661000000000,"body":{"doubleValue":1.5}}]}]}]}"#;
        let r = decode::<ExportLogsServiceRequest>(n).unwrap();
        assert_eq!(r.resource_logs[0].scope_logs[0].log_records[0].time_unix_nano, 1_544_712_661_000_000_000);
    }

    #[test]
    fn rejects_malformed_json_with_a_message() {
        let err = decode::<ExportTraceServiceRequest>(b"{\"resourceSpans\": [").unwrap_err();
        assert!(err.starts_with("invalid JSON"), "{err}");
        let err = decode::<ExportTraceServiceRequest>(b"[1]").unwrap_err();
        assert!(err.contains("JSON object"), "{err}");
    }
}
