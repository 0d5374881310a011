//! The `kafka` receiver's config: the Collector's keys, plus OpenWit's tenant, batching, commit,
//! dead-letter and backpressure settings, and the librdkafka properties they become.

use openwit_core::config_types::present_or_default;
use openwit_core::factory::ComponentConfig;
use openwit_core::{BatchingConfig, ConfigIssue, Signal, TenantId};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The `kafka` receiver's config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub brokers: Vec<String>,
    pub client_id: String,
    pub group_id: String,
    /// The older form: one topic for the signal(s) of the pipelines the receiver is in.
    pub topic: Option<String>,
    /// The older form: the encoding of `topic`.
    pub encoding: Option<String>,
    pub traces: Option<SignalTopics>,
    pub metrics: Option<SignalTopics>,
    pub logs: Option<SignalTopics>,
    pub initial_offset: InitialOffset,
    /// Accepted for compatibility; librdkafka negotiates the protocol version with the broker.
    pub protocol_version: Option<String>,
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    pub group_instance_id: Option<String>,
    pub group_rebalance_strategy: Option<String>,
    pub resolve_canonical_bootstrap_servers_only: bool,
    /// Bytes: fetch.min.bytes.
    pub min_fetch_size: Option<i64>,
    /// Bytes: max.partition.fetch.bytes.
    pub default_fetch_size: Option<i64>,
    /// Bytes: fetch.max.bytes.
    pub max_fetch_size: Option<i64>,
    #[serde(with = "humantime_serde")]
    pub max_fetch_wait: Option<Duration>,
    /// TLS is on when this section is present, even empty (unless `insecure: true`).
    #[serde(deserialize_with = "present_or_default")]
    pub tls: Option<TlsConfig>,
    pub auth: Option<AuthConfig>,
    pub metadata: MetadataConfig,
    /// Accepted for compatibility. OpenWit never commits on a timer: see `commit`.
    pub autocommit: Option<AutocommitConfig>,
    /// Accepted for compatibility. OpenWit marks a message once it is in the WAL (or dead-lettered).
    pub message_marking: Option<MessageMarking>,
    pub header_extraction: HeaderExtraction,
    /// Accepted for compatibility: OpenWit retries refused messages with its own backoff.
    pub error_backoff: Option<serde_json::Value>,
    /// Accepted for compatibility (the Collector's own receiver metrics switches).
    pub telemetry: Option<serde_json::Value>,

    /// OpenWit: where the tenant comes from.
    pub tenant: KafkaTenant,
    /// OpenWit: how messages are gathered into WAL batches.
    pub batching: BatchingConfig,
    /// OpenWit: when offsets are committed.
    pub commit: CommitConfig,
    /// OpenWit: where undecodable messages go.
    pub dead_letter: DeadLetterConfig,
    /// OpenWit: partitions are paused while more than this many messages wait for the WAL.
    pub max_in_flight_messages: usize,
    /// OpenWit: … or while their payloads add up to more than this.
    pub max_in_flight_megabytes: u64,
    /// OpenWit: how long one attempt waits for room in a full pipeline before the partitions are
    /// paused and the message is tried again.
    #[serde(with = "humantime_serde")]
    pub backpressure_wait: Duration,
    /// OpenWit: further librdkafka properties (`fetch.queue.backoff.ms: "500"`); they override the
    /// ones derived from the keys above.
    pub client_options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: vec!["localhost:9092".into()],
            client_id: "otel-collector".into(),
            group_id: "otel-collector".into(),
            topic: None,
            encoding: None,
            traces: None,
            metrics: None,
            logs: None,
            initial_offset: InitialOffset::Latest,
            protocol_version: None,
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            group_instance_id: None,
            group_rebalance_strategy: None,
            resolve_canonical_bootstrap_servers_only: false,
            min_fetch_size: None,
            default_fetch_size: None,
            max_fetch_size: None,
            max_fetch_wait: None,
            tls: None,
            auth: None,
            metadata: MetadataConfig::default(),
            autocommit: None,
            message_marking: None,
            header_extraction: HeaderExtraction::default(),
            error_backoff: None,
            telemetry: None,
            tenant: KafkaTenant::default(),
            batching: BatchingConfig::default(),
            commit: CommitConfig::default(),
            dead_letter: DeadLetterConfig::default(),
            max_in_flight_messages: 10_000,
            max_in_flight_megabytes: 64,
            backpressure_wait: Duration::from_millis(500),
            client_options: BTreeMap::new(),
        }
    }
}

