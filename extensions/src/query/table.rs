//! `spans`, `logs` and `metrics` for one tenant: the files the catalog lists, pruned by time before any
//! is opened, then by their full-text indexes where the query has text predicates (`text_search`), then
//! read by DataFusion's Parquet reader (row groups pruned by statistics and bloom filters, pages by the
//! page index, rows by the index's selection).
//!
//! Text predicates (`text_match`, `match_all`) are taken over by the scan (`Exact` pushdown): for each
//! file its index either rules it out, or gives the rows to read (the answer itself when every predicate
//! is answered, so no filter runs on them; for `count(*)` or a histogram over `time`, the rows are not
//! even read: the index holds each row's time), or the file is read whole and the predicates evaluated
//! on its rows by the same analysis (no index, another analysis, or too many hits to be worth it).
//! `LIKE`/`ILIKE '%word%'` are only narrowed by indexes; DataFusion still applies them.

use super::fresh::{self, FreshReaders};
use super::page_index::WithPageIndexes;
use super::sources::Sources;
use super::text_search::{Decision, Predicate, SELECTIVE_SHARE, Specs, Why, decide, selection, time_column};
use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, TimestampNanosecondArray, UInt64Array};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr_common::metrics::{ExecutionPlanMetricsSet, MetricBuilder};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::union::UnionExec;
use futures::StreamExt;
use openwit_catalog::{FileRow, STABLE, TANTIVY};
use openwit_core::Signal;
use openwit_core::fresh::{FreshFile, FreshState};
use openwit_core::text_index::Table;
use openwit_index::search::Searchable;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

/// The metric (in `EXPLAIN ANALYZE`, on each Parquet scan) that says how many of the tenant's files the
/// catalog held for the table and how many were left after pruning by time.
pub const CATALOG_FILES_METRIC: &str = "catalog_files_pruned";
/// Files skipped because their full-text index has no hit for the query's text predicates.
pub const INDEX_FILES_METRIC: &str = "index_files_pruned";
/// How each file with a text predicate was read, per decision (counters in `EXPLAIN ANALYZE`).
pub const INDEX_ROWS_SELECTED: &str = "index_files_rows_selected";
pub const INDEX_ANSWERED: &str = "index_files_answered";
pub const INDEX_NOT_WORTH_IT: &str = "index_files_not_worth_it";
pub const INDEX_UNUSABLE: &str = "index_files_without_usable_index";
/// Rows the indexes selected in the files read by selection.
pub const INDEX_ROWS: &str = "index_rows_selected";
/// Where the scanned rows came from (counters in `EXPLAIN ANALYZE`): stable files (after pruning), staged
/// files waiting for their upload, active files (row groups written so far) and rows in memory.
pub const STABLE_FILES: &str = "stable_files_scanned";
pub const STAGED_FILES: &str = "staged_files_scanned";
pub const ACTIVE_FILES: &str = "active_files_scanned";
pub const MEMORY_ROWS: &str = "memory_rows_scanned";

/// Indexes fetched from the store at once.
const CONCURRENT_INDEX_READS: usize = 8;

/// One stored table as seen by one tenant.
pub struct StoredTable {
    pub signal: Signal,
    pub tenant: String,
    pub schema: SchemaRef,
    pub sources: Arc<Sources>,
    pub specs: Specs,
}

impl fmt::Debug for StoredTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredTable({}, tenant {})", openwit_core::columnar::table_name(self.signal), self.tenant)
    }
}

/// How one file is read.
enum Read {
    /// Every row (`filtered`: the text predicates run on them).
    Whole { filtered: bool },
    /// The index's rows (`filtered`: not every predicate was answered by the index).
    Rows { rows: Vec<u64>, filtered: bool },
}

/// What the indexes decided for a scan's files, counted for `EXPLAIN ANALYZE`.
#[derive(Default)]
struct Tally {
    pruned: usize,
    selected: usize,
    answered: usize,
    not_worth_it: usize,
    unusable: usize,
    rows: usize,
}

