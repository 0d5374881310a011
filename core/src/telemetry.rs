//! The daemon's own metrics: one Prometheus registry, handed to every component through its build
//! context. Each component registers its own metrics on it and resolves the label values it uses once,
//! when it is built, so the hot path only increments a counter it already holds. Registration is by
//! name and idempotent: two instances of a component (one per pipeline, or a rebuild after a panic) share
//! one family.
//!
//! Collector-named metrics keep the Collector's names (`otelcol_receiver_accepted_spans`, …) so that
//! existing dashboards and alerts keep working; OpenWit's own are under `openwit_`. Every metric has its
//! help text, and `encode` writes the Prometheus text format (0.0.4) exactly: a counter's `# HELP` and
//! `# TYPE` name its samples (`…_total`), which is what `promtool check metrics` and Prometheus'
//! metadata expect.

use crate::Signal;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Metric, Registry};
use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;

pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Label pairs, in the order they are written.
pub type Labels = Vec<(String, String)>;
pub type Counters = Family<Labels, Counter>;
pub type Gauges = Family<Labels, Gauge>;
pub type Histograms = Family<Labels, Histogram, fn() -> Histogram>;
/// A gauge of a fractional value (seconds: Prometheus wants base units).
pub type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

type Refresher = Box<dyn Fn() + Send + Sync>;

/// The registry components register their metrics on.
#[derive(Default)]
pub struct Telemetry {
    registry: Mutex<Registry>,
    /// What was registered under each name (a second registration returns it).
    families: Mutex<HashMap<String, Box<dyn Any + Send + Sync>>>,
    refreshers: Mutex<Vec<Refresher>>,
}

/// Turns `[("k", "v")]` into owned labels.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Telemetry {
    /// The metric registered under `name`, registering `make()` with `help` the first time.
    fn metric<M: Metric + Clone>(&self, name: &str, help: &str, make: impl FnOnce() -> M) -> M {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = families.get(name) {
            if let Some(m) = m.downcast_ref::<M>() {
                return m.clone();
            }
            // A bug in OpenWit (one name, two kinds of metric); the metric still counts, unexported.
            tracing::error!(metric = name, "metric registered twice with different types; the second is not exported");
            return make();
        }
        let m = make();
        self.registry.lock().unwrap_or_else(|p| p.into_inner()).register(name, help, m.clone());
        families.insert(name.to_string(), Box::new(m.clone()));
        m
    }

    /// A family of counters (the name without `_total`).
    pub fn counters(&self, name: &str, help: &str) -> Counters {
        self.metric(name, help, Counters::default)
    }

    /// One counter without labels (the name without `_total`).
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.metric(name, help, Counter::default)
    }

    pub fn gauges(&self, name: &str, help: &str) -> Gauges {
        self.metric(name, help, Gauges::default)
    }

    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.metric(name, help, Gauge::default)
    }

    pub fn float_gauge(&self, name: &str, help: &str) -> FloatGauge {
        self.metric(name, help, FloatGauge::default)
    }

    /// A family of histograms with the buckets `make` gives.
    pub fn histograms(&self, name: &str, help: &str, make: fn() -> Histogram) -> Histograms {
        self.metric(name, help, || Histograms::new_with_constructor(make))
    }

    pub fn histogram(&self, name: &str, help: &str, make: fn() -> Histogram) -> Histogram {
        self.metric(name, help, make)
    }

    /// Registers a function that updates gauges just before each scrape (queue depths, for example).
    pub fn on_scrape(&self, f: impl Fn() + Send + Sync + 'static) {
        self.refreshers.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(f));
    }

    /// Every metric in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> String {
        for f in self.refreshers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            f();
        }
        let mut open_metrics = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut open_metrics, &self.registry.lock().unwrap_or_else(|p| p.into_inner()));
        to_prometheus_text(&open_metrics)
    }
}

