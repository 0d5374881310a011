//! Prints the size of the index of a logs Parquet file per field set, to weigh what each field costs:
//! `cargo run --example index_size -p openwit-index -- <file.parquet>`.

use openwit_core::text_index::{Spec, Table};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn main() {
    let path = std::env::args().nth(1).expect("a logs Parquet file");
    let file = std::fs::File::open(&path).expect("readable");
    let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .expect("a Parquet file")
        .collect::<Result<_, _>>()
        .expect("rows");
    let parquet = std::fs::metadata(&path).expect("size").len() as f64;
    let default = Spec::default_for(Table::Logs);
    let mut specs: Vec<(String, Spec)> = vec![("default".into(), default.clone())];
    for f in &default.fields {
        specs.push((format!("only {f}"), Spec { fields: vec![f.clone()], ..default.clone() }));
    }
    specs.push((
        "body without positions".into(),
        Spec { fields: vec!["body".into()], positions: false, ..default.clone() },
    ));
    for (name, spec) in specs {
        let scratch = tempfile::tempdir().expect("scratch");
        let started = std::time::Instant::now();
        let bytes = openwit_index::build::build(&spec, &batches, scratch.path()).expect("built").len() as f64;
        println!(
            "{name:24} {:8.2} MB  {:.2} × Parquet  {:.1} s",
            bytes / 1e6,
            bytes / parquet,
            started.elapsed().as_secs_f64()
        );
        if name == "only severity_text" {
            let mut by_kind = std::collections::BTreeMap::new();
            for e in std::fs::read_dir(scratch.path()).expect("listed").flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                *by_kind.entry(n.rsplit('.').next().unwrap_or("").to_string()).or_insert(0u64) +=
                    e.metadata().expect("meta").len();
            }
            println!("    by file kind: {by_kind:?}");
        }
    }
}