#[async_trait]
impl TableProvider for StoredTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Text predicates an index can answer are taken over by the scan (it applies them exactly, by the
    /// index or by evaluating them); every other filter is used for pruning but re-checked on the rows.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.text_predicate(f) {
                Some(p) if p.exact() => TableProviderFilterPushDown::Exact,
                _ => TableProviderFilterPushDown::Inexact,
            })
            .collect())
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
        let filter = openwit_catalog::FileFilter {
            tenant: Some(self.tenant.clone()),
            table_name: Some(table.to_string()),
            state: Some(STABLE.to_string()),
            ..Default::default()
        };
        // Fresh rows are snapshotted before the catalog is listed: a file the snapshot holds is read from
        // it (and left out of the listing); a file that left it before is stable in the listing; a file
        // born after it holds rows written after it (left out). Each row is read once.
        let fresh = self.sources.fresh(Some(self.signal), &self.tenant).await;
        let all = catalog.files(&filter).await.map_err(|e| DataFusionError::External(self.sources.unavailable(e)))?;
        let hidden = fresh.hidden();
        let all: Vec<FileRow> =
            all.into_iter().filter(|f| f.tenant == self.tenant && !hidden.contains(&f.file_id)).collect();
        let considered = all.len();
        let keep = self.keep_by_time(state, filters, all.iter().map(|f| (f.min_time, f.max_time)))?;
        let files: Vec<FileRow> = all.into_iter().zip(keep).filter_map(|(f, k)| k.then_some(f)).collect();
        let fresh_considered = fresh.files.len();
        let keep = self.keep_by_time(state, filters, fresh.files.iter().map(|f| (f.min_time, f.max_time)))?;
        let fresh: Vec<FreshFile> = fresh
            .files
            .into_iter()
            .zip(keep)
            .filter_map(|(f, k)| (k && f.tenant == self.tenant).then_some(f))
            .collect();
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        if considered == 0 && fresh_considered == 0 {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }

        // Text predicates: each file's index decides how it is read.
        let text: Vec<(Predicate, &Expr)> =
            filters.iter().filter_map(|f| self.text_predicate(f).map(|p| (p, f))).collect();
        let exact: Vec<Expr> = text.iter().filter(|(p, _)| p.exact()).map(|(_, e)| (*e).clone()).collect();
        let only_time = projected.fields().iter().all(|f| f.name() == "time");
        let mut tally = Tally::default();
        let mut answered: Vec<RecordBatch> = Vec::new();
        let mut reads: Vec<(FileRow, Read)> = Vec::new();
        let decisions = self.decide_all(&files, &text).await;
        let whole_filtered = !exact.is_empty();
        for (f, d) in files.into_iter().zip(decisions) {
            match d {
                None => reads.push((f, Read::Whole { filtered: whole_filtered })),
                Some(Decision::Skip) => tally.pruned += 1,
                Some(Decision::Rows { hits, exact: true }) if only_time => {
                    tally.answered += 1;
                    answered.push(self.rows_from_index(&projected, &hits.times)?);
                }
                Some(Decision::Rows { hits, exact: answered_all }) => {
                    if hits.rows.len() as f64 > SELECTIVE_SHARE * f.row_count as f64 {
                        tally.not_worth_it += 1;
                        reads.push((f, Read::Whole { filtered: whole_filtered }));
                    } else {
                        tally.selected += 1;
                        tally.rows += hits.rows.len();
                        reads.push((f, Read::Rows { rows: hits.rows, filtered: !answered_all }));
                    }
                }
                Some(Decision::Whole(_)) => {
                    tally.unusable += 1;
                    reads.push((f, Read::Whole { filtered: whole_filtered }));
                }
            }
        }

        // One scan per store and per need of a filter (a tenant's files may sit in several buckets: after
        // a move, or written by exporters with different destinations).
        let scanned = reads.len() + answered.len();
        let mut groups: BTreeMap<(String, bool), Vec<PartitionedFile>> = BTreeMap::new();
        let mut stores = BTreeMap::new();
        for (f, read) in reads {
            let dest = self.sources.destination(&f.root).map_err(DataFusionError::External)?;
            let (url, store) = self.sources.store(&dest);
            let meta = object_store::ObjectMeta {
                location: dest.location(&f.path),
                last_modified: chrono_from_ms(f.uploaded_at.unwrap_or(f.created_at)),
                size: f.byte_size as u64,
                e_tag: None,
                version: None,
            };
            let mut pf = PartitionedFile::new_from_meta(meta);
            let filtered = match read {
                Read::Whole { filtered } => filtered,
                Read::Rows { rows, filtered } => {
                    pf = pf.with_extension(ParquetRowSelection::new(selection(&rows, f.row_count as usize)));
                    filtered
                }
            };
            groups.entry((url.clone(), filtered)).or_default().push(pf);
            stores.insert(url, store);
        }
        if groups.is_empty() {
            // Every file pruned: a scan of nothing, which still reports what the catalog held.
            groups.insert(("file://".to_string(), false), Vec::new());
            stores.insert("file://".to_string(), Arc::new(object_store::local::LocalFileSystem::new()) as _);
        }
        let partitions = state.config().target_partitions().max(1);
        let mut scans: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let mut first = true;
        for ((url, filtered), files) in groups {
            let store_url = ObjectStoreUrl::parse(&url)?;
            state.runtime_env().register_object_store(store_url.as_ref(), stores[&url].clone());
            let reader = Arc::new(WithPageIndexes {
                inner: Arc::new(datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory::new(
                    stores[&url].clone(),
                    state.runtime_env().cache_manager.get_file_metadata_cache(),
                )),
                store_url: url.clone(),
                blooms: self.sources.bloom_filters().clone(),
            });
            let source = ParquetSource::new(self.schema.clone())
                .with_table_parquet_options(state.table_options().parquet.clone())
                .with_parquet_file_reader_factory(reader);
            let n = files.len();
            if first {
                // What was pruned is told once per table, on its first scan.
                let m = source.metrics();
                count(m, considered, scanned, &tally, !text.is_empty());
                count_fresh(m, scanned, &fresh);
            } else {
                MetricBuilder::new(source.metrics()).pruning_metrics(CATALOG_FILES_METRIC, 0).add_matched(n);
            }
            first = false;
            let groups = spread(files, partitions);
            scans.push(self.parquet_scan(state, store_url, source, groups, projection, &exact, filtered, limit)?);
        }
        scans.extend(self.fresh_scans(state, &fresh, projection, &exact, limit)?);
        if !answered.is_empty() {
            scans.push(MemorySourceConfig::try_new_exec(&[answered], projected.clone(), None)?);
        }
        if scans.len() == 1 { Ok(scans.pop().expect("one")) } else { UnionExec::try_new(scans) }
    }
}