/// prometheus-client writes OpenMetrics, where a counter family `x` has samples `x_total`. In the
/// Prometheus text format the metadata names the samples: `# HELP x_total` and `# TYPE x_total counter`.
/// `# UNIT` and `# EOF` exist only in OpenMetrics.
fn to_prometheus_text(open_metrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(open_metrics.len() + counters.len() * 12);
    for line in open_metrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find(|p| line.starts_with(p));
        match meta {
            Some(prefix) => {
                let rest = &line[prefix.len()..];
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) { format!("{name}_total") } else { name.to_string() };
                out.push_str(prefix);
                out.push_str(&name);
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// One counter per signal (`{prefix}_spans`, `{prefix}_metric_points`, `{prefix}_log_records`), as the
/// Collector counts items, for one set of labels resolved once.
#[derive(Clone, Debug, Default)]
pub struct SignalCounters {
    spans: Counter,
    metric_points: Counter,
    log_records: Counter,
}

impl SignalCounters {
    pub fn register(t: &Telemetry, prefix: &str, help: &str, labels: &Labels) -> SignalCounters {
        let one = |s: Signal| {
            let unit = s.item_unit();
            t.counters(&format!("{prefix}_{unit}"), &format!("{help} ({unit})")).get_or_create(labels).clone()
        };
        SignalCounters {
            spans: one(Signal::Traces),
            metric_points: one(Signal::Metrics),
            log_records: one(Signal::Logs),
        }
    }

    /// Adds `n` items of `signal`.
    pub fn add(&self, signal: Signal, n: usize) {
        match signal {
            Signal::Traces => &self.spans,
            Signal::Metrics => &self.metric_points,
            Signal::Logs => &self.log_records,
        }
        .inc_by(n as u64);
    }
}

/// What a receiver counts, as the Collector names it: items accepted (durable) and refused.
#[derive(Clone, Debug, Default)]
pub struct ReceiverCounters {
    pub accepted: SignalCounters,
    pub refused: SignalCounters,
}

impl ReceiverCounters {
    /// For receiver `id` over `transport` (`grpc`, `http`, `kafka`).
    pub fn register(t: &Telemetry, id: &str, transport: &str) -> ReceiverCounters {
        let l = labels(&[("receiver", id), ("transport", transport)]);
        ReceiverCounters {
            accepted: SignalCounters::register(t, "otelcol_receiver_accepted", "Items accepted by a receiver", &l),
            refused: SignalCounters::register(t, "otelcol_receiver_refused", "Items a receiver refused", &l),
        }
    }
}

/// Items a processor removed on purpose (settled `Verdict::Dropped`), per processor:
/// `openwit_processor_dropped_{spans,metric_points,log_records}_total{processor}`.
pub fn dropped_items(t: &Telemetry, processor: &str) -> SignalCounters {
    SignalCounters::register(
        t,
        "openwit_processor_dropped",
        "Items a processor removed on purpose (settled as dropped)",
        &labels(&[("processor", processor)]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_appear_under_collector_names_with_their_help() {
        let t = Telemetry::default();
        let r = ReceiverCounters::register(&t, "otlp", "grpc");
        r.accepted.add(Signal::Traces, 3);
        // A second instance shares the family.
        ReceiverCounters::register(&t, "otlp", "grpc").accepted.add(Signal::Traces, 2);
        t.gauges("otelcol_exporter_queue_capacity", "Capacity")
            .get_or_create(&labels(&[("exporter", "debug")]))
            .set(100);
        let text = t.encode();
        assert!(
            text.contains("otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} 5"),
            "{text}"
        );
        assert!(text.contains("# HELP otelcol_receiver_accepted_spans_total Items accepted by a receiver (spans)"));
        assert!(text.contains("# TYPE otelcol_receiver_accepted_spans_total counter"), "{text}");
        assert!(text.contains("otelcol_exporter_queue_capacity{exporter=\"debug\"} 100"), "{text}");
        assert!(!text.contains("# EOF"));
    }

    /// The rule `promtool check metrics` applies: every sample's metric has HELP and TYPE lines under
    /// its own name (a histogram's `_bucket`, `_sum`, `_count` belong to the histogram).
    #[test]
    fn every_sample_has_help_and_type_under_its_name() {
        let t = Telemetry::default();
        ReceiverCounters::register(&t, "otlp", "http").refused.add(Signal::Logs, 1);
        t.counter("openwit_wal_quarantined_records", "Corrupt records").inc();
        t.gauge("openwit_wal_disk_bytes", "Bytes").set(7);
        t.histogram("openwit_wal_commit_seconds", "Seconds", || Histogram::new([0.1, 1.0])).observe(0.5);
        let text = t.encode();
        let mut help = std::collections::HashSet::new();
        let mut typed = std::collections::HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                help.insert(rest.split(' ').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                typed.insert(it.next().unwrap().to_string(), it.next().unwrap().to_string());
            }
        }
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
        assert!(samples.len() >= 6, "{text}");
        for s in samples {
            let name = s.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix).filter(|f| typed.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(help.contains(family) && typed.contains_key(family), "no HELP/TYPE for {name}:\n{text}");
        }
    }
}