/// `traces:`, `metrics:`, `logs:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalTopics {
    /// The older single-topic form.
    pub topic: Option<String>,
    /// Topic names; a name starting with `^` is a regular expression.
    pub topics: Vec<String>,
    pub encoding: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialOffset {
    #[default]
    Latest,
    Earliest,
}

/// The encodings OpenWit decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    OtlpProto,
    OtlpJson,
}

impl Encoding {
    fn parse(s: &str) -> Result<Encoding, String> {
        match s {
            "otlp_proto" => Ok(Encoding::OtlpProto),
            "otlp_json" => Ok(Encoding::OtlpJson),
            other => Err(format!("encoding {other:?} is not supported by OpenWit; use otlp_proto or otlp_json")),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// No TLS at all (plain TCP).
    pub insecure: bool,
    /// TLS without checking the broker's certificate or name.
    pub insecure_skip_verify: bool,
    pub ca_file: Option<PathBuf>,
    pub ca_pem: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub cert_pem: Option<String>,
    pub key_file: Option<PathBuf>,
    pub key_pem: Option<String>,
    /// Accepted for compatibility: librdkafka adds the system's CA certificates when no CA is set.
    pub include_system_ca_certs_pool: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub plain_text: Option<PlainText>,
    pub sasl: Option<SaslConfig>,
    /// The older place of the TLS settings.
    #[serde(default, deserialize_with = "present_or_default")]
    pub tls: Option<TlsConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainText {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    pub username: String,
    pub password: String,
    pub mechanism: String,
    /// The SASL handshake version: accepted for compatibility (librdkafka chooses).
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    /// Accepted for compatibility: librdkafka fetches metadata for the topics it needs.
    pub full: bool,
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    pub retry: MetadataRetry,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig { full: true, refresh_interval: Duration::from_secs(600), retry: MetadataRetry::default() }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataRetry {
    pub max: u32,
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
}

impl Default for MetadataRetry {
    fn default() -> Self {
        MetadataRetry { max: 3, backoff: Duration::from_millis(250) }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutocommitConfig {
    pub enable: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessageMarking {
    pub after: bool,
    pub on_error: bool,
    pub on_permanent_error: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderExtraction {
    /// Copy the listed headers into each resource's attributes as `kafka.header.<name>`.
    pub extract_headers: bool,
    pub headers: Vec<String>,
}

/// Where a Kafka message's tenant comes from: the topic name, else a header, else the default.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaTenant {
    /// A regular expression over the topic name with a group named `tenant`
    /// (`^v6\.qtw\.traces\.(?P<tenant>[^.]+)\.[0-9]+$`).
    pub topic_pattern: Option<String>,
    /// The message header that names the tenant when the topic does not.
    pub header: String,
    pub default: String,
}

impl Default for KafkaTenant {
    fn default() -> Self {
        KafkaTenant { topic_pattern: None, header: "X-Scope-OrgID".into(), default: "default".into() }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CommitStrategy {
    /// Commit an offset once every message up to it is fsynced in the WAL.
    #[default]
    AfterWal,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommitConfig {
    pub strategy: CommitStrategy,
    /// How often durable offsets are committed (only offsets that are durable, never more).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for CommitConfig {
    fn default() -> Self {
        CommitConfig { strategy: CommitStrategy::AfterWal, interval: Duration::from_millis(100) }
    }
}

/// Where undecodable messages are written before they are skipped. Default: a directory under
/// the data directory.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    pub directory: Option<PathBuf>,
    /// A Kafka topic (on the same brokers) instead of a directory.
    pub topic: Option<String>,
}

/// The default topic of each signal, as in the Collector.
pub fn default_topic(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "otlp_spans",
        Signal::Metrics => "otlp_metrics",
        Signal::Logs => "otlp_logs",
    }
}

impl KafkaConfig {
    fn signal_section(&self, signal: Signal) -> Option<&SignalTopics> {
        match signal {
            Signal::Traces => self.traces.as_ref(),
            Signal::Metrics => self.metrics.as_ref(),
            Signal::Logs => self.logs.as_ref(),
        }
    }

    /// The topics and encoding of one signal: its own section first, then the older top-level
    /// `topic`/`encoding`, then the Collector's defaults.
    pub fn topics_for(&self, signal: Signal) -> Result<(Vec<String>, Encoding), ConfigIssue> {
        let section = self.signal_section(signal);
        let mut topics: Vec<String> = section.map(|s| s.topics.clone()).unwrap_or_default();
        if let Some(t) = section.and_then(|s| s.topic.clone()) {
            topics.push(t);
        }
        if topics.is_empty() {
            topics.push(self.topic.clone().unwrap_or_else(|| default_topic(signal).to_string()));
        }
        let enc = section.and_then(|s| s.encoding.as_deref()).or(self.encoding.as_deref()).unwrap_or("otlp_proto");
        let path = if section.and_then(|s| s.encoding.as_ref()).is_some() {
            format!("{signal}.encoding")
        } else {
            "encoding".to_string()
        };
        let encoding = Encoding::parse(enc).map_err(|m| ConfigIssue::new(path, m))?;
        for t in &topics {
            if t.is_empty() {
                return Err(ConfigIssue::new(format!("{signal}.topics"), "a topic name must not be empty"));
            }
            if let Some(rest) = t.strip_prefix('^') {
                regex::Regex::new(&format!("^{rest}")).map_err(|e| {
                    ConfigIssue::new(
                        format!("{signal}.topics"),
                        format!("{t:?} is not a valid regular expression: {e}"),
                    )
                })?;
            }
        }
        Ok((topics, encoding))
    }

    /// The TLS settings, from `tls` or the older `auth.tls`.
    fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref().or(self.auth.as_ref().and_then(|a| a.tls.as_ref())).filter(|t| !t.insecure)
    }

    /// SASL mechanism, user and password, from `auth.sasl` or `auth.plain_text`.
    fn sasl(&self) -> Option<(String, &str, &str)> {
        let auth = self.auth.as_ref()?;
        if let Some(s) = &auth.sasl {
            return Some((s.mechanism.to_ascii_uppercase(), &s.username, &s.password));
        }
        auth.plain_text.as_ref().map(|p| ("PLAIN".to_string(), p.username.as_str(), p.password.as_str()))
    }

    /// The librdkafka properties of the consumer. Offsets are stored and committed by OpenWit only.
    pub fn client_properties(&self) -> BTreeMap<String, String> {
        let mut p = self.connection_properties();
        let mut set = |k: &str, v: String| {
            p.insert(k.to_string(), v);
        };
        set("group.id", self.group_id.clone());
        set("enable.auto.commit", "false".into());
        set("enable.auto.offset.store", "false".into());
        set(
            "auto.offset.reset",
            match self.initial_offset {
                InitialOffset::Latest => "latest",
                InitialOffset::Earliest => "earliest",
            }
            .into(),
        );
        set("session.timeout.ms", self.session_timeout.as_millis().to_string());
        set("heartbeat.interval.ms", self.heartbeat_interval.as_millis().to_string());
        // Errors are reported per message; an empty partition is not one.
        set("enable.partition.eof", "false".into());
        if let Some(id) = &self.group_instance_id {
            set("group.instance.id", id.clone());
        }
        if let Some(s) = &self.group_rebalance_strategy {
            set("partition.assignment.strategy", assignment_strategy(s).unwrap_or(s).to_string());
        }
        if let Some(v) = self.min_fetch_size {
            set("fetch.min.bytes", v.to_string());
        }
        if let Some(v) = self.default_fetch_size {
            set("max.partition.fetch.bytes", v.to_string());
        }
        if let Some(v) = self.max_fetch_size {
            set("fetch.max.bytes", v.to_string());
        }
        if let Some(v) = self.max_fetch_wait {
            set("fetch.wait.max.ms", v.as_millis().to_string());
        }
        for (k, v) in &self.client_options {
            p.insert(k.clone(), v.clone());
        }
        p
    }

    /// Brokers, client id, TLS and SASL: shared by the consumer and the dead-letter producer.
    pub fn connection_properties(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            p.insert(k.to_string(), v);
        };
        set("bootstrap.servers", self.brokers.join(","));
        set("client.id", self.client_id.clone());
        set("topic.metadata.refresh.interval.ms", self.metadata.refresh_interval.as_millis().to_string());
        set("retry.backoff.ms", self.metadata.retry.backoff.as_millis().max(1).to_string());
        if self.resolve_canonical_bootstrap_servers_only {
            set("client.dns.lookup", "resolve_canonical_bootstrap_servers_only".into());
        }
        let tls = self.tls();
        let sasl = self.sasl();
        let protocol = match (tls.is_some(), sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        set("security.protocol", protocol.into());
        if let Some(t) = tls {
            let path = |p: &PathBuf| p.to_string_lossy().into_owned();
            if let Some(f) = &t.ca_file {
                set("ssl.ca.location", path(f));
            }
            if let Some(pem) = &t.ca_pem {
                set("ssl.ca.pem", pem.clone());
            }
            if let Some(f) = &t.cert_file {
                set("ssl.certificate.location", path(f));
            }
            if let Some(pem) = &t.cert_pem {
                set("ssl.certificate.pem", pem.clone());
            }
            if let Some(f) = &t.key_file {
                set("ssl.key.location", path(f));
            }
            if let Some(pem) = &t.key_pem {
                set("ssl.key.pem", pem.clone());
            }
            if t.insecure_skip_verify {
                set("enable.ssl.certificate.verification", "false".into());
                set("ssl.endpoint.identification.algorithm", "none".into());
            }
        }
        if let Some((mechanism, user, password)) = sasl {
            set("sasl.mechanism", mechanism);
            set("sasl.username", user.to_string());
            set("sasl.password", password.to_string());
        }
        p
    }
}

/// The Collector's strategy names, as librdkafka calls them.
fn assignment_strategy(s: &str) -> Option<&'static str> {
    match s {
        "range" => Some("range"),
        "roundrobin" => Some("roundrobin"),
        "sticky" => Some("cooperative-sticky"),
        _ => None,
    }
}

const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// librdkafka settings that would commit offsets on their own (`auto.commit.enable` is the old name of
/// `enable.auto.commit`).
const COMMIT_KEYS: [&str; 3] = ["enable.auto.commit", "enable.auto.offset.store", "auto.commit.enable"];

impl ComponentConfig for KafkaConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.brokers.is_empty() || self.brokers.iter().any(|b| b.trim().is_empty()) {
            return Err(ConfigIssue::new("brokers", "list at least one broker, as host:port"));
        }
        if self.group_id.is_empty() {
            return Err(ConfigIssue::new("group_id", "must not be empty: offsets are committed for this group"));
        }
        for s in Signal::ALL {
            self.topics_for(s)?;
        }
        if let Some(s) = &self.group_rebalance_strategy
            && assignment_strategy(s).is_none()
        {
            return Err(ConfigIssue::new(
                "group_rebalance_strategy",
                format!("{s:?} is not a strategy; choose range, roundrobin or sticky"),
            ));
        }
        if let Some(auth) = &self.auth {
            if auth.sasl.is_some() && auth.plain_text.is_some() {
                return Err(ConfigIssue::new("auth", "set either sasl or plain_text, not both"));
            }
            if let Some(s) = &auth.sasl {
                if !SASL_MECHANISMS.contains(&s.mechanism.to_ascii_uppercase().as_str()) {
                    return Err(ConfigIssue::new(
                        "auth.sasl.mechanism",
                        format!(
                            "{:?} is not supported by OpenWit; choose one of {}",
                            s.mechanism,
                            SASL_MECHANISMS.join(", ")
                        ),
                    ));
                }
                if s.username.is_empty() {
                    return Err(ConfigIssue::new("auth.sasl.username", "must not be empty"));
                }
            }
        }
        if let Some(t) = self.tls() {
            for (key, file) in [("ca_file", &t.ca_file), ("cert_file", &t.cert_file), ("key_file", &t.key_file)] {
                if let Some(f) = file
                    && !f.is_file()
                {
                    return Err(ConfigIssue::new(
                        format!("tls.{key}"),
                        format!("{} is not a readable file", f.display()),
                    ));
                }
            }
            if t.cert_file.is_some() != t.key_file.is_some() && t.cert_pem.is_none() && t.key_pem.is_none() {
                return Err(ConfigIssue::new("tls", "a client certificate needs both cert_file and key_file"));
            }
        }
        if let Some(p) = &self.tenant.topic_pattern {
            let re = regex::Regex::new(p).map_err(|e| {
                ConfigIssue::new("tenant.topic_pattern", format!("not a valid regular expression: {e}"))
            })?;
            if !re.capture_names().any(|n| n == Some("tenant")) {
                return Err(ConfigIssue::new(
                    "tenant.topic_pattern",
                    "needs a group named tenant, for example ^v6\\.qtw\\.traces\\.(?P<tenant>[^.]+)\\.[0-9]+$",
                ));
            }
        }
        TenantId::new(&self.tenant.default).map_err(|e| ConfigIssue::new("tenant.default", e.to_string()))?;
        if self.tenant.header.is_empty() {
            return Err(ConfigIssue::new("tenant.header", "must not be empty"));
        }
        if self.dead_letter.directory.is_some() && self.dead_letter.topic.is_some() {
            return Err(ConfigIssue::new("dead_letter", "set either directory or topic, not both"));
        }
        if let Some(k) = self.client_options.keys().find(|k| COMMIT_KEYS.contains(&k.as_str())) {
            return Err(ConfigIssue::new(
                format!("client_options.{k}"),
                "OpenWit commits an offset only once its message is fsynced in the WAL; automatic commits or \
                 offset stores would commit messages that are not durable yet. Remove this key",
            ));
        }
        if self.max_in_flight_messages == 0 {
            return Err(ConfigIssue::new("max_in_flight_messages", "must be at least 1"));
        }
        if self.max_in_flight_megabytes == 0 {
            return Err(ConfigIssue::new("max_in_flight_megabytes", "must be at least 1"));
        }
        if self.commit.interval.is_zero() {
            return Err(ConfigIssue::new("commit.interval", "must be more than 0"));
        }
        if self.header_extraction.extract_headers && self.header_extraction.headers.is_empty() {
            return Err(ConfigIssue::new("header_extraction.headers", "list the headers to extract"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<KafkaConfig, String> {
        let cfg: KafkaConfig = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|i| format!("{}: {}", i.path, i.message))?;
        Ok(cfg)
    }

    #[test]
    fn defaults_are_the_collectors() {
        let c = parse("{}").unwrap();
        assert_eq!(c.topics_for(Signal::Traces).unwrap(), (vec!["otlp_spans".to_string()], Encoding::OtlpProto));
        assert_eq!(c.topics_for(Signal::Logs).unwrap().0, vec!["otlp_logs".to_string()]);
        let p = c.client_properties();
        assert_eq!(p["bootstrap.servers"], "localhost:9092");
        assert_eq!(p["group.id"], "otel-collector");
        assert_eq!(p["client.id"], "otel-collector");
        assert_eq!(p["auto.offset.reset"], "latest");
        assert_eq!(p["enable.auto.commit"], "false", "OpenWit commits, after the WAL");
        assert_eq!(p["enable.auto.offset.store"], "false");
        assert_eq!(p["security.protocol"], "plaintext");
    }

    #[test]
    fn signal_sections_override_the_older_keys() {
        let c = parse(
            "topic: legacy\nencoding: otlp_json\ntraces: {topics: [a, '^b.*']}\nlogs: {topic: l, encoding: otlp_proto}",
        )
        .unwrap();
        assert_eq!(c.topics_for(Signal::Traces).unwrap(), (vec!["a".into(), "^b.*".into()], Encoding::OtlpJson));
        assert_eq!(c.topics_for(Signal::Logs).unwrap(), (vec!["l".into()], Encoding::OtlpProto));
        assert_eq!(c.topics_for(Signal::Metrics).unwrap(), (vec!["legacy".into()], Encoding::OtlpJson));
    }

    #[test]
    fn tls_and_sasl_become_librdkafka_properties() {
        let c = parse(
            "brokers: [a:9093, b:9093]\ntls: {insecure_skip_verify: true}\nauth: {sasl: {username: u, password: p, mechanism: SCRAM-SHA-512}}\nclient_options: {fetch.queue.backoff.ms: '5'}",
        )
        .unwrap();
        let p = c.client_properties();
        assert_eq!(p["bootstrap.servers"], "a:9093,b:9093");
        assert_eq!(p["security.protocol"], "sasl_ssl");
        assert_eq!(p["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!((p["sasl.username"].as_str(), p["sasl.password"].as_str()), ("u", "p"));
        assert_eq!(p["enable.ssl.certificate.verification"], "false");
        assert_eq!(p["fetch.queue.backoff.ms"], "5");
        let plain = parse("auth: {plain_text: {username: u, password: p}}").unwrap().client_properties();
        assert_eq!(
            (plain["security.protocol"].as_str(), plain["sasl.mechanism"].as_str()),
            ("sasl_plaintext", "PLAIN")
        );
        let insecure = parse("tls: {insecure: true}").unwrap().client_properties();
        assert_eq!(insecure["security.protocol"], "plaintext");
        let empty = parse("tls:").unwrap().client_properties();
        assert_eq!(empty["security.protocol"], "ssl", "an empty tls section turns TLS on");
        assert!(!empty.contains_key("enable.ssl.certificate.verification"), "and verifies certificates");
        let older = parse("auth: {tls: {}, plain_text: {username: u, password: p}}").unwrap().client_properties();
        assert_eq!(older["security.protocol"], "sasl_ssl");
    }

    #[test]
    fn mistakes_are_named() {
        let err = |y: &str| parse(y).unwrap_err();
        assert!(err("encoding: jaeger_proto").contains("encoding: encoding \"jaeger_proto\" is not supported"));
        assert!(err("traces: {encoding: zipkin_json}").starts_with("traces.encoding"));
        assert!(
            err("auth: {sasl: {username: u, password: p, mechanism: AWS_MSK_IAM_OAUTHBEARER}}")
                .contains("choose one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")
        );
        assert!(err("initial_offset: newest").contains("unknown variant `newest`"));
        assert!(err("tenant: {topic_pattern: '^t\\.(.+)$'}").contains("needs a group named tenant"));
        assert!(err("tenant: {topic_pattern: '(?P<tenant>'}").starts_with("tenant.topic_pattern"));
        assert!(err("traces: {topics: ['^a(']}").contains("not a valid regular expression"));
        assert!(err("tls: {ca_file: /nonexistent/ca.pem}").starts_with("tls.ca_file"));
        assert!(err("group_rebalance_strategy: fair").contains("choose range, roundrobin or sticky"));
        assert!(err("commit: {strategy: on_timer}").contains("unknown variant `on_timer`"));
        assert!(err("dead_letter: {directory: /x, topic: y}").contains("either directory or topic"));
        for key in ["enable.auto.commit", "enable.auto.offset.store", "auto.commit.enable"] {
            let e = err(&format!("client_options: {{{key}: 'true'}}"));
            assert!(e.starts_with(&format!("client_options.{key}:")) && e.contains("fsynced in the WAL"), "{e}");
        }
        assert!(err("brokers: []").starts_with("brokers"));
        assert!(err("topics: [a]").contains("unknown field `topics`"));
    }

    #[test]
    fn collector_only_keys_are_accepted() {
        let c = parse(
            "autocommit: {enable: true, interval: 1s}\nmessage_marking: {after: true, on_error: false}\nerror_backoff: {enabled: true, initial_interval: 1s}\nprotocol_version: 2.1.0\nmetadata: {full: false, retry: {max: 5, backoff: 1s}}\ntelemetry: {metrics: {kafka_receiver_records_delay: {enabled: true}}}",
        )
        .unwrap();
        assert!(c.autocommit.unwrap().enable);
        assert_eq!(c.metadata.retry.max, 5);
    }
}
