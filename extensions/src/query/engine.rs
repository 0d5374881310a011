//! The query engine: a DataFusion session per query that holds only the querying tenant's tables, one
//! runtime (memory pool, object stores, Parquet footer cache) shared by all queries.

use super::functions;
use super::sources::Sources;
use super::table::{CATALOG_FILES_METRIC, StoredTable};
use super::text_search::{self, MatchAllColumns, Specs};
use super::views::{CatalogView, View};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use openwit_core::Signal;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Limits every query runs under.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Rows a query may return; more is an error (add a LIMIT or aggregate).
    pub max_rows: usize,
    pub timeout: Duration,
    /// Memory all running queries may hold in DataFusion's pool (sorts, joins, aggregations).
    pub memory_bytes: usize,
    /// Full-text indexes kept opened in memory between queries.
    pub index_cache_bytes: u64,
    /// Bloom filters of stored files kept in memory between queries.
    pub bloom_filter_cache_bytes: u64,
}

/// The default `index_cache_megabytes`.
pub const INDEX_CACHE_MEGABYTES: f64 = 256.0;

/// The default `bloom_filter_cache_megabytes`: the `trace_id` filters of some 400M of the load
/// generator's spans (1.6 MB per 10M, ~9 KB per row group of ~55k spans).
pub const BLOOM_FILTER_CACHE_MEGABYTES: f64 = 64.0;

/// Why a query failed, by what the client should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The SQL is wrong: syntax, an unknown table or column, a type error, a statement not allowed.
    Invalid,
    /// A limit of the query extension was reached (rows, memory).
    Limit,
    Timeout,
    /// The catalog or a store could not be reached; retrying may help.
    Unavailable,
    Internal,
}

impl FailureKind {
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Invalid => "invalid",
            FailureKind::Limit => "limit",
            FailureKind::Timeout => "timeout",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Internal => "error",
        }
    }
}

#[derive(Debug, Clone)]
pub struct QueryError {
    pub kind: FailureKind,
    pub message: String,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for QueryError {}

impl QueryError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> QueryError {
        QueryError { kind, message: message.into() }
    }

    pub fn from_datafusion(e: &DataFusionError) -> QueryError {
        let root = e.find_root();
        // A filter evaluated inside the Parquet decoder (`pushdown_filters`) comes back as a Parquet
        // error holding only the text of the DataFusion error it raised: a planning error there (a
        // `text_match` query that does not parse, say) is still the query's fault.
        if let DataFusionError::ParquetError(p) = root
            && let Some(message) = pushed_down_plan_error(&p.to_string())
        {
            return QueryError { kind: FailureKind::Invalid, message };
        }
        let kind = match root {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_) => FailureKind::Invalid,
            DataFusionError::ResourcesExhausted(_) => FailureKind::Limit,
            DataFusionError::ObjectStore(_) => FailureKind::Unavailable,
            // Our own errors (the catalog unreachable, say) already know their kind.
            DataFusionError::External(inner) if let Some(q) = inner.downcast_ref::<QueryError>() => q.kind,
            DataFusionError::ArrowError(..) | DataFusionError::Execution(_) => match e.to_string() {
                // Casts of bad text and divisions by zero are the SQL's doing.
                m if m.contains("Cast error") || m.contains("Divide by zero") || m.contains("Parser error") => {
                    FailureKind::Invalid
                }
                _ => FailureKind::Internal,
            },
            _ => FailureKind::Internal,
        };
        let mut message = root.to_string();
        if kind == FailureKind::Limit {
            message.push_str(
                "; the query needs more memory than extensions.query.max_memory_megabytes allows: narrow the time range, aggregate, or raise the limit",
            );
        }
        QueryError { kind, message }
    }
}

/// The message of a planning error raised by a filter the Parquet decoder evaluated: the decoder
/// keeps `Error evaluating filter predicate: Plan("…")`, the error's debug form.
fn pushed_down_plan_error(parquet: &str) -> Option<String> {
    let (_, rest) = parquet.split_once("Error evaluating filter predicate: Plan(\"")?;
    let inner = rest.strip_suffix("\")")?;
    Some(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
}

/// The engine: shared by every query of one daemon (or one CLI run).
pub struct Engine {
    runtime: Arc<RuntimeEnv>,
    sources: Arc<Sources>,
    /// How text is analysed per table (the exporters' index specs).
    specs: Specs,
    pub limits: Limits,
    target_partitions: usize,
    /// DataFusion session options set by the operator (`extensions.query.datafusion`), applied over
    /// OpenWit's own; checked by [`check_settings`] before they get here.
    settings: BTreeMap<String, String>,
    /// The stored tables' Arrow schemas (the same for every tenant).
    schemas: Vec<(Signal, arrow::datatypes::SchemaRef)>,
}

/// A running query: its schema, its rows, and the plan (whose metrics say what was pruned once the rows
/// are read).
pub struct Running {
    pub plan: Arc<dyn ExecutionPlan>,
    pub stream: SendableRecordBatchStream,
}

/// What the plan's scans counted: files from the catalog and row groups in Parquet.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanCounts {
    pub files_considered: usize,
    pub files_scanned: usize,
    pub row_groups_considered: usize,
    pub row_groups_pruned_by_statistics: usize,
    pub row_groups_pruned_by_bloom_filter: usize,
    pub row_groups_scanned: usize,
}