/// Puts where the scanned rows came from on a scan's metrics: stable files, staged files, active files
/// (their written row groups) and rows in memory.
fn count_fresh(m: &ExecutionPlanMetricsSet, stable: usize, fresh: &[FreshFile]) {
    let staged = fresh.iter().filter(|f| f.state == FreshState::Staged).count();
    let memory: usize = fresh.iter().map(FreshFile::buffered_rows).sum();
    for (name, v) in
        [(STABLE_FILES, stable), (STAGED_FILES, staged), (ACTIVE_FILES, fresh.len() - staged), (MEMORY_ROWS, memory)]
    {
        MetricBuilder::new(m).counter(name, 0).add(v);
    }
}

/// Puts what the catalog and the indexes pruned on a scan's metrics.
fn count(m: &ExecutionPlanMetricsSet, considered: usize, scanned: usize, tally: &Tally, text: bool) {
    let catalog = MetricBuilder::new(m).pruning_metrics(CATALOG_FILES_METRIC, 0);
    catalog.add_matched(scanned + tally.pruned);
    catalog.add_pruned(considered - scanned - tally.pruned);
    if !text {
        return;
    }
    let by_index = MetricBuilder::new(m).pruning_metrics(INDEX_FILES_METRIC, 0);
    by_index.add_matched(scanned);
    by_index.add_pruned(tally.pruned);
    for (name, v) in [
        (INDEX_ROWS_SELECTED, tally.selected),
        (INDEX_ANSWERED, tally.answered),
        (INDEX_NOT_WORTH_IT, tally.not_worth_it),
        (INDEX_UNUSABLE, tally.unusable),
        (INDEX_ROWS, tally.rows),
    ] {
        MetricBuilder::new(m).counter(name, 0).add(v);
    }
}

