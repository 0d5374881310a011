//! Hiding secrets when a config is printed.

use serde_yaml_ng::Value;

const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "access_key",
    "credential",
    "authorization",
    "sas",
];

/// Replaces secret values: keys that name a secret, and every value under a `headers` map (the
/// Collector treats header values as opaque, since they usually carry credentials).
pub fn redact(v: &mut Value) {
    redact_at(v, false);
}

fn redact_at(v: &mut Value, secret: bool) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m.iter_mut() {
                let key = k.as_str().unwrap_or_default().to_ascii_lowercase();
                let is_secret = secret || key == "headers" || SECRET_WORDS.iter().any(|w| key.contains(w));
                redact_at(child, is_secret);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|i| redact_at(i, secret)),
        Value::Null => {}
        other if secret => *other = Value::String("[REDACTED]".to_string()),
        _ => {}
    }
}
