//! The daemon's life: start in order, run until a signal, stop in reverse order within the grace period.

use crate::graph;
use openwit_config::{ResolvedConfig, TelemetryConfig};
use openwit_core::health::{Health, HealthStatus};
use openwit_core::telemetry::Telemetry;
use openwit_core::{BuildEnv, ExtensionContext};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Sets up logging at `service.telemetry.logs.level` (`RUST_LOG`, when set, wins).
pub fn init_logging(t: &TelemetryConfig) {
    let level = match t.logs.level.to_ascii_lowercase().as_str() {
        "dpanic" | "panic" | "fatal" => "error".to_string(),
        l => l.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if t.logs.encoding == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    for k in t.ignored_keys() {
        tracing::warn!(
            "service.telemetry.{k} is accepted for Collector compatibility but has no effect in OpenWit"
        );
    }
}

/// Runs the config until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(
    mut cfg: ResolvedConfig,
    data_dir: PathBuf,
    grace: Duration,
) -> anyhow::Result<()> {
    let telemetry = Arc::new(Telemetry::default());
    let health = Arc::new(Health::default());
    let env = BuildEnv {
        data_dir,
        telemetry: telemetry.clone(),
    };
    let side_stop = CancellationToken::new();
    let mut side_tasks = Vec::new();

    if let Some(endpoint) = cfg.telemetry.metrics_endpoint() {
        side_tasks.push(
            openwit_extensions::metrics_endpoint::start(
                &endpoint,
                telemetry.clone(),
                side_stop.clone(),
            )
            .await?,
        );
    }
    for id in cfg.service_extensions.clone() {
        let ext = graph::build(&mut cfg.extensions, &id, &env)?;
        let ctx = ExtensionContext {
            id: id.clone(),
            health: health.clone(),
            telemetry: telemetry.clone(),
            shutdown: side_stop.clone(),
        };
        side_tasks.push(ext.start(ctx).await?);
    }

    let graph = graph::start(&mut cfg, &env).await?;
    health.set(HealthStatus::Ready);
    tracing::info!(pipelines = cfg.pipelines.len(), "OpenWit is ready");

    wait_for_signal().await;
    health.set(HealthStatus::Stopping);
    tracing::info!(grace = ?grace, "shutting down: no longer accepting data, draining pipelines");

    let drain = async {
        graph.receivers_stop.cancel();
        for t in graph.receivers {
            let _ = t.await;
        }
        for t in graph.pipeline_tasks {
            let _ = t.await;
        }
    };
    let drained = tokio::time::timeout(grace, drain).await.is_ok();
    side_stop.cancel();
    for t in side_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    if drained {
        tracing::info!("stopped cleanly");
        Ok(())
    } else {
        anyhow::bail!(
            "pipelines did not drain within the shutdown timeout of {grace:?}; data still in flight was not exported (raise --shutdown-timeout)"
        )
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("received SIGTERM"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only SIGINT will stop the daemon");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
