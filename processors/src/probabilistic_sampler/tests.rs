//! The sampler's decisions, checked against the Collector's published expectations: the cases of its
//! `Test_tracesamplerprocessor_TraceState` table (trace id, arriving tracestate, percentage, precision →
//! kept or not, and the tracestate written), its span-priority cases, and its hash-seed thresholds.

use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

const DEFAULT_TID: &str = "fefefefefefefefefe80000000000000";
const IMPROBABLE_TID: &str = "111111111111111111ffffffffffffff";

fn tid(hex: &str) -> Vec<u8> {
    (0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fn cfg(pct: f32, mode: Mode, precision: u8) -> SamplerConfig {
    // The Collector's tests start from its zero config: fail_closed false.
    SamplerConfig {
        sampling_percentage: pct,
        mode,
        sampling_precision: precision,
        fail_closed: false,
        ..Default::default()
    }
}

fn traces(spans: Vec<Span>) -> Payload {
    Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    })
}

fn span(trace_id: &[u8], trace_state: &str, attr: Option<(&str, Value)>) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        trace_state: trace_state.into(),
        attributes: attr
            .into_iter()
            .map(|(k, v)| KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() })
            .collect(),
        ..Default::default()
    }
}

/// Samples one span; `Some(tracestate)` when kept.
fn sample_one(c: &SamplerConfig, s: Span) -> Option<String> {
    let mut p = traces(vec![s]);
    let keep = c.decider(false).sample_traces(&mut p);
    let Payload::Traces(r) = p else { unreachable!() };
    keep[0].then(|| r.resource_spans[0].scope_spans[0].spans[0].trace_state.clone())
}

struct Case {
    name: &'static str,
    tid: &'static str,
    pct: f32,
    precision: u8,
    fail_closed: bool,
    ts: &'static str,
    priority: Option<i64>,
    /// Expected tracestate when kept (`None`: dropped), in equalizing and in proportional mode.
    equalizing: Option<&'static str>,
    proportional: Option<&'static str>,
}

const fn case(name: &'static str, pct: f32, ts: &'static str, both: Option<&'static str>) -> Case {
    Case {
        name,
        tid: DEFAULT_TID,
        pct,
        precision: 0,
        fail_closed: false,
        ts,
        priority: None,
        equalizing: both,
        proportional: both,
    }
}

