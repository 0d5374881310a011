//! Every built-in component type, in one place.

use openwit_core::Registry;

/// The registry of built-in factories. Test-only components join when `OPENWIT_TEST_COMPONENTS=1`.
pub fn builtin() -> Registry {
    let mut r = Registry::default();

    r.receivers.add(openwit_receivers::otlp::factory());
    r.receivers.add(openwit_receivers::kafka::factory());

    r.processors.add(openwit_processors::batch::factory());
    r.processors.add(openwit_processors::attributes::factory());
    r.processors.add(openwit_processors::resource::factory());
    r.processors.add(openwit_processors::memory_limiter::factory());
    r.processors.add(openwit_processors::filter::factory());
    r.processors.add(openwit_processors::transform::factory());
    r.processors.add(openwit_processors::probabilistic_sampler::factory());
    if let Some(f) = openwit_processors::testing::factory_if_enabled() {
        r.processors.add(f);
    }

    r.connectors.add(openwit_connectors::forward::factory());
    r.connectors.add(openwit_connectors::routing::factory());

    r.exporters.add(openwit_exporters::debug::factory());
    r.exporters.add(openwit_exporters::file::factory());
    r.exporters.add(openwit_exporters::nop::factory());
    r.exporters.add(openwit_exporters::parquet::factory());
    r.exporters.add(openwit_exporters::otlp::grpc_factory());
    r.exporters.add(openwit_exporters::otlp::http_factory());
    if let Some(f) = openwit_exporters::testing::factory_if_enabled() {
        r.exporters.add(f);
    }

    r.extensions.add(openwit_extensions::health_check::factory());
    r.extensions.add(openwit_extensions::auth::bearertokenauth::factory());
    r.extensions.add(openwit_extensions::auth::basicauth::factory());
    r.extensions.add(openwit_extensions::auth::headers_setter::factory());
    r.extensions.add(openwit_extensions::batch_monitor::factory());
    r.extensions.add(openwit_extensions::query::factory());
    r
}

/// How settled each built-in is, in the Collector's terms (`development`, `alpha`, `beta`, `stable`):
/// alpha while its keys or behaviour may still change, beta once they follow the Collector's and are
/// covered end to end.
pub fn stability(type_name: &str) -> &'static str {
    match type_name {
        "otlp" | "batch" | "parquet" | "file" | "debug" | "nop" | "health_check" => "beta",
        "kafka" | "otlphttp" | "query" | "batch_monitor" | "memory_limiter" | "resource" | "attributes" => "beta",
        "filter" | "transform" | "probabilistic_sampler" | "forward" | "routing" => "alpha",
        "bearertokenauth" | "basicauth" | "headers_setter" => "alpha",
        _ => "development",
    }
}
