//! Every file's metadata is read with its page index, once, and cached with it.
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

/// Creates the inner factory's readers, with the page index asked for.
#[derive(Debug)]
pub struct WithPageIndexes(pub Arc<dyn ParquetFileReaderFactory>);

impl ParquetFileReaderFactory for WithPageIndexes {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::common::Result<Box<dyn AsyncFileReader + Send>> {
        Ok(Box::new(WithPageIndex(self.0.create_reader(partition_index, file, metadata_size_hint, metrics)?)))
    }
}

struct WithPageIndex(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for WithPageIndex {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let options = options.cloned().unwrap_or_default().with_page_index_policy(PageIndexPolicy::Optional);
        async move { self.0.get_metadata(Some(&options)).await }.boxed()
    }
}
