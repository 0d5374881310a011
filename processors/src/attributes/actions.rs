//! The Collector's attribute actions (`insert`, `update`, `upsert`, `delete`, `hash`, `extract`,
//! `convert`), shared by the `attributes` processor (item attributes) and the `resource` processor
//! (resource attributes). Keys, checks and behaviour follow the Collector's `attraction` package: an
//! action that finds nothing to act on does nothing; a value that cannot be converted is left as it is.

use crate::value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use openwit_core::{ConfigIssue, Metadata};
use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// One entry of `actions:`, as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionConfig {
    pub key: String,
    /// Any YAML value; its type is the attribute's type.
    pub value: serde_yaml_ng::Value,
    pub pattern: String,
    pub from_attribute: String,
    /// `metadata.<key>` (request metadata, kept with `include_metadata`), `auth.<attr>`, `client.address`,
    /// or a bare metadata key.
    pub from_context: String,
    /// `int`, `double` or `string`, for `convert`.
    pub converted_type: String,
    /// Case-insensitive.
    pub action: String,
}

/// The actions, checked and compiled, in order.
#[derive(Clone, Debug, Default)]
pub struct Actions(Vec<Action>);

#[derive(Clone, Debug)]
enum Action {
    Set { key: String, source: Source, mode: SetMode },
    Delete { key: String, pattern: Option<Regex> },
    Hash { key: String, pattern: Option<Regex> },
    Extract { key: String, regex: Regex, names: Vec<String> },
    Convert { key: String, to: Target },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetMode {
    Insert,
    Update,
    Upsert,
}

#[derive(Clone, Debug)]
enum Source {
    Value(AnyValue),
    Attribute(String),
    Context(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Int,
    Double,
    String,
}

impl Actions {
    /// Checks `actions` as the Collector does (which fields each action needs and refuses), with the
    /// path of the offending field.
    pub fn compile(actions: &[ActionConfig]) -> Result<Actions, ConfigIssue> {
        if actions.is_empty() {
            return Err(ConfigIssue::new("actions", "at least one action is required"));
        }
        actions.iter().enumerate().map(|(i, a)| compile_one(i, a)).collect::<Result<_, _>>().map(Actions)
    }

