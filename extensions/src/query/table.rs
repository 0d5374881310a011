//! `spans`, `logs` and `metrics` for one tenant: the files the catalog lists, pruned by time before any
//! is opened, then read by DataFusion's Parquet reader (row groups pruned by statistics and bloom
//! filters, pages by the page index).

use super::sources::Sources;
use arrow::array::{ArrayRef, TimestampNanosecondArray, UInt64Array};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr_common::metrics::MetricBuilder;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use openwit_catalog::{FileFilter, FileRow, STABLE};
use openwit_core::Signal;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// The metric (in `EXPLAIN ANALYZE`, on each Parquet scan) that says how many of the tenant's files the
/// catalog held for the table and how many were left after pruning by time.
pub const CATALOG_FILES_METRIC: &str = "catalog_files_pruned";
/// Files skipped because their full-text index has no hit for the query's `text_match`.
pub const INDEX_FILES_METRIC: &str = "index_files_pruned";

/// The query of a `text_match(body, 'literal')` filter.
fn body_text_match(e: &Expr) -> Option<String> {
    let Expr::ScalarFunction(f) = e else { return None };
    if f.func.name() != "text_match" {
        return None;
    }
    match f.args.as_slice() {
        [Expr::Column(c), Expr::Literal(ScalarValue::Utf8(Some(q)) | ScalarValue::LargeUtf8(Some(q)), _)]
            if c.name == "body" =>
        {
            Some(q.clone())
        }
        _ => None,
    }
}

/// One stored table as seen by one tenant.
pub struct StoredTable {
    pub signal: Signal,
    pub tenant: String,
    pub schema: SchemaRef,
    pub sources: Arc<Sources>,
}

impl fmt::Debug for StoredTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredTable({}, tenant {})", openwit_core::columnar::table_name(self.signal), self.tenant)
    }
}

#[async_trait]
impl TableProvider for StoredTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Every filter is used for pruning but re-checked on the rows (pruning only skips what cannot match).
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table = openwit_core::columnar::table_name(self.signal);
        let catalog = self.sources.catalog();
        // The tenant is fixed here, below SQL: no predicate can widen it.
        let filter = FileFilter {
            tenant: Some(self.tenant.clone()),
            table_name: Some(table.to_string()),
            state: Some(STABLE.to_string()),
            ..Default::default()
        };
        let all = catalog.files(&filter).await.map_err(|e| DataFusionError::External(self.sources.unavailable(e)))?;
        let all: Vec<FileRow> = all.into_iter().filter(|f| f.tenant == self.tenant).collect();
        let considered = all.len();
        let files = self.prune_by_time(state, filters, all)?;
        let before_index = files.len();
        let files = self.prune_by_index(filters, files).await;
        let pruned_by_index = before_index - files.len();

        if considered == 0 {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        // One scan per store (a tenant's files may sit in several buckets: after a move, or written by
        // exporters with different destinations).
        let scanned = files.len();
        let mut by_store: BTreeMap<String, Vec<PartitionedFile>> = BTreeMap::new();
        let mut stores = BTreeMap::new();
        for f in &files {
            let dest = self.sources.destination(&f.root).map_err(DataFusionError::External)?;
            let (url, store) = dest.store();
            let meta = object_store::ObjectMeta {
                location: dest.location(&f.path),
                last_modified: chrono_from_ms(f.uploaded_at.unwrap_or(f.created_at)),
                size: f.byte_size as u64,
                e_tag: None,
                version: None,
            };
            by_store.entry(url.clone()).or_default().push(PartitionedFile::new_from_meta(meta));
            stores.insert(url, store);
        }
        if by_store.is_empty() {
            // Every file pruned: a scan of nothing, which still reports what the catalog held.
            by_store.insert("file://".to_string(), Vec::new());
            stores.insert("file://".to_string(), Arc::new(object_store::local::LocalFileSystem::new()) as _);
        }
        let partitions = state.config().target_partitions().max(1);
        let mut scans: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let mut first = true;
        for (url, files) in by_store {
            let store_url = ObjectStoreUrl::parse(&url)?;
            state.runtime_env().register_object_store(store_url.as_ref(), stores[&url].clone());
            let reader = Arc::new(datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory::new(
                stores[&url].clone(),
                state.runtime_env().cache_manager.get_file_metadata_cache(),
            ));
            let source = ParquetSource::new(self.schema.clone())
                .with_table_parquet_options(state.table_options().parquet.clone())
                .with_parquet_file_reader_factory(reader);
            let counted = MetricBuilder::new(source.metrics()).pruning_metrics(CATALOG_FILES_METRIC, 0);
            counted.add_matched(files.len());
            let by_index = MetricBuilder::new(source.metrics()).pruning_metrics(INDEX_FILES_METRIC, 0);
            by_index.add_matched(files.len());
            if first {
                // The pruned files are told once per table, on its first scan.
                counted.add_pruned(considered - scanned);
                by_index.add_pruned(pruned_by_index);
            }
            first = false;
            let config = FileScanConfigBuilder::new(store_url, Arc::new(source))
                .with_file_groups(spread(files, partitions))
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            scans.push(DataSourceExec::from_data_source(config));
        }
        if scans.len() == 1 { Ok(scans.pop().expect("one")) } else { UnionExec::try_new(scans) }
    }
}