#[test]
fn consistent_modes_decide_and_record_as_the_collector() {
    let cases = [
        case("100 percent", 100.0, "", Some("ot=th:0")),
        case("50 percent sampled", 50.0, "", Some("ot=th:8")),
        Case { tid: "ddddddddddddddddddc0000000000000", ..case("25 percent sampled", 25.0, "", Some("ot=th:c")) },
        Case { tid: "ddddddddddddddddddb0000000000000", ..case("25 percent unsampled", 25.0, "", None) },
        case("1 percent sampled", 1.0, "ot=rv:FD70A3D70A3D71", Some("ot=rv:FD70A3D70A3D71;th:fd70a3d70a3d71")),
        Case {
            precision: 4,
            ..case("1 percent, rvalue, precision 4", 1.0, "ot=rv:FD70A3D70A3D71", Some("ot=rv:FD70A3D70A3D71;th:fd70a"))
        },
        Case { precision: 3, ..case("1 percent, rvalue, precision 3", 1.0, "ot=rv:FD70A3D70A3D71", None) },
        case("1 percent not sampled with rvalue", 1.0, "ot=rv:FD70A3D70A3D70", None),
        case("49 percent not sampled with default tid", 49.0, "", None),
        case(
            "1 percent sampled with rvalue",
            1.0,
            "ot=rv:fd70B000000000",
            Some("ot=rv:fd70B000000000;th:fd70a3d70a3d71"),
        ),
        Case {
            tid: "a0a0a0a0a0a0a0a0a0fe000000000000",
            precision: 4,
            ..case("1 percent sampled with tid", 1.0, "", Some("ot=th:fd70a"))
        },
        Case { priority: Some(2), ..case("sampled by priority", 1.0, "", Some("ot=th:0")) },
        Case { priority: Some(0), ..case("not sampled by priority", 99.0, "", None) },
        Case {
            equalizing: Some("ot=rv:90000000000000;th:8"),
            proportional: None,
            ..case("incoming 50 percent with rvalue", 50.0, "ot=rv:90000000000000;th:80000000000000", None)
        },
        case("incoming 50 percent at 25 percent not sampled", 25.0, "ot=th:8", None),
        Case {
            tid: "ffffffffffffffffffffffffffffffff",
            equalizing: Some("ot=th:c"),
            proportional: Some("ot=th:e"),
            ..case("incoming 50 percent at 25 percent sampled", 25.0, "ot=th:8", None)
        },
        Case {
            equalizing: Some("ot=rv:c0000000000000;th:8"),
            proportional: Some("ot=rv:c0000000000000;th:c"),
            ..case("equalizing vs proportional", 50.0, "ot=rv:c0000000000000;th:8", None)
        },
        case("inconsistent arriving threshold", 100.0, "ot=rv:40000000000000;th:8", Some("ot=rv:40000000000000;th:0")),
        Case {
            fail_closed: true,
            ..case("inconsistent threshold, fail closed", 1.0, "ot=rv:40000000000000;th:8", None)
        },
        Case {
            precision: 3,
            ..case(
                "40 percent precision 3 with rvalue",
                40.0,
                "ot=rv:a0000000000000",
                Some("ot=rv:a0000000000000;th:99a"),
            )
        },
        Case {
            tid: "a0a0a0a0a0a0a0a0a0d0000000000000",
            precision: 6,
            equalizing: Some("ot=th:99999a"),
            proportional: Some("ot=th:cccccd"),
            ..case("arriving 50 at 40 percent, precision 6", 40.0, "ot=th:8", None)
        },
        Case {
            tid: "a0a0a0a0a0a0a0a0a0b0000000000000",
            precision: 3,
            equalizing: Some("ot=th:99a"),
            proportional: None,
            ..case("arriving 50 at 40 percent, partly sampled", 40.0, "ot=th:8", None)
        },
        Case {
            tid: "a0a0a0a0a0a0a0a0a080000000000000",
            precision: 3,
            ..case("arriving 50 at 40 percent, not sampled", 40.0, "ot=th:8", None)
        },
        case("200 percent equals 100 percent", 200.0, "", Some("ot=th:0")),
        Case {
            tid: IMPROBABLE_TID,
            equalizing: Some("ot=th:fffc"),
            proportional: Some("ot=th:fffffff"),
            ..case("tiny probability rounding", 100.0 * (1.0 / 16384.0), "ot=th:fffc", None)
        },
        Case {
            tid: IMPROBABLE_TID,
            precision: 10,
            ..case("almost 100 percent", ((1.0f64 - 8e-7) * 100.0) as f32, "", Some("ot=th:00000cccccccd"))
        },
        Case {
            tid: IMPROBABLE_TID,
            equalizing: Some("ot=th:fffffffffffff8"),
            proportional: None,
            ..case("probability underflow", 1.0 / 16.0, "ot=th:fffffffffffff8", None)
        },
    ];
    for c in &cases {
        for (mode, want) in [(Mode::Equalizing, c.equalizing), (Mode::Proportional, c.proportional)] {
            let mut config = cfg(c.pct, mode, c.precision);
            config.fail_closed = c.fail_closed;
            let attr = c.priority.map(|p| ("sampling.priority", Value::IntValue(p)));
            let got = sample_one(&config, span(&tid(c.tid), c.ts, attr));
            assert_eq!(got.as_deref(), want, "{mode:?}: {}", c.name);
        }
    }
}

#[test]
fn spans_without_usable_randomness_follow_fail_closed() {
    // The Collector's error cases: each is dropped when failing closed, kept (tracestate unparsed
    // ones unchanged) when failing open.
    for (tid_hex, ts) in [
        ("00000000000000000000000000000000", ""),
        (DEFAULT_TID, "ot=rv:abababababababab"),
        (DEFAULT_TID, "ot=th:abababababababab"),
        (DEFAULT_TID, "ot=th:-1"),
        ("ffffffffffffffffff70000000000000", "ot=th:8"),
        (DEFAULT_TID, "ot=th:8;rv:70000000000000"),
    ] {
        for mode in [Mode::Equalizing, Mode::Proportional] {
            let mut c = cfg(100.0, mode, 4);
            c.fail_closed = true;
            assert_eq!(sample_one(&c, span(&tid(tid_hex), ts, None)), None, "{mode:?} {tid_hex} {ts}");
            c.fail_closed = false;
            assert!(sample_one(&c, span(&tid(tid_hex), ts, None)).is_some(), "{mode:?} {tid_hex} {ts}");
        }
    }
}

