//! The `batch_monitor` extension: an HTTP API over the batch tracker.
//!
//! - `GET /api/batch-monitor/status`: batches per status and per stage, and per tenant over the last
//!   5 minutes, hour and day;
//! - `GET /api/batch-monitor/batches?status=pending|failed|completed&min_age_minutes=N&tenant=T&limit=N`;
//! - `GET /api/batch-monitor/batches/{batch_id}`: every stage with its time, and the error if any;
//! - `GET /api/batch-monitor/alerts`: batches pending for longer than `stuck_after`, and failed ones;
//! - `POST /api/batch-monitor/batches/{batch_id}/retry` and `POST /api/batch-monitor/retry-failed`:
//!   send failed batches (still in the WAL) through their pipelines again, without a restart.

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use openwit_catalog::{BatchFilter, Catalog};
use openwit_core::config_types::check_endpoint;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::{BuildEnv, ComponentId, ConfigIssue, Extension, ExtensionContext, Factory, Signal};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Largest page of batches one request returns.
const MAX_LIMIT: i64 = 1000;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchMonitorConfig {
    /// The API port (shared with the query extension when both name the same one).
    pub endpoint: String,
    /// A pending batch older than this is an alert.
    #[serde(with = "humantime_serde")]
    pub stuck_after: Duration,
    /// `auth: {authenticator: <extension id>}`: requests need accepted credentials; an identity bound to a
    /// tenant sees that tenant's batches only and cannot retry; an admin (`*`) sees all.
    pub auth: Option<openwit_core::auth::AuthRef>,
    /// TLS on the API port (the same as the query extension's when they share it).
    #[serde(deserialize_with = "openwit_core::config_types::present_or_default")]
    pub tls: Option<openwit_core::tls::TlsSettings>,
}

impl Default for BatchMonitorConfig {
    fn default() -> Self {
        BatchMonitorConfig {
            endpoint: "localhost:8083".into(),
            stuck_after: Duration::from_secs(3600),
            auth: None,
            tls: None,
        }
    }
}

impl ComponentConfig for BatchMonitorConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        check_endpoint(&self.endpoint).map_err(|m| ConfigIssue::new("endpoint", m))?;
        crate::check_tls(&self.tls)
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Extension>> {
    typed::<BatchMonitorConfig, dyn Extension>(
        "batch_monitor",
        &[],
        &Signal::ALL,
        "HTTP API over the batch tracker: status, batches, alerts",
        |_id: &ComponentId, cfg: &BatchMonitorConfig, _env: &BuildEnv| Ok(Box::new(BatchMonitor { cfg: cfg.clone() })),
    )
}

struct BatchMonitor {
    cfg: BatchMonitorConfig,
}

struct AppState {
    operator: Arc<dyn openwit_core::Operator>,
    /// The daemon's catalog: it connects on first use, so an outage is a 503 per request, not a failed start.
    catalog: Catalog,
    stuck_after_ms: i64,
}

#[async_trait]
impl Extension for BatchMonitor {
    async fn start(self: Box<Self>, ctx: ExtensionContext) -> anyhow::Result<JoinHandle<()>> {
        let state = Arc::new(AppState {
            operator: ctx.operator.clone(),
            catalog: ctx.catalog.clone(),
            stuck_after_ms: self.cfg.stuck_after.as_millis() as i64,
        });
        let app = Router::new()
            .route("/api/batch-monitor/status", get(status))
            .route("/api/v1/nodes", get(nodes))
            .route("/api/batch-monitor/batches", get(batches))
            .route("/api/batch-monitor/batches/{batch_id}", get(batch))
            .route("/api/batch-monitor/alerts", get(alerts))
            .route("/api/batch-monitor/batches/{batch_id}/retry", axum::routing::post(retry_one))
            .route("/api/batch-monitor/retry-failed", axum::routing::post(retry_all))
            .with_state(state);
        let app = crate::guarded(app, self.cfg.auth.as_ref(), &ctx)?;
        ctx.apis.add(&self.cfg.endpoint, &ctx.id, app, self.cfg.tls.clone());
        tracing::info!(endpoint = %self.cfg.endpoint, "batch monitor API on /api/batch-monitor");
        Ok(tokio::spawn(async {}))
    }
}

use crate::now_ms;

fn error(code: StatusCode, message: String) -> Response {
    (code, axum::Json(json!({ "error": message }))).into_response()
}

fn db_error(e: openwit_catalog::CatalogError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, format!("catalog query failed: {e}"))
}

type Who = Option<axum::Extension<openwit_core::auth::Identity>>;

/// The tenant the caller is limited to, if any.
fn tenant_limit(who: &Who) -> Option<String> {
    crate::bound_to(who.as_ref().map(|w| &w.0)).map(|t| t.as_str().to_string())
}