impl StoredTable {
    fn index_table(&self) -> Option<Table> {
        match self.signal {
            Signal::Logs => Some(Table::Logs),
            Signal::Traces => Some(Table::Spans),
            Signal::Metrics => None,
        }
    }

    fn text_predicate(&self, e: &Expr) -> Option<Predicate> {
        Predicate::of(e, self.index_table()?)
    }

    /// Each file's decision (`None`: no text predicate, or no index recorded for it).
    async fn decide_all(&self, files: &[FileRow], text: &[(Predicate, &Expr)]) -> Vec<Option<Decision>> {
        let Some(table) = self.index_table().filter(|_| !text.is_empty()) else { return vec![None; files.len()] };
        let predicates: Arc<Vec<Predicate>> = Arc::new(text.iter().map(|(p, _)| p.clone()).collect());
        let ids: Vec<String> = files.iter().map(|f| f.file_id.clone()).collect();
        let indexes = match self.sources.catalog().indexes_for(&ids, TANTIVY).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("cannot list the files' indexes ({e}); scanning them");
                return files.iter().map(|_| Some(Decision::Whole(Why::NoIndex))).collect();
            }
        };
        let jobs: Vec<_> =
            files.iter().map(|f| (f.clone(), indexes.get(&f.file_id).cloned(), predicates.clone())).collect();
        let jobs = jobs.into_iter().map(|(f, index, predicates)| async move {
            let f = &f;
            let Some(index) = index else { return Some(Decision::Whole(Why::NoIndex)) };
            let Some(opened) = self.open_index(f, &index).await else { return Some(Decision::Whole(Why::Unreadable)) };
            let (specs, rows) = (self.specs.clone(), f.row_count as u64);
            let decided = tokio::task::spawn_blocking(move || decide(Some(&opened), rows, &predicates, &specs, table))
                .await
                .unwrap_or(Decision::Whole(Why::CannotAnswer));
            if decided == Decision::Whole(Why::Unreadable) {
                self.mark_missing(f, &index.path, "it does not hold one document per row").await;
            }
            Some(decided)
        });
        futures::stream::iter(jobs).buffered(CONCURRENT_INDEX_READS).collect().await
    }

    /// A file's index, from the cache or read from its store (`None`, logged, when it cannot be read;
    /// one that is gone or damaged is marked for the exporter's repair).
    async fn open_index(&self, f: &FileRow, index: &openwit_catalog::IndexRow) -> Option<Arc<Searchable>> {
        let key = format!("{}/{}@{}", f.root, index.path, index.created_at);
        if let Some(s) = self.sources.indexes().get(&key) {
            return Some(s);
        }
        let dest = self.sources.destination(&f.root).ok()?;
        let (_, store) = self.sources.store(&dest);
        let bytes = match object_store::ObjectStoreExt::get(&store, &dest.location(&index.path)).await {
            Ok(r) => match r.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(index = %index.path, "cannot read a file's index ({e}); scanning the file");
                    return None;
                }
            },
            Err(object_store::Error::NotFound { .. }) => {
                self.mark_missing(f, &index.path, "it is not in the store").await;
                return None;
            }
            Err(e) => {
                tracing::warn!(index = %index.path, "cannot read a file's index ({e}); scanning the file");
                return None;
            }
        };
        let opened = tokio::task::spawn_blocking(move || {
            // The cache counts what the index holds in memory open (its files decompressed).
            let (index, size) = openwit_index::bundle::open(bytes.to_vec())?;
            openwit_index::search::Searchable::new(index).map(|s| (s, size))
        })
        .await;
        match opened {
            Ok(Ok((s, size))) => {
                let s = Arc::new(s);
                self.sources.indexes().put(key, s.clone(), size);
                Some(s)
            }
            Ok(Err(e)) => {
                self.mark_missing(f, &index.path, &e.to_string()).await;
                None
            }
            Err(_) => None,
        }
    }

    /// Marks an index the exporter must build again; the file is scanned until then.
    async fn mark_missing(&self, f: &FileRow, path: &str, why: &str) {
        tracing::warn!(index = %path, file = %f.path, "a file's index is unusable ({why}); scanning the file until it is rebuilt");
        if let Err(e) = self.sources.catalog().set_index_state(&f.file_id, TANTIVY, "missing").await {
            tracing::warn!(index = %path, "cannot mark the index for rebuilding: {e}");
        }
    }

    /// The rows of a file answered by its index alone: the projection holds `time` at most.
    fn rows_from_index(&self, projected: &SchemaRef, times: &[i64]) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = projected.fields().iter().map(|f| time_column(f, times)).collect::<Result<_>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(times.len()));
        Ok(RecordBatch::try_new_with_options(projected.clone(), columns, &options)?)
    }

    /// A scan of Parquet files: their projected rows, or (`filtered`) their rows through the exact text
    /// predicates.
    #[allow(clippy::too_many_arguments)]
    fn parquet_scan(
        &self,
        state: &dyn Session,
        store_url: ObjectStoreUrl,
        source: ParquetSource,
        groups: Vec<FileGroup>,
        projection: Option<&Vec<usize>>,
        exact: &[Expr],
        filtered: bool,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let read = |columns: Option<Vec<usize>>, limit: Option<usize>| -> Result<Arc<dyn ExecutionPlan>> {
            let config = FileScanConfigBuilder::new(store_url, Arc::new(source))
                .with_file_groups(groups)
                .with_projection_indices(columns)?
                .with_limit(limit)
                .build();
            Ok(DataSourceExec::from_data_source(config))
        };
        if filtered {
            self.filtered(state, |needed| read(Some(needed), None), projection, exact, limit)
        } else {
            read(projection.cloned(), limit)
        }
    }

    /// Rows read by `read` (given the columns to read) through the exact text predicates: it reads the
    /// projection and the columns they need, filters, and keeps the projection.
    fn filtered(
        &self,
        state: &dyn Session,
        read: impl FnOnce(Vec<usize>) -> Result<Arc<dyn ExecutionPlan>>,
        projection: Option<&Vec<usize>>,
        exact: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let predicate = conjunction(exact.iter().cloned()).expect("a filtered scan has predicates");
        let mut needed: BTreeSet<usize> = match projection {
            Some(p) => p.iter().copied().collect(),
            None => (0..self.schema.fields().len()).collect(),
        };
        for c in predicate.column_refs() {
            needed.insert(self.schema.index_of(&c.name)?);
        }
        let needed: Vec<usize> = needed.into_iter().collect();
        let read_schema = Arc::new(self.schema.project(&needed)?);
        let scan = read(needed.clone())?;
        let physical = state.create_physical_expr(predicate, &DFSchema::try_from(read_schema)?)?;
        let keep = projection.map(|p| p.iter().map(|i| needed.iter().position(|n| n == i).expect("kept")).collect());
        Ok(Arc::new(FilterExecBuilder::new(physical, scan).apply_projection(keep)?.with_fetch(limit).build()?))
    }

    /// Scans of the fresh files: the written row groups of active files and the staged files (by the
    /// snapshot's open handles), and the rows active files buffer in memory. No index covers them: text
    /// predicates are evaluated on their rows.
    fn fresh_scans(
        &self,
        state: &dyn Session,
        fresh: &[FreshFile],
        projection: Option<&Vec<usize>>,
        exact: &[Expr],
        limit: Option<usize>,
    ) -> Result<Vec<Arc<dyn ExecutionPlan>>> {
        let mut scans = Vec::new();
        let mut readers = FreshReaders::default();
        let mut files = Vec::new();
        for f in fresh.iter().filter(|f| f.has_row_groups()) {
            readers.add(f);
            files.push(PartitionedFile::new_from_meta(object_store::ObjectMeta {
                location: object_store::path::Path::from(fresh::location(f)),
                last_modified: chrono::Utc::now(),
                size: f.len,
                e_tag: None,
                version: None,
            }));
        }
        if !files.is_empty() {
            // Never read through this store: `readers` serves every file of the scan.
            let store_url = ObjectStoreUrl::local_filesystem();
            let source = ParquetSource::new(self.schema.clone())
                .with_table_parquet_options(state.table_options().parquet.clone())
                .with_parquet_file_reader_factory(Arc::new(readers));
            let groups = spread(files, state.config().target_partitions().max(1));
            scans.push(self.parquet_scan(
                state,
                store_url,
                source,
                groups,
                projection,
                exact,
                !exact.is_empty(),
                limit,
            )?);
        }
        let buffered: Vec<RecordBatch> = fresh
            .iter()
            .flat_map(|f| &f.buffered)
            .map(|b| Ok(openwit_core::columnar::conform(b, &self.schema)?))
            .collect::<Result<_>>()?;
        if !buffered.is_empty() {
            let schema = self.schema.clone();
            let read = |columns: Option<Vec<usize>>| -> Result<Arc<dyn ExecutionPlan>> {
                let exec = MemorySourceConfig::try_new_exec(&[buffered], schema, columns)?;
                Ok(exec)
            };
            scans.push(if exact.is_empty() {
                read(projection.cloned())?
            } else {
                self.filtered(state, |needed| read(Some(needed)), projection, exact, limit)?
            });
        }
        Ok(scans)
    }

    /// Of files with these `[min_time, max_time]`, those that can hold rows the filters accept:
    /// DataFusion's own pruning logic, fed with each file's time range as the statistics of `time`.
    fn keep_by_time(
        &self,
        state: &dyn Session,
        filters: &[Expr],
        ranges: impl ExactSizeIterator<Item = (i64, i64)>,
    ) -> Result<Vec<bool>> {
        let ranges: Vec<(i64, i64)> = ranges.collect();
        let Some(predicate) = conjunction(filters.iter().cloned()) else {
            return Ok(vec![true; ranges.len()]);
        };
        let df_schema = DFSchema::try_from(self.schema.clone())?;
        let physical = state.create_physical_expr(predicate, &df_schema)?;
        let pruning = match PruningPredicateBuilder::new().with_file_schema(self.schema.clone()).try_build(physical) {
            Ok(p) => p,
            // A predicate pruning cannot use: read every file, the filter still applies to the rows.
            Err(_) => return Ok(vec![true; ranges.len()]),
        };
        if pruning.always_true() {
            return Ok(vec![true; ranges.len()]);
        }
        // A log record without a time is placed (and its file's range set) by its observed time, while
        // its `time` column holds 0. When the query could accept time 0, the ranges' lower ends do not
        // bound `time`, so they are taken as 0.
        let zero_admitted = self.signal == Signal::Logs && {
            let zero = TimeRanges { min: vec![0], max: vec![0] };
            pruning.prune(&zero)?.first().copied().unwrap_or(true)
        };
        let ranges = TimeRanges {
            min: ranges.iter().map(|r| if zero_admitted { 0 } else { r.0 }).collect(),
            max: ranges.iter().map(|r| r.1).collect(),
        };
        pruning.prune(&ranges)
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
