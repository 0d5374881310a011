//! The on-disk format: segment header, frames, and the protobuf record bodies.

/// First bytes of every segment. `\r\n\x1a` catches text-mode and truncation accidents, as PNG does.
pub const MAGIC: [u8; 8] = *b"OWWAL\r\n\x1a";
/// Format version written after the magic.
pub const VERSION: u32 = 1;
/// Header size: magic, version (u32 LE), reserved (u32).
pub const HEADER_LEN: usize = 16;
/// Frame prefix: length (u32 LE) and CRC32C (u32 LE).
pub const FRAME_PREFIX: usize = 8;
/// Largest body accepted when reading (guards resynchronisation against absurd lengths).
pub const MAX_BODY: usize = 1 << 30;

/// The segment header bytes.
pub fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Appends one frame holding `body` to `out`.
pub fn put_frame(out: &mut Vec<u8>, body: &[u8]) {
    put_frame_with(out, |buf| buf.extend_from_slice(body));
}

/// Appends one frame whose body `write_body` appends to the buffer directly, then fills in the
/// length and CRC: the body is never built in a buffer of its own.
pub fn put_frame_with(out: &mut Vec<u8>, write_body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_PREFIX]);
    write_body(out);
    let body = &out[start + FRAME_PREFIX..];
    let (len, crc) = (body.len() as u32, crc32c::crc32c(body));
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// One WAL record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    #[prost(oneof = "record::Kind", tags = "1, 2, 3")]
    pub kind: Option<record::Kind>,
}

pub mod record {
    /// What a record holds.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "1")]
        Batch(super::WalBatch),
        #[prost(message, tag = "2")]
        Completion(super::Completion),
        #[prost(message, tag = "3")]
        Voided(super::Voided),
    }
}

/// A batch as received: the unit of durability, tracking and replay.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WalBatch {
    /// UUIDv7 (16 bytes): time-ordered.
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub created_unix_ms: i64,
    /// 1 traces, 2 metrics, 3 logs.
    #[prost(int32, tag = "3")]
    pub signal: i32,
    #[prost(string, tag = "4")]
    pub tenant: String,
    /// The receiver id (`otlp`, `kafka/edge`) whose pipelines the batch belongs to.
    #[prost(string, tag = "5")]
    pub receiver: String,
    #[prost(uint32, tag = "6")]
    pub items: u32,
    /// The OTLP Export request, protobuf-encoded.
    #[prost(bytes = "vec", tag = "7")]
    pub payload: Vec<u8>,
    #[prost(message, repeated, tag = "8")]
    pub metadata: Vec<MetaEntry>,
    /// Source positions the batch covers (Kafka topic/partition/offset ranges).
    #[prost(message, repeated, tag = "9")]
    pub sources: Vec<SourceRange>,
}

/// A batch to append whose payload is held in parts (the requests' bytes as received, which end to
/// end are one request: concatenated protobuf messages of one type are the message with their
/// repeated fields appended). The parts are written straight into the frame as the batch's `payload`,
/// never gathered into a buffer of their own; the record reads back as the `WalBatch` with that
/// payload.
#[derive(Clone, Debug)]
pub struct OutgoingBatch {
    header: WalBatch,
    parts: Vec<bytes::Bytes>,
    payload_len: usize,
}

/// The `payload` field's number in `WalBatch`.
const PAYLOAD_TAG: u32 = 7;

impl OutgoingBatch {
    /// `header`'s own payload, if any, comes first, then `parts`.
    pub fn new(mut header: WalBatch, mut parts: Vec<bytes::Bytes>) -> OutgoingBatch {
        if !header.payload.is_empty() {
            parts.insert(0, bytes::Bytes::from(std::mem::take(&mut header.payload)));
        }
        let payload_len = parts.iter().map(bytes::Bytes::len).sum();
        OutgoingBatch { header, parts, payload_len }
    }

    /// The batch's fields but its payload (left empty).
    pub fn header(&self) -> &WalBatch {
        &self.header
    }

    pub fn payload_len(&self) -> usize {
        self.payload_len
    }
}

