//! The files the `parquet` exporter stores are read alike by other readers than the `parquet` crate:
//! pyarrow and DuckDB (installed by tests/run into the tools directory) decode every column of every
//! row of each file and must agree with each other cell for cell (`readers.py`), hold the rows the
//! catalog records, and give the values the crate reads for a column of each table. OpenWit encodes
//! some columns itself (`dictionary_chunk`): this is what keeps them readable by what users query
//! the bucket with.

use crate::harness::tool;
use crate::parquet::{read_parquet, stored_locally};
use arrow::array::{Array, AsArray};
use std::path::PathBuf;
use std::process::Command;

/// A column's values as the `parquet` crate reads them, as strings.
fn crate_values(bytes: bytes::Bytes, column: &str) -> Vec<String> {
    let (batches, _) = read_parquet(bytes);
    let mut out = Vec::new();
    for b in batches {
        let c = arrow::compute::cast(b.column_by_name(column).unwrap(), &arrow::datatypes::DataType::Utf8).unwrap();
        let c = c.as_string::<i32>();
        out.extend((0..c.len()).map(|i| c.value(i).to_string()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_and_duckdb_read_every_stored_file_alike() {
    let (d, _, _, files) = stored_locally(23).await;
    let root = d.path("bucket");
    let paths: Vec<PathBuf> = files.iter().map(|f| root.join(&f.path)).collect();
    let out = Command::new(tool("readers-venv/bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/daemon/readers.py"))
        .args(&paths)
        .output()
        .unwrap();
    assert!(out.status.success(), "readers.py: {}", String::from_utf8_lossy(&out.stderr));
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let mut tables = std::collections::BTreeSet::new();
    for (f, path) in files.iter().zip(&paths) {
        let got = &read[path.to_str().unwrap()];
        assert_eq!(got["table"], f.table_name, "{}", path.display());
        assert_eq!(got["rows"].as_i64(), Some(f.row_count), "{}: rows", path.display());
        let column = match f.table_name.as_str() {
            "spans" => "name",
            "logs" => "body",
            _ => "metric_name",
        };
        let mut theirs: Vec<String> =
            got["values"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        let mut ours = crate_values(bytes::Bytes::from(std::fs::read(path).unwrap()), column);
        theirs.sort();
        ours.sort();
        assert_eq!(theirs, ours, "{}: {column}", path.display());
        tables.insert(f.table_name.clone());
    }
    assert_eq!(tables.into_iter().collect::<Vec<_>>(), ["logs", "metrics", "spans"]);
}
