//! Plugins through the real binary: the example plugins (a Rust processor, a Rust exporter, a C
//! processor) and a test plugin are built here with cargo and cc, loaded by the config, and fed with
//! the OTel SDK; broken libraries are refused at start with what is wrong; a panic at the boundary
//! loses nothing that was acknowledged.

use crate::harness::*;
use opentelemetry::logs::{AnyValue as SdkAny, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The libraries the tests load.
pub struct Libraries {
    pub redact: PathBuf,
    pub ndjson: PathBuf,
    pub faulty: PathBuf,
    pub severity_floor: PathBuf,
    /// Says ABI version 99.
    pub wrong_version: PathBuf,
    /// Has no OpenWit symbol.
    pub not_a_plugin: PathBuf,
    /// Version 1, but its table was built against a header whose OpenwitPlugin is bigger.
    pub wrong_layout: PathBuf,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn cc(out: &Path, source: &Path) {
    let include = workspace().join("plugin-sdk/include");
    let r = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&include)
        .arg("-o")
        .arg(out)
        .arg(source)
        .output()
        .expect("a C compiler (cc)");
    assert!(r.status.success(), "cc {}: {}", source.display(), String::from_utf8_lossy(&r.stderr));
}

/// Builds every library once per test run: the Rust plugins with cargo, in a target directory of
/// their own (the tests' build holds the workspace's), the C ones with cc.
pub fn libraries() -> &'static Libraries {
    static LIBS: OnceLock<Libraries> = OnceLock::new();
    LIBS.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins");
        std::fs::create_dir_all(&root).unwrap();
        let target = root.join("target");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let r = Command::new(cargo)
            .current_dir(workspace())
            .args(["build", "--locked", "-p", "openwit-plugin-redact", "-p", "openwit-plugin-ndjson", "-p"])
            .arg("openwit-plugin-faulty")
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(r.status.success(), "building the Rust plugins: {}", String::from_utf8_lossy(&r.stderr));
        let so = |name: &str| target.join("debug").join(format!("lib{name}.so"));

        let severity_floor = root.join("libseverity_floor.so");
        cc(&severity_floor, &workspace().join("plugin-sdk/examples/severity_floor/severity_floor.c"));
        let broken = |name: &str, code: &str| {
            let src = root.join(format!("{name}.c"));
            std::fs::write(&src, code).unwrap();
            let out = root.join(format!("lib{name}.so"));
            cc(&out, &src);
            out
        };
        let wrong_version =
            broken("wrong_version", "#include <stdint.h>\nuint32_t openwit_plugin_abi_version(void) { return 99; }\n");
        let not_a_plugin = broken("not_a_plugin", "int something_else(void) { return 1; }\n");
        let wrong_layout = broken(
            "wrong_layout",
            "#include \"openwit_plugin.h\"\n\
             static const OpenwitPlugin p = {OPENWIT_PLUGIN_ABI_VERSION, sizeof(OpenwitPlugin) + 8,\n\
               sizeof(OpenwitComponent), \"old\", \"0\", 0, 0, 0};\n\
             uint32_t openwit_plugin_abi_version(void) { return OPENWIT_PLUGIN_ABI_VERSION; }\n\
             const OpenwitPlugin *openwit_plugin_entry(void) { return &p; }\n",
        );
        Libraries {
            redact: so("openwit_plugin_redact"),
            ndjson: so("openwit_plugin_ndjson"),
            faulty: so("openwit_plugin_faulty"),
            severity_floor,
            wrong_version,
            not_a_plugin,
            wrong_layout,
        }
    })
}

