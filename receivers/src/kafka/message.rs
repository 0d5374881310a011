//! From a Kafka message to a request: which signal its topic carries, decoding, the tenant, and
//! headers copied into resource attributes.

use super::config::{Encoding, KafkaConfig, KafkaTenant};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use openwit_core::{Payload, Signal, TenantError, TenantId, otlp_json};
use prost::Message;
use regex::Regex;
use std::collections::HashMap;

/// Which signal and encoding each subscribed topic carries.
pub struct TopicRoutes {
    exact: HashMap<String, (Signal, Encoding)>,
    patterns: Vec<(Regex, Signal, Encoding)>,
    /// What the consumer subscribes to (names, and `^` regular expressions).
    pub subscription: Vec<String>,
}

impl TopicRoutes {
    /// The routes of the signals that have pipelines behind the receiver.
    pub fn new(cfg: &KafkaConfig, signals: &[Signal]) -> Result<TopicRoutes, String> {
        let mut routes = TopicRoutes { exact: HashMap::new(), patterns: Vec::new(), subscription: Vec::new() };
        for &signal in signals {
            let (topics, encoding) = cfg.topics_for(signal).map_err(|i| format!("{}: {}", i.path, i.message))?;
            for t in topics {
                if t.starts_with('^') {
                    let re = Regex::new(&t).map_err(|e| format!("{signal} topic {t:?}: {e}"))?;
                    routes.patterns.push((re, signal, encoding));
                } else if let Some((other, _)) = routes.exact.get(&t) {
                    return Err(format!(
                        "topic {t:?} is configured for both {other} and {signal}; a topic carries one signal: set {other}.topics and {signal}.topics"
                    ));
                } else {
                    routes.exact.insert(t.clone(), (signal, encoding));
                }
                if !routes.subscription.contains(&t) {
                    routes.subscription.push(t);
                }
            }
        }
        Ok(routes)
    }

    /// The signal and encoding of a topic: an exact name first, then the first matching pattern.
    pub fn route(&self, topic: &str) -> Option<(Signal, Encoding)> {
        self.exact
            .get(topic)
            .copied()
            .or_else(|| self.patterns.iter().find(|(re, _, _)| re.is_match(topic)).map(|(_, s, e)| (*s, *e)))
    }
}

/// Finds a message's tenant: from the topic name, else from a header, else the default.
pub struct TenantResolver {
    pattern: Option<Regex>,
    header: String,
    default: TenantId,
}

impl TenantResolver {
    pub fn new(cfg: &KafkaTenant) -> Result<TenantResolver, String> {
        let pattern = match &cfg.topic_pattern {
            Some(p) => Some(Regex::new(p).map_err(|e| format!("tenant.topic_pattern: {e}"))?),
            None => None,
        };
        let default = TenantId::new(&cfg.default).map_err(|e| format!("tenant.default: {e}"))?;
        Ok(TenantResolver { pattern, header: cfg.header.clone(), default })
    }

    /// Invalid ids are refused (the message is dead-lettered), never sanitised.
    pub fn resolve(&self, topic: &str, headers: &[(&str, Option<&[u8]>)]) -> Result<TenantId, MessageError> {
        if let Some(caps) = self.pattern.as_ref().and_then(|re| re.captures(topic))
            && let Some(t) = caps.name("tenant")
        {
            return TenantId::new(t.as_str())
                .map_err(|source| MessageError::TenantInTopic { topic: topic.to_string(), source });
        }
        let named = headers.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(&self.header));
        match named {
            Some((_, Some(v))) => {
                let header = || self.header.clone();
                let v = std::str::from_utf8(v).map_err(|_| MessageError::TenantHeaderNotUtf8 { header: header() })?;
                TenantId::new(v.trim()).map_err(|source| MessageError::TenantHeader { header: header(), source })
            }
            _ => Ok(self.default.clone()),
        }
    }
}

/// Why a message cannot be stored: it is dead-lettered with this as its reason.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("invalid OTLP protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The OTLP/JSON decoder's own words (`invalid JSON: …`, `invalid OTLP/JSON: …`).
    #[error("{0}")]
    Json(String),
    #[error("topic {0} matches none of the receiver's topics")]
    UnknownTopic(String),
    #[error("the tenant in topic {topic:?} is invalid: {source}")]
    TenantInTopic { topic: String, source: TenantError },
    #[error("header {header} is not UTF-8")]
    TenantHeaderNotUtf8 { header: String },
    #[error("header {header}: {source}")]
    TenantHeader { header: String, source: TenantError },
}