impl StoredTable {
    /// Logs files whose full-text index has no hit for a `text_match(body, '…')` the query requires are
    /// dropped without being opened. The index and the scan analyse and parse alike, so a file without
    /// a hit holds no matching row; a file without an index, or whose index cannot be read, is kept
    /// (scanned: slower, never wrong). The filter itself is still applied to the rows read.
    async fn prune_by_index(&self, filters: &[Expr], files: Vec<FileRow>) -> Vec<FileRow> {
        if self.signal != Signal::Logs {
            return files;
        }
        let queries: Vec<String> = filters.iter().filter_map(body_text_match).collect();
        if queries.is_empty() {
            return files;
        }
        let mut kept = Vec::with_capacity(files.len());
        for f in files {
            if self.index_rules_out(&f, &queries).await {
                continue;
            }
            kept.push(f);
        }
        kept
    }

    /// Whether the file's index shows that no row matches every query (false when in doubt).
    async fn index_rules_out(&self, f: &FileRow, queries: &[String]) -> bool {
        let catalog = self.sources.catalog();
        let Ok(indexes) = catalog.indexes_of(&f.file_id).await else { return false };
        let Some(index) = indexes.into_iter().find(|i| i.kind == openwit_catalog::TANTIVY) else { return false };
        let Ok(dest) = self.sources.destination(&f.root) else { return false };
        let (_, store) = dest.store();
        let bytes = match object_store::ObjectStoreExt::get(&store, &dest.location(&index.path)).await {
            Ok(r) => match r.bytes().await {
                Ok(b) => b,
                Err(_) => return false,
            },
            Err(e) => {
                tracing::warn!(index = %index.path, "cannot read a file's index ({e}); scanning the file");
                return false;
            }
        };
        let queries = queries.to_vec();
        let verdict = tokio::task::spawn_blocking(move || -> Result<bool, openwit_index::IndexError> {
            let idx = openwit_index::bundle::open(bytes.to_vec())?;
            for q in &queries {
                if openwit_index::search::rows(&idx, q, Some(&[openwit_index::fields::BODY]))?.is_empty() {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await;
        match verdict {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                tracing::warn!(index = %index.path, "cannot search a file's index ({e}); scanning the file");
                false
            }
            Err(_) => false,
        }
    }

    /// The files whose `[min_time, max_time]` can hold rows the filters accept: DataFusion's own
    /// pruning logic, fed with the catalog's time range of each file as the statistics of `time`.
    fn prune_by_time(&self, state: &dyn Session, filters: &[Expr], files: Vec<FileRow>) -> Result<Vec<FileRow>> {
        let Some(predicate) = conjunction(filters.iter().cloned()) else {
            return Ok(files);
        };
        let df_schema = DFSchema::try_from(self.schema.clone())?;
        let physical = state.create_physical_expr(predicate, &df_schema)?;
        let pruning = match PruningPredicateBuilder::new().with_file_schema(self.schema.clone()).try_build(physical) {
            Ok(p) => p,
            // A predicate pruning cannot use: read every file, the filter still applies to the rows.
            Err(_) => return Ok(files),
        };
        if pruning.always_true() {
            return Ok(files);
        }
        // A log record without a time is placed (and its file's range set) by its observed time, while
        // its `time` column holds 0. When the query could accept time 0, the ranges' lower ends do not
        // bound `time`, so they are taken as 0.
        let zero_admitted = self.signal == Signal::Logs && {
            let zero = TimeRanges { min: vec![0], max: vec![0] };
            pruning.prune(&zero)?.first().copied().unwrap_or(true)
        };
        let ranges = TimeRanges {
            min: files.iter().map(|f| if zero_admitted { 0 } else { f.min_time }).collect(),
            max: files.iter().map(|f| f.max_time).collect(),
        };
        let keep = pruning.prune(&ranges)?;
        Ok(files.into_iter().zip(keep).filter_map(|(f, k)| k.then_some(f)).collect())
    }
}

/// The catalog's time ranges as statistics of the `time` column, one container per file.
struct TimeRanges {
    min: Vec<i64>,
    max: Vec<i64>,
}

impl TimeRanges {
    fn column(&self, column: &Column, values: &[i64]) -> Option<ArrayRef> {
        (column.name == "time")
            .then(|| Arc::new(TimestampNanosecondArray::from(values.to_vec()).with_timezone("UTC")) as ArrayRef)
    }
}

impl PruningStatistics for TimeRanges {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column, &self.min)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column, &self.max)
    }

    fn num_containers(&self) -> usize {
        self.min.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        // `time` is never null.
        (column.name == "time").then(|| Arc::new(UInt64Array::from(vec![0u64; self.min.len()])) as ArrayRef)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        None
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<arrow::array::BooleanArray> {
        None
    }
}

/// Spreads files over `n` groups (one per partition DataFusion runs), largest first onto the lightest.
fn spread(mut files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> =
        (0..n.min(files.len()).max(1)).map(|_| (0, Vec::new())).collect();
    for f in files {
        let g = groups.iter_mut().min_by_key(|g| g.0).expect("at least one group");
        g.0 += f.object_meta.size;
        g.1.push(f);
    }
    groups.into_iter().map(|(_, files)| FileGroup::new(files)).collect()
}

fn chrono_from_ms(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
