//! Bloom filters of stored files, kept in memory between queries.
//!
//! A lookup by id (`trace_id = '…'`) reads the bloom filter of every row group that the catalog's time
//! range and the min/max statistics leave, which for random ids is every row group: 249 of them in a
//! store of 10M spans. Each was a read of a few kilobytes, and for a local file a blocking
//! task that opened the file to read it: the filters' loading was a fifth of the daemon's CPU over such
//! lookups (`perf`, docs/BENCHMARKS.md). Stored files never change (every file gets a new name), so a
//! filter read once is kept here, least recently used first out within `bloom_filter_cache_megabytes`,
//! and a cached filter is never stale.

use super::byte_lru::ByteLru;
use bytes::Bytes;
use parquet::file::metadata::ParquetMetaData;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A filter by its file (store, path and size) and its offset in the file.
type Key = (Arc<str>, u64);

/// Bloom filters read by earlier queries.
pub struct BloomFilterCache {
    filters: ByteLru<Key, Bytes>,
    enabled: bool,
    hits: AtomicU64,
}

impl BloomFilterCache {
    /// A cache of at most `budget` bytes (0: every query reads the filters from the files).
    pub fn new(budget: u64) -> BloomFilterCache {
        BloomFilterCache { filters: ByteLru::new(budget), enabled: budget > 0, hits: AtomicU64::new(0) }
    }

    /// Filters answered from memory since the start.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Bytes of filters held.
    pub fn bytes(&self) -> u64 {
        self.filters.bytes()
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Bytes> {
        let found = self.filters.get(key);
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    pub(crate) fn put(&self, key: Key, filter: Bytes) {
        let bytes = filter.len() as u64;
        self.filters.put(key, filter, bytes);
    }
}

/// One file's bloom filters, as its reader sees them.
pub(crate) struct FileFilters {
    cache: Arc<BloomFilterCache>,
    file: Arc<str>,
    /// The byte ranges of the file's filters, once its metadata has been read.
    ranges: Option<HashSet<(u64, u64)>>,
}

impl FileFilters {
    /// `file` names the file uniquely: its store, path and size.
    pub(crate) fn new(cache: Arc<BloomFilterCache>, file: String) -> FileFilters {
        FileFilters { cache, file: file.into(), ranges: None }
    }

    /// Learns where the file's filters are (those written with their length: every file OpenWit
    /// writes; a filter read in two steps, header then bits, is not cached).
    pub(crate) fn learn(&mut self, metadata: &ParquetMetaData) {
        if !self.cache.enabled {
            return;
        }
        let ranges = metadata
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .filter_map(|c| {
                let offset = u64::try_from(c.bloom_filter_offset()?).ok()?;
                let length = u64::try_from(c.bloom_filter_length()?).ok()?;
                Some((offset, offset + length))
            })
            .collect();
        self.ranges = Some(ranges);
    }

    /// The cache's key for a read of `range`, when it is one of the file's filters.
    pub(crate) fn key(&self, range: &Range<u64>) -> Option<Key> {
        self.ranges.as_ref()?.contains(&(range.start, range.end)).then(|| (self.file.clone(), range.start))
    }

    pub(crate) fn cache(&self) -> &Arc<BloomFilterCache> {
        &self.cache
    }
}