impl Engine {
    pub fn new(
        catalog: openwit_catalog::Catalog,
        storage: Arc<openwit_storage::Storage>,
        storage_options: BTreeMap<String, String>,
        limits: Limits,
        index_specs: Arc<openwit_core::text_index::IndexSpecs>,
        fresh: Arc<openwit_core::fresh::FreshData>,
    ) -> anyhow::Result<Engine> {
        let runtime = RuntimeEnvBuilder::new().with_memory_limit(limits.memory_bytes, 1.0).build_arc()?;
        let target_partitions = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let schemas = Signal::ALL
            .into_iter()
            .map(|s| Ok((s, openwit_core::columnar::to_record_batch("t", &openwit_core::Payload::empty(s))?.schema())))
            .collect::<Result<_, arrow::error::ArrowError>>()?;
        Ok(Engine {
            schemas,
            runtime,
            sources: Arc::new(Sources::new(catalog, storage, storage_options, &limits, fresh)),
            specs: Specs(index_specs),
            limits,
            target_partitions,
            settings: BTreeMap::new(),
        })
    }

    /// Sets DataFusion session options (full names, as in DataFusion's documentation) for every query,
    /// over OpenWit's defaults. An unknown option or a value of the wrong kind is an error naming it.
    pub fn with_settings(mut self, settings: &BTreeMap<String, String>) -> anyhow::Result<Engine> {
        check_settings(settings).map_err(|(key, message)| anyhow::anyhow!("DataFusion option {key}: {message}"))?;
        self.settings = settings.clone();
        Ok(self)
    }

    /// Reads remote stores through `cache`, with at most `max_concurrent` requests in flight per bucket.
    pub fn with_remote_reads(mut self, cache: Arc<super::read_cache::ReadCache>, max_concurrent: usize) -> Engine {
        if let Some(s) = Arc::get_mut(&mut self.sources) {
            s.set_remote_reads(cache, max_concurrent);
        }
        self
    }

    /// A session that holds `tenant`'s tables and nothing else (no other catalog, no files by URL).
    pub fn session(&self, tenant: &str) -> datafusion::error::Result<SessionContext> {
        // A sort reserves this much per partition up front for its merge (DataFusion's default: 10 MiB);
        // with a small memory limit that alone could exceed the pool, so it is capped at an eighth of
        // the pool per partition.
        let sort_reservation =
            (self.limits.memory_bytes / (8 * self.target_partitions.max(1))).clamp(64 * 1024, 10 << 20);
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(self.target_partitions)
            .with_sort_spill_reservation_bytes(sort_reservation)
            .with_default_catalog_and_schema("openwit", "public");
        // Filters evaluated while the Parquet pages are decoded (late materialisation), cheapest
        // first: the other columns are decoded only for the rows that pass. On 3M stored spans
        // (bench/run-query, page indexes cached) a top-10 in a time window took 50 -> 23 ms and a trace
        // by id 22 -> 13 ms; a window aggregation, whose time filter already selects whole pages, went
        // 16 -> 19 ms (docs/BENCHMARKS.md, "Queries").
        config.options_mut().execution.parquet.pushdown_filters = true;
        config.options_mut().execution.parquet.reorder_filters = true;
        for (key, value) in &self.settings {
            config.options_mut().set(key, value)?;
        }
        let mut rules = datafusion::optimizer::Analyzer::new().rules;
        // Before type coercion, which would compare the hex text's own bytes with the ids.
        rules.insert(0, Arc::new(functions::HexIdLiterals));
        rules.insert(0, Arc::new(MatchAllColumns::new(&self.specs)));
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(self.runtime.clone())
            .with_default_features()
            .with_analyzer_rules(rules)
            .with_optimizer_rule(Arc::new(super::group_by_value::GroupByValue))
            .with_physical_optimizer_rule(Arc::new(super::value_id_aggregate::PartialAggregateByValueId))
            .build();
        let ctx = SessionContext::new_with_state(state);
        for udf in functions::all().into_iter().chain(text_search::functions(&self.specs)) {
            ctx.register_udf(udf);
        }
        for (signal, schema) in &self.schemas {
            let (signal, schema) = (*signal, schema.clone());
            let table = StoredTable {
                signal,
                tenant: tenant.to_string(),
                schema,
                sources: self.sources.clone(),
                specs: self.specs.clone(),
            };
            ctx.register_table(openwit_core::columnar::table_name(signal), Arc::new(table))?;
        }
        for view in View::ALL {
            let v = CatalogView { view, tenant: tenant.to_string(), sources: self.sources.clone() };
            ctx.register_table(view.name(), Arc::new(v))?;
        }
        Ok(ctx)
    }

