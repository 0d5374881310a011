//! Reads of the rows a full-text index selected fetch only the pages holding them.
//!
//! The Parquet reader maps a row selection to byte ranges of single pages only when the file's offset
//! index (where each page starts) is loaded. DataFusion loads it only for a *page pruning predicate*
//! (statistics on a column, e.g. `time > …`); a selection handed over on the `PartitionedFile`, as the
//! full-text index does, would otherwise fetch every projected column chunk whole: ~1.1 MB of a 10M-record
//! store to return one log line. This factory wraps DataFusion's caching one and asks for the page index
//! when a file carries a selection (the opener keeps metadata that arrives with it, by design: "readers
//! may return page indexes even when not requested"). Files read whole do not pay for the extra range.

use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::physical_expr_common::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use std::ops::Range;
use std::sync::Arc;

/// Creates the inner factory's readers, with the page index asked for on files read by selection.
#[derive(Debug)]
pub struct PagesForSelections(pub Arc<dyn ParquetFileReaderFactory>);

impl ParquetFileReaderFactory for PagesForSelections {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::common::Result<Box<dyn AsyncFileReader + Send>> {
        let selected = file.extension::<ParquetRowSelection>().is_some();
        let inner = self.0.create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(if selected { Box::new(WithPageIndex(inner)) } else { inner })
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
