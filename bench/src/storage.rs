//! Storage measurements: OTLP ⇄ Arrow conversion throughput on one core, and bytes on disk per item
//! of the Parquet files the `parquet` exporter writes, against the same items as OTLP protobuf
//! compressed with zstd at the same level.

use crate::data::Generator;
use crate::load::Signal;
use crate::measure::thread_cpu_ns;
use openwit_core::{Payload, columnar};
use openwit_exporters::parquet::writer::{Rows, Writer, WriterSettings};
use prost::Message;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Distinct requests of generated data (no request is sent twice: repeats would flatter compression).
pub fn payloads(signal: Signal, seed: u64, requests: usize, items_per_request: usize) -> Vec<Payload> {
    let mut g = Generator::new(seed);
    (0..requests)
        .map(|_| match signal {
            Signal::Traces => Payload::Traces(g.traces(items_per_request)),
            Signal::Logs => Payload::Logs(g.logs(items_per_request)),
            Signal::Metrics => Payload::Metrics(g.metrics(items_per_request)),
        })
        .collect()
}

fn core_signal(s: Signal) -> openwit_core::Signal {
    match s {
        Signal::Traces => openwit_core::Signal::Traces,
        Signal::Logs => openwit_core::Signal::Logs,
        Signal::Metrics => openwit_core::Signal::Metrics,
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Conversion {
    pub signal: String,
    /// OTLP (decoded) → Arrow rows, items per second on one core.
    pub to_arrow_items_per_s: f64,
    /// Arrow rows → OTLP, items per second on one core.
    pub from_arrow_items_per_s: f64,
    /// The requests' protobuf bytes → the rows the batch processor makes of them (grouped), what the
    /// daemon does per item before the writer: each request decoded by prost and appended, the batch
    /// converted. Items per second on one core.
    pub from_protobuf_decoded_items_per_s: f64,
    /// The same through the direct path: each request skimmed, the batch converted from the bytes;
    /// none for a signal it does not read.
    pub from_protobuf_direct_items_per_s: Option<f64>,
}

/// Converts the payloads over and over for at least `time` each way, on this thread.
pub fn conversion(signal: Signal, payloads: &[Payload], time: Duration) -> anyhow::Result<Conversion> {
    let items: u64 = payloads.iter().map(|p| p.item_count() as u64).sum();
    let (mut done, start) = (0u64, Instant::now());
    let mut batches = Vec::new();
    while start.elapsed() < time || batches.is_empty() {
        batches.clear();
        for p in payloads {
            batches.push(columnar::to_record_batch("default", p)?);
        }
        done += items;
    }
    let to = done as f64 / start.elapsed().as_secs_f64();
    let (mut done, start) = (0u64, Instant::now());
    while start.elapsed() < time {
        for b in &batches {
            columnar::from_record_batch(core_signal(signal), b)?;
        }
        done += items;
    }
    let from_arrow = done as f64 / start.elapsed().as_secs_f64();
    let encoded: Vec<Vec<u8>> = payloads.iter().map(Payload::encode_to_vec).collect();
    let sig = core_signal(signal);
    let decoded = rate(items, time, || {
        let mut all = Payload::empty(sig);
        for e in &encoded {
            all.append(openwit_core::Payload::decode(sig, e)?);
        }
        columnar::to_grouped_record_batch("default", &all)?;
        Ok(())
    })?;
    let direct = match encoded.iter().map(|e| columnar::skim(sig, e)).collect::<Option<Vec<_>>>() {
        None => None,
        Some(_) => Some(rate(items, time, || {
            let mut total = columnar::Skimmed::default();
            for e in &encoded {
                total.add(&columnar::skim(sig, e).ok_or_else(|| anyhow::anyhow!("skim"))?);
            }
            columnar::from_encoded("default", sig, encoded.iter().map(Vec::as_slice), &total, true)
                .ok_or_else(|| anyhow::anyhow!("not read directly"))??;
            Ok(())
        })?),
    };
    Ok(Conversion {
        signal: format!("{signal:?}").to_lowercase(),
        to_arrow_items_per_s: to,
        from_arrow_items_per_s: from_arrow,
        from_protobuf_decoded_items_per_s: decoded,
        from_protobuf_direct_items_per_s: direct,
    })
}

/// Items per second of `f` (which handles `items` items) run over and over for at least `time`.
fn rate(items: u64, time: Duration, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let (mut done, start) = (0u64, Instant::now());
    while start.elapsed() < time || done == 0 {
        f()?;
        done += items;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    pub signal: String,
    pub items: u64,
    pub parquet_bytes: u64,
    pub files: usize,
    /// All requests' protobuf, concatenated and compressed as one zstd stream.
    pub zstd_stream_bytes: u64,
    /// Each request's protobuf compressed on its own (OTLP with zstd on the wire).
    pub zstd_per_request_bytes: u64,
    pub protobuf_bytes: u64,
    pub zstd_level: i32,
    /// Compressed bytes per top-level column, largest first.
    pub columns: Vec<(String, u64)>,
    /// CPU seconds per million items the writer took on this thread (sorting, encoding, statistics,
    /// compression, writing the files), the conversion to Arrow rows left out.
    pub write_cpu_s_per_million: f64,
}

impl Footprint {
    pub fn parquet_per_item(&self) -> f64 {
        self.parquet_bytes as f64 / self.items as f64
    }
    /// Parquet bytes ÷ the zstd stream of the same protobuf: below 1.0 is smaller.
    pub fn ratio(&self) -> f64 {
        self.parquet_bytes as f64 / self.zstd_stream_bytes as f64
    }
}

/// Writes the payloads with the exporter's own writer (its file properties, row groups of
/// `row_group_rows`, no size rotation) and measures the files, against zstd at the same level.
pub fn footprint(
    signal: Signal,
    payloads: &[Payload],
    level: i32,
    sort_by: Option<Vec<String>>,
    row_group_rows: usize,
    keep: Option<&std::path::Path>,
) -> anyhow::Result<Footprint> {
    let dir = tempfile::tempdir()?;
    let mut w = Writer::new(
        WriterSettings {
            exporter: "bench".into(),
            staging: dir.path().to_path_buf(),
            node_id: "bench".into(),
            compression_level: level,
            row_group_rows,
            max_bytes: u64::MAX,
            max_age: Duration::from_secs(3600),
            sort_by,
            memory: None,
        },
        Default::default(),
    );
    let mut files = Vec::new();
    let mut write_ns = 0;
    for p in payloads {
        let batch = columnar::to_grouped_record_batch("default", p)?;
        let rows = Rows {
            signal: core_signal(signal),
            tenant: "default",
            batch,
            items: vec![],
            batch_ids: vec![],
            pledge: Default::default(),
        };
        let start = thread_cpu_ns();
        files.extend(w.write(rows).map_err(anyhow::Error::msg)?);
        write_ns += thread_cpu_ns() - start;
    }
    let start = thread_cpu_ns();
    files.extend(w.finalize_all().map_err(anyhow::Error::msg)?);
    write_ns += thread_cpu_ns() - start;
    if let Some(keep) = keep {
        std::fs::create_dir_all(keep)?;
        for f in &files {
            let name = f.local.file_name().ok_or_else(|| anyhow::anyhow!("{} has no file name", f.local.display()))?;
            std::fs::copy(&f.local, keep.join(name))?;
        }
    }
    let items: u64 = payloads.iter().map(|p| p.item_count() as u64).sum();
    let encoded: Vec<Vec<u8>> = payloads
        .iter()
        .map(|p| match p {
            Payload::Traces(r) => r.encode_to_vec(),
            Payload::Logs(r) => r.encode_to_vec(),
            Payload::Metrics(r) => r.encode_to_vec(),
        })
        .collect();
    let all: Vec<u8> = encoded.concat();
    let per_request: usize =
        encoded.iter().map(|e| zstd::encode_all(&e[..], level).map(|z| z.len()).unwrap_or(0)).sum();
    let mut columns: std::collections::BTreeMap<String, u64> = Default::default();
    for f in &files {
        let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&f.local)?)?;
        use parquet::file::reader::FileReader;
        for rg in reader.metadata().row_groups() {
            for c in rg.columns() {
                let top = c.column_path().parts()[0].clone();
                *columns.entry(top).or_default() += c.compressed_size() as u64;
            }
        }
    }
    let mut columns: Vec<(String, u64)> = columns.into_iter().collect();
    columns.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok(Footprint {
        columns,
        signal: format!("{signal:?}").to_lowercase(),
        items,
        write_cpu_s_per_million: write_ns as f64 / 1e9 / items as f64 * 1e6,
        parquet_bytes: files.iter().map(|f| f.bytes).sum(),
        files: files.len(),
        zstd_stream_bytes: zstd::encode_all(&all[..], level)?.len() as u64,
        zstd_per_request_bytes: per_request as u64,
        protobuf_bytes: all.len() as u64,
        zstd_level: level,
    })
}
