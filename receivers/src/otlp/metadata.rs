//! What `include_metadata` keeps of a request's headers (HTTP) or metadata (gRPC): every key, except
//! credentials. Metadata is written into the WAL with the batch, so a bearer token or a session cookie
//! kept here would lie on disk, in plain text, for as long as the batch does.

use http::HeaderMap;
use openwit_core::Metadata;

/// Headers that carry credentials: never stored. (An authenticator, once there is one, adds the header
/// it reads.)
const CREDENTIALS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// The metadata kept from `headers` (keys are lower-case, as `http` stores them); values that are not
/// visible ASCII are left out.
pub fn kept(headers: &HeaderMap, auth: Option<&std::sync::Arc<dyn openwit_core::auth::ServerAuth>>) -> Metadata {
    let consumed = auth.map(|a| a.credential_headers()).unwrap_or_default();
    let mut out = Metadata::new();
    for (k, v) in headers {
        if CREDENTIALS.contains(&k.as_str()) || consumed.iter().any(|c| c == k.as_str()) {
            continue;
        }
        if let Ok(v) = v.to_str() {
            out.entry(k.as_str().to_string()).or_default().push(v.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_kept_and_other_keys_are() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("Authorization", "Bearer s3cr3t"),
            ("Proxy-Authorization", "Basic eDp5"),
            ("Cookie", "session=abc"),
            ("X-Tenant-Route", "eu"),
            ("x-tenant-route", "us"),
        ] {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let m = kept(&h, None);
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["x-tenant-route"]);
        assert_eq!(m["x-tenant-route"], vec!["eu", "us"]);
    }
}
