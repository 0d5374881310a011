//! The `query` extension: SQL (DataFusion) over everything the Parquet exporters stored, per tenant.
//!
//! - `POST /api/v1/query` with `{"sql": "...", "format": "json|ndjson|csv|arrow"}`, or
//!   `GET /api/v1/query?sql=...&format=...`; the tenant comes from the same header as ingest;
//! - results are streamed batch by batch; errors are JSON `{"error", "kind"}` with a status that says
//!   whose fault it is (400 bad SQL, 413 over a limit, 408 timeout, 503 catalog or store unreachable).
//!
//! See `docs/query.md`.

pub mod bloom_filters;
pub mod byte_lru;
pub mod engine;
pub mod fresh;
pub mod functions;
mod group_by_value;
mod metrics;
pub mod output;
mod page_index;
pub mod read_cache;
pub mod request;
pub mod sources;
pub mod table;
pub mod text_search;
#[cfg(test)]
mod text_search_tests;
mod value_id_aggregate;
pub mod views;

use async_trait::async_trait;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use engine::{Engine, FailureKind, Limits, QueryError, Running};
use futures::StreamExt;
use metrics::QueryMetrics;
use openwit_core::config_types::check_endpoint;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{BuildEnv, ComponentId, ConfigIssue, Extension, ExtensionContext, Factory, Signal, TenantConfig};
use output::Encoder;
use request::QueryRequest;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Encoded bytes of result read before the answer starts: a result that fits is checked whole against
/// the row limit and for errors (a clean 4xx) before any byte is sent; a longer one is streamed, and a
/// failure past this point cuts the answer short.
const HEAD_BYTES: usize = 4 << 20;

/// `extensions: query: {…}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// The API port, shared with `batch_monitor` when both name the same one.
    pub endpoint: String,
    /// Where the tenant comes from: the same header as ingest, by default `X-Scope-OrgID`.
    pub tenant: TenantConfig,
    /// Rows one query may return; a larger result is an error asking for a LIMIT or an aggregation.
    pub max_rows: usize,
    /// Time a query may take, to its last row.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Memory all running queries may hold for sorts, joins and aggregations (DataFusion's memory pool).
    pub max_memory_megabytes: f64,
    /// Full-text indexes kept in memory between queries (each is read whole once, then searched there).
    pub index_cache_megabytes: f64,
    /// Bloom filters of stored files kept in memory between queries (a lookup by id reads every row
    /// group's).
    pub bloom_filter_cache_megabytes: f64,
    /// object_store settings for buckets no exporter of this daemon writes to (files other daemons
    /// stored in a shared bucket); the standard AWS_/GOOGLE_/AZURE_ variables apply too.
    pub storage_options: BTreeMap<String, String>,
    /// `auth: {authenticator: <extension id>}`: queries need accepted credentials; an identity bound to a
    /// tenant queries that tenant only.
    pub auth: Option<openwit_core::auth::AuthRef>,
    /// TLS on the API port (the same as batch_monitor's when they share it).
    #[serde(deserialize_with = "openwit_core::config_types::present_or_default")]
    pub tls: Option<openwit_core::tls::TlsSettings>,
    /// Reads from remote stores (buckets): requests in flight per bucket at most.
    pub max_concurrent_reads: usize,
    /// Footers, page indexes and bloom filters of remote files kept on local disk.
    pub cache: CacheConfig,
    /// DataFusion session options by their full names (`datafusion.execution.batch_size: 4096`), over
    /// OpenWit's own choices; checked when the config is.
    #[serde(deserialize_with = "openwit_core::config_types::scalar_strings")]
    pub datafusion: BTreeMap<String, String>,
}

/// `query.cache`: small ranges of remote files (footers, page indexes, bloom filters) on local disk.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Default `DATA_DIR/cache/query`.
    pub directory: Option<std::path::PathBuf>,
    /// Disk the cache may take (0 turns it off); least recently used ranges go first.
    pub max_megabytes: f64,
    /// Ranges up to this size are cached; larger reads are data, fetched each time.
    pub max_range_kilobytes: f64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { directory: None, max_megabytes: 1024.0, max_range_kilobytes: 1024.0 }
    }
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            endpoint: "localhost:8083".into(),
            tenant: TenantConfig::default(),
            max_rows: 100_000,
            timeout: Duration::from_secs(30),
            max_memory_megabytes: 1024.0,
            index_cache_megabytes: engine::INDEX_CACHE_MEGABYTES,
            bloom_filter_cache_megabytes: engine::BLOOM_FILTER_CACHE_MEGABYTES,
            storage_options: BTreeMap::new(),
            auth: None,
            tls: None,
            max_concurrent_reads: 16,
            cache: CacheConfig::default(),
            datafusion: BTreeMap::new(),
        }
    }
}

