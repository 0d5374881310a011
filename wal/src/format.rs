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
