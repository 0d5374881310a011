//! The `kafka` receiver: OTLP (protobuf or JSON) from Kafka topics, with offsets committed only once
//! everything below them is fsynced in the WAL.
//!
//! - `config`: the Collector's keys and OpenWit's, and the librdkafka properties they become;
//! - `message`: topic → signal, decoding, tenant, header extraction;
//! - `offsets`: per-partition commit points;
//! - `consumer`: the polling thread, backpressure, rebalances, commits, the trip of each message to
//!   the WAL;
//! - `dead_letter`: where undecodable messages go before they are skipped.

mod config;
mod consumer;
mod dead_letter;
mod message;
mod metrics;
mod offsets;

pub use config::KafkaConfig;

use async_trait::async_trait;
use consumer::{Context, Poller, Settings, Shared};
use dead_letter::DeadLetter;
use message::{TenantResolver, TopicRoutes};
use openwit_core::factory::typed;
use openwit_core::{BuildEnv, ComponentId, Factory, Receiver, ReceiverContext, Signal};
use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The `kafka` receiver factory.
pub fn factory() -> Arc<dyn Factory<dyn Receiver>> {
    typed::<KafkaConfig, dyn Receiver>(
        "kafka",
        &[],
        &Signal::ALL,
        "OTLP from Kafka topics; offsets committed only after the WAL fsync",
        |id: &ComponentId, cfg: &KafkaConfig, env: &BuildEnv| {
            let dead_letter_dir = cfg
                .dead_letter
                .directory
                .clone()
                .unwrap_or_else(|| env.data_dir.join("kafka-dead-letter").join(id.to_string().replace('/', "_")));
            Ok(Box::new(KafkaReceiver { cfg: cfg.clone(), dead_letter_dir }))
        },
    )
}

struct KafkaReceiver {
    cfg: KafkaConfig,
    dead_letter_dir: PathBuf,
}

fn client_config(props: &std::collections::BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in props {
        c.set(k, v);
    }
    // librdkafka's debug contexts (`client_options: {debug: fetch}`) log at debug level.
    c.set_log_level(if props.contains_key("debug") { RDKafkaLogLevel::Debug } else { RDKafkaLogLevel::Info });
    c
}

#[async_trait]
impl Receiver for KafkaReceiver {
    async fn start(self: Box<Self>, mut ctx: ReceiverContext) -> anyhow::Result<JoinHandle<()>> {
        let id = ctx.id.to_string();
        let routes = TopicRoutes::new(&self.cfg, &ctx.signals).map_err(|e| anyhow::anyhow!("receiver {id}: {e}"))?;
        let tenant = TenantResolver::new(&self.cfg.tenant).map_err(|e| anyhow::anyhow!("receiver {id}: {e}"))?;
        let receiver: Arc<str> = Arc::from(id.as_str());
        // Long enough for a message refused once to be written on its next attempt.
        let settle_wait = self.cfg.backpressure_wait * 4 + Duration::from_secs(5);
        let settings = Arc::new(Settings {
            receiver: receiver.clone(),
            tenant,
            headers: if self.cfg.header_extraction.extract_headers {
                self.cfg.header_extraction.headers.clone()
            } else {
                Vec::new()
            },
            batching: self.cfg.batching,
            backpressure_wait: self.cfg.backpressure_wait,
            max_in_flight_messages: self.cfg.max_in_flight_messages,
            max_in_flight_bytes: (self.cfg.max_in_flight_megabytes << 20) as usize,
            commit_interval: self.cfg.commit.interval,
            settle_wait,
            routes,
        });
        let shared = Shared::new(std::mem::take(&mut ctx.durable_offsets));
        let metrics = Arc::new(metrics::KafkaMetrics::register(&ctx.telemetry, &id));
        let context = Context::new(receiver.clone(), shared.clone(), settle_wait, metrics.clone());
        let consumer: BaseConsumer<Context> = client_config(&self.cfg.client_properties())
            .create_with_context(context)
            .map_err(|e| anyhow::anyhow!("receiver {id}: cannot create the Kafka consumer: {e}"))?;
        let topics: Vec<&str> = settings.routes.subscription.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| anyhow::anyhow!("receiver {id}: cannot subscribe to {topics:?}: {e}"))?;
        let dead_letter = match &self.cfg.dead_letter.topic {
            Some(t) => DeadLetter::topic(
                &client_config(&self.cfg.connection_properties()),
                t.clone(),
                tokio::runtime::Handle::current(),
            )
            .map_err(|e| anyhow::anyhow!("receiver {id}: {e}"))?,
            None => DeadLetter::directory(self.dead_letter_dir.clone()),
        };
        if !ctx.durable_offsets.is_empty() {
            tracing::info!(receiver = %id, partitions = ctx.durable_offsets.partitions(), "offsets already in the WAL will be skipped if Kafka delivers them again");
        }
        tracing::info!(
            receiver = %id, brokers = %self.cfg.brokers.join(","), group = %self.cfg.group_id, topics = ?topics,
            dead_letter = %dead_letter.describe(),
            "consuming; offsets are committed only once the messages below them are fsynced in the WAL"
        );
        let poller = Poller {
            settings,
            shared,
            ingest: ctx.ingest.clone(),
            metrics,
            runtime: tokio::runtime::Handle::current(),
            shutdown: ctx.shutdown.clone(),
            dead_letter,
            paused: None,
            topics: Default::default(),
            last_error: Default::default(),
        };
        // The poller holds the only other ingest handle: the pipelines' inputs close when it ends.
        drop(ctx.ingest);
        Ok(tokio::task::spawn_blocking(move || poller.run(consumer)))
    }
}

/// The message path for the fuzzers (`tests/fuzz`): what the consumer does with a message's bytes before
/// it is handed to the WAL. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::config::{Encoding, KafkaTenant};
    use super::message::{TenantResolver, decode, extract_headers};
    use openwit_core::{Payload, Signal};

    /// Decodes `payload` as `signal` in OTLP/JSON (`json`) or protobuf, resolves the tenant from `topic`
    /// (with a `tenant=…` topic pattern) and `headers`, and extracts the headers into resource attributes.
    pub fn message(
        signal: Signal,
        json: bool,
        topic: &str,
        headers: &[(&str, Option<&[u8]>)],
        payload: &[u8],
    ) -> Option<Payload> {
        let encoding = if json { Encoding::OtlpJson } else { Encoding::OtlpProto };
        let tenant = KafkaTenant { topic_pattern: Some(r"^t\.(?P<tenant>[^.]+)$".into()), ..Default::default() };
        let resolver = TenantResolver::new(&tenant).ok()?;
        let _ = resolver.resolve(topic, headers);
        let mut p = decode(signal, encoding, payload).ok()?;
        let wanted: Vec<String> = headers.iter().map(|(k, _)| k.to_string()).collect();
        extract_headers(&mut p, &wanted, headers);
        Some(p)
    }
}
