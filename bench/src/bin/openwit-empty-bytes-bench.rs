//! `openwit-empty-bytes-bench`: what a column of empty strings costs the Parquet writer, as Arrow's
//! kernels make it (a values buffer with no allocation) and as the exporter hands it over
//! (`openwit_exporters::parquet::addressable`), against a column of 13 distinct 20-byte strings. Each
//! column is written as the exporter writes a row group (`ArrowColumnWriter`, 8,192 rows at a time,
//! dictionary encoding, zstd), with page statistics and without; the best of `--rounds` is reported
//! in ns of wall time per row (one thread, nothing else running).

use arrow::array::{Array, ArrayRef, StringArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{Field, Schema};
use clap::Parser;
use openwit_exporters::parquet::addressable::addressable;
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "openwit-empty-bytes-bench", about = "empty strings in the Parquet writer, unallocated vs allocated")]
struct Cli {
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn ns_per_row(column: &ArrayRef, statistics: EnabledStatistics, rounds: usize) -> anyhow::Result<f64> {
    let field = Field::new("c", column.data_type().clone(), true);
    let schema = Arc::new(Schema::new(vec![field.clone()]));
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_statistics_enabled(statistics)
            .set_max_row_group_row_count(None)
            .build(),
    );
    let descr = ArrowSchemaConverter::new().convert(&schema)?;
    let file = SerializedFileWriter::new(std::io::sink(), descr.root_schema_ptr(), props)?;
    let factory = ArrowRowGroupWriterFactory::new(&file, schema);
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let mut writers = factory.create_column_writers(0)?;
        let started = Instant::now();
        let mut at = 0;
        while at < column.len() {
            let slice = column.slice(at, 8192.min(column.len() - at));
            for leaf in compute_leaves(&field, &slice)? {
                writers[0].write(&leaf)?;
            }
            at += slice.len();
        }
        std::hint::black_box(writers.pop().expect("one column").close()?);
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best * 1e9 / column.len() as f64)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let all = UInt32Array::from_iter_values(0..cli.rows as u32);
    let empty = take(&StringArray::from(vec![""; cli.rows]), &all, None)?;
    let allocated = addressable(empty.clone())?;
    let distinct: ArrayRef =
        Arc::new(StringArray::from_iter_values((0..cli.rows).map(|i| format!("value-{:014}", i % 13))));
    println!("ns per row written ({} rows, best of {})", cli.rows, cli.rounds);
    println!("{:<44} {:>12} {:>14}", "column", "statistics", "no statistics");
    for (name, column) in [
        ("empty strings, as Arrow's kernels make them", &empty),
        ("empty strings, `addressable`", &allocated),
        ("13 distinct 20-byte strings", &distinct),
    ] {
        let with = ns_per_row(column, EnabledStatistics::Page, cli.rounds)?;
        let without = ns_per_row(column, EnabledStatistics::None, cli.rounds)?;
        println!("{name:<44} {with:>12.1} {without:>14.1}");
    }
    Ok(())
}