    /// Applies every action, in order, to one attribute list. `metadata` is the request's (for
    /// `from_context`).
    pub fn apply(&self, attrs: &mut Vec<KeyValue>, metadata: &Metadata) {
        for action in &self.0 {
            match action {
                Action::Set { key, source, mode } => {
                    let Some(v) = source.resolve(attrs, metadata) else { continue };
                    match (value::get_mut(attrs, key), mode) {
                        (Some(_), SetMode::Insert) | (None, SetMode::Update) => {}
                        (Some(old), _) => *old = v,
                        (None, _) => attrs.push(KeyValue { key: key.clone(), value: Some(v), ..Default::default() }),
                    }
                }
                Action::Delete { key, pattern } => {
                    attrs.retain(|kv| kv.key != *key && !pattern.as_ref().is_some_and(|p| p.is_match(&kv.key)));
                }
                Action::Hash { key, pattern } => {
                    for kv in attrs.iter_mut() {
                        if kv.key == *key || pattern.as_ref().is_some_and(|p| p.is_match(&kv.key)) {
                            let v = kv.value.get_or_insert_with(AnyValue::default);
                            *v = value::string(hash(v));
                        }
                    }
                }
                Action::Extract { key, regex, names } => {
                    let Some(AnyValue { value: Some(Value::StringValue(s)) }) = value::get(attrs, key) else {
                        continue;
                    };
                    let Some(caps) = regex.captures(s) else { continue };
                    let found: Vec<(String, String)> = names
                        .iter()
                        .enumerate()
                        .map(|(i, name)| {
                            (name.clone(), caps.get(i + 1).map(|m| m.as_str().to_string()).unwrap_or_default())
                        })
                        .collect();
                    for (name, text) in found {
                        value::put(attrs, &name, value::string(text));
                    }
                }
                Action::Convert { key, to } => {
                    if let Some(v) = value::get_mut(attrs, key) {
                        convert(v, *to);
                    }
                }
            }
        }
    }
}

fn compile_one(i: usize, a: &ActionConfig) -> Result<Action, ConfigIssue> {
    let at = |field: &str| format!("actions[{i}].{field}");
    let name = a.action.to_ascii_lowercase();
    let value = value::from_yaml(&a.value).map_err(|m| ConfigIssue::new(at("value"), m))?;
    let sources = usize::from(value.is_some())
        + usize::from(!a.from_attribute.is_empty())
        + usize::from(!a.from_context.is_empty());
    let unused = |field: &str, set: bool| {
        if set {
            Err(ConfigIssue::new(at(field), format!("the {name} action does not use {field}; remove it")))
        } else {
            Ok(())
        }
    };
    let key_required = || {
        if a.key.is_empty() {
            Err(ConfigIssue::new(at("key"), format!("the {name} action needs a key")))
        } else {
            Ok(())
        }
    };
    let regex = |p: &str| Regex::new(p).map_err(|e| ConfigIssue::new(at("pattern"), format!("invalid pattern: {e}")));
    match name.as_str() {
        "insert" | "update" | "upsert" => {
            key_required()?;
            if sources != 1 {
                return Err(ConfigIssue::new(
                    at("value"),
                    format!("the {name} action needs exactly one of value, from_attribute or from_context"),
                ));
            }
            unused("pattern", !a.pattern.is_empty())?;
            unused("converted_type", !a.converted_type.is_empty())?;
            let source = match value {
                Some(v) => Source::Value(v),
                None if !a.from_attribute.is_empty() => Source::Attribute(a.from_attribute.clone()),
                None => Source::Context(a.from_context.clone()),
            };
            let mode = match name.as_str() {
                "insert" => SetMode::Insert,
                "update" => SetMode::Update,
                _ => SetMode::Upsert,
            };
            Ok(Action::Set { key: a.key.clone(), source, mode })
        }
        "delete" | "hash" => {
            if a.key.is_empty() && a.pattern.is_empty() {
                return Err(ConfigIssue::new(at("key"), format!("the {name} action needs a key, a pattern, or both")));
            }
            unused("value", value.is_some())?;
            unused("from_attribute", !a.from_attribute.is_empty())?;
            unused("converted_type", !a.converted_type.is_empty())?;
            let pattern = if a.pattern.is_empty() { None } else { Some(regex(&a.pattern)?) };
            let key = a.key.clone();
            Ok(if name == "delete" { Action::Delete { key, pattern } } else { Action::Hash { key, pattern } })
        }
        "extract" => {
            key_required()?;
            if sources > 0 {
                return Err(ConfigIssue::new(
                    at("value"),
                    "the extract action takes no value, from_attribute or from_context",
                ));
            }
            unused("converted_type", !a.converted_type.is_empty())?;
            if a.pattern.is_empty() {
                return Err(ConfigIssue::new(at("pattern"), "the extract action needs a pattern with named groups"));
            }
            let regex = regex(&a.pattern)?;
            let names: Vec<Option<&str>> = regex.capture_names().skip(1).collect();
            if names.is_empty() {
                return Err(ConfigIssue::new(
                    at("pattern"),
                    "the pattern has no named groups ((?P<name>…)) to extract into",
                ));
            }
            if names.iter().any(Option::is_none) {
                return Err(ConfigIssue::new(
                    at("pattern"),
                    "every group of the pattern must be named ((?P<name>…)); use (?:…) for a group that is not extracted",
                ));
            }
            let names = names.into_iter().flatten().map(str::to_string).collect();
            Ok(Action::Extract { key: a.key.clone(), regex, names })
        }
        "convert" => {
            key_required()?;
            if sources > 0 || !a.pattern.is_empty() {
                return Err(ConfigIssue::new(at("value"), "the convert action takes no value source and no pattern"));
            }
            let to = match a.converted_type.as_str() {
                "int" => Target::Int,
                "double" => Target::Double,
                "string" => Target::String,
                "" => return Err(ConfigIssue::new(at("converted_type"), "the convert action needs converted_type")),
                other => {
                    return Err(ConfigIssue::new(
                        at("converted_type"),
                        format!("{other:?} is not one of int, double, string"),
                    ));
                }
            };
            Ok(Action::Convert { key: a.key.clone(), to })
        }
        "" => Err(ConfigIssue::new(
            at("action"),
            "missing; one of insert, update, upsert, delete, hash, extract, convert",
        )),
        other => Err(ConfigIssue::new(
            at("action"),
            format!("{other:?} is not one of insert, update, upsert, delete, hash, extract, convert"),
        )),
    }
}

impl Source {
    fn resolve(&self, attrs: &[KeyValue], metadata: &Metadata) -> Option<AnyValue> {
        match self {
            Source::Value(v) => Some(v.clone()),
            Source::Attribute(k) => value::get(attrs, k).cloned(),
            Source::Context(k) => from_context(k, metadata).map(value::string),
        }
    }
}

/// A request-context value, as the Collector finds it: metadata values joined with `;`. `auth.*` and
/// `client.address` are not known to OpenWit's pipeline yet, so they find nothing (the action does
/// nothing, as in the Collector when the value is absent).
fn from_context(key: &str, metadata: &Metadata) -> Option<String> {
    if key == "client.address" || key.starts_with("auth.") {
        return None;
    }
    let key = key.strip_prefix("metadata.").unwrap_or(key).to_ascii_lowercase();
    let values = metadata.get(&key).filter(|v| !v.is_empty())?;
    Some(values.join(";"))
}

/// The Collector's `hash`: SHA-256 (hex) of a string's bytes, an int's or a double's 8 little-endian
/// bytes, a bool's one byte; other types hash to "".
fn hash(v: &AnyValue) -> String {
    let bytes: Vec<u8> = match &v.value {
        Some(Value::StringValue(s)) => s.as_bytes().to_vec(),
        Some(Value::BoolValue(b)) => vec![u8::from(*b)],
        Some(Value::IntValue(i)) => i.to_le_bytes().to_vec(),
        Some(Value::DoubleValue(d)) => d.to_bits().to_le_bytes().to_vec(),
        _ => Vec::new(),
    };
    if bytes.is_empty() {
        return String::new();
    }
    hex_lower(&Sha256::digest(&bytes))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Collector's `convert`: numbers and bools between each other, strings parsed (left as they are
/// when they do not parse), anything to its text.
fn convert(v: &mut AnyValue, to: Target) {
    let new = match (to, &v.value) {
        (Target::String, Some(Value::StringValue(_))) => return,
        (Target::String, _) => Value::StringValue(value::as_string(v)),
        (Target::Int, Some(Value::DoubleValue(d))) => Value::IntValue(go_float_to_int(*d)),
        (Target::Int, Some(Value::BoolValue(b))) => Value::IntValue(i64::from(*b)),
        (Target::Int, Some(Value::StringValue(s))) => match s.parse::<i64>() {
            Ok(i) => Value::IntValue(i),
            Err(_) => return,
        },
        (Target::Double, Some(Value::IntValue(i))) => Value::DoubleValue(*i as f64),
        (Target::Double, Some(Value::BoolValue(b))) => Value::DoubleValue(if *b { 1.0 } else { 0.0 }),
        (Target::Double, Some(Value::StringValue(s))) => match s.parse::<f64>() {
            Ok(d) => Value::DoubleValue(d),
            Err(_) => return,
        },
        _ => return,
    };
    v.value = Some(new);
}

/// Go's `int64(f)`: truncation toward zero (out-of-range values saturate here, where Go's result is
/// platform-defined).
#[allow(clippy::cast_possible_truncation)]
fn go_float_to_int(d: f64) -> i64 {
    d.trunc() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(yaml: &str) -> Result<Actions, ConfigIssue> {
        let list: Vec<ActionConfig> = serde_yaml_ng::from_str(yaml).unwrap();
        Actions::compile(&list)
    }

    fn attrs(pairs: &[(&str, Value)]) -> Vec<KeyValue> {
        pairs
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: Some(AnyValue { value: Some(v.clone()) }),
                ..Default::default()
            })
            .collect()
    }

