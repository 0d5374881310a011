//! The command line: validate, components, print-config, the embedded default, start-up errors.

use crate::harness::{Daemon, FILE_PIPELINES, bin};
use std::process::Command;
use std::time::Duration;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin()).args(args).env_remove("OPENWIT_TEST_COMPONENTS").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn validate_accepts_a_good_config_and_lists_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, FILE_PIPELINES.replace("{dir}", "/tmp").replace(['{', '}'], "")).unwrap();
    // Ports were placeholders; give them numbers via --set to show overrides apply before validation.
    let (ok, out, err) = run(&[
        "validate",
        "--config",
        good.to_str().unwrap(),
        "--set",
        "receivers.otlp.protocols.grpc.endpoint=127.0.0.1:1",
        "--set",
        "receivers.otlp.protocols.http.endpoint=127.0.0.1:2",
        "--set",
        "extensions.health_check.endpoint=127.0.0.1:3",
        "--set",
        "service.telemetry.metrics.address=127.0.0.1:4",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("configuration is valid"));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpont: x\nexporters:\n  debugg:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n",
    )
    .unwrap();
    let (ok, _, err) = run(&["validate", "--config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("3 problems"), "{err}");
    assert!(err.contains("bad.yaml: receivers.otlp.protocols.grpc.endpont: unknown field `endpont`"), "{err}");
    assert!(
        err.contains("exporters.debugg: unknown exporter type \"debugg\"; known types: debug, file, nop, otlp"),
        "{err}"
    );
    assert!(
        err.contains("service.pipelines.traces.exporters[0]: references exporter \"debug\", which is not configured"),
        "{err}"
    );

    // A DataFusion option is checked by name and value before anything starts.
    let df = dir.path().join("datafusion.yaml");
    let with = |options: &str| {
        FILE_PIPELINES
            .replace("{dir}", "/tmp")
            .replace(['{', '}'], "")
            .replace(
                "\nservice:",
                &format!("\n  query:\n    endpoint: 127.0.0.1:5\n    datafusion:\n{options}\nservice:"),
            )
            .replace("extensions: [health_check]", "extensions: [health_check, query]")
    };
    std::fs::write(&df, with("      datafusion.execution.parquet.pushdown_filterz: true")).unwrap();
    let (ok, _, err) = run(&["validate", "--config", df.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("extensions.query.datafusion: `datafusion.execution.parquet.pushdown_filterz`"), "{err}");
    std::fs::write(&df, with("      datafusion.execution.parquet.pushdown_filters: maybe")).unwrap();
    let (ok, _, err) = run(&["validate", "--config", df.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("`datafusion.execution.parquet.pushdown_filters`") && err.contains("maybe"), "{err}");
}

#[test]
fn components_lists_the_builtins_and_hides_test_components() {
    let (ok, out, _) = run(&["components"]);
    assert!(ok);
    for t in [
        "otlp",
        "batch",
        "memory_limiter",
        "resource",
        "attributes",
        "filter",
        "transform",
        "debug",
        "file",
        "nop",
        "otlphttp",
        "health_check",
        "wal",
        "catalog",
        "batch_monitor",
    ] {
        assert!(out.contains(&format!("  {t}")), "{t} missing from:\n{out}");
    }
    assert!(out.contains("  filter\n    signals: traces, metrics, logs\n    stability: alpha"), "{out}");
    assert!(!out.contains("testing"), "test components must stay hidden:\n{out}");
}

#[test]
fn print_config_merges_and_redacts() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(&a, "exporters:\n  file:\n    path: /tmp/x\n    headers_note: ok\nextensions:\n  basicauth:\n    client_auth:\n      password: hunter2\n").unwrap();
    let (ok, out, err) = run(&["print-config", "--config", a.to_str().unwrap(), "--set", "exporters.file.path=/tmp/y"]);
    assert!(ok, "{err}");
    assert!(out.contains("path: /tmp/y"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    assert!(out.contains("password: '[REDACTED]'") || out.contains("password: \"[REDACTED]\""), "{out}");
}

#[test]
fn start_fails_clearly_when_a_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = FILE_PIPELINES.replace("127.0.0.1:{grpc}", &format!("127.0.0.1:{port}"));
    let mut d = Daemon::spawn(&cfg, &[]);
    let st = d.wait_exit(Duration::from_secs(20));
    assert!(!st.success());
    let logs = d.logs();
    assert!(logs.contains(&format!("receiver otlp: cannot listen for OTLP/gRPC on 127.0.0.1:{port}")), "{logs}");
}

#[test]
fn invalid_config_refuses_to_start() {
    let mut d = Daemon::spawn("receivers:\n  otlp:\n", &[]);
    let st = d.wait_exit(Duration::from_secs(20));
    assert!(!st.success());
    assert!(d.logs().contains("service.pipelines: at least one pipeline is required"), "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_runs_with_no_config() {
    // The embedded default listens on the Collector's standard ports; this test needs them free.
    for p in [4317, 4318, 13133, 8888, 8083] {
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_err() {
            panic!("port {p} is in use; the embedded-default test needs 4317, 4318, 13133, 8888 and 8083 free");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let c = crate::harness::client();
    let mut healthy = false;
    for _ in 0..200 {
        if c.get("http://127.0.0.1:13133/").send().await.is_ok_and(|r| r.status() == 200) {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c
        .post("http://127.0.0.1:4318/v1/logs")
        .header("content-type", "application/json")
        .body(r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1767225600000000000","body":{"stringValue":"stored by default"}}]}]}]}"#)
        .send()
        .await;
    let metrics = c.get("http://127.0.0.1:8888/metrics").send().await;
    let monitor = c.get("http://127.0.0.1:8083/api/batch-monitor/status").send().await;
    // The query API shares the batch monitor's port.
    let query = c.get("http://127.0.0.1:8083/api/v1/query?sql=SELECT%20count(*)%20AS%20n%20FROM%20logs").send().await;
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = child.wait().unwrap();
    assert!(healthy, "the embedded default did not become healthy");
    assert_eq!(r.unwrap().status(), 200);
    assert_eq!(query.unwrap().status(), 200);
    assert_eq!(metrics.unwrap().status(), 200);
    assert_eq!(monitor.unwrap().status(), 200);
    assert!(
        dir.path().join("wal").is_dir() && dir.path().join("catalog.db").is_file(),
        "WAL and catalog under the data dir"
    );
    assert!(st.success(), "SIGINT should stop the daemon cleanly: {st:?}");
    // One catalog pool for the daemon: its components never race each other on the migrations.
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.contains("catalog unreachable") && !logs.contains("ERROR"), "{logs}");
    // Stored by default: the open file was finalized and stored on the way out.
    let hour = dir.path().join("storage/logs/tenant=default/date=2026-01-01/hour=00");
    let all: Vec<_> = std::fs::read_dir(&hour).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    let files: Vec<_> = all.iter().filter(|p| p.extension().is_some_and(|x| x == "parquet")).collect();
    assert_eq!(files.len(), 1, "one Parquet file in {}: {all:?}", hour.display());
    assert!(
        all.iter().any(|p| p.to_string_lossy() == format!("{}.tantivy", files[0].display())),
        "its index beside it, built before the daemon stopped: {all:?}"
    );
    let (rows, _) = crate::parquet::read_parquet(bytes::Bytes::from(std::fs::read(files[0]).unwrap()));
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
}

/// The Collector configs of `tests/configs/` (production shapes written for OpenWit) are valid as they are.
#[test]
fn the_collector_config_corpus_validates_unchanged() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let (ok, out, err) = run(&["validate", "--config", path.to_str().unwrap()]);
        assert!(ok, "{}: {out}{err}", path.display());
        n += 1;
    }
    assert!(n >= 3, "tests/configs holds {n} configs");
    // And a broken statement is caught by validate, with its place.
    let bad = tempfile::NamedTempFile::new().unwrap();
    let text = std::fs::read_to_string(dir.join("filter-health-checks.yaml"))
        .unwrap()
        .replace("IsMatch(name", "IsMatches(name");
    std::fs::write(bad.path(), text).unwrap();
    let (ok, out, err) = run(&["validate", "--config", bad.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(format!("{out}{err}").contains("traces.span[2]: unknown converter IsMatches"), "{out}{err}");
}
