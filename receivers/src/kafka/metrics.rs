//! The Kafka receiver's own metrics, registered when it starts, with every label value resolved then.

use openwit_core::telemetry::{Counter, Gauge, ReceiverCounters, Telemetry, labels};

/// Message outcomes, as `openwit_kafka_messages_total{outcome}` names them.
pub const MESSAGE_OUTCOMES: [&str; 6] =
    ["stored", "duplicate", "empty", "dead_lettered", "dead_letter_failed", "abandoned"];
/// Commit outcomes, as `openwit_kafka_commits_total{outcome}` names them.
pub const COMMIT_OUTCOMES: [&str; 3] = ["ok", "failed", "unconfirmed"];

pub struct KafkaMetrics {
    /// Items accepted and refused (`otelcol_receiver_*{transport="kafka"}`).
    pub items: ReceiverCounters,
    messages: Vec<Counter>,
    commits: Vec<Counter>,
    /// Partitions held paused for backpressure.
    pub paused_partitions: Gauge,
}

impl KafkaMetrics {
    pub fn register(t: &Telemetry, receiver: &str) -> KafkaMetrics {
        let messages = t.counters("openwit_kafka_messages", "Kafka messages by outcome");
        let commits = t.counters("openwit_kafka_commits", "Kafka offset commits by outcome");
        let by = |f: &openwit_core::telemetry::Counters, outcome: &str| {
            f.get_or_create(&labels(&[("receiver", receiver), ("outcome", outcome)])).clone()
        };
        KafkaMetrics {
            items: ReceiverCounters::register(t, receiver, "kafka"),
            messages: MESSAGE_OUTCOMES.iter().map(|o| by(&messages, o)).collect(),
            commits: COMMIT_OUTCOMES.iter().map(|o| by(&commits, o)).collect(),
            paused_partitions: t
                .gauges("openwit_kafka_paused_partitions", "Kafka partitions paused for backpressure")
                .get_or_create(&labels(&[("receiver", receiver)]))
                .clone(),
        }
    }

    /// Counts a message with one of `MESSAGE_OUTCOMES`.
    pub fn message(&self, outcome: &str) {
        if let Some(i) = MESSAGE_OUTCOMES.iter().position(|o| *o == outcome) {
            self.messages[i].inc();
        }
    }

    /// Counts a commit with one of `COMMIT_OUTCOMES`.
    pub fn commit(&self, outcome: &str) {
        if let Some(i) = COMMIT_OUTCOMES.iter().position(|o| *o == outcome) {
            self.commits[i].inc();
        }
    }
}