#[test]
fn span_priority_overrides_the_percentage_in_every_mode() {
    let cases: [(f32, Value, bool); 8] = [
        (0.0, Value::IntValue(2), true),
        (0.0, Value::DoubleValue(1.0), true),
        (0.0, Value::StringValue("1".into()), true),
        (100.0, Value::IntValue(0), false),
        (100.0, Value::DoubleValue(0.0), false),
        (100.0, Value::StringValue("0".into()), false),
        (100.0, Value::IntValue(-1), true),
        (0.0, Value::StringValue("NaN".into()), false),
    ];
    for mode in [Mode::HashSeed, Mode::Equalizing, Mode::Proportional] {
        for (pct, v, kept) in &cases {
            let mut c = cfg(*pct, mode, 4);
            c.hash_seed = 4321;
            let got = sample_one(&c, span(&tid(DEFAULT_TID), "", Some(("sampling.priority", v.clone()))));
            assert_eq!(got.is_some(), *kept, "{mode:?} {pct} {v:?}");
        }
    }
    // An attribute of another name is not a priority.
    let c = cfg(0.0, Mode::Proportional, 4);
    assert!(sample_one(&c, span(&tid(DEFAULT_TID), "", Some(("no.sampling.priority", Value::IntValue(2))))).is_none());
}

#[test]
fn hash_seed_records_the_collectors_thresholds_and_a_consistent_rvalue() {
    // The Collector's Test_tracesamplerprocessor_HashSeedTraceState: the th written for each percentage
    // (14-bit rounding: 10 % is e668, one third aaac), with an rv the threshold passes.
    for (pct, th) in [(100.0, "0"), (75.0, "4"), (50.0, "8"), (25.0, "c"), (10.0, "e668"), (100.0 / 3.0, "aaac")] {
        let mut c = cfg(pct, Mode::HashSeed, 4);
        c.hash_seed = 4321;
        let mut found = 0;
        for i in 0u64..10_000 {
            let id: Vec<u8> = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes().into_iter())
                .chain(i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f).to_be_bytes())
                .collect();
            let Some(ts) = sample_one(&c, span(&id, "", None)) else { continue };
            let parsed = TraceState::parse(&ts).unwrap();
            assert_eq!(parsed.th.unwrap().tvalue(), th, "{pct}");
            let (rv, _) = parsed.rv.unwrap();
            assert!(parsed.th.unwrap().should_sample(rv));
            found += 1;
        }
        let share = found as f64 / 10_000.0;
        assert!((share - f64::from(pct) / 100.0).abs() < 0.02, "{pct}% kept {share}");
    }
    // A span that already carries randomness is an error in this mode (dropped failing closed).
    let mut c = cfg(100.0, Mode::HashSeed, 4);
    c.fail_closed = true;
    assert_eq!(sample_one(&c, span(&tid(DEFAULT_TID), "ot=rv:90000000000000", None)), None);
}

#[test]
fn hash_seed_keeps_the_same_traces_as_the_collectors_bucket_test() {
    // The decision, for many trace ids and seeds, is the Collector's original one:
    // keep when fnv1a32(seed_le ‖ trace_id) & 0x3fff < uint32(float32(pct) * 163.84).
    for (pct, seed) in [(1.0f32, 0u32), (15.0, 22), (50.0, 1), (99.0, 0xdead_beef)] {
        let c = SamplerConfig { hash_seed: seed, ..cfg(pct, Mode::HashSeed, 4) };
        let scaled = (pct * (16384.0f32 / 100.0)) as u32;
        let ids: Vec<Vec<u8>> = (0u32..3000).map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes().repeat(4)).collect();
        let mut p = traces(ids.iter().map(|id| span(id, "", None)).collect());
        let keep = c.decider(false).sample_traces(&mut p);
        for (id, kept) in ids.iter().zip(keep) {
            let expected = sampling::fnv1a32(&seed.to_le_bytes(), id) & 0x3fff < scaled;
            assert_eq!(kept, expected, "{pct}% seed {seed}");
        }
    }
}

#[test]
fn an_unset_mode_resolves_as_the_collectors() {
    let c = SamplerConfig::default();
    assert_eq!(c.mode_for(false), Mode::Proportional);
    assert_eq!(SamplerConfig { hash_seed: 3, ..c.clone() }.mode_for(false), Mode::HashSeed);
    let record = SamplerConfig { attribute_source: AttributeSource::Record, ..c.clone() };
    assert_eq!(record.mode_for(true), Mode::HashSeed);
    assert_eq!(record.mode_for(false), Mode::Proportional);
}

