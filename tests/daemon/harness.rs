//! Starting and stopping the real daemon, and reading what its exporters wrote.

use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use openwit_core::net::free_loopback_port as free_port;

/// Where tests/run installs the tools the tests run (`$OPENWIT_TEST_TOOLS`, default
/// `~/.cache/openwit/tools`).
pub fn tools() -> PathBuf {
    std::env::var_os("OPENWIT_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/openwit/tools"))
}

/// A tool at `rel` under [`tools`]; a test that needs one and cannot find it fails and says so.
pub fn tool(rel: &str) -> PathBuf {
    let p = tools().join(rel);
    assert!(p.exists(), "{} is missing: run tests/run, which installs the tools the tests use", p.display());
    p
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_openwit")
}

/// A running daemon with its own ports and directory.
pub struct Daemon {
    child: Option<Child>,
    /// The daemon's directory (config, data, exporter files).
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub grpc: u16,
    pub http: u16,
    pub health: u16,
    pub metrics: u16,
    log: PathBuf,
}

/// The usual test config: OTLP in, every signal to a protobuf file and to `debug`.
/// Placeholders: {grpc} {http} {health} {metrics} {dir}.
pub const FILE_PIPELINES: &str = "
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  file/traces:
    path: {dir}/traces.bin
    format: proto
  file/metrics:
    path: {dir}/metrics.bin
    format: proto
  file/logs:
    path: {dir}/logs.bin
    format: proto
  debug:
    verbosity: basic
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file/traces, debug]
    metrics:
      receivers: [otlp]
      exporters: [file/metrics, debug]
    logs:
      receivers: [otlp]
      exporters: [file/logs, debug]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
";

/// What most tests share: OTLP on both protocols, the health check, the own-metrics endpoint. A test adds
/// its components and pipelines in a second config source, deep-merged over this one as the Collector
/// merges several `--config`s (`Daemon::start_on_base`).
pub const BASE: &str = "
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
";

impl Daemon {
    /// Starts the daemon with `BASE` and then `configs` as its config sources (merged in order), and
    /// waits until it is healthy.
    pub async fn start_on_base(configs: &[&str]) -> Daemon {
        let tmp = tempfile::tempdir().unwrap();
        let sources: Vec<&str> = std::iter::once(BASE).chain(configs.iter().copied()).collect();
        let mut d = Daemon::spawn_sources(tmp.path(), &sources, &[], &[]);
        d._tmp = Some(tmp);
        d.wait_ready().await;
        d
    }

    /// Starts in an existing directory (to restart over the same data) with `BASE` and then `config`,
    /// without waiting.
    pub fn spawn_in_on_base(dir: &Path, config: &str) -> Daemon {
        Daemon::spawn_sources(dir, &[BASE, config], &[], &[])
    }

    /// Starts the daemon with `config` (placeholders filled in) and waits until it is healthy.
    pub async fn start(config: &str) -> Daemon {
        let d = Daemon::spawn(config, &[]);
        d.wait_ready().await;
        d
    }

    /// Starts without waiting, with extra command-line arguments.
    pub fn spawn(config: &str, extra_args: &[&str]) -> Daemon {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut d = Daemon::spawn_in(&dir, config, extra_args);
        d._tmp = Some(tmp);
        d
    }

    /// Starts with extra environment variables and waits until it is healthy.
    pub async fn start_env(config: &str, env: &[(String, String)]) -> Daemon {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = Daemon::spawn_in_env(tmp.path(), config, &[], env);
        d._tmp = Some(tmp);
        d.wait_ready().await;
        d
    }

    /// Starts in an existing directory (to restart over the same data), on fresh ports.
    pub fn spawn_in(dir: &Path, config: &str, extra_args: &[&str]) -> Daemon {
        Daemon::spawn_in_env(dir, config, extra_args, &[])
    }

