//! The `probabilistic_sampler` processor: keeps a share of spans and log records, deciding each one from
//! its trace id (or, for logs, an attribute), so that every item of a trace gets the same decision and
//! OpenWit keeps exactly the items a Collector with the same settings keeps. Dropped items are settled
//! `Verdict::Dropped` and counted (`openwit_processor_dropped_*_total{processor}`).
//!
//! ```yaml
//! probabilistic_sampler:
//!   sampling_percentage: 15      # >= 100 keeps everything, 0 nothing
//!   mode: proportional           # hash_seed | proportional | equalizing (default: see below)
//!   hash_seed: 22                # hash_seed mode: the same seed on every collector of a tier
//!   sampling_precision: 4        # hex digits of the `th` written on kept items
//!   fail_closed: true            # an item whose randomness cannot be read is dropped
//!   # logs only:
//!   attribute_source: traceID    # traceID | record
//!   from_attribute: log.id       # hashed when there is no trace id (or with attribute_source: record)
//!   sampling_priority: priority  # an attribute that raises a record's percentage
//! ```
//!
//! Modes, as the Collector defines them (see `sampling.rs` for the arithmetic):
//! - `hash_seed`: FNV-1a over the seed and the trace id, 14 bits, kept when under the percentage —
//!   the Collector's original algorithm; the default when `hash_seed` is set (or, for logs, when the
//!   attribute source is `record`).
//! - `proportional` (the default otherwise): the trace id's W3C randomness (or an explicit `rv`) against
//!   the arriving threshold times the percentage — the output is that share of the input.
//! - `equalizing`: the same randomness against the configured threshold — items already sampled harder
//!   upstream pass unchanged.
//!
//! Kept spans carry the decision in their `tracestate` (`ot=th:…`, and `rv:…` in `hash_seed` mode); kept
//! log records in the attributes `sampling.threshold` and `sampling.randomness`. A span whose
//! `sampling.priority` attribute is 0 is dropped, and a positive one kept, whatever the percentage.

mod sampling;

pub use sampling::{Randomness, Threshold, TraceState};

use crate::value;
use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::telemetry::{SignalCounters, dropped_items};
use openwit_core::{Batch, BuildEnv, ComponentId, ConfigIssue, Factory, Fanout, Payload, Processor, Signal};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Not set: `hash_seed` or `proportional`, as the Collector chooses (see the module docs).
    #[default]
    #[serde(rename = "")]
    Unset,
    HashSeed,
    Proportional,
    Equalizing,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum AttributeSource {
    #[default]
    #[serde(rename = "traceID")]
    TraceId,
    #[serde(rename = "record")]
    Record,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerConfig {
    pub sampling_percentage: f32,
    pub hash_seed: u32,
    pub mode: Mode,
    pub fail_closed: bool,
    pub sampling_precision: u8,
    pub attribute_source: AttributeSource,
    pub from_attribute: String,
    pub sampling_priority: String,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            sampling_percentage: 0.0,
            hash_seed: 0,
            mode: Mode::Unset,
            fail_closed: true,
            sampling_precision: 4,
            attribute_source: AttributeSource::TraceId,
            from_attribute: String::new(),
            sampling_priority: String::new(),
        }
    }
}

impl ComponentConfig for SamplerConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        let pct = f64::from(self.sampling_percentage);
        if !pct.is_finite() {
            return Err(ConfigIssue::new("sampling_percentage", format!("must be a finite number, got {pct}")));
        }
        if pct < 0.0 {
            return Err(ConfigIssue::new("sampling_percentage", format!("must not be negative, got {pct}")));
        }
        if pct > 0.0 && pct / 100.0 < sampling::MIN_PROBABILITY {
            return Err(ConfigIssue::new(
                "sampling_percentage",
                format!("{pct} is too small: the smallest is {}", sampling::MIN_PROBABILITY * 100.0),
            ));
        }
        if !(1..=14).contains(&self.sampling_precision) {
            return Err(ConfigIssue::new(
                "sampling_precision",
                format!("must be 1 to 14 (hex digits), got {}", self.sampling_precision),
            ));
        }
        Ok(())
    }
}