/// A log record to send: body, severity, attributes.
type Record = (String, Severity, Vec<(&'static str, String)>);

/// Sends log records with the OTel SDK.
fn send(endpoint: String, records: Vec<Record>) {
    use opentelemetry_otlp::{LogExporter, WithExportConfig};
    let exporter = LogExporter::builder().with_tonic().with_endpoint(endpoint).build().unwrap();
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("shop").build();
    let lp = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let logger = lp.logger("plugins");
    for (body, severity, attributes) in records {
        let mut rec = logger.create_log_record();
        rec.set_body(SdkAny::from(body));
        rec.set_severity_number(severity);
        for (k, v) in attributes {
            rec.add_attribute(k, v);
        }
        logger.emit(rec);
    }
    lp.force_flush().unwrap();
    lp.shutdown().unwrap();
}

async fn until_rows(port: u16, sql: &str, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = sql_rows(port, sql).await;
        if got.as_array().is_some_and(|a| a.len() == n) {
            return got;
        }
        assert!(Instant::now() < deadline, "{sql}: {got}, expected {n} rows");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const PIPELINES: &str = r#"
extensions:
  plugins:
    paths: [{redact}, {ndjson}, {severity_floor}]
  query:
    endpoint: 127.0.0.1:{api}
processors:
  batch:
    timeout: 50ms
  severity_floor:
    min_severity_number: 9
  redact:
    attributes: [user.email, card]
    patterns: ['\d{4}-\d{4}-\d{4}-\d{4}', '[a-z0-9.]+@[a-z]+\.[a-z]+']
    replacement: "<redacted>"
exporters:
  parquet:
    rotation:
      max_age: 200ms
  ndjson:
    path: {dir}/out.ndjson
service:
  extensions: [health_check, query, plugins]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch, severity_floor, redact]
      exporters: [parquet, ndjson]
"#;

fn with_libraries(config: &str, api: u16) -> String {
    let l = libraries();
    config
        .replace("{redact}", l.redact.to_str().unwrap())
        .replace("{ndjson}", l.ndjson.to_str().unwrap())
        .replace("{severity_floor}", l.severity_floor.to_str().unwrap())
        .replace("{faulty}", l.faulty.to_str().unwrap())
        .replace("{api}", &api.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_c_plugins_process_and_export_sdk_logs_through_the_real_binary() {
    let api = free_port();
    let d = Daemon::start_on_base(&[&with_libraries(PIPELINES, api)]).await;
    let mut records = Vec::new();
    for i in 0..30 {
        let severity = if i % 3 == 0 { Severity::Debug } else { Severity::Info };
        let attrs = vec![
            ("user.email", format!("user{i}@example.com")),
            ("card", format!("card 4111-1111-1111-{i:04} ok")),
            ("order", format!("{i}")),
            ("note", "mail ann@example.com".to_string()),
        ];
        records.push((format!("order {i} paid"), severity, attrs));
    }
    let endpoint = d.grpc_url();
    tokio::task::spawn_blocking(move || send(endpoint, records)).await.unwrap();

    // Parquet: the DEBUG records (every third) were dropped by the C processor, the others redacted by
    // the Rust one: the chosen keys only, the matches only; the other columns as sent.
    let sql = "SELECT body, attributes['user.email'] AS email, attributes['card'] AS card, \
               attributes['note'] AS note, severity_number FROM logs ORDER BY body";
    let rows = until_rows(api, sql, 20).await;
    for r in rows.as_array().unwrap() {
        let i: usize = r["body"].as_str().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        assert_ne!(i % 3, 0, "a DEBUG record was kept: {r}");
        assert_eq!(r["email"], json!("<redacted>"), "{r}");
        assert_eq!(r["card"], json!("card <redacted> ok"), "{r}");
        assert_eq!(r["note"], json!("mail ann@example.com"), "a key not listed stays as it is: {r}");
        assert_eq!(r["severity_number"], json!(9), "{r}");
    }
    // Every row stored once, in the stable files too (not only in memory).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = sql_rows(api, "SELECT sum(row_count) AS n FROM files WHERE state = 'stable'").await;
        if n == json!([{"n": 20}]) {
            break;
        }
        assert!(Instant::now() < deadline, "stable rows: {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The Rust exporter: the same 20 rows, redacted, as JSON lines, fsynced before the acknowledgement
    // of their batch completed it.
    let lines: Vec<Value> = eventually(
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(d.path("out.ndjson"))
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        },
        |l| l.len() >= 20,
    )
    .await;
    assert_eq!(lines.len(), 20, "{}", d.logs());
    for l in &lines {
        assert_eq!(l["attributes"]["user.email"], json!("<redacted>"), "{l}");
        assert_eq!(l["service_name"], json!("shop"), "{l}");
        assert!(l["body"].as_str().unwrap().starts_with("order "), "{l}");
    }

    // Drops are counted as the processor's, like a built-in filter's; every batch completed.
    let metrics = d.metrics_text().await;
    assert!(
        metrics.contains("openwit_processor_dropped_log_records_total{processor=\"severity_floor\"} 10"),
        "{}",
        metrics.lines().filter(|l| l.contains("dropped")).collect::<Vec<_>>().join("\n")
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.metrics_text().await.contains("openwit_wal_pending_batches 0") {
        assert!(Instant::now() < deadline, "batches still pending: {}", d.metrics_text().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = d.metrics_text().await;
    assert!(metrics.contains("openwit_wal_batches_total{outcome=\"failed\"} 0"), "no batch failed: {metrics}");
}

#[test]
fn broken_libraries_are_refused_at_start_naming_the_file_and_what_is_wrong() {
    let l = libraries();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], paths: &[&Path], extra: &str| {
        let list: Vec<String> = paths.iter().map(|p| format!("'{}'", p.display())).collect();
        let config = format!(
            "extensions:\n  plugins:\n    paths: [{}]\nreceivers:\n  otlp:\n    protocols:\n      http:\n        \
             endpoint: 127.0.0.1:{}\nexporters:\n  nop:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      \
             exporters: [nop]\n",
            list.join(", "),
            free_port()
        );
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).unwrap();
        // The extra section is a second source, merged over the first (as several --config are).
        let more = dir.path().join("more.yaml");
        std::fs::write(&more, if extra.is_empty() { "{}" } else { extra }).unwrap();
        let out =
            Command::new(bin()).arg("--config").arg(&path).arg("--config").arg(&more).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, _, err) = run(&["validate"], &[&l.wrong_version], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(l.wrong_version.to_str().unwrap()), "the file is named: {err}");
    assert!(err.contains("ABI version 99") && err.contains("loads version 1"), "found and expected: {err}");
    assert!(err.contains("extensions.plugins.paths[0]"), "where the config names it: {err}");

    let (code, _, err) = run(&["validate"], &[&l.redact, &l.not_a_plugin], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(l.not_a_plugin.to_str().unwrap()) && err.contains("openwit_plugin_abi_version"), "{err}");
    assert!(err.contains("extensions.plugins.paths[1]"), "{err}");

    let (code, _, err) = run(&["validate"], &[&l.wrong_layout], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not match ABI version 1") && err.contains("built against a changed header"), "{err}");
    assert!(err.contains(l.wrong_layout.to_str().unwrap()), "{err}");

    let (code, _, err) = run(&["validate"], &[&dir.path().join("missing.so")], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("missing.so") && err.contains("no such file"), "{err}");

    // The real daemon does not start on any of them.
    let (code, _, err) = run(&[], &[&l.wrong_version], "");
    assert_eq!(code, Some(1), "{err}");

    // A good library: its types are listed like built-ins, with where they come from, and a plugin
    // validates its own section.
    let (code, out, err) = run(&["components"], &[&l.redact, &l.ndjson, &l.severity_floor], "");
    assert_eq!(code, Some(0), "{err}");
    for (t, lib) in [
        ("redact", "plugin openwit-plugin-redact"),
        ("ndjson", "plugin openwit-plugin-ndjson"),
        ("severity_floor", "plugin openwit-plugin-severity-floor 0.1.0"),
    ] {
        let at = out.find(&format!("\n  {t}\n")).unwrap_or_else(|| panic!("{t} is not listed: {out}"));
        assert!(out[at..].lines().nth(3).unwrap().contains(lib), "{t}: {}", &out[at..]);
    }
    let bad_section = "processors:\n  redact:\n    patterns: ['(unclosed']\n  severity_floor:\n    min_severity_number: 99\n\
                       exporters:\n  ndjson: {}\n";
    let (code, _, err) = run(&["validate"], &[&l.redact, &l.severity_floor, &l.ndjson], bad_section);
    assert_eq!(code, Some(1));
    assert!(err.contains("processors.redact") && err.contains("patterns[0]"), "{err}");
    assert!(err.contains("processors.severity_floor") && err.contains("from 0 to 24"), "{err}");
    assert!(err.contains("exporters.ndjson") && err.contains("path: required"), "{err}");

    // A type name that is taken: a plugin cannot replace a built-in, nor another plugin's type.
    let (code, _, err) = run(&["validate"], &[&l.redact, &l.redact], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("listed twice"), "{err}");
}

const FAULTY: &str = r#"
extensions:
  plugins:
    paths: [{faulty}]
  query:
    endpoint: 127.0.0.1:{api}
  wal:
    max_redeliveries: MAX
processors:
  faulty:
    marker: boom
    panics: PANICS
exporters:
  parquet:
    rotation:
      max_age: 200ms
service:
  extensions: [health_check, query]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [faulty]
      exporters: [parquet]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_plugin_fails_only_its_batch_which_stays_in_the_wal_and_is_delivered_again() {
    // Panics twice on the batch holding "boom", then passes it: delivered again from the WAL, stored
    // once; the batches around it are stored as usual.
    let api = free_port();
    let cfg = with_libraries(FAULTY, api).replace("MAX", "5").replace("PANICS", "2");
    let d = Daemon::start_on_base(&[&cfg]).await;
    let endpoint = d.grpc_url();
    let one = |b: &str| vec![(b.to_string(), Severity::Info, vec![])];
    let e = endpoint.clone();
    tokio::task::spawn_blocking(move || {
        send(e.clone(), one("before"));
        send(e.clone(), one("boom once"));
        send(e, one("after"));
    })
    .await
    .unwrap();
    let rows = until_rows(api, "SELECT body FROM logs ORDER BY body", 3).await;
    assert_eq!(rows, json!([{"body": "after"}, {"body": "before"}, {"body": "boom once"}]));
    let log = std::fs::read_to_string(d.path("daemon.log")).unwrap();
    assert_eq!(log.matches("the instance rebuilt").count(), 2, "two panics, each caught: {log}");
    let metrics = d.metrics_text().await;
    assert!(metrics.contains("openwit_wal_batches_total{outcome=\"replayed\"} 2"), "delivered again twice: {metrics}");
    drop(d);

    // Panics every time: after its redeliveries the batch is marked failed (kept in the WAL), the
    // daemon stays up and goes on storing.
    let api = free_port();
    let cfg = with_libraries(FAULTY, api).replace("MAX", "2").replace("PANICS", "0");
    let d = Daemon::start_on_base(&[&cfg]).await;
    let e = d.grpc_url();
    tokio::task::spawn_blocking(move || send(e, one("boom always"))).await.unwrap();
    let failed = eventually(
        Duration::from_secs(30),
        || std::fs::read_to_string(d.path("daemon.log")).unwrap_or_default(),
        |l| l.contains("poison") || l.contains("marked failed"),
    )
    .await;
    assert!(failed.contains("panicked"), "the reason names the panic: {failed}");
    let e = d.grpc_url();
    tokio::task::spawn_blocking(move || send(e, one("still serving"))).await.unwrap();
    let rows = until_rows(api, "SELECT body FROM logs", 1).await;
    assert_eq!(rows, json!([{"body": "still serving"}]));
    let wal = Command::new(bin()).args(["wal", "inspect"]).arg(d.path("data/wal")).output().unwrap();
    let wal = String::from_utf8_lossy(&wal.stdout);
    assert!(wal.lines().filter(|l| l.contains("logs")).count() >= 1, "the failed batch is kept in the WAL: {wal}");
}
