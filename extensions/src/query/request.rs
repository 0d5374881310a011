//! The query API's request as it arrives: a JSON body (`POST`) or a query string (`GET`) naming the SQL
//! and the result format, and the tenant header. Everything here runs on outside bytes before any SQL is
//! planned, so it is one of the fuzz targets (`query_request` in `tests/fuzz`).

use super::engine::{FailureKind, QueryError};
use super::output::Format;
use openwit_core::{TenantConfig, TenantId};
use serde::Deserialize;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRequest {
    pub sql: String,
    pub format: Format,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    sql: String,
    format: Option<String>,
}

impl Wire {
    fn checked(self) -> Result<QueryRequest, QueryError> {
        let format = self
            .format
            .as_deref()
            .unwrap_or("json")
            .parse::<Format>()
            .map_err(|m| QueryError::new(FailureKind::Invalid, m))?;
        Ok(QueryRequest { sql: self.sql, format })
    }
}

impl QueryRequest {
    /// A `POST` body: `{"sql": "...", "format": "..."}`.
    pub fn from_json(body: &[u8]) -> Result<QueryRequest, QueryError> {
        serde_json::from_slice::<Wire>(body)
            .map_err(|e| {
                QueryError::new(
                    FailureKind::Invalid,
                    format!("request body: {e}; send {{\"sql\": \"SELECT …\", \"format\": \"json|ndjson|csv|arrow\"}}"),
                )
            })?
            .checked()
    }

    /// A `GET` query string (without the `?`): `sql=...&format=...`.
    pub fn from_query_string(query: &str) -> Result<QueryRequest, QueryError> {
        serde_urlencoded::from_str::<Wire>(query)
            .map_err(|e| {
                QueryError::new(
                    FailureKind::Invalid,
                    format!("query string: {e}; parameters: sql=SELECT…, format=json|ndjson|csv|arrow"),
                )
            })?
            .checked()
    }
}

/// The tenant a query runs for: the tenant header's value as sent (refused when it is not a valid tenant
/// id, whatever its bytes), or the configured default when the header is absent.
pub fn tenant(cfg: &TenantConfig, header_value: Option<&[u8]>) -> Result<TenantId, QueryError> {
    cfg.resolve(header_value).map_err(|e| {
        let kind = if header_value.is_some() { FailureKind::Invalid } else { FailureKind::Internal };
        QueryError::new(kind, format!("header {}: {e}", cfg.header))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_query_string_say_the_same() {
        let want = QueryRequest { sql: "SELECT 1".into(), format: Format::Csv };
        assert_eq!(QueryRequest::from_json(br#"{"sql":"SELECT 1","format":"csv"}"#).unwrap(), want);
        assert_eq!(QueryRequest::from_query_string("sql=SELECT+1&format=CSV").unwrap(), want);
        assert_eq!(QueryRequest::from_query_string("sql=SELECT%201").unwrap().format, Format::Json);
    }

    #[test]
    fn bad_requests_are_invalid_and_say_what_to_send() {
        for e in [
            QueryRequest::from_json(b"{\"sql\": 1}").unwrap_err(),
            QueryRequest::from_json(b"{\"sql\": \"x\", \"limit\": 3}").unwrap_err(),
            QueryRequest::from_query_string("format=csv").unwrap_err(),
            QueryRequest::from_query_string("sql=x&format=xml").unwrap_err(),
        ] {
            assert_eq!(e.kind, FailureKind::Invalid, "{e}");
            assert!(e.message.contains("sql") || e.message.contains("format"), "{e}");
        }
    }

    #[test]
    fn a_tenant_header_that_is_not_a_tenant_is_refused() {
        let cfg = TenantConfig::default();
        assert_eq!(tenant(&cfg, None).unwrap().as_str(), "default");
        assert_eq!(tenant(&cfg, Some(b"acme")).unwrap().as_str(), "acme");
        for bad in [&b"\xff\xfe"[..], b"../x", b""] {
            let e = tenant(&cfg, Some(bad)).unwrap_err();
            assert_eq!(e.kind, FailureKind::Invalid, "{bad:?}: {e}");
            assert!(e.message.contains(&cfg.header), "{e}");
        }
    }
}