/// What the WAL appends: a batch, whole or in parts.
pub trait Appendable {
    fn id(&self) -> &[u8];
    /// Bytes the record will take, about (to size the commit's buffer).
    fn size_hint(&self) -> usize;
    /// Appends the `Record` holding the batch.
    fn encode_record(&self, out: &mut Vec<u8>);
}

impl Appendable for WalBatch {
    fn id(&self) -> &[u8] {
        &self.id
    }

    fn size_hint(&self) -> usize {
        self.payload.len() + 256
    }

    fn encode_record(&self, out: &mut Vec<u8>) {
        // A `Record` holding a batch is the batch encoded as field 1: encoded from a reference.
        prost::encoding::message::encode(1, self, out);
    }
}

impl Appendable for OutgoingBatch {
    fn id(&self) -> &[u8] {
        &self.header.id
    }

    fn size_hint(&self) -> usize {
        self.payload_len + 256
    }

    fn encode_record(&self, out: &mut Vec<u8>) {
        use prost::Message;
        use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
        let payload = if self.payload_len == 0 {
            0
        } else {
            key_len(PAYLOAD_TAG) + encoded_len_varint(self.payload_len as u64) + self.payload_len
        };
        // Field 1 of `Record`, the batch: its other fields, then the payload (fields may come in any
        // order; the header's empty payload is not encoded).
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint((self.header.encoded_len() + payload) as u64, out);
        self.header.encode_raw(out);
        if self.payload_len > 0 {
            encode_key(PAYLOAD_TAG, WireType::LengthDelimited, out);
            encode_varint(self.payload_len as u64, out);
            for p in &self.parts {
                out.extend_from_slice(p);
            }
        }
    }
}

/// One request metadata key and its values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaEntry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, repeated, tag = "2")]
    pub values: Vec<String>,
}

/// A contiguous range of source offsets.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SourceRange {
    #[prost(string, tag = "1")]
    pub topic: String,
    #[prost(int32, tag = "2")]
    pub partition: i32,
    #[prost(int64, tag = "3")]
    pub first_offset: i64,
    #[prost(int64, tag = "4")]
    pub last_offset: i64,
}

/// Batches that every exporter has stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Completion {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub ids: Vec<Vec<u8>>,
}

/// Batches whose commit failed (their requests were refused): whatever of their frames reached the disk
/// must never be replayed, or a client that retried would find its data stored twice.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Voided {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub ids: Vec<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    fn header(id: u8, payload: Vec<u8>, tenant: String, items: u32) -> WalBatch {
        WalBatch {
            id: vec![id; 16],
            created_unix_ms: 1_700_000_000_000 + i64::from(id),
            signal: 1,
            tenant,
            receiver: "otlp".into(),
            items,
            payload,
            metadata: vec![MetaEntry { key: "x-scope".into(), values: vec!["a".into(), "b".into()] }],
            sources: vec![SourceRange { topic: "t".into(), partition: 2, first_offset: 5, last_offset: 9 }],
        }
    }

    fn record(b: &impl Appendable) -> Record {
        let mut out = Vec::new();
        b.encode_record(&mut out);
        Record::decode(&out[..]).expect("a record")
    }

    proptest! {
        /// A batch written in parts reads back as the batch whose payload is the parts end to end,
        /// the header's own payload first.
        #[test]
        fn a_batch_in_parts_reads_back_as_its_parts_end_to_end(
            id in any::<u8>(),
            own in proptest::collection::vec(any::<u8>(), 0..40),
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..5),
            tenant in "[a-z]{0,12}",
            items in any::<u32>(),
        ) {
            let whole: Vec<u8> = own.iter().chain(parts.iter().flatten()).copied().collect();
            let expected = header(id, whole.clone(), tenant.clone(), items);
            let out = OutgoingBatch::new(
                header(id, own, tenant, items),
                parts.into_iter().map(bytes::Bytes::from).collect(),
            );
            prop_assert_eq!(out.payload_len(), whole.len());
            prop_assert!(out.header().payload.is_empty());
            prop_assert_eq!(out.id(), &expected.id[..]);
            prop_assert_eq!(record(&out), Record { kind: Some(record::Kind::Batch(expected.clone())) });
            prop_assert_eq!(record(&out), record(&expected));
        }
    }
}