#[test]
fn config_is_validated_with_the_collectors_rules() {
    let ok: SamplerConfig = serde_yaml_ng::from_str("sampling_percentage: 15\nhash_seed: 22\nmode: hash_seed").unwrap();
    assert!(ok.validate().is_ok());
    assert!(ok.fail_closed);
    for (yaml, path) in [
        ("sampling_percentage: -1", "sampling_percentage"),
        ("sampling_percentage: .nan", "sampling_percentage"),
        ("sampling_percentage: 1.0e-30", "sampling_percentage"),
        ("sampling_percentage: 5\nsampling_precision: 0", "sampling_precision"),
        ("sampling_percentage: 5\nsampling_precision: 15", "sampling_precision"),
    ] {
        let c: SamplerConfig = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(c.validate().unwrap_err().path, path, "{yaml}");
    }
    for bad in ["mode: random", "attribute_source: span", "sampling_rate: 5"] {
        assert!(serde_yaml_ng::from_str::<SamplerConfig>(bad).is_err(), "{bad}");
    }
}

fn logs(records: Vec<LogRecord>) -> Payload {
    Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    })
}

fn record(trace_id: &[u8], attrs: &[(&str, Value)]) -> LogRecord {
    LogRecord {
        trace_id: trace_id.to_vec(),
        attributes: attrs
            .iter()
            .map(|(k, v)| KeyValue {
                key: (*k).into(),
                value: Some(AnyValue { value: Some(v.clone()) }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn sample_logs(c: &SamplerConfig, records: Vec<LogRecord>) -> (Vec<bool>, Vec<LogRecord>) {
    let mut p = logs(records);
    let keep = c.decider(true).sample_logs(&mut p);
    let Payload::Logs(r) = p else { unreachable!() };
    (keep, r.resource_logs[0].scope_logs[0].log_records.clone())
}

fn text_attr<'a>(r: &'a LogRecord, k: &str) -> Option<&'a str> {
    match value::get(&r.attributes, k)?.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

#[test]
fn log_records_sample_by_trace_id_or_attribute() {
    // Consistent mode, by trace id: 50 % keeps randomness 0x80000000000000 and records th:8.
    let c = cfg(50.0, Mode::Proportional, 4);
    let (keep, out) =
        sample_logs(&c, vec![record(&tid(DEFAULT_TID), &[]), record(&tid("fefefefefefefefefe7fffffffffffff"), &[])]);
    assert_eq!(keep, [true, false]);
    assert_eq!(text_attr(&out[0], "sampling.threshold"), Some("8"));
    // No trace id and no from_attribute: missing randomness, dropped failing closed.
    let closed = SamplerConfig { fail_closed: true, ..cfg(100.0, Mode::Proportional, 4) };
    assert_eq!(sample_logs(&closed, vec![record(&[], &[])]).0, [false]);
    // attribute_source: record hashes the attribute (hash_seed by default): the same value, the same
    // decision, and the records carry sampling.randomness.
    let by_attr = SamplerConfig {
        attribute_source: AttributeSource::Record,
        from_attribute: "host".into(),
        fail_closed: true,
        ..cfg(50.0, Mode::Unset, 4)
    };
    let hosts: Vec<LogRecord> =
        (0..400).map(|i| record(&[], &[("host", Value::StringValue(format!("h{}", i % 40)))])).collect();
    let (keep, out) = sample_logs(&by_attr, hosts);
    for i in 0..400 {
        assert_eq!(keep[i], keep[i % 40], "host h{} decided differently", i % 40);
        if keep[i] {
            assert!(text_attr(&out[i], "sampling.randomness").is_some());
            assert_eq!(text_attr(&out[i], "sampling.threshold"), Some("8"));
        }
    }
    let kept_hosts = keep[..40].iter().filter(|k| **k).count();
    assert!((8..=32).contains(&kept_hosts), "{kept_hosts} of 40 hosts kept at 50 %");
    // With attribute_source: record and no such attribute: dropped failing closed.
    assert_eq!(sample_logs(&by_attr, vec![record(&tid(DEFAULT_TID), &[])]).0, [false]);
}

#[test]
fn log_sampling_priority_raises_a_records_percentage() {
    let c = SamplerConfig { sampling_priority: "priority".into(), ..cfg(1.0, Mode::Proportional, 4) };
    // Randomness 0x80000000000000 fails 1 %, passes a priority of 60 %.
    let (keep, out) = sample_logs(
        &c,
        vec![
            record(&tid(DEFAULT_TID), &[("priority", Value::DoubleValue(60.0))]),
            record(&tid(DEFAULT_TID), &[("priority", Value::IntValue(60))]),
            record(&tid(DEFAULT_TID), &[("priority", Value::IntValue(0))]),
            record(&tid(DEFAULT_TID), &[]),
        ],
    );
    assert_eq!(keep, [true, true, false, false]);
    assert_eq!(text_attr(&out[0], "sampling.threshold"), Some("6666"));
}