    fn text(attrs: &[KeyValue]) -> Vec<String> {
        attrs.iter().map(|kv| format!("{}={}", kv.key, value::as_string(kv.value.as_ref().unwrap()))).collect()
    }

    fn s(x: &str) -> Value {
        Value::StringValue(x.into())
    }

    #[test]
    fn insert_update_upsert_follow_the_key_being_there() {
        let a = actions(
            "[{key: new, value: 1, action: insert}, {key: old, value: 2, action: INSERT},
              {key: old2, value: x, action: update}, {key: gone, value: y, action: update},
              {key: up, value: true, action: upsert}, {key: old2, from_attribute: old, action: upsert}]",
        )
        .unwrap();
        let mut at = attrs(&[("old", s("o")), ("old2", s("p"))]);
        a.apply(&mut at, &Metadata::new());
        assert_eq!(text(&at), ["old=o", "old2=o", "new=1", "up=true"]);
        assert!(matches!(value::get(&at, "new").unwrap().value, Some(Value::IntValue(1))));
    }

    #[test]
    fn from_attribute_that_is_absent_does_nothing_and_from_context_reads_metadata() {
        let a = actions(
            "[{key: a, from_attribute: missing, action: upsert}, {key: t, from_context: metadata.X-Team, action: insert},
              {key: u, from_context: x-team, action: insert}, {key: v, from_context: auth.subject, action: insert}]",
        )
        .unwrap();
        let mut md = Metadata::new();
        md.insert("x-team".into(), vec!["a".into(), "b".into()]);
        let mut at = Vec::new();
        a.apply(&mut at, &md);
        assert_eq!(text(&at), ["t=a;b", "u=a;b"]);
    }

    #[test]
    fn delete_and_hash_by_key_and_by_pattern() {
        let a = actions(
            "[{key: password, action: delete}, {pattern: '^secret\\.', action: delete},
              {key: email, action: hash}, {pattern: 'card', action: hash}]",
        )
        .unwrap();
        let mut at = attrs(&[
            ("password", s("p")),
            ("secret.a", s("x")),
            ("not.secret.b", s("kept")),
            ("email", s("a@b.c")),
            ("credit_card", Value::IntValue(42)),
            ("map_card", Value::KvlistValue(Default::default())),
        ]);
        a.apply(&mut at, &Metadata::new());
        let t = text(&at);
        assert_eq!(t[0], "not.secret.b=kept");
        // sha256("a@b.c") and sha256 of 42 as 8 little-endian bytes.
        assert_eq!(t[1], format!("email={}", hex_lower(&Sha256::digest(b"a@b.c"))));
        assert_eq!(t[2], format!("credit_card={}", hex_lower(&Sha256::digest(42i64.to_le_bytes()))));
        assert_eq!(t[3], "map_card=", "types the Collector does not hash become empty text");
    }

    #[test]
    fn extract_puts_each_named_group() {
        let a = actions(
            r#"[{key: http.url, pattern: '^(?P<http_protocol>.*):\/\/(?P<http_domain>[^/]*)\/(?P<http_path>[^?]*)', action: extract}]"#,
        )
        .unwrap();
        let mut at = attrs(&[("http.url", s("https://example.com/a/b?q=1")), ("http_domain", s("old"))]);
        a.apply(&mut at, &Metadata::new());
        assert_eq!(
            text(&at),
            ["http.url=https://example.com/a/b?q=1", "http_domain=example.com", "http_protocol=https", "http_path=a/b"]
        );
        // No match, or not a string: nothing happens.
        let mut at = attrs(&[("http.url", Value::IntValue(3))]);
        a.apply(&mut at, &Metadata::new());
        assert_eq!(at.len(), 1);
    }

    #[test]
    fn convert_as_the_collector_does() {
        let a = actions(
            "[{key: a, converted_type: int, action: convert}, {key: b, converted_type: int, action: convert},
              {key: c, converted_type: double, action: convert}, {key: d, converted_type: string, action: convert},
              {key: e, converted_type: int, action: convert}]",
        )
        .unwrap();
        let mut at = attrs(&[
            ("a", s("42")),
            ("b", s("4x")),
            ("c", Value::BoolValue(true)),
            ("d", Value::DoubleValue(2.5)),
            ("e", Value::DoubleValue(-3.9)),
        ]);
        a.apply(&mut at, &Metadata::new());
        assert_eq!(text(&at), ["a=42", "b=4x", "c=1", "d=2.5", "e=-3"]);
        assert!(matches!(value::get(&at, "a").unwrap().value, Some(Value::IntValue(42))));
        assert!(matches!(value::get(&at, "c").unwrap().value, Some(Value::DoubleValue(_))));
        assert!(matches!(value::get(&at, "d").unwrap().value, Some(Value::StringValue(_))));
    }

    #[test]
    fn misconfigured_actions_name_the_field() {
        for (yaml, path) in [
            ("[{key: a, action: insert}]", "actions[0].value"),
            ("[{key: a, value: 1, from_attribute: b, action: upsert}]", "actions[0].value"),
            ("[{value: 1, action: insert}]", "actions[0].key"),
            ("[{key: a, action: delete}, {action: hash}]", "actions[1].key"),
            ("[{key: a, pattern: '(', action: delete}]", "actions[0].pattern"),
            ("[{key: a, pattern: '(x)', action: extract}]", "actions[0].pattern"),
            ("[{key: a, pattern: '(?P<n>x)(y)', action: extract}]", "actions[0].pattern"),
            ("[{key: a, converted_type: float, action: convert}]", "actions[0].converted_type"),
            ("[{key: a, action: rename}]", "actions[0].action"),
            ("[{key: a, value: 1, converted_type: int, action: insert}]", "actions[0].converted_type"),
            ("[]", "actions"),
        ] {
            let e = actions(yaml).unwrap_err();
            assert_eq!(e.path, path, "{yaml}: {e:?}");
        }
    }
}
