//! Remote reads for queries: at most `max_concurrent_reads` requests in flight per bucket, and small
//! ranges (Parquet footers, page indexes, bloom filters, small pages) and full-text index bundles kept
//! on local disk within a budget,
//! least recently used first out. Stored objects never change (every file has a new name), so a cached
//! range never goes stale; an entry of a deleted file is simply never asked for again and ages out.
//!
//! Entry files hold the range, the object's size, time and e-tag (a `get` answers with them) and a
//! CRC32C: one torn by a crash is a miss, and is replaced.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use openwit_core::telemetry::{Counter, Gauge, Telemetry};
use sha2::Digest;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Objects read whole and cached whole: full-text index bundles (`<file>.parquet.tantivy`), up to a
/// quarter of the cache each.
const INDEX_SUFFIX: &str = ".tantivy";

/// What the query extension's read cache is given.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    pub directory: PathBuf,
    pub max_bytes: u64,
    /// Ranges up to this size are cached (bigger ones are data, read once per query).
    pub max_range_bytes: u64,
}

struct Metrics {
    hits: Counter,
    misses: Counter,
    fetched: Counter,
    bytes: Gauge,
}

/// The entries on disk, least recently used first out.
pub struct ReadCache {
    settings: CacheSettings,
    entries: Mutex<(lru::LruCache<String, u64>, u64)>,
    metrics: Metrics,
}

impl ReadCache {
    /// Opens the cache directory, keeping what earlier runs cached (oldest first out).
    pub fn open(settings: CacheSettings, telemetry: &Telemetry) -> std::io::Result<Arc<ReadCache>> {
        std::fs::create_dir_all(&settings.directory)?;
        let mut found: Vec<(std::time::SystemTime, String, u64)> = Vec::new();
        for e in std::fs::read_dir(&settings.directory)?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            match e.metadata() {
                Ok(m) if m.is_file() && !name.ends_with(".tmp") => {
                    found.push((m.modified().unwrap_or(std::time::UNIX_EPOCH), name, m.len()))
                }
                _ => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        found.sort();
        let mut lru = lru::LruCache::unbounded();
        let mut total = 0;
        for (_, name, len) in found {
            total += len;
            lru.put(name, len);
        }
        let metrics = Metrics {
            hits: telemetry.counter("openwit_query_cache_hits", "Remote reads answered from the local read cache"),
            misses: telemetry.counter("openwit_query_cache_misses", "Cacheable remote reads fetched from the store"),
            fetched: telemetry.counter(
                "openwit_query_store_bytes_fetched",
                "Bytes queries fetched from remote stores (not from the cache)",
            ),
            bytes: telemetry.gauge("openwit_query_cache_bytes", "Bytes held by the local read cache"),
        };
        let cache = ReadCache { settings, entries: Mutex::new((lru, total)), metrics };
        cache.evict();
        Ok(Arc::new(cache))
    }

    fn key(store: &str, location: &Path, range: &Range<u64>) -> String {
        let mut h = sha2::Sha256::new();
        h.update(store.as_bytes());
        h.update([0]);
        h.update(location.as_ref().as_bytes());
        h.update(range.start.to_le_bytes());
        h.update(range.end.to_le_bytes());
        hex::encode(&h.finalize()[..16])
    }

    fn cacheable(&self, range: &Range<u64>) -> bool {
        self.settings.max_bytes > 0
            && range.end > range.start
            && range.end - range.start <= self.settings.max_range_bytes
    }

    fn evict(&self) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        while e.1 > self.settings.max_bytes {
            let Some((name, len)) = e.0.pop_lru() else { break };
            e.1 = e.1.saturating_sub(len);
            let _ = std::fs::remove_file(self.settings.directory.join(name));
        }
        self.metrics.bytes.set(e.1 as i64);
    }