impl SamplerConfig {
    /// The mode in effect for a signal, as the Collector resolves an unset one.
    fn mode_for(&self, logs: bool) -> Mode {
        match self.mode {
            Mode::Unset if self.hash_seed != 0 || (logs && self.attribute_source != AttributeSource::TraceId) => {
                Mode::HashSeed
            }
            Mode::Unset => Mode::Proportional,
            m => m,
        }
    }

    fn decider(&self, logs: bool) -> Decider {
        let pct = self.sampling_percentage.min(100.0);
        let mode = self.mode_for(logs);
        let ratio = (f64::from(pct) / 100.0).max(sampling::MIN_PROBABILITY);
        let rule = if pct == 0.0 {
            Rule::Never
        } else {
            match mode {
                Mode::HashSeed => sampling::hash_seed_threshold(pct).map_or(Rule::Never, Rule::Fixed),
                Mode::Equalizing => {
                    Threshold::from_probability(ratio, self.sampling_precision).map_or(Rule::Never, Rule::Fixed)
                }
                Mode::Proportional | Mode::Unset => Rule::Proportional { ratio, precision: self.sampling_precision },
            }
        };
        Decider {
            // Sampling nothing is the same in every mode: no randomness to record.
            hash_mode: mode == Mode::HashSeed && !matches!(rule, Rule::Never),
            rule,
            seed: self.hash_seed,
            fail_closed: self.fail_closed,
            precision: self.sampling_precision,
            logs_trace_id: self.attribute_source == AttributeSource::TraceId,
            from_attribute: self.from_attribute.clone(),
            priority_attribute: self.sampling_priority.clone(),
        }
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Processor>> {
    typed::<SamplerConfig, dyn Processor>(
        "probabilistic_sampler",
        &[],
        &[Signal::Traces, Signal::Logs],
        "keeps a percentage of spans and log records, decided by trace id as the Collector decides",
        |id: &ComponentId, cfg: &SamplerConfig, env: &BuildEnv| {
            if cfg.sampling_percentage == 0.0 {
                tracing::warn!(processor = %id, "sampling_percentage is 0: every span and log record is dropped");
            }
            Ok(Box::new(SamplerProcessor {
                traces: cfg.decider(false),
                logs: cfg.decider(true),
                dropped: dropped_items(&env.telemetry, &id.to_string()),
                id: id.to_string(),
            }))
        },
    )
}

#[derive(Clone, Copy, Debug)]
enum Rule {
    Never,
    /// The same threshold for every item (`hash_seed`, `equalizing`).
    Fixed(Threshold),
    /// The arriving probability times `ratio` (`proportional`).
    Proportional {
        ratio: f64,
        precision: u8,
    },
}

/// Where an item's carrier stands before the decision.
struct Carried {
    rv: Option<Randomness>,
    th: Option<Threshold>,
}

#[derive(Debug)]
struct Decider {
    hash_mode: bool,
    rule: Rule,
    seed: u32,
    fail_closed: bool,
    precision: u8,
    logs_trace_id: bool,
    from_attribute: String,
    priority_attribute: String,
}

/// One item's outcome: kept or not, and what to record on it when kept (on a carrier that parsed).
struct Decision {
    keep: bool,
    /// The `rv` to add (hash_seed mode derives one) and the `th` to record.
    rv: Option<Randomness>,
    th: Threshold,
}

impl Decider {
    fn threshold(&self, carried: &Carried) -> Threshold {
        match self.rule {
            Rule::Never => Threshold::NEVER,
            Rule::Fixed(t) => t,
            Rule::Proportional { ratio, precision } => {
                let incoming = carried.th.map_or(1.0, Threshold::probability);
                Threshold::from_probability(incoming * ratio, precision).unwrap_or(Threshold::NEVER)
            }
        }
    }

    /// Decides for one item from its randomness (or why it has none) and what it carries; `floor` is a
    /// priority's threshold the decision may not exceed. As the Collector: an item without usable
    /// randomness is dropped under `fail_closed` and kept otherwise, and a priority still applies.
    fn decide(
        &self,
        rnd: Result<Randomness, &'static str>,
        carried: &mut Carried,
        floor: Option<Threshold>,
    ) -> Decision {
        let checked = rnd.and_then(|r| match carried.th {
            Some(th) if !th.should_sample(r) => {
                // An arriving threshold the randomness does not pass is a lie: it is cleared.
                carried.th = None;
                Err("inconsistent arriving threshold: the item should not have been sampled")
            }
            _ => Ok(r),
        });
        let (r, mut threshold) = match checked {
            Ok(r) => (r, self.threshold(carried)),
            Err(why) => {
                tracing::debug!("probabilistic_sampler: {why}");
                // Missing randomness passes any threshold short of never.
                let t = if self.fail_closed { Threshold::NEVER } else { Threshold::ALWAYS };
                (Randomness(sampling::MAX_ADJUSTED_COUNT - 1), t)
            }
        };
        if let Some(f) = floor.filter(|f| *f < threshold) {
            threshold = f;
        }
        let keep = threshold.should_sample(r);
        // An arriving threshold stricter than ours stays (lowering it would claim a higher probability).
        let th = carried.th.map_or(threshold, |arrived| arrived.max(threshold));
        let rv = (self.hash_mode && checked.is_ok() && carried.rv.is_none()).then_some(r);
        Decision { keep, rv, th }
    }

    /// A span's randomness and carrier, or the reason it has none.
    fn span(&self, trace_id: &[u8], trace_state: &str) -> (Result<Randomness, &'static str>, Option<TraceState>) {
        let ts = match TraceState::parse(trace_state) {
            Ok(ts) => ts,
            Err(e) => {
                tracing::debug!("probabilistic_sampler: tracestate {trace_state:?}: {e}");
                return (Err("the tracestate cannot be parsed"), None);
            }
        };
        let id = trace_id_16(trace_id);
        if self.hash_mode {
            let rnd = if ts.rv.is_some() {
                Err("the span has sampling randomness: use proportional or equalizing mode")
            } else if ts.th.is_some() {
                Err("the span has a sampling threshold: use proportional or equalizing mode")
            } else {
                Ok(Randomness::from_hash(&id, self.seed))
            };
            return (rnd, Some(ts));
        }
        let rnd = match &ts.rv {
            Some((rv, _)) => Ok(*rv),
            None if id == [0; 16] => Err("missing randomness: the trace id is empty"),
            None => Ok(Randomness::from_trace_id(&id)),
        };
        (rnd, Some(ts))
    }

    /// A log record's randomness, from its trace id or `from_attribute`.
    fn log_randomness(
        &self,
        trace_id: &[u8],
        attrs: &[KeyValue],
        carried: &Carried,
    ) -> Result<Randomness, &'static str> {
        let from_attribute = || {
            (!self.from_attribute.is_empty())
                .then(|| value::get(attrs, &self.from_attribute))
                .flatten()
                .map(|v| Randomness::from_hash(&value_bytes(v), self.seed))
        };
        if self.hash_mode {
            let rnd =
                if self.logs_trace_id { Some(Randomness::from_hash(&trace_id_16(trace_id), self.seed)) } else { None };
            let rnd = rnd.or_else(from_attribute).ok_or("missing randomness: no trace id and no from_attribute")?;
            if carried.rv.is_some() {
                return Err("the log record has sampling randomness: use proportional or equalizing mode");
            }
            if carried.th.is_some() {
                return Err("the log record has a sampling threshold: use proportional or equalizing mode");
            }
            return Ok(rnd);
        }
        if let Some(rv) = carried.rv {
            return Ok(rv);
        }
        let id = trace_id_16(trace_id);
        if id != [0; 16] {
            return Ok(Randomness::from_trace_id(&id));
        }
        from_attribute().ok_or("missing randomness: no trace id and no from_attribute")
    }

    /// A log record's `sampling_priority` as a threshold (its value is a percentage).
    fn log_priority(&self, attrs: &[KeyValue]) -> Option<Threshold> {
        if self.priority_attribute.is_empty() {
            return None;
        }
        let pct = match value::get(attrs, &self.priority_attribute)?.value.as_ref()? {
            Value::DoubleValue(d) => *d,
            Value::IntValue(i) => *i as f64,
            _ => return None,
        };
        (pct > 0.0).then(|| Threshold::from_probability((pct / 100.0).min(1.0), self.precision)).flatten()
    }
}

/// A trace id as 16 bytes (all zero when absent or malformed: W3C's invalid id).
fn trace_id_16(id: &[u8]) -> [u8; 16] {
    id.try_into().unwrap_or([0; 16])
}

/// The bytes an attribute's value is hashed from: raw bytes, otherwise its text.
fn value_bytes(v: &AnyValue) -> Vec<u8> {
    match &v.value {
        Some(Value::BytesValue(b)) => b.clone(),
        _ => value::as_string(v).into_bytes(),
    }
}

/// `sampling.priority` on a span: `Some(false)` drop, `Some(true)` keep, `None` let the sampler decide.
fn span_priority(attrs: &[KeyValue]) -> Option<bool> {
    let p = match value::get(attrs, "sampling.priority")?.value.as_ref()? {
        Value::IntValue(i) => *i as f64,
        Value::DoubleValue(d) => *d,
        Value::StringValue(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if p == 0.0 {
        Some(false)
    } else if p > 0.0 {
        Some(true)
    } else {
        None
    }
}

fn log_carried(attrs: &[KeyValue]) -> Result<Carried, String> {
    let text = |k: &str| match value::get(attrs, k).and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    };
    Ok(Carried {
        th: text("sampling.threshold").map(Threshold::from_tvalue).transpose()?,
        rv: text("sampling.randomness").map(Randomness::from_rvalue).transpose()?,
    })
}

impl Decider {
    /// Keep flags for every span; kept spans get their tracestate updated.
    fn sample_traces(&self, payload: &mut Payload) -> Vec<bool> {
        let Payload::Traces(req) = payload else { return Vec::new() };
        let mut keep = Vec::new();
        for span in req.resource_spans.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans) {
            let priority = span_priority(&span.attributes);
            if priority == Some(false) {
                keep.push(false);
                continue;
            }
            let (rnd, ts) = self.span(&span.trace_id, &span.trace_state);
            let mut carried = ts
                .as_ref()
                .map_or(Carried { rv: None, th: None }, |t| Carried { rv: t.rv.as_ref().map(|(r, _)| *r), th: t.th });
            let floor = (priority == Some(true)).then_some(Threshold::ALWAYS);
            let d = self.decide(rnd, &mut carried, floor);
            if let (true, Some(mut ts)) = (d.keep, ts) {
                if let Some(rv) = d.rv {
                    ts.rv = Some((rv, rv.rvalue()));
                }
                ts.th = Some(d.th);
                span.trace_state = ts.serialize();
            }
            keep.push(d.keep);
        }
        keep
    }

    /// Keep flags for every log record; kept records get `sampling.threshold` (and `sampling.randomness`).
    fn sample_logs(&self, payload: &mut Payload) -> Vec<bool> {
        let Payload::Logs(req) = payload else { return Vec::new() };
        let mut keep = Vec::new();
        for rec in req.resource_logs.iter_mut().flat_map(|r| &mut r.scope_logs).flat_map(|s| &mut s.log_records) {
            let floor = self.log_priority(&rec.attributes);
            let (rnd, mut carried, writable) = match log_carried(&rec.attributes) {
                Ok(c) => (self.log_randomness(&rec.trace_id, &rec.attributes, &c), c, true),
                Err(e) => {
                    tracing::debug!("probabilistic_sampler: log record: {e}");
                    (Err("the sampling attributes cannot be parsed"), Carried { rv: None, th: None }, false)
                }
            };
            let d = self.decide(rnd, &mut carried, floor);
            if d.keep && writable {
                if let Some(rv) = d.rv {
                    value::put(&mut rec.attributes, "sampling.randomness", value::string(rv.rvalue()));
                }
                value::put(&mut rec.attributes, "sampling.threshold", value::string(d.th.tvalue()));
            }
            keep.push(d.keep);
        }
        keep
    }
}

struct SamplerProcessor {
    id: String,
    traces: Decider,
    logs: Decider,
    dropped: SignalCounters,
}

#[async_trait]
impl Processor for SamplerProcessor {
    async fn run(&mut self, input: &mut mpsc::Receiver<Batch>, output: &Fanout) {
        while let Some(mut batch) = input.recv().await {
            let keep = match batch.signal() {
                Signal::Traces => self.traces.sample_traces(&mut batch.payload),
                Signal::Logs => self.logs.sample_logs(&mut batch.payload),
                Signal::Metrics => {
                    // Refused at start (the factory lists traces and logs only); never reached.
                    tracing::error!(processor = %self.id, "metrics reached a sampler that does not sample them");
                    Vec::new()
                }
            };
            if keep.iter().any(|k| !k) {
                batch.drop_items(&keep, &self.dropped);
            }
            if !crate::pass_on(batch, output).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
