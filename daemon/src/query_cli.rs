//! `openwit query`: SQL against a running daemon's query API (`--endpoint`), or offline against a
//! catalog and the stores its files name (by default DATA_DIR/catalog.db), printed as a table, CSV,
//! JSON or NDJSON.

use arrow::array::RecordBatch;
use futures::StreamExt;
use openwit_extensions::query::engine::{Engine, Limits};
use openwit_extensions::query::output::{Encoder, Format};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// The SQL; read from standard input when absent or `-`.
    pub sql: Option<String>,
    /// A running daemon's query API (`http://localhost:8083`); without it the query runs here, offline.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The tenant whose data to query.
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// Header carrying the tenant to the daemon.
    #[arg(long, default_value = "X-Scope-OrgID")]
    pub tenant_header: String,
    /// Output: table, csv, json or ndjson.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Offline: the catalog (`sqlite://PATH` or `postgres://…`); default DATA_DIR/catalog.db.
    #[arg(long)]
    pub catalog: Option<String>,
    /// Offline: an object_store setting for the buckets the catalog names (KEY=VALUE, repeatable), on
    /// top of the standard AWS_/GOOGLE_/AZURE_ variables.
    #[arg(long = "storage-option", value_name = "KEY=VALUE")]
    pub storage_options: Vec<String>,
    /// Offline: the longest the query may run.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Offline: memory for sorts, joins and aggregations, in MiB.
    #[arg(long, default_value_t = 4096)]
    pub max_memory_megabytes: usize,
}

pub fn run(args: &QueryArgs, data_dir: &Path) -> anyhow::Result<()> {
    let sql = match args.sql.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s
        }
        Some(s) => s.to_string(),
    };
    let table = args.format == "table";
    let format = if table { Format::Arrow } else { args.format.parse::<Format>().map_err(anyhow::Error::msg)? };
    if format == Format::Arrow && !table {
        anyhow::bail!("--format arrow is for the HTTP API; use table, csv, json or ndjson here");
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        match &args.endpoint {
            Some(endpoint) => remote(args, endpoint, &sql, format, table).await,
            None => local(args, data_dir, &sql, format, table).await,
        }
    })
}

async fn remote(args: &QueryArgs, endpoint: &str, sql: &str, format: Format, table: bool) -> anyhow::Result<()> {
    let base = if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") };
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let wire = match format {
        Format::Json => "json",
        Format::Ndjson => "ndjson",
        Format::Csv => "csv",
        Format::Arrow => "arrow",
    };
    let mut resp = reqwest::Client::new()
        .post(&url)
        .header(&args.tenant_header, &args.tenant)
        .json(&serde_json::json!({ "sql": sql, "format": wire }))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        anyhow::bail!("{message} ({status})");
    }
    if table {
        let bytes = resp.bytes().await?;
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        return print_table(&batches);
    }
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = resp.chunk().await.map_err(|e| anyhow::anyhow!("the answer was cut off: {e}"))? {
        out.write_all(&chunk)?;
    }
    Ok(())
}

async fn local(args: &QueryArgs, data_dir: &Path, sql: &str, format: Format, table: bool) -> anyhow::Result<()> {
    openwit_core::TenantId::new(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let catalog = match &args.catalog {
        Some(c) => c.clone(),
        None => {
            let db = data_dir.join("catalog.db");
            if !db.exists() {
                anyhow::bail!(
                    "no catalog at {}: give --data-dir (where the daemon keeps its data), --catalog, or --endpoint of a running daemon",
                    db.display()
                );
            }
            format!("sqlite://{}", db.display())
        }
    };
    let mut options = BTreeMap::new();
    for kv in &args.storage_options {
        let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("--storage-option {kv:?}: use KEY=VALUE"))?;
        options.insert(k.to_string(), v.to_string());
    }
    let limits = Limits {
        max_rows: usize::MAX,
        timeout: args.timeout,
        memory_bytes: args.max_memory_megabytes << 20,
        index_cache_bytes: (openwit_extensions::query::engine::INDEX_CACHE_MEGABYTES as u64) << 20,
        bloom_filter_cache_bytes: (openwit_extensions::query::engine::BLOOM_FILTER_CACHE_MEGABYTES as u64) << 20,
    };
    let catalog = openwit_catalog::Catalog::open(&catalog)?;
    // Offline, text is analysed with the default index specs (an index built otherwise is not used).
    // Finalized files a stopped daemon left in staging are read too (not yet uploaded, or uploaded and
    // not yet removed: then they are read instead of their stored copy).
    let fresh = Arc::new(openwit_core::fresh::FreshData::default());
    let staging: Arc<dyn openwit_core::fresh::FreshSource> =
        Arc::new(openwit_extensions::query::fresh::StagingDirectories { root: data_dir.join("parquet") });
    fresh.register(&staging);
    let engine = Engine::new(catalog, Arc::default(), options, limits, Arc::default(), fresh)?;
    let run = async {
        let mut running = engine.start(&args.tenant, sql).await?;
        if table {
            let mut batches = Vec::new();
            while let Some(b) = running.stream.next().await {
                batches.push(b.map_err(|e| openwit_extensions::query::engine::QueryError::from_datafusion(&e))?);
            }
            return print_table(&batches);
        }
        let schema = running.stream.schema();
        let (mut enc, start) = Encoder::new(format, &schema)?;
        let mut out = std::io::stdout().lock();
        out.write_all(&start)?;
        while let Some(b) = running.stream.next().await {
            let b = b.map_err(|e| openwit_extensions::query::engine::QueryError::from_datafusion(&e))?;
            out.write_all(&enc.batch(&b)?)?;
        }
        out.write_all(&enc.finish(&schema)?)?;
        Ok(())
    };
    tokio::time::timeout(args.timeout, run)
        .await
        .map_err(|_| anyhow::anyhow!("the query ran longer than {:?} (--timeout)", args.timeout))?
}

fn print_table(batches: &[RecordBatch]) -> anyhow::Result<()> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    println!("{}", arrow::util::pretty::pretty_format_batches(batches)?);
    println!("({rows} row{})", if rows == 1 { "" } else { "s" });
    Ok(())
}