    /// The cached range and the object's metadata (`None` on a miss or a damaged entry).
    async fn read(&self, key: &str) -> Option<(Bytes, u64, i64, Option<String>)> {
        // Known (and marked as just used), or a miss without touching the disk.
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).0.get(key)?;
        let path = self.settings.directory.join(key);
        let raw = tokio::fs::read(&path).await.ok()?;
        match decode(&raw) {
            Some(v) => Some(v),
            None => {
                let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(len) = e.0.pop(key) {
                    e.1 = e.1.saturating_sub(len);
                }
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    async fn write(&self, key: String, bytes: &Bytes, meta: &ObjectMeta) {
        let raw = encode(bytes, meta);
        let (dir, len) = (self.settings.directory.clone(), raw.len() as u64);
        let tmp = dir.join(format!("{key}.tmp"));
        let done = tokio::fs::write(&tmp, &raw).await.and(tokio::fs::rename(&tmp, dir.join(&key)).await);
        if done.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
            return;
        }
        {
            let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = e.0.put(key, len) {
                e.1 = e.1.saturating_sub(old);
            }
            e.1 += len;
        }
        self.evict();
    }
}

fn encode(bytes: &Bytes, meta: &ObjectMeta) -> Vec<u8> {
    let etag = meta.e_tag.as_deref().unwrap_or("");
    let mut b = BytesMut::with_capacity(bytes.len() + 64);
    b.put_u64_le(meta.size);
    b.put_i64_le(meta.last_modified.timestamp_millis());
    b.put_u16_le(etag.len() as u16);
    b.put_slice(etag.as_bytes());
    b.put_slice(bytes);
    let crc = crc32c::crc32c(&b);
    b.put_u32_le(crc);
    b.to_vec()
}

fn decode(raw: &[u8]) -> Option<(Bytes, u64, i64, Option<String>)> {
    if raw.len() < 22 {
        return None;
    }
    let (body, crc) = raw.split_at(raw.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut b = body;
    let size = b.get_u64_le();
    let modified = b.get_i64_le();
    let etag_len = b.get_u16_le() as usize;
    if b.len() < etag_len {
        return None;
    }
    let etag = String::from_utf8(b[..etag_len].to_vec()).ok()?;
    let payload = Bytes::copy_from_slice(&b[etag_len..]);
    Some((payload, size, modified, (!etag.is_empty()).then_some(etag)))
}

/// A remote store seen through the read cache and a bound on requests in flight.
#[derive(Debug)]
pub struct CachingStore {
    inner: Arc<dyn ObjectStore>,
    url: String,
    cache: Arc<ReadCache>,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadCache({})", self.settings.directory.display())
    }
}

impl std::fmt::Display for CachingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CachingStore({})", self.inner)
    }
}

