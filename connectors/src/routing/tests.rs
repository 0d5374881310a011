use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use openwit_core::{Payload, TenantId};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

/// Logs from two services; each record's body is "<service>:<severity>".
fn logs(tenant: &str) -> Batch {
    let resource_logs = ["api", "db"]
        .into_iter()
        .map(|svc| ResourceLogs {
            resource: Some(Resource { attributes: vec![kv("service.name", svc)], ..Default::default() }),
            scope_logs: vec![ScopeLogs {
                log_records: [5, 17]
                    .into_iter()
                    .map(|sev| LogRecord {
                        severity_number: sev,
                        body: Some(AnyValue { value: Some(Value::StringValue(format!("{svc}:{sev}"))) }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    Batch::new(TenantId::new(tenant).unwrap(), Payload::Logs(ExportLogsServiceRequest { resource_logs }))
}

fn bodies(b: &Batch) -> Vec<String> {
    let Payload::Logs(r) = &*b.payload else { panic!("logs expected") };
    r.resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .map(|l| match l.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(s)) => s.clone(),
            _ => String::new(),
        })
        .collect()
}

/// A router over `yaml`, each named pipeline a channel; returns what each pipeline received.
async fn route(yaml: &str, batch: Batch, pipelines: &[&str]) -> (Vec<Vec<String>>, u64) {
    let cfg: RoutingConfig = serde_yaml_ng::from_str(yaml).unwrap();
    cfg.validate().unwrap();
    let mut rxs = Vec::new();
    let outputs: Vec<(String, Fanout)> = pipelines
        .iter()
        .map(|p| {
            let (tx, rx) = mpsc::channel(8);
            rxs.push(rx);
            (p.to_string(), Fanout::new(vec![tx]))
        })
        .collect();
    let pick = |names: &[String]| Fanout::union(names.iter().map(|n| &outputs.iter().find(|(p, _)| p == n).unwrap().1));
    let telemetry = Arc::new(openwit_core::telemetry::Telemetry::default());
    let mut router = Router {
        id: "routing".into(),
        routes: cfg
            .compile()
            .unwrap()
            .into_iter()
            .zip(&cfg.table)
            .map(|(matcher, r)| Route { matcher, output: pick(&r.pipelines) })
            .collect(),
        default: (!cfg.default_pipelines.is_empty()).then(|| pick(&cfg.default_pipelines)),
        error_mode: cfg.error_mode,
        dropped: dropped_items(&telemetry, "routing"),
    };
    drop(outputs);
    let (in_tx, mut in_rx) = mpsc::channel(1);
    in_tx.send(batch).await.unwrap();
    drop(in_tx);
    router.run(&mut in_rx, &Fanout::default()).await;
    drop(router);
    let mut got = Vec::new();
    for mut rx in rxs {
        let mut items = Vec::new();
        while let Some(b) = rx.recv().await {
            items.extend(bodies(&b));
        }
        got.push(items);
    }
    let dropped = telemetry
        .encode()
        .lines()
        .filter(|l| l.starts_with("openwit_processor_dropped_log_records_total"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum();
    (got, dropped)
}

#[tokio::test]
async fn items_take_the_first_route_they_match_and_the_rest_the_default() {
    let yaml = r#"
default_pipelines: [logs/other]
table:
  - context: log
    condition: severity_number < SEVERITY_NUMBER_WARN
    pipelines: [logs/cheap]
  - condition: attributes["service.name"] == "api"
    pipelines: [logs/api, logs/audit]
"#;
    let (got, dropped) = route(yaml, logs("t"), &["logs/cheap", "logs/api", "logs/audit", "logs/other"]).await;
    assert_eq!(got[0], ["api:5", "db:5"], "debug records take the first route, whatever their service");
    assert_eq!(got[1], ["api:17"]);
    assert_eq!(got[2], ["api:17"], "a route to two pipelines feeds both");
    assert_eq!(got[3], ["db:17"]);
    assert_eq!(dropped, 0);
}

#[tokio::test]
async fn without_default_pipelines_unmatched_items_are_dropped_and_counted() {
    let yaml = r#"
table:
  - statement: route() where attributes["service.name"] == "db"
    pipelines: [logs/db]
"#;
    let (got, dropped) = route(yaml, logs("t"), &["logs/db"]).await;
    assert_eq!(got[0], ["db:5", "db:17"]);
    assert_eq!(dropped, 2);
}

#[tokio::test]
async fn request_conditions_read_metadata_and_the_tenant() {
    let yaml = r#"
default_pipelines: [logs/other]
table:
  - context: request
    condition: request["X-Region"] == "eu"
    pipelines: [logs/eu]
  - context: request
    condition: request["X-Scope-OrgID"] == "acme"
    pipelines: [logs/acme]
"#;
    let pipes = ["logs/eu", "logs/acme", "logs/other"];
    let mut eu = logs("acme");
    eu.metadata = Arc::new([("x-region".to_string(), vec!["eu".to_string()])].into_iter().collect());
    let (got, _) = route(yaml, eu, &pipes).await;
    assert_eq!((got[0].len(), got[1].len(), got[2].len()), (4, 0, 0), "metadata keys match in any case");
    let (got, _) = route(yaml, logs("acme"), &pipes).await;
    assert_eq!((got[0].len(), got[1].len(), got[2].len()), (0, 4, 0), "the tenant answers X-Scope-OrgID");
    let (got, _) = route(yaml, logs("globex"), &pipes).await;
    assert_eq!((got[0].len(), got[1].len(), got[2].len()), (0, 0, 4));
}

#[tokio::test]
async fn a_failing_condition_fails_the_batch_or_sends_the_item_to_the_default() {
    // Len() of a number fails on every record.
    let table = r#"
  - context: log
    condition: Len(severity_number) > 3
    pipelines: [logs/a]
"#;
    let (got, dropped) =
        route(&format!("default_pipelines: [logs/d]\ntable:{table}"), logs("t"), &["logs/a", "logs/d"]).await;
    assert_eq!((got[0].len(), got[1].len(), dropped), (0, 0, 0), "propagate: nothing goes on");
    let yaml = format!("default_pipelines: [logs/d]\nerror_mode: ignore\ntable:{table}");
    let (got, _) = route(&yaml, logs("t"), &["logs/a", "logs/d"]).await;
    assert_eq!((got[0].len(), got[1].len()), (0, 4), "ignore: failed items go to the default");
}

#[test]
fn the_config_is_checked_with_paths_and_reasons() {
    for (yaml, path, words) in [
        ("table: []", "table", "at least one route"),
        ("match_once: true\ntable: [{condition: 'true', pipelines: [logs]}]", "match_once", "v0.120.0"),
        ("table: [{condition: 'true', statement: 'route()', pipelines: [logs]}]", "table[0]", "not both"),
        ("table: [{pipelines: [logs]}]", "table[0]", "statement or a condition"),
        ("table: [{condition: 'true', pipelines: []}]", "table[0].pipelines", "at least one pipeline"),
        ("table: [{context: request, statement: 'route()', pipelines: [l]}]", "table[0].statement", "condition"),
        (
            "table: [{context: request, condition: 'request[\"a\"] > \"b\"', pipelines: [l]}]",
            "table[0].condition",
            "==",
        ),
        ("table: [{context: scope, condition: 'true', pipelines: [l]}]", "table[0].context", "valid: resource"),
        ("table: [{statement: 'drop() where true', pipelines: [l]}]", "table[0].statement", "route() where"),
        ("table: [{condition: 'Nope(attributes)', pipelines: [l]}]", "table[0].condition", "Nope"),
    ] {
        let cfg: RoutingConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.path, path, "{yaml}");
        assert!(e.message.contains(words), "{yaml}: {}", e.message);
    }
    let cfg: RoutingConfig = serde_yaml_ng::from_str(
        "default_pipelines: [logs/d]\ntable: [{condition: 'true', pipelines: [logs/a, logs/b]}]",
    )
    .unwrap();
    assert_eq!(
        cfg.pipeline_refs(),
        [
            ("table[0].pipelines[0]".to_string(), "logs/a".to_string()),
            ("table[0].pipelines[1]".to_string(), "logs/b".to_string()),
            ("default_pipelines[0]".to_string(), "logs/d".to_string()),
        ]
    );
}