    /// Plans `sql` for `tenant` and starts it. Only queries: no DDL (no external tables over other
    /// paths), no DML, no `SET`.
    pub async fn start(&self, tenant: &str, sql: &str) -> Result<Running, QueryError> {
        let (ctx, df) = self.parse(tenant, sql).await?;
        let plan = df.create_physical_plan().await.map_err(|e| QueryError::from_datafusion(&e))?;
        let stream = datafusion::physical_plan::execute_stream(plan.clone(), ctx.task_ctx())
            .map_err(|e| QueryError::from_datafusion(&e))?;
        Ok(Running { plan, stream })
    }
}

#[cfg(test)]
impl Engine {
    /// The bloom filters kept between queries.
    pub(crate) fn bloom_filters(&self) -> &Arc<super::bloom_filters::BloomFilterCache> {
        self.sources.bloom_filters()
    }

    /// Whether the metadata cache holds the file at `location` (`None`: not at all) with its page index.
    pub(crate) fn cached_with_page_index(&self, location: &str) -> Option<bool> {
        use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
        let cache = self.runtime.cache_manager.get_file_metadata_cache();
        let entry = cache.get(&location.into())?;
        let m = entry.file_metadata.as_any().downcast_ref::<CachedParquetMetaData>()?.parquet_metadata().clone();
        Some(m.column_index().is_some() && m.offset_index().is_some())
    }
}

/// Whether every DataFusion option in `settings` exists and takes its value: `Err((key, why))` for the
/// first that does not. `datafusion.catalog.*` is refused: the catalog and schema the tables live in
/// are OpenWit's.
pub fn check_settings(settings: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    let mut options = datafusion::config::ConfigOptions::new();
    for (key, value) in settings {
        if !key.starts_with("datafusion.") {
            return Err((
                key.clone(),
                format!(
                    "not a DataFusion option; their names start with `datafusion.` (did you mean `datafusion.{key}`?)"
                ),
            ));
        }
        if key.starts_with("datafusion.catalog.") {
            return Err((key.clone(), "the catalog options are OpenWit's own and cannot be set".into()));
        }
        options.set(key, value).map_err(|e| (key.clone(), e.strip_backtrace()))?;
    }
    Ok(())
}

impl Engine {
    /// Parses `sql` into a logical plan over `tenant`'s session, refusing what is not a query.
    async fn parse(&self, tenant: &str, sql: &str) -> Result<(SessionContext, DataFrame), QueryError> {
        let ctx = self.session(tenant).map_err(|e| QueryError::from_datafusion(&e))?;
        let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let df = ctx.sql_with_options(sql, options).await.map_err(|e| QueryError::from_datafusion(&e))?;
        Ok((ctx, df))
    }

    /// Everything `start` does before it reads the catalog: parse, check, analyse (our rules included)
    /// and optimise. What the `query_request` fuzz target drives; touches neither catalog nor storage.
    pub async fn plan(&self, tenant: &str, sql: &str) -> Result<LogicalPlan, QueryError> {
        let (_, df) = self.parse(tenant, sql).await?;
        df.into_optimized_plan().map_err(|e| QueryError::from_datafusion(&e))
    }
}

