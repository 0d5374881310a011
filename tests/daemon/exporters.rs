//! Exporters' Collector keys end to end: the `file` exporter's `group_by`.

use crate::harness::{Daemon, eventually, read_records};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use std::time::Duration;

/// Log lines from a service, through the OpenTelemetry SDK over OTLP/HTTP.
fn send_logs_as(endpoint: &str, service: &str, bodies: &[&str]) {
    use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};
    use opentelemetry_otlp::{LogExporter, Protocol, WithExportConfig};
    let exporter = LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/logs"))
        .build()
        .unwrap();
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service.to_string()).build();
    let lp = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let logger = lp.logger("app");
    for body in bodies {
        let mut rec = logger.create_log_record();
        rec.set_body(AnyValue::from(body.to_string()));
        logger.emit(rec);
    }
    lp.force_flush().unwrap();
    lp.shutdown().unwrap();
}

fn bodies(path: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = read_records::<ExportLogsServiceRequest>(path)
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .map(|l| format!("{:?}", l.body.as_ref().and_then(|b| b.value.as_ref())))
        .collect();
    out.sort();
    out
}

/// The Collector's recipe: `resource` copies `service.name` into `fileexporter.path_segment`, and the
/// file exporter writes one file per service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_group_by_writes_one_file_per_resource_attribute_value() {
    let config = r#"
processors:
  resource:
    attributes:
      - {key: fileexporter.path_segment, from_attribute: service.name, action: upsert}
exporters:
  file:
    path: "{dir}/by-service/*.bin"
    format: proto
    group_by:
      enabled: true
      max_open_files: 1
service:
  pipelines:
    logs:
      receivers: [otlp]
      processors: [resource]
      exporters: [file]
"#;
    let d = Daemon::start_on_base(&[config]).await;
    let url = d.http_url("");
    tokio::task::spawn_blocking(move || {
        send_logs_as(&url, "shop", &["cart"]);
        send_logs_as(&url, "billing", &["invoice"]);
        // `shop` is written again after `billing` took the only open slot: appended, not truncated.
        send_logs_as(&url, "shop", &["pay"]);
    })
    .await
    .unwrap();
    let wait = Duration::from_secs(20);
    let shop = eventually(wait, || bodies(&d.path("by-service/shop.bin")), |b| b.len() >= 2).await;
    assert_eq!(shop.len(), 2, "{shop:?}; {}", d.logs());
    assert!(shop.iter().any(|b| b.contains("cart")) && shop.iter().any(|b| b.contains("pay")), "{shop:?}");
    let billing = eventually(wait, || bodies(&d.path("by-service/billing.bin")), |b| !b.is_empty()).await;
    assert_eq!(billing.len(), 1);
    assert!(billing[0].contains("invoice"));
    assert_eq!(d.metric_sum("openwit_exporter_file_ungrouped_log_records_total").await, 0.0);
}
