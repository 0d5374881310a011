//! Where undecodable messages go before they are skipped: a directory (default) or a Kafka topic.
//! Either way the message is safely somewhere else before its offset may be committed.

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One message that could not be taken in, and why.
pub struct Poison<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    pub reason: &'a str,
}

pub enum DeadLetter {
    /// `{dir}/{topic}/{partition}-{offset}.bin` holds the payload, `.json` beside it the rest.
    Directory(PathBuf),
    Topic {
        producer: FutureProducer,
        topic: String,
        runtime: tokio::runtime::Handle,
    },
}

impl DeadLetter {
    pub fn directory(dir: PathBuf) -> DeadLetter {
        DeadLetter::Directory(dir)
    }

    /// A producer to `topic`. `runtime` waits for the brokers' acknowledgement from the polling
    /// thread.
    pub fn topic(
        connection: &ClientConfig,
        topic: String,
        runtime: tokio::runtime::Handle,
    ) -> Result<DeadLetter, String> {
        let mut cfg = connection.clone();
        // A delivery that cannot succeed fails within this, instead of being retried forever.
        cfg.set("message.timeout.ms", "10000");
        let producer: FutureProducer =
            cfg.create().map_err(|e| format!("cannot create the dead-letter producer: {e}"))?;
        Ok(DeadLetter::Topic { producer, topic, runtime })
    }

    /// Where dead letters go, for logs.
    pub fn describe(&self) -> String {
        match self {
            DeadLetter::Directory(d) => d.display().to_string(),
            DeadLetter::Topic { topic, .. } => format!("topic {topic}"),
        }
    }

    /// Stores the message durably (fsynced file, or a produce the brokers acknowledged).
    pub fn store(&self, p: &Poison<'_>) -> Result<String, String> {
        match self {
            DeadLetter::Directory(dir) => write_files(dir, p),
            DeadLetter::Topic { producer, topic, runtime } => {
                let partition = p.partition.to_string();
                let offset = p.offset.to_string();
                let mut headers = OwnedHeaders::new();
                for (k, v) in p.headers {
                    headers = headers.insert(Header { key: k, value: *v });
                }
                for (k, v) in [
                    ("openwit.dead_letter.reason", p.reason),
                    ("openwit.dead_letter.topic", p.topic),
                    ("openwit.dead_letter.partition", &partition),
                    ("openwit.dead_letter.offset", &offset),
                ] {
                    headers = headers.insert(Header { key: k, value: Some(v) });
                }
                let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(p.payload).headers(headers);
                if let Some(k) = p.key {
                    record = record.key(k);
                }
                // Waits for the brokers' acknowledgement (or its failure).
                match runtime.block_on(producer.send(record, Duration::from_secs(10))) {
                    Ok(d) => Ok(format!("topic {topic} partition {} offset {}", d.partition, d.offset)),
                    Err((e, _)) => Err(format!("cannot produce to dead-letter topic {topic}: {e}")),
                }
            }
        }
    }
}

fn write_files(dir: &Path, p: &Poison<'_>) -> Result<String, String> {
    let folder = dir.join(p.topic);
    std::fs::create_dir_all(&folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let stem = format!("{}-{}", p.partition, p.offset);
    let headers: Vec<serde_json::Value> = p
        .headers
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": v.map(|v| String::from_utf8_lossy(v).into_owned())}))
        .collect();
    let meta = serde_json::json!({
        "topic": p.topic,
        "partition": p.partition,
        "offset": p.offset,
        "key": p.key.map(|k| String::from_utf8_lossy(k).into_owned()),
        "headers": headers,
        "reason": p.reason,
        "bytes": p.payload.len(),
    });
    let bin = folder.join(format!("{stem}.bin"));
    write_synced(&bin, p.payload)?;
    write_synced(&folder.join(format!("{stem}.json")), &serde_json::to_vec_pretty(&meta).unwrap_or_default())?;
    std::fs::File::open(&folder)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", folder.display()))?;
    Ok(bin.display().to_string())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_keeps_the_payload_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetter::directory(dir.path().to_path_buf());
        let headers: &[(&str, Option<&[u8]>)] = &[("X-Scope-OrgID", Some(b"acme"))];
        let p = Poison {
            topic: "otlp_spans",
            partition: 2,
            offset: 41,
            key: Some(b"k"),
            payload: b"\xff\x00garbage",
            headers,
            reason: "invalid OTLP protobuf",
        };
        let at = dl.store(&p).unwrap();
        assert!(at.ends_with("otlp_spans/2-41.bin"), "{at}");
        assert_eq!(std::fs::read(dir.path().join("otlp_spans/2-41.bin")).unwrap(), b"\xff\x00garbage");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("otlp_spans/2-41.json")).unwrap()).unwrap();
        assert_eq!(meta["reason"], "invalid OTLP protobuf");
        assert_eq!(meta["offset"], 41);
        assert_eq!(meta["headers"][0]["value"], "acme");
    }
}