/// Decodes a message's payload as an OTLP export request of `signal`.
pub fn decode(signal: Signal, encoding: Encoding, bytes: &[u8]) -> Result<Payload, MessageError> {
    fn json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, MessageError> {
        otlp_json::decode(b).map_err(MessageError::Json)
    }
    Ok(match (signal, encoding) {
        (Signal::Traces, Encoding::OtlpProto) => Payload::Traces(ExportTraceServiceRequest::decode(bytes)?),
        (Signal::Metrics, Encoding::OtlpProto) => Payload::Metrics(ExportMetricsServiceRequest::decode(bytes)?),
        (Signal::Logs, Encoding::OtlpProto) => Payload::Logs(ExportLogsServiceRequest::decode(bytes)?),
        (Signal::Traces, Encoding::OtlpJson) => Payload::Traces(json(bytes)?),
        (Signal::Metrics, Encoding::OtlpJson) => Payload::Metrics(json(bytes)?),
        (Signal::Logs, Encoding::OtlpJson) => Payload::Logs(json(bytes)?),
    })
}

/// Sets `kafka.header.<name>` on every resource of the payload for each listed header the message
/// has, as the Collector's `header_extraction` does.
pub fn extract_headers(payload: &mut Payload, wanted: &[String], headers: &[(&str, Option<&[u8]>)]) -> bool {
    let attrs: Vec<KeyValue> = wanted
        .iter()
        .filter_map(|name| {
            let (_, v) = headers.iter().rev().find(|(k, _)| k == name)?;
            let text = String::from_utf8_lossy(v.unwrap_or_default()).into_owned();
            Some(KeyValue {
                key: format!("kafka.header.{name}"),
                value: Some(AnyValue { value: Some(any_value::Value::StringValue(text)) }),
                ..Default::default()
            })
        })
        .collect();
    if attrs.is_empty() {
        return false;
    }
    let set = |r: &mut Option<Resource>| {
        let r = r.get_or_insert_with(Resource::default);
        for a in &attrs {
            r.attributes.retain(|kv| kv.key != a.key);
            r.attributes.push(a.clone());
        }
    };
    match payload {
        Payload::Traces(t) => t.resource_spans.iter_mut().for_each(|r| set(&mut r.resource)),
        Payload::Metrics(m) => m.resource_metrics.iter_mut().for_each(|r| set(&mut r.resource)),
        Payload::Logs(l) => l.resource_logs.iter_mut().for_each(|r| set(&mut r.resource)),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> KafkaConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn topics_route_to_their_signal() {
        let c = cfg("traces: {topics: [spans, '^spans\\.[a-z]+$']}\nlogs: {topics: ['^logs-.*'], encoding: otlp_json}");
        let r = TopicRoutes::new(&c, &[Signal::Traces, Signal::Logs]).unwrap();
        assert_eq!(r.route("spans"), Some((Signal::Traces, Encoding::OtlpProto)));
        assert_eq!(r.route("spans.acme"), Some((Signal::Traces, Encoding::OtlpProto)));
        assert_eq!(r.route("logs-x"), Some((Signal::Logs, Encoding::OtlpJson)));
        assert_eq!(r.route("spans.Acme"), None);
        assert_eq!(r.subscription, vec!["spans", "^spans\\.[a-z]+$", "^logs-.*"]);
        // Only the signals with pipelines are subscribed.
        let only_logs = TopicRoutes::new(&c, &[Signal::Logs]).unwrap();
        assert_eq!(only_logs.subscription, vec!["^logs-.*"]);
        let shared = cfg("topic: all");
        let err = TopicRoutes::new(&shared, &[Signal::Traces, Signal::Logs]).err().unwrap();
        assert!(err.contains("configured for both traces and logs"), "{err}");
    }

    #[test]
    fn tenant_from_topic_then_header_then_default() {
        let t = TenantResolver::new(&KafkaTenant {
            topic_pattern: Some(r"^v6\.qtw\.traces\.(?P<tenant>[^.]+)\.[0-9]+$".into()),
            ..Default::default()
        })
        .unwrap();
        let h: &[(&str, Option<&[u8]>)] = &[("x-scope-orgid", Some(b"from-header"))];
        assert_eq!(t.resolve("v6.qtw.traces.acme.3", h).unwrap().as_str(), "acme");
        assert_eq!(t.resolve("other", h).unwrap().as_str(), "from-header");
        assert_eq!(t.resolve("other", &[]).unwrap().as_str(), "default");
        let e = t.resolve("v6.qtw.traces.a$b.3", &[]).unwrap_err();
        assert!(matches!(e, MessageError::TenantInTopic { .. }) && e.to_string().contains("invalid"), "{e}");
        assert!(t.resolve("other", &[("X-Scope-OrgID", Some(b"../etc"))]).is_err());
    }

    #[test]
    fn headers_become_resource_attributes() {
        let mut p =
            Payload::Logs(ExportLogsServiceRequest { resource_logs: vec![Default::default(), Default::default()] });
        let headers: &[(&str, Option<&[u8]>)] = &[("region", Some(b"eu")), ("other", Some(b"x"))];
        assert!(extract_headers(&mut p, &["region".into(), "absent".into()], headers));
        let Payload::Logs(l) = p else { unreachable!() };
        for r in &l.resource_logs {
            let attrs = &r.resource.as_ref().unwrap().attributes;
            assert_eq!(attrs.len(), 1);
            assert_eq!(attrs[0].key, "kafka.header.region");
        }
    }
}
