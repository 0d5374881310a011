//! Every file's metadata is read with its page index, once, and cached with it; its bloom filters are
//! kept in memory once read (`bloom_filters`).
//!
//! DataFusion's Parquet opener asks its reader for the footer alone (`PageIndexPolicy::Skip`) and, when
//! a predicate can prune pages (`time > …`), loads the page index itself, outside the metadata cache:
//! so the cache held footers only and every query decoded the page index of every file again (15 % of
//! the daemon's CPU on a time-window aggregation over one 3M-span file, `perf`, docs/BENCHMARKS.md).
//! The opener uses a page index that arrives with the metadata ("readers may return page indexes even
//! when not requested"), so this factory asks for it on every file: read and decoded on the first
//! query, kept in the cache for the next ones. It also makes reads of the rows a full-text index
//! selected fetch only the pages holding them (a selection maps to byte ranges of single pages only
//! when the offset index is loaded; without it every projected column chunk was fetched whole:
//! ~1.1 MB of a 10M-record store to return one log line).

use super::bloom_filters::{BloomFilterCache, FileFilters};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::physical_expr_common::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use std::ops::Range;
use std::sync::Arc;

/// Creates the inner factory's readers (of the store at `store_url`), with the page index asked for
/// and bloom filters read through `blooms`.
#[derive(Clone)]
pub struct WithPageIndexes {
    pub inner: Arc<dyn ParquetFileReaderFactory>,
    pub store_url: String,
    pub blooms: Arc<BloomFilterCache>,
}

impl std::fmt::Debug for WithPageIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithPageIndexes").field("inner", &self.inner).field("store_url", &self.store_url).finish()
    }
}

impl ParquetFileReaderFactory for WithPageIndexes {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::common::Result<Box<dyn AsyncFileReader + Send>> {
        let name = format!("{}{}#{}", self.store_url, file.object_meta.location, file.object_meta.size);
        Ok(Box::new(WithPageIndex {
            inner: self.inner.create_reader(partition_index, file, metadata_size_hint, metrics)?,
            filters: FileFilters::new(self.blooms.clone(), name),
        }))
    }
}

struct WithPageIndex {
    inner: Box<dyn AsyncFileReader + Send>,
    filters: FileFilters,
}

impl AsyncFileReader for WithPageIndex {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        let Some(key) = self.filters.key(&range) else { return self.inner.get_bytes(range) };
        let cache = self.filters.cache().clone();
        if let Some(filter) = cache.get(&key) {
            return futures::future::ready(Ok(filter)).boxed();
        }
        async move {
            let filter = self.inner.get_bytes(range).await?;
            cache.put(key, filter.clone());
            Ok(filter)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let options = options.cloned().unwrap_or_default().with_page_index_policy(PageIndexPolicy::Optional);
        async move {
            let metadata = self.inner.get_metadata(Some(&options)).await?;
            self.filters.learn(&metadata);
            Ok(metadata)
        }
        .boxed()
    }
}
