//! Prints the size of the index of a logs Parquet file per field set, to weigh what each field costs,
//! and for the default set the bytes of each kind of file in the bundle (as written, and as stored):
//! `cargo run --profile benchmark --example index_size -p openwit-index -- <file.parquet> [--default-only]`
//! (the second form builds the default index only: what to profile).

use openwit_core::text_index::{Spec, Table};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;

fn main() {
    let path = std::env::args().nth(1).expect("a logs Parquet file");
    let file = std::fs::File::open(&path).expect("readable");
    let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .expect("a Parquet file")
        .collect::<Result<_, _>>()
        .expect("rows");
    let parquet = std::fs::metadata(&path).expect("size").len() as f64;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    println!("{rows} rows, Parquet {:.2} MB", parquet / 1e6);
    let default = Spec::default_for(Table::Logs);
    let mut specs: Vec<(String, Spec)> = vec![("default".into(), default.clone())];
    let all = std::env::args().nth(2).is_none_or(|a| a != "--default-only");
    for f in default.fields.iter().filter(|_| all) {
        specs.push((format!("only {f}"), Spec { fields: vec![f.clone()], ..default.clone() }));
    }
    if all {
        let body = Spec { fields: vec!["body".into()], positions: false, ..default };
        specs.push(("body without positions".into(), body));
    }
    for (name, spec) in specs {
        let scratch = tempfile::tempdir().expect("scratch");
        let (started, cpu) = (std::time::Instant::now(), cpu_seconds());
        let bundle = openwit_index::build::build(&spec, &batches, scratch.path()).expect("built");
        let bytes = bundle.len() as f64;
        println!(
            "{name:24} {:8.2} MB  {:.3} × Parquet  {:.1} s, {:.1} CPU-s",
            bytes / 1e6,
            bytes / parquet,
            started.elapsed().as_secs_f64(),
            cpu_seconds() - cpu
        );
        if name == "default" {
            // The table of contents gives each file's stored and written length.
            let n = bundle.len();
            let table = u64::from_le_bytes(bundle[n - 16..n - 8].try_into().expect("8 bytes")) as usize;
            let toc: BTreeMap<String, (u64, u64, u64)> =
                serde_json::from_slice(&bundle[n - 16 - table..n - 16]).expect("a table of contents");
            let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for (file, (_, stored, written)) in toc {
                let kind = file.rsplit('.').next().unwrap_or("").to_string();
                let k = by_kind.entry(kind).or_default();
                k.0 += written;
                k.1 += stored;
            }
            for (kind, (written, stored)) in by_kind {
                println!(
                    "    {kind:16} written {:8.2} MB  stored {:8.2} MB",
                    written as f64 / 1e6,
                    stored as f64 / 1e6
                );
            }
        }
    }
}

/// User and system CPU seconds of this process so far (Linux: `/proc/self/stat`, in clock ticks of
/// 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