impl CachingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, url: &str, cache: Arc<ReadCache>, max_concurrent: usize) -> CachingStore {
        // object_store's own bound on requests in flight, under the cache.
        let inner = Arc::new(object_store::limit::LimitStore::new(inner, max_concurrent.max(1)));
        CachingStore { inner, url: url.to_string(), cache }
    }

    async fn fetch_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let got = self.inner.get_ranges(location, ranges).await?;
        self.cache.metrics.fetched.inc_by(got.iter().map(|b| b.len() as u64).sum());
        Ok(got)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CachingStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let plain = options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none()
            && !options.head;
        // A full-text index is read whole (`None`): cached whole, under the marker range `0..u64::MAX`.
        let whole = plain && options.range.is_none() && location.as_ref().ends_with(INDEX_SUFFIX);
        let range = match &options.range {
            Some(GetRange::Bounded(r)) if plain && self.cache.cacheable(r) => r.clone(),
            None if whole && self.cache.settings.max_bytes > 0 => 0..u64::MAX,
            _ => {
                let got = self.inner.get_opts(location, options).await?;
                self.cache.metrics.fetched.inc_by(got.range.end - got.range.start);
                return Ok(got);
            }
        };
        let key = ReadCache::key(&self.url, location, &range);
        if let Some((bytes, size, modified, e_tag)) = self.cache.read(&key).await {
            self.cache.metrics.hits.inc();
            let meta = ObjectMeta {
                location: location.clone(),
                last_modified: chrono::DateTime::from_timestamp_millis(modified).unwrap_or_default(),
                size,
                e_tag,
                version: None,
            };
            let range = if whole { 0..bytes.len() as u64 } else { range };
            return Ok(result(bytes, meta, range));
        }
        self.cache.metrics.misses.inc();
        let got = self.inner.get_opts(location, options).await?;
        let (meta, got_range, attributes) = (got.meta.clone(), got.range.clone(), got.attributes.clone());
        let bytes = got.bytes().await?;
        self.cache.metrics.fetched.inc_by(bytes.len() as u64);
        let fits = if whole { bytes.len() as u64 <= self.cache.settings.max_bytes / 4 } else { got_range == range };
        if fits {
            self.cache.write(key, &bytes, &meta).await;
        }
        let mut r = result(bytes, meta, got_range);
        r.attributes = attributes;
        Ok(r)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let mut out: Vec<Option<Bytes>> = vec![None; ranges.len()];
        let mut missing = Vec::new();
        for (i, r) in ranges.iter().enumerate() {
            if self.cache.cacheable(r) {
                let key = ReadCache::key(&self.url, location, r);
                if let Some((bytes, ..)) = self.cache.read(&key).await {
                    self.cache.metrics.hits.inc();
                    out[i] = Some(bytes);
                    continue;
                }
                self.cache.metrics.misses.inc();
            }
            missing.push(i);
        }
        if !missing.is_empty() {
            let want: Vec<Range<u64>> = missing.iter().map(|&i| ranges[i].clone()).collect();
            let got = self.fetch_ranges(location, &want).await?;
            // The object's metadata, for entries a later `get` may answer: one HEAD per object, only
            // when something is to be cached.
            let mut meta = None;
            for (&i, bytes) in missing.iter().zip(got) {
                let r = &ranges[i];
                if self.cache.cacheable(r) && bytes.len() as u64 == r.end - r.start {
                    if meta.is_none() {
                        meta = Some(self.head(location).await?);
                    }
                    if let Some(m) = &meta {
                        self.cache.write(ReadCache::key(&self.url, location, r), &bytes, m).await;
                    }
                }
                out[i] = Some(bytes);
            }
        }
        Ok(out.into_iter().map(|b| b.unwrap_or_default()).collect())
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn result(bytes: Bytes, meta: ObjectMeta, range: Range<u64>) -> GetResult {
    let stream = futures::stream::once(async move { Ok(bytes) }).boxed();
    GetResult { payload: GetResultPayload::Stream(stream), meta, range, attributes: Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64) -> ObjectMeta {
        ObjectMeta {
            location: Path::from("a/b.parquet"),
            last_modified: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
            size,
            e_tag: Some("\"x1\"".into()),
            version: None,
        }
    }

    #[tokio::test]
    async fn entries_round_trip_are_evicted_oldest_first_and_a_damaged_one_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let settings =
            CacheSettings { directory: dir.path().to_path_buf(), max_bytes: 3 * 1100, max_range_bytes: 4096 };
        let t = Telemetry::default();
        let cache = ReadCache::open(settings.clone(), &t).unwrap();
        let key = |i: u64| ReadCache::key("s3://b", &Path::from("a/b.parquet"), &(i * 1000..i * 1000 + 1000));
        for i in 0..3 {
            cache.write(key(i), &Bytes::from(vec![i as u8; 1000]), &meta(9000)).await;
        }
        let (bytes, size, modified, etag) = cache.read(&key(0)).await.unwrap();
        assert_eq!(
            (bytes.len(), bytes[0], size, modified, etag.as_deref()),
            (1000, 0, 9000, 1_700_000_000_000, Some("\"x1\""))
        );
        // Over the budget: the least recently used (1; 0 was just read) goes.
        cache.write(key(3), &Bytes::from(vec![3; 1000]), &meta(9000)).await;
        assert!(cache.read(&key(1)).await.is_none());
        assert!(cache.read(&key(0)).await.is_some() && cache.read(&key(3)).await.is_some());
        assert!(std::fs::read_dir(dir.path()).unwrap().count() <= 3);
        // A torn entry is a miss and is removed.
        let torn = dir.path().join(key(3));
        let raw = std::fs::read(&torn).unwrap();
        std::fs::write(&torn, &raw[..raw.len() - 7]).unwrap();
        assert!(cache.read(&key(3)).await.is_none());
        assert!(!torn.exists());
        // Reopened: what is on disk is kept.
        drop(cache);
        let again = ReadCache::open(settings, &t).unwrap();
        assert!(again.read(&key(0)).await.is_some());
        assert!(!again.cacheable(&(0..5000)), "larger than max_range_bytes");
    }
}
