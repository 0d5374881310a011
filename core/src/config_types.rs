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

/// A `host:port` endpoint check with a helpful message.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    match endpoint.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("endpoint {endpoint:?} must be host:port, for example localhost:4317")),
    }
}