impl ComponentConfig for QueryConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        check_endpoint(&self.endpoint).map_err(|m| ConfigIssue::new("endpoint", m))?;
        self.tenant.validate().map_err(|m| ConfigIssue::new("tenant", m))?;
        crate::check_tls(&self.tls)?;
        if self.max_rows == 0 {
            return Err(ConfigIssue::new("max_rows", "must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigIssue::new("timeout", "must be longer than 0"));
        }
        if self.max_memory_megabytes.is_nan() || self.max_memory_megabytes < 1.0 {
            return Err(ConfigIssue::new("max_memory_megabytes", "must be at least 1"));
        }
        if self.index_cache_megabytes.is_nan() || self.index_cache_megabytes < 0.0 {
            return Err(ConfigIssue::new("index_cache_megabytes", "must be 0 (no cache) or more"));
        }
        if self.bloom_filter_cache_megabytes.is_nan() || self.bloom_filter_cache_megabytes < 0.0 {
            return Err(ConfigIssue::new("bloom_filter_cache_megabytes", "must be 0 (no cache) or more"));
        }
        if self.max_concurrent_reads == 0 {
            return Err(ConfigIssue::new("max_concurrent_reads", "must be at least 1"));
        }
        if !(self.cache.max_megabytes >= 0.0 && self.cache.max_megabytes.is_finite()) {
            return Err(ConfigIssue::new("cache.max_megabytes", "must be 0 (no cache) or more"));
        }
        if !(self.cache.max_range_kilobytes > 0.0 && self.cache.max_range_kilobytes.is_finite()) {
            return Err(ConfigIssue::new("cache.max_range_kilobytes", "must be a positive number of kilobytes"));
        }
        engine::check_settings(&self.datafusion)
            .map_err(|(key, message)| ConfigIssue::new("datafusion", format!("`{key}`: {message}")))?;
        Ok(())
    }
}

impl QueryConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            max_rows: self.max_rows,
            timeout: self.timeout,
            memory_bytes: (self.max_memory_megabytes * 1024.0 * 1024.0) as usize,
            index_cache_bytes: (self.index_cache_megabytes * 1024.0 * 1024.0) as u64,
            bloom_filter_cache_bytes: (self.bloom_filter_cache_megabytes * 1024.0 * 1024.0) as u64,
        }
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Extension>> {
    typed::<QueryConfig, dyn Extension>(
        "query",
        &[],
        &Signal::ALL,
        "SQL over stored telemetry (DataFusion), per tenant: /api/v1/query",
        |_id: &ComponentId, cfg: &QueryConfig, env: &BuildEnv| {
            Ok(Box::new(QueryExtension { cfg: cfg.clone(), data_dir: env.data_dir.clone() }))
        },
    )
}

struct QueryExtension {
    cfg: QueryConfig,
    data_dir: std::path::PathBuf,
}

struct AppState {
    engine: Engine,
    tenant: TenantConfig,
    metrics: QueryMetrics,
}

#[async_trait]
impl Extension for QueryExtension {
    async fn start(self: Box<Self>, ctx: ExtensionContext) -> anyhow::Result<JoinHandle<()>> {
        let engine = Engine::new(
            ctx.catalog.clone(),
            ctx.storage.clone(),
            self.cfg.storage_options.clone(),
            self.cfg.limits(),
            ctx.index_specs.clone(),
            ctx.fresh.clone(),
        )?
        .with_settings(&self.cfg.datafusion)?;
        let cache = read_cache::CacheSettings {
            directory: self.cfg.cache.directory.clone().unwrap_or_else(|| self.data_dir.join("cache").join("query")),
            max_bytes: (self.cfg.cache.max_megabytes * 1024.0 * 1024.0) as u64,
            max_range_bytes: (self.cfg.cache.max_range_kilobytes * 1024.0) as u64,
        };
        let cache = read_cache::ReadCache::open(cache.clone(), &ctx.telemetry).map_err(|e| {
            anyhow::anyhow!("extensions.{}.cache: cannot open {}: {e}", ctx.id, cache.directory.display())
        })?;
        let engine = engine.with_remote_reads(cache, self.cfg.max_concurrent_reads);
        let metrics = QueryMetrics::register(&ctx.telemetry);
        let state = Arc::new(AppState { engine, tenant: self.cfg.tenant.clone(), metrics });
        let app = Router::new().route("/api/v1/query", get(query_get).post(query_post)).with_state(state);
        let app = crate::guarded(app, self.cfg.auth.as_ref(), &ctx)?;
        ctx.apis.add(&self.cfg.endpoint, &ctx.id, app, self.cfg.tls.clone());
        tracing::info!(endpoint = %self.cfg.endpoint, "query API on /api/v1/query");
        Ok(tokio::spawn(async {}))
    }
}