/// Sums what the plan's scans counted (call once the rows are read).
pub fn scan_counts(plan: &Arc<dyn ExecutionPlan>) -> ScanCounts {
    let mut c = ScanCounts::default();
    let mut stack = vec![plan.clone()];
    while let Some(p) = stack.pop() {
        if let Some(metrics) = p.metrics() {
            for m in metrics.iter() {
                if let MetricValue::PruningMetrics { name, pruning_metrics } = m.value() {
                    let (pruned, matched) = (pruning_metrics.pruned(), pruning_metrics.matched());
                    match name.as_ref() {
                        CATALOG_FILES_METRIC => {
                            c.files_considered += pruned + matched;
                            c.files_scanned += matched;
                        }
                        "row_groups_pruned_statistics" => {
                            c.row_groups_considered += pruned + matched;
                            c.row_groups_pruned_by_statistics += pruned;
                        }
                        "row_groups_pruned_bloom_filter" => c.row_groups_pruned_by_bloom_filter += pruned,
                        _ => {}
                    }
                }
            }
        }
        stack.extend(p.children().into_iter().cloned());
    }
    c.row_groups_scanned =
        c.row_groups_considered - c.row_groups_pruned_by_statistics - c.row_groups_pruned_by_bloom_filter;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine over a catalog that cannot be opened: what these tests do must not touch it.
    fn unopened_engine() -> Engine {
        let catalog = openwit_catalog::Catalog::open("sqlite:///nonexistent-dir/openwit/catalog.db").unwrap();
        let limits = Limits {
            max_rows: 10,
            timeout: Duration::from_secs(5),
            memory_bytes: 16 << 20,
            index_cache_bytes: 1 << 20,
            bloom_filter_cache_bytes: 1 << 20,
        };
        Engine::new(catalog, Arc::default(), BTreeMap::new(), limits, Arc::default(), Arc::default()).unwrap()
    }

    /// `plan` (what the `query_request` fuzz target drives) really plans: queries pass, with OpenWit's
    /// functions and rules; what is not a query is refused as the client's mistake.
    #[tokio::test]
    async fn plan_accepts_queries_and_refuses_statements_without_reading_the_catalog() {
        let engine = unopened_engine();
        for sql in [
            "SELECT time_bucket(INTERVAL '1 minute', time), count(*) FROM logs GROUP BY 1",
            "SELECT id_to_hex(span_id) FROM spans WHERE trace_id = '5b8efff798038103d269b633813fc60c'",
            "SELECT attr_int(attributes, 'code') FROM metrics",
            "SELECT table_name FROM files",
        ] {
            engine.plan("acme", sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        for sql in [
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
            "SET datafusion.execution.target_partitions = 1",
            "SELECT * FROM '/etc/passwd'",
            "SELECT nope FROM spans",
            "SELEC 1",
        ] {
            let e = engine.plan("acme", sql).await.unwrap_err();
            assert_eq!(e.kind, FailureKind::Invalid, "{sql}: {e}");
        }
    }

    /// Operator settings reach every query's session, over OpenWit's own; a bad name or value is refused
    /// with the option named, and the catalog options are not the operator's.
    #[tokio::test]
    async fn datafusion_settings_reach_each_session_and_bad_ones_are_refused() {
        let settings: BTreeMap<String, String> = [
            ("datafusion.execution.parquet.pushdown_filters", "false"),
            ("datafusion.execution.target_partitions", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let engine = unopened_engine().with_settings(&settings).unwrap();
        let ctx = engine.session("acme").unwrap();
        let options = ctx.state().config().options().clone();
        // The operator's choice wins over OpenWit's (filters pushed into the Parquet decoding)...
        assert!(!options.execution.parquet.pushdown_filters);
        assert_eq!(options.execution.target_partitions, 3);
        // ...and OpenWit's own stay where the operator set nothing.
        assert!(options.execution.parquet.reorder_filters);
        assert!(options.catalog.information_schema);
        assert_eq!(options.catalog.default_catalog, "openwit");

        for (key, value, says) in [
            ("datafusion.execution.parquet.pushdown_filterz", "true", "pushdown_filterz"),
            ("datafusion.execution.parquet.pushdown_filters", "yes", "yes"),
            ("execution.batch_size", "10", "did you mean `datafusion.execution.batch_size`"),
            ("datafusion.catalog.default_catalog", "other", "OpenWit's own"),
        ] {
            let one = BTreeMap::from([(key.to_string(), value.to_string())]);
            let (named, why) = check_settings(&one).unwrap_err();
            assert_eq!(named, key);
            assert!(why.contains(says), "{key}={value}: {why}");
        }
    }

    #[test]
    fn a_plan_error_from_a_pushed_down_filter_is_the_querys_fault() {
        let e = DataFusionError::ParquetError(Box::new(parquet::errors::ParquetError::External(Box::new(
            arrow::error::ArrowError::ComputeError(
                "Error evaluating filter predicate: Plan(\"text_match: the query \\\"body:(\\\" is not valid\")".into(),
            ),
        ))));
        let q = QueryError::from_datafusion(&e);
        assert_eq!(q.kind, FailureKind::Invalid, "{}", q.message);
        assert_eq!(q.message, "text_match: the query \"body:(\" is not valid");
        let other = DataFusionError::ParquetError(Box::new(parquet::errors::ParquetError::General("corrupt".into())));
        assert_eq!(QueryError::from_datafusion(&other).kind, FailureKind::Internal);
    }
}
