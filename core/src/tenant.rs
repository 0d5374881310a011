//! Tenant ids: validated, because they end up in storage paths.

use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

/// The longest tenant id accepted.
pub const MAX_TENANT_LEN: usize = 64;

/// The header (gRPC metadata key) tenants come from unless a receiver names another.
pub const DEFAULT_TENANT_HEADER: &str = "X-Scope-OrgID";

/// A validated tenant id: `[A-Za-z0-9_-]{1,64}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

/// Why a tenant id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantError {
    #[error("tenant id is empty; send 1 to {MAX_TENANT_LEN} characters from [A-Za-z0-9_-]")]
    Empty,
    #[error("tenant id is {0} characters long; the limit is {MAX_TENANT_LEN}")]
    TooLong(usize),
    #[error("tenant id {0:?} contains {1:?}; only letters, digits, '_' and '-' are allowed")]
    BadChar(String, char),
    #[error(
        "the tenant header is not text (bytes outside UTF-8); send 1 to {MAX_TENANT_LEN} characters from [A-Za-z0-9_-]"
    )]
    NotText,
}

impl TenantId {
    /// Validates `s` as a tenant id. Invalid ids are refused, never sanitised.
    pub fn new(s: &str) -> Result<TenantId, TenantError> {
        if s.is_empty() {
            return Err(TenantError::Empty);
        }
        if s.len() > MAX_TENANT_LEN {
            return Err(TenantError::TooLong(s.chars().count()));
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
            return Err(TenantError::BadChar(s.to_string(), c));
        }
        Ok(TenantId(Arc::from(s)))
    }

    /// The tenant used when a request names none.
    pub fn default_tenant() -> TenantId {
        TenantId(Arc::from("default"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a receiver finds the tenant of a request (an OpenWit addition to the receiver's config).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// HTTP header / gRPC metadata key that carries the tenant (Grafana's convention by default).
    pub header: String,
    /// Tenant for requests without the header.
    pub default: String,
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig { header: DEFAULT_TENANT_HEADER.to_string(), default: "default".to_string() }
    }
}

impl TenantConfig {
    /// Checks the configured default tenant; called while validating the config.
    pub fn validate(&self) -> Result<(), String> {
        TenantId::new(&self.default).map(|_| ()).map_err(|e| format!("tenant.default: {e}"))?;
        if self.header.is_empty() {
            return Err("tenant.header must not be empty".to_string());
        }
        Ok(())
    }

    /// Resolves the tenant from the header's value as sent, if any. A value that is present but not a valid
    /// tenant id (whatever its bytes) is refused, never taken for a missing header.
    pub fn resolve(&self, header_value: Option<&[u8]>) -> Result<TenantId, TenantError> {
        match header_value {
            Some(v) => TenantId::new(std::str::from_utf8(v).map_err(|_| TenantError::NotText)?.trim()),
            None => TenantId::new(&self.default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_and_refuses_invalid_ids() {
        assert!(TenantId::new("acme-prod_01").is_ok());
        assert_eq!(TenantId::new(""), Err(TenantError::Empty));
        assert!(matches!(TenantId::new("../etc"), Err(TenantError::BadChar(_, '.'))));
        assert!(matches!(TenantId::new("a/b"), Err(TenantError::BadChar(_, '/'))));
        assert!(matches!(TenantId::new(&"x".repeat(65)), Err(TenantError::TooLong(65))));
        assert!(TenantId::new(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn resolves_default_when_header_missing() {
        let cfg = TenantConfig::default();
        assert_eq!(cfg.resolve(None).unwrap().as_str(), "default");
        assert_eq!(cfg.resolve(Some(b"t1")).unwrap().as_str(), "t1");
        // Present but not a tenant id, whatever its bytes: refused, never the default.
        assert_eq!(cfg.resolve(Some(b"\xff\xfe")), Err(TenantError::NotText));
        assert!(matches!(cfg.resolve(Some("caf\u{e9}".as_bytes())), Err(TenantError::BadChar(_, '\u{e9}'))));
        assert!(matches!(cfg.resolve(Some(b"a\tb")), Err(TenantError::BadChar(_, '\t'))));
    }
}
