//! The `health_check` extension: answers 200 while the daemon is ready and 503 while it is starting
//! or stopping, with the Collector's JSON body.

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use openwit_core::config_types::check_endpoint;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::health::{Health, HealthStatus};
use openwit_core::{BuildEnv, ComponentId, ConfigIssue, Extension, ExtensionContext, Factory, Signal};
use serde::Deserialize;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Bodies to send instead of the default JSON.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseBody {
    pub healthy: Option<String>,
    pub unhealthy: Option<String>,
}

/// The `health_check` extension's config (the Collector's keys).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    pub endpoint: String,
    pub path: String,
    pub response_body: Option<ResponseBody>,
    /// Accepted for compatibility (deprecated in the Collector); has no effect.
    pub check_collector_pipeline: Option<serde_json::Value>,
    #[serde(deserialize_with = "openwit_core::config_types::present_or_default")]
    pub tls: Option<openwit_core::tls::TlsSettings>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            endpoint: "localhost:13133".into(),
            path: "/".into(),
            response_body: None,
            check_collector_pipeline: None,
            tls: None,
        }
    }
}

impl ComponentConfig for HealthCheckConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        check_endpoint(&self.endpoint).map_err(|m| ConfigIssue::new("endpoint", m))?;
        crate::check_tls(&self.tls)?;
        if !self.path.starts_with('/') {
            return Err(ConfigIssue::new("path", format!("{:?} must start with '/'", self.path)));
        }
        Ok(())
    }
}

/// The `health_check` factory.
pub fn factory() -> Arc<dyn Factory<dyn Extension>> {
    typed::<HealthCheckConfig, dyn Extension>(
        "health_check",
        &[],
        &Signal::ALL,
        "HTTP health endpoint (200 when ready, 503 while starting or stopping)",
        |_id: &ComponentId, cfg: &HealthCheckConfig, _env: &BuildEnv| Ok(Box::new(HealthCheck { cfg: cfg.clone() })),
    )
}

struct HealthCheck {
    cfg: HealthCheckConfig,
}

#[async_trait]
impl Extension for HealthCheck {
    async fn start(self: Box<Self>, ctx: ExtensionContext) -> anyhow::Result<JoinHandle<()>> {
        let listener = crate::bind(&format!("extension {}", ctx.id), &self.cfg.endpoint, self.cfg.tls.as_ref()).await?;
        let app = Router::new()
            .route(&self.cfg.path, get(health))
            .with_state((ctx.health.clone(), Arc::new(self.cfg.response_body.clone().unwrap_or_default())));
        let shutdown = ctx.shutdown.clone();
        Ok(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
                tracing::error!("health_check server stopped: {e}");
            }
        }))
    }
}

async fn health(State((health, bodies)): State<(Arc<Health>, Arc<ResponseBody>)>) -> Response {
    let (status, since, uptime) = health.get();
    let ready = status == HealthStatus::Ready;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let custom = if ready { &bodies.healthy } else { &bodies.unhealthy };
    if let Some(body) = custom {
        return (code, body.clone()).into_response();
    }
    let up_since =
        time::OffsetDateTime::from(since).format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let body = serde_json::json!({
        "status": if ready { "Server available" } else { "Server not available" },
        "upSince": up_since,
        "uptime": format!("{:.6}s", uptime.as_secs_f64()),
    });
    (code, [("content-type", "application/json")], body.to_string()).into_response()
}