    pub fn spawn_in_env(dir: &Path, config: &str, extra_args: &[&str], env: &[(String, String)]) -> Daemon {
        Daemon::spawn_sources(dir, &[config], extra_args, env)
    }

    /// Starts in `dir` (to restart over the same data) with `BASE` and then `config`, without waiting, its
    /// log in `log` rather than in `dir` (for a directory on a test filesystem that fails or forgets).
    pub fn spawn_in_on_base_logging_to(dir: &Path, config: &str, log: &Path) -> Daemon {
        Daemon::spawn_sources_logging_to(dir, &[BASE, config], &[], &[], log)
    }

    /// Starts in `dir` with these config sources (merged in order) and extra environment, without waiting.
    pub fn spawn_sources_env(dir: &Path, configs: &[&str], env: &[(String, String)]) -> Daemon {
        Daemon::spawn_sources(dir, configs, &[], env)
    }

    /// Starts with several config sources, merged in order (placeholders filled in in each).
    fn spawn_sources(dir: &Path, configs: &[&str], extra_args: &[&str], env: &[(String, String)]) -> Daemon {
        Daemon::spawn_sources_logging_to(dir, configs, extra_args, env, &dir.join("daemon.log"))
    }

    fn spawn_sources_logging_to(
        dir: &Path,
        configs: &[&str],
        extra_args: &[&str],
        env: &[(String, String)],
        log: &Path,
    ) -> Daemon {
        let dir = dir.to_path_buf();
        let (grpc, http, health, metrics) = (free_port(), free_port(), free_port(), free_port());
        let mut cmd = Command::new(bin());
        for (i, config) in configs.iter().enumerate() {
            let text = config
                .replace("{grpc}", &grpc.to_string())
                .replace("{http}", &http.to_string())
                .replace("{health}", &health.to_string())
                .replace("{metrics}", &metrics.to_string())
                .replace("{dir}", dir.to_str().unwrap());
            let cfg_path = dir.join(if i == 0 { "config.yaml".to_string() } else { format!("config-{i}.yaml") });
            std::fs::write(&cfg_path, text).unwrap();
            cmd.arg("--config").arg(&cfg_path);
        }
        let log = log.to_path_buf();
        let child = cmd
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(extra_args)
            .env("OPENWIT_TEST_COMPONENTS", "1")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child: Some(child), dir, _tmp: None, grpc, http, health, metrics, log }
    }

    /// Starts the embedded default config (no `--config`) in a new directory, its fixed ports moved to
    /// free ones with `--set`, and waits until it is healthy. Returns it with its query API's port.
    pub async fn start_embedded_default() -> (Daemon, u16) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let (grpc, http, health, metrics, api) = (free_port(), free_port(), free_port(), free_port(), free_port());
        let log = dir.join("daemon.log");
        let sets = [
            format!("receivers.otlp.protocols.grpc.endpoint=127.0.0.1:{grpc}"),
            format!("receivers.otlp.protocols.http.endpoint=127.0.0.1:{http}"),
            format!("extensions.health_check.endpoint=127.0.0.1:{health}"),
            format!("extensions.batch_monitor.endpoint=127.0.0.1:{api}"),
            format!("extensions.query.endpoint=127.0.0.1:{api}"),
            format!("service.telemetry.metrics.address=127.0.0.1:{metrics}"),
        ];
        let mut cmd = Command::new(bin());
        for s in &sets {
            cmd.arg("--set").arg(s);
        }
        let child = cmd
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon { child: Some(child), dir, _tmp: Some(tmp), grpc, http, health, metrics, log };
        d.wait_ready().await;
        (d, api)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/", self.health);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = client().get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("daemon did not become healthy; log:\n{}", self.logs());
    }

    /// The daemon's own metrics, as Prometheus text.
    pub async fn metrics_text(&self) -> String {
        client().get(format!("http://127.0.0.1:{}/metrics", self.metrics)).send().await.unwrap().text().await.unwrap()
    }

    /// The sum of the samples whose line starts with `prefix` (a metric name, with labels or a
    /// first part of them) in the daemon's own metrics.
    pub async fn metric_sum(&self, prefix: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Polls [`Daemon::metric_sum`] of `prefix` every 50 ms until `done` holds or `timeout` passes;
    /// returns the last sum read.
    pub async fn metric_until(&self, prefix: &str, timeout: Duration, done: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.metric_sum(prefix).await;
            if done(v) || Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Posts an OTLP/HTTP protobuf body to `path` (`/v1/traces`, …); the answer's status.
    pub async fn post_protobuf(&self, path: &str, body: Vec<u8>) -> u16 {
        let r = client()
            .post(self.http_url(path))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    }

    /// Posts an OTLP/HTTP protobuf body to `path` as `tenant` (`X-Scope-OrgID`); the answer.
    pub async fn post_protobuf_as(&self, tenant: &str, path: &str, body: Vec<u8>) -> reqwest::Response {
        client()
            .post(self.http_url(path))
            .header("content-type", "application/x-protobuf")
            .header("x-scope-orgid", tenant)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Asserts the daemon still answers: a valid OTLP/HTTP request is accepted.
    pub async fn assert_serving(&self) {
        let r = client()
            .post(self.http_url("/v1/logs"))
            .header("content-type", "application/json")
            .body(r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"still alive"}}]}]}]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "daemon stopped serving; log:\n{}", self.logs());
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                panic!("daemon did not exit within {timeout:?}; log:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `sql` through the query API on `port` (default tenant) and returns the rows; panics on an error.
pub async fn sql_rows(port: u16, sql: &str) -> serde_json::Value {
    sql_as(port, "default", sql).await
}

/// Runs `sql` as `tenant` through the query API on `port` and returns the rows; panics on an error.
pub async fn sql_as(port: u16, tenant: &str, sql: &str) -> serde_json::Value {
    let r = client()
        .post(format!("http://127.0.0.1:{port}/api/v1/query"))
        .header("x-scope-orgid", tenant)
        .json(&serde_json::json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{sql}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The counter `name` of an `EXPLAIN ANALYZE` plan, summed over its operators.
pub fn plan_counter(plan: &str, name: &str) -> usize {
    let key = format!("{name}=");
    plan.match_indices(&key)
        .map(|(at, _)| plan[at + key.len()..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap_or(0))
        .sum()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Reads every record of a `format: proto` file exporter output.
pub fn read_records<M: Message + Default>(path: &Path) -> Vec<M> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        if rest.len() < 4 + n {
            break; // a record still being written
        }
        out.push(M::decode(&rest[4..4 + n]).unwrap());
        rest = &rest[4 + n..];
    }
    out
}

/// Polls `read` until `done` holds or the timeout passes; returns the last value read.
pub async fn eventually<T>(timeout: Duration, mut read: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let v = read();
        if done(&v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An item's WAL batch id and index in that batch.
pub type ItemRef = (openwit_core::BatchId, u32);

/// Reads a `testing` exporter's file: each record's (WAL batch id, item index) pairs and request.
pub fn read_testing<M: Message + Default>(path: &Path) -> Vec<(Vec<ItemRef>, M)> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let (records, _) = openwit_exporters::testing::read_records(&bytes);
    records.into_iter().map(|(items, body)| (items, M::decode(&body[..]).unwrap())).collect()
}

/// Spans in trace requests.
pub fn span_count<'a>(
    reqs: impl IntoIterator<Item = &'a opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
) -> usize {
    reqs.into_iter().flat_map(|r| &r.resource_spans).flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum()
}

/// Every file under `root` (depth first) whose extension is `ext`.
pub fn files_under(root: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out
}

/// A logs export request with one record whose body is `body`.
pub fn log_request(body: &str) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(AnyValue { value: Some(Value::StringValue(body.into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