/// The daemons sharing the catalog: id, hostname, version, address, start, last heartbeat, state.
async fn nodes(State(st): State<Arc<AppState>>) -> Response {
    match st.catalog.nodes(now_ms()).await {
        Ok(rows) => axum::Json(json!({ "nodes": rows })).into_response(),
        Err(e) => db_error(e),
    }
}

async fn status(State(st): State<Arc<AppState>>, who: Who) -> Response {
    let c = &st.catalog;
    match c.status(now_ms()).await {
        // A tenant's identity sees its own tenant's figures only (the totals would tell about others).
        Ok(s) if let Some(t) = tenant_limit(&who) => {
            axum::Json(json!({ "tenants": s.by_tenant.into_iter().filter(|w| w.tenant == t).collect::<Vec<_>>() }))
                .into_response()
        }
        Ok(s) => axum::Json(json!({
            "batches_by_status": s.by_status.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            "batches_by_stage": s.by_stage.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            "tenants": s.by_tenant,
        }))
        .into_response(),
        Err(e) => db_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    min_age_minutes: Option<i64>,
    tenant: Option<String>,
    /// One node's batches (a node id of the `nodes` registry); all nodes' by default.
    node: Option<String>,
    limit: Option<i64>,
}

async fn batches(
    State(st): State<Arc<AppState>>,
    who: Who,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{e}; parameters: status=pending|failed|completed, min_age_minutes=N, tenant=T, node=ID, limit=N"
                ),
            );
        }
    };
    if let Some(s) = &q.status
        && !["pending", "failed", "completed"].contains(&s.as_str())
    {
        return error(StatusCode::BAD_REQUEST, format!("status {s:?}: use pending, failed or completed"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, format!("limit {limit}: use 1 to {MAX_LIMIT}"));
    }
    let tenant = match (tenant_limit(&who), q.tenant) {
        (Some(mine), Some(asked)) if asked != mine => {
            return error(StatusCode::FORBIDDEN, format!("this identity sees tenant {mine} only, not {asked}"));
        }
        (Some(mine), _) => Some(mine),
        (None, asked) => asked,
    };
    let c = &st.catalog;
    let f = BatchFilter {
        status: q.status,
        tenant,
        min_age_ms: q.min_age_minutes.map(|m| m * 60_000),
        node_id: q.node,
        limit,
    };
    match c.batches(&f, now_ms()).await {
        Ok(rows) => axum::Json(json!({ "batches": rows })).into_response(),
        Err(e) => db_error(e),
    }
}

async fn batch(State(st): State<Arc<AppState>>, who: Who, Path(id): Path<String>) -> Response {
    let c = &st.catalog;
    let mine = tenant_limit(&who);
    match c.batch(&id).await {
        // Another tenant's batch is answered as absent: its existence is not the caller's to know.
        Ok(Some(row)) if mine.as_ref().is_none_or(|t| *t == row.batch.client_id) => axum::Json(row).into_response(),
        Ok(Some(_)) => error(StatusCode::NOT_FOUND, format!("no batch {id:?} in the catalog")),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no batch {id:?} in the catalog")),
        Err(e) => db_error(e),
    }
}

async fn alerts(State(st): State<Arc<AppState>>, who: Who) -> Response {
    let c = &st.catalog;
    let mine = tenant_limit(&who);
    match c.alerts(st.stuck_after_ms, now_ms(), MAX_LIMIT).await {
        Ok(mut rows) => {
            if let Some(t) = &mine {
                rows.retain(|r| &r.batch.client_id == t);
            }
            let (failed, stuck): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.status == "failed");
            axum::Json(json!({ "stuck_after_minutes": st.stuck_after_ms / 60_000, "failed": failed, "stuck": stuck }))
                .into_response()
        }
        Err(e) => db_error(e),
    }
}

fn operator_only(who: &Who) -> Option<Response> {
    tenant_limit(who).map(|t| {
        error(StatusCode::FORBIDDEN, format!("retrying is for admin identities; this one is bound to tenant {t}"))
    })
}

async fn retry_one(State(st): State<Arc<AppState>>, who: Who, Path(id): Path<String>) -> Response {
    if let Some(r) = operator_only(&who) {
        return r;
    }
    retried(st.operator.retry_failed(Some(vec![id])).await)
}

async fn retry_all(State(st): State<Arc<AppState>>, who: Who) -> Response {
    if let Some(r) = operator_only(&who) {
        return r;
    }
    retried(st.operator.retry_failed(None).await)
}

fn retried(r: Result<usize, openwit_core::OperatorError>) -> Response {
    match r {
        Ok(n) => (StatusCode::ACCEPTED, axum::Json(json!({ "retried": n }))).into_response(),
        Err(e @ openwit_core::OperatorError::NotFailed(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
