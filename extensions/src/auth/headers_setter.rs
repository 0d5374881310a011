//! `headers_setter`: sets headers on an exporter's requests from the batch's request metadata (what the
//! receiver kept with `include_metadata: true`) or from fixed values — for example to pass each tenant's
//! `X-Scope-OrgID` on when forwarding. Used as an exporter's `auth: {authenticator: headers_setter}`.
//! OpenWit addition: `from_context: X-Scope-OrgID` falls back to the batch's tenant, so the tenant is
//! passed on without `include_metadata`.

use super::AuthExtension;
use axum::http::{HeaderName, HeaderValue};
use openwit_core::auth::{Authenticator, ClientAuth, HeaderOp};
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{BuildEnv, ComponentId, ConfigIssue, Extension, Factory, Metadata, Signal, TenantId};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Insert,
    Update,
    #[default]
    Upsert,
    Delete,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderConfig {
    pub key: String,
    pub action: Action,
    pub value: Option<String>,
    pub from_context: Option<String>,
    pub default_value: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersSetterConfig {
    pub headers: Vec<HeaderConfig>,
}

impl ComponentConfig for HeadersSetterConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.headers.is_empty() {
            return Err(ConfigIssue::new("headers", "give at least one header"));
        }
        for (i, h) in self.headers.iter().enumerate() {
            let at = |k: &str| format!("headers[{i}].{k}");
            if HeaderName::from_bytes(h.key.as_bytes()).is_err() {
                return Err(ConfigIssue::new(at("key"), format!("{:?} is not an HTTP header name", h.key)));
            }
            match (h.action, &h.value, &h.from_context) {
                (Action::Delete, None, None) => {}
                (Action::Delete, _, _) => {
                    return Err(ConfigIssue::new(at("action"), "delete takes no value or from_context"));
                }
                (_, Some(_), Some(_)) => {
                    return Err(ConfigIssue::new(at("value"), "give value or from_context, not both"));
                }
                (_, None, None) => return Err(ConfigIssue::new(at("value"), "give value or from_context")),
                _ => {}
            }
            for v in [&h.value, &h.default_value].into_iter().flatten() {
                if HeaderValue::from_str(v).is_err() {
                    return Err(ConfigIssue::new(at("value"), format!("{v:?} is not a valid header value")));
                }
            }
        }
        Ok(())
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Extension>> {
    typed::<HeadersSetterConfig, dyn Extension>(
        "headers_setter",
        &[],
        &Signal::ALL,
        "exporter authenticator: sets request headers from the batch's metadata or fixed values",
        |_id: &ComponentId, cfg: &HeadersSetterConfig, _env: &BuildEnv| {
            let setter: Arc<dyn ClientAuth> = Arc::new(Setter(cfg.headers.clone()));
            Ok(Box::new(AuthExtension(Authenticator { server: None, client: Some(setter) })))
        },
    )
}

struct Setter(Vec<HeaderConfig>);

impl ClientAuth for Setter {
    fn headers(&self, metadata: &Metadata, tenant: &TenantId) -> Result<Vec<HeaderOp>, String> {
        let mut ops = Vec::new();
        for h in &self.0 {
            let key = HeaderName::from_bytes(h.key.as_bytes()).map_err(|e| e.to_string())?;
            let value = match (&h.value, &h.from_context) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(ctx)) => metadata
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(ctx))
                    .and_then(|(_, v)| v.first().cloned())
                    .or_else(|| {
                        ctx.eq_ignore_ascii_case(openwit_core::tenant::DEFAULT_TENANT_HEADER)
                            .then(|| tenant.as_str().to_string())
                    })
                    .or_else(|| h.default_value.clone()),
                (None, None) => None,
            };
            let op = match (h.action, value) {
                (Action::Delete, _) => HeaderOp::Delete(key),
                // Nothing to set (no such metadata, no default): the header is left alone.
                (_, None) => continue,
                (a, Some(v)) => {
                    let v = HeaderValue::from_str(&v)
                        .map_err(|_| format!("headers_setter: {v:?} is not a valid value for {key}"))?;
                    match a {
                        Action::Insert => HeaderOp::Insert(key, v),
                        Action::Update => HeaderOp::Update(key, v),
                        _ => HeaderOp::Upsert(key, v),
                    }
                }
            };
            ops.push(op);
        }
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_come_from_metadata_the_tenant_or_fixed_values() {
        let cfg: HeadersSetterConfig = serde_yaml_ng::from_str(
            "headers:\n  - {key: X-Scope-OrgID, from_context: X-Scope-OrgID}\n  - {key: X-Region, from_context: x-region, default_value: eu}\n  - {key: X-Team, value: obs, action: insert}\n  - {key: X-Debug, action: delete}\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let s = Setter(cfg.headers);
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-team", HeaderValue::from_static("kept"));
        headers.insert("x-debug", HeaderValue::from_static("1"));
        let md: Metadata = [("x-region".to_string(), vec!["us".to_string()])].into_iter().collect();
        openwit_core::auth::apply(s.headers(&md, &TenantId::new("acme").unwrap()).unwrap(), &mut headers);
        assert_eq!(headers["x-scope-orgid"], "acme", "the batch's tenant when the metadata lacks it");
        assert_eq!(headers["x-region"], "us");
        assert_eq!(headers["x-team"], "kept", "insert leaves an existing header");
        assert!(!headers.contains_key("x-debug"));
        let mut headers = axum::http::HeaderMap::new();
        openwit_core::auth::apply(s.headers(&Metadata::new(), &TenantId::new("t").unwrap()).unwrap(), &mut headers);
        assert_eq!(headers["x-region"], "eu", "default_value");
        assert_eq!(headers["x-team"], "obs");
    }

    #[test]
    fn bad_entries_are_refused_with_their_place() {
        for (yaml, path) in [
            ("headers: []", "headers"),
            ("headers: [{key: 'bad key', value: x}]", "headers[0].key"),
            ("headers: [{key: a}]", "headers[0].value"),
            ("headers: [{key: a, value: x, from_context: y}]", "headers[0].value"),
            ("headers: [{key: a, action: delete, value: x}]", "headers[0].action"),
        ] {
            let c: HeadersSetterConfig = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(c.validate().unwrap_err().path, path, "{yaml}");
        }
    }
}
