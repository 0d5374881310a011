//! Serde helpers shared by component configs.

use serde::{Deserialize, Deserializer};

/// For optional sub-sections that the Collector enables by mere presence: `grpc:` with no value means
/// "on, with defaults"; leaving the key out means "off". Use with `#[serde(default)]`.
pub fn present_or_default<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// A map whose values may be any YAML scalar (`true`, `8`, `0.5`, `text`), each kept as its text: for
/// settings handed on to a library that parses them itself (DataFusion's session options).
pub fn scalar_strings<'de, D>(d: D) -> Result<std::collections::BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Bool(bool),
        Int(i64),
        Float(f64),
        Text(String),
    }
    let map = std::collections::BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Text(t) => t,
            };
            (k, v)
        })
        .collect())
}

/// A `host:port` endpoint check with a helpful message.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    match endpoint.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("endpoint {endpoint:?} must be host:port, for example localhost:4317")),
    }
}