type Who = Option<axum::Extension<openwit_core::auth::Identity>>;

async fn query_get(State(st): State<Arc<AppState>>, who: Who, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    answer(st, &headers, who, QueryRequest::from_query_string(q.as_deref().unwrap_or(""))).await
}

async fn query_post(State(st): State<Arc<AppState>>, who: Who, headers: HeaderMap, body: Bytes) -> Response {
    answer(st, &headers, who, QueryRequest::from_json(&body)).await
}

async fn answer(st: Arc<AppState>, headers: &HeaderMap, who: Who, req: Result<QueryRequest, QueryError>) -> Response {
    match req {
        Ok(req) => run(st, headers, who.as_ref().map(|w| &w.0), req).await,
        Err(e) => {
            st.metrics.record(Instant::now(), e.kind.label(), None);
            error_response(&e)
        }
    }
}

fn error_response(e: &QueryError) -> Response {
    let status = match e.kind {
        FailureKind::Invalid => StatusCode::BAD_REQUEST,
        FailureKind::Limit => StatusCode::PAYLOAD_TOO_LARGE,
        FailureKind::Timeout => StatusCode::REQUEST_TIMEOUT,
        FailureKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        FailureKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut r = (status, axum::Json(json!({ "error": e.message, "kind": e.kind.label() }))).into_response();
    if e.kind == FailureKind::Unavailable {
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    r
}

fn too_many_rows(max: usize) -> QueryError {
    QueryError::new(
        FailureKind::Limit,
        format!(
            "the result has more than {max} rows (extensions.query.max_rows): add a LIMIT, aggregate, or narrow the WHERE clause"
        ),
    )
}

async fn run(
    st: Arc<AppState>,
    headers: &HeaderMap,
    identity: Option<&openwit_core::auth::Identity>,
    req: QueryRequest,
) -> Response {
    let started = Instant::now();
    let fail = |e: QueryError| {
        st.metrics.record(started, e.kind.label(), None);
        error_response(&e)
    };
    let format = req.format;
    let header = headers.get(&st.tenant.header).map(|v| v.as_bytes());
    let tenant =
        match openwit_core::auth::bound_tenant(identity, header, &st.tenant.header, |h| request::tenant(&st.tenant, h))
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return fail(e),
            Err(e) => {
                st.metrics.record(started, "forbidden", None);
                return (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({ "error": e.to_string() })))
                    .into_response();
            }
        };
    let limits = st.engine.limits.clone();
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let timed_out = || {
        QueryError::new(
            FailureKind::Timeout,
            format!(
                "the query ran longer than {:?} (extensions.query.timeout): narrow the time range or aggregate",
                limits.timeout
            ),
        )
    };
    let mut running = match tokio::time::timeout_at(deadline, st.engine.start(tenant.as_str(), &req.sql)).await {
        Err(_) => return fail(timed_out()),
        Ok(Err(e)) => return fail(e),
        Ok(Ok(r)) => r,
    };
    // Read (and encode) the head of the result before answering, so that a result of up to HEAD_BYTES
    // has its errors and row count known before the status line.
    let schema = running.stream.schema();
    let (mut encoder, start) = match Encoder::new(format, &schema) {
        Ok(x) => x,
        Err(e) => return fail(QueryError::new(FailureKind::Internal, e.to_string())),
    };
    let (mut rows, mut bytes, mut ended) = (0usize, start.len(), false);
    let mut chunks: Vec<Result<Vec<u8>, QueryError>> = vec![Ok(start)];
    while bytes < HEAD_BYTES {
        match tokio::time::timeout_at(deadline, running.stream.next()).await {
            Err(_) => return fail(timed_out()),
            Ok(None) => {
                ended = true;
                break;
            }
            Ok(Some(Err(e))) => return fail(QueryError::from_datafusion(&e)),
            Ok(Some(Ok(b))) => {
                rows += b.num_rows();
                if rows > limits.max_rows {
                    return fail(too_many_rows(limits.max_rows));
                }
                match encoder.batch(&b) {
                    Ok(chunk) => {
                        bytes += chunk.len();
                        chunks.push(Ok(chunk));
                    }
                    Err(e) => return fail(QueryError::new(FailureKind::Internal, e.to_string())),
                }
            }
        }
    }
    let tail = Tail { st: st.clone(), started, running, encoder, schema, rows, ended, deadline, limits }.stream();
    let body = futures::stream::iter(chunks).chain(tail).map(|c| match c {
        Ok(bytes) => Ok(Bytes::from(bytes)),
        Err(e) => Err(std::io::Error::other(e.message)),
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, format.content_type())
        .header("x-openwit-tenant", tenant.as_str())
        .body(Body::from_stream(body))
        .expect("valid response")
}

/// The rest of the result, after the head: batches as they come, under the row limit and the deadline.
/// A failure here ends the response early (the client sees a cut-off body) and is logged.
struct Tail {
    st: Arc<AppState>,
    started: Instant,
    running: Running,
    encoder: Encoder,
    schema: arrow::datatypes::SchemaRef,
    rows: usize,
    ended: bool,
    deadline: tokio::time::Instant,
    limits: Limits,
}

impl Tail {
    fn fail(&self, e: &QueryError) {
        tracing::warn!("query failed after its answer began: {}", e.message);
        self.st.metrics.record(self.started, e.kind.label(), Some(&self.running));
    }

    fn stream(self) -> impl futures::Stream<Item = Result<Vec<u8>, QueryError>> + Send {
        futures::stream::unfold(Some(self), |state| async move {
            let mut t = state?;
            loop {
                if t.ended {
                    let end =
                        t.encoder.finish(&t.schema).map_err(|e| QueryError::new(FailureKind::Internal, e.to_string()));
                    t.st.metrics.record(t.started, "ok", Some(&t.running));
                    return Some((end, None));
                }
                let e = match tokio::time::timeout_at(t.deadline, t.running.stream.next()).await {
                    Err(_) => QueryError::new(
                        FailureKind::Timeout,
                        format!("the query ran longer than {:?} (extensions.query.timeout)", t.limits.timeout),
                    ),
                    Ok(None) => {
                        t.ended = true;
                        continue;
                    }
                    Ok(Some(Err(e))) => QueryError::from_datafusion(&e),
                    Ok(Some(Ok(b))) => {
                        t.rows += b.num_rows();
                        if t.rows > t.limits.max_rows {
                            too_many_rows(t.limits.max_rows)
                        } else {
                            let chunk =
                                t.encoder.batch(&b).map_err(|e| QueryError::new(FailureKind::Internal, e.to_string()));
                            return Some((chunk, Some(t)));
                        }
                    }
                };
                t.fail(&e);
                return Some((Err(e), None));
            }
        })
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn cache_budgets_below_zero_are_refused_by_name_and_zero_turns_a_cache_off() {
        for (cfg, key) in [
            (QueryConfig { index_cache_megabytes: -1.0, ..Default::default() }, "index_cache_megabytes"),
            (QueryConfig { bloom_filter_cache_megabytes: -1.0, ..Default::default() }, "bloom_filter_cache_megabytes"),
            (
                QueryConfig { bloom_filter_cache_megabytes: f64::NAN, ..Default::default() },
                "bloom_filter_cache_megabytes",
            ),
        ] {
            let issue = cfg.validate().unwrap_err();
            assert!(format!("{issue:?}").contains(key), "{issue:?}");
        }
        let off = QueryConfig { bloom_filter_cache_megabytes: 0.0, index_cache_megabytes: 0.0, ..Default::default() };
        assert!(off.validate().is_ok());
        assert_eq!(off.limits().bloom_filter_cache_bytes, 0);
        assert_eq!(QueryConfig::default().limits().bloom_filter_cache_bytes, 64 << 20);
    }
}
