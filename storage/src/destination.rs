//! A storage root, opened: a local directory, or a prefix in an object store (S3 and S3-compatible
//! servers, GCS, Azure) through `object_store`. Files are stored, verified and listed under it.

use crate::local::{create_dir_all_durably, size_and_tail, sync_dir};
use crate::{Endpoint, Service, StorageError};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Files above this size are uploaded in parts.
const MULTIPART_ABOVE: u64 = 16 << 20;
const PART_SIZE: usize = 8 << 20;
const PARTS_IN_FLIGHT: usize = 4;

/// An opened destination.
pub struct Destination {
    /// The root as recorded in the catalog (`file:///abs/dir`, `s3://bucket/prefix`).
    pub root: String,
    kind: Kind,
}

enum Kind {
    Local(PathBuf),
    Remote { store: Arc<dyn ObjectStore>, prefix: String },
}

impl Destination {
    /// Builds the client (no request is made: an unreachable store shows in uploads, which are retried).
    pub fn open(endpoint: &Endpoint, options: &BTreeMap<String, String>) -> Result<Destination, StorageError> {
        match endpoint {
            Endpoint::Local(dir) => {
                let io = |source| StorageError::Io {
                    what: "cannot create the storage directory",
                    path: dir.clone(),
                    source,
                };
                create_dir_all_durably(dir).map_err(io)?;
                let dir = dir.canonicalize().map_err(io)?;
                Ok(Destination { root: format!("file://{}", dir.display()), kind: Kind::Local(dir) })
            }
            Endpoint::Remote { service, bucket, prefix } => {
                let opts = options.iter();
                // A few quick retries inside the client (a dropped connection, a throttled request);
                // longer outages surface to the uploader, which keeps retrying with backoff and logs.
                let retry = object_store::RetryConfig {
                    max_retries: 3,
                    retry_timeout: std::time::Duration::from_secs(20),
                    ..Default::default()
                };
                let store: Arc<dyn ObjectStore> = match service {
                    Service::S3 => {
                        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry.clone());
                        for (k, v) in opts {
                            b = b.with_config(k.parse().map_err(StorageError::Store)?, v);
                        }
                        Arc::new(b.build()?)
                    }
                    Service::Gcs => {
                        let mut b =
                            GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket).with_retry(retry.clone());
                        for (k, v) in opts {
                            b = b.with_config(k.parse().map_err(StorageError::Store)?, v);
                        }
                        Arc::new(b.build()?)
                    }
                    Service::Azure => {
                        let mut b =
                            MicrosoftAzureBuilder::from_env().with_container_name(bucket).with_retry(retry.clone());
                        for (k, v) in opts {
                            b = b.with_config(k.parse().map_err(StorageError::Store)?, v);
                        }
                        Arc::new(b.build()?)
                    }
                };
                let scheme = match service {
                    Service::S3 => "s3",
                    Service::Gcs => "gs",
                    Service::Azure => "az",
                };
                let root = if prefix.is_empty() {
                    format!("{scheme}://{bucket}")
                } else {
                    format!("{scheme}://{bucket}/{prefix}")
                };
                Ok(Destination { root, kind: Kind::Remote { store, prefix: prefix.clone() } })
            }
        }
    }

    /// Opens a root recorded in the catalog for reading: like `open`, but a local directory is taken as it
    /// is (not created).
    pub fn open_for_reading(root: &str, options: &BTreeMap<String, String>) -> Result<Destination, StorageError> {
        match Endpoint::parse(root, options)? {
            Endpoint::Local(dir) => Ok(Destination { root: root.to_string(), kind: Kind::Local(dir) }),
            remote => Destination::open(&remote, options),
        }
    }

    /// The URL of the store that holds this root (`file://`, `s3://bucket`, …), under which a query
    /// engine registers the store, and the store itself.
    pub fn store(&self) -> (String, Arc<dyn ObjectStore>) {
        match &self.kind {
            Kind::Local(_) => ("file://".to_string(), Arc::new(object_store::local::LocalFileSystem::new())),
            Kind::Remote { store, prefix } => {
                let bucket_url = self.root.strip_suffix(&format!("/{prefix}")).unwrap_or(&self.root);
                (bucket_url.to_string(), store.clone())
            }
        }
    }

    /// The same root read through `store` (one an exporter of this daemon already opened).
    pub fn with_store(self, store: Arc<dyn ObjectStore>) -> Destination {
        match self.kind {
            Kind::Remote { prefix, .. } => Destination { root: self.root, kind: Kind::Remote { store, prefix } },
            local => Destination { root: self.root, kind: local },
        }
    }

    /// Where the object at `rel` under the root is, in the store `store()` returns.
    pub fn location(&self, rel: &str) -> ObjectPath {
        match &self.kind {
            Kind::Local(dir) => ObjectPath::from(format!("{}/{rel}", dir.display())),
            Kind::Remote { prefix, .. } => Destination::object_path(prefix, rel),
        }
    }

    fn object_path(prefix: &str, rel: &str) -> ObjectPath {
        if prefix.is_empty() { ObjectPath::from(rel) } else { ObjectPath::from(format!("{prefix}/{rel}")) }
    }

    /// Stores the finalized local file at `rel` under the root. A local destination takes the file
    /// itself (renamed, or copied across file systems) and makes it durable; an object store gets a copy.
    pub async fn upload(&self, local: &Path, rel: &str) -> Result<(), StorageError> {
        match &self.kind {
            Kind::Local(root) => {
                let (from, to) = (local.to_path_buf(), root.join(rel));
                let what = "cannot store";
                tokio::task::spawn_blocking(move || move_durably(&from, &to))
                    .await
                    .map_err(|e| StorageError::Task(e.to_string()))?
                    .map_err(|source| StorageError::Io { what, path: local.to_path_buf(), source })
            }
            Kind::Remote { store, prefix } => {
                let path = Self::object_path(prefix, rel);
                let io = |source| StorageError::Io { what: "cannot read", path: local.to_path_buf(), source };
                let size = tokio::fs::metadata(local).await.map_err(io)?.len();
                if size <= MULTIPART_ABOVE {
                    let bytes = tokio::fs::read(local).await.map_err(io)?;
                    store.put(&path, bytes.into()).await?;
                    return Ok(());
                }
                let upload = store.put_multipart(&path).await?;
                let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                let mut file = tokio::fs::File::open(local).await.map_err(io)?;
                let mut buf = vec![0u8; PART_SIZE];
                loop {
                    let n = match file.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => {
                            let _ = parts.abort().await;
                            return Err(io(e));
                        }
                    };
                    parts.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                    parts.write(&buf[..n]);
                }
                parts.finish().await?;
                Ok(())
            }
        }
    }

    /// Whether `rel` holds the file that was uploaded: same size and, when known, same last 8 bytes (the
    /// footer length and the `PAR1` magic). `Err` when the store cannot be asked.
    pub async fn verify(&self, rel: &str, size: u64, tail: Option<[u8; 8]>) -> Result<bool, StorageError> {
        match &self.kind {
            Kind::Local(root) => {
                let (root, path) = (root.clone(), root.join(rel));
                tokio::task::spawn_blocking(move || match size_and_tail(&path) {
                    Ok((len, last)) if len == size && tail.is_none_or(|t| len >= 8 && last == t) => {
                        // Seeing the file is not enough: after a failed attempt (a directory fsync that
                        // failed) it may be visible and still not survive a power cut. Stored means durable.
                        sync_up_to(&root, &path).map(|()| true).map_err(|source| StorageError::Io {
                            what: "cannot make durable",
                            path,
                            source,
                        })
                    }
                    Ok(_) => Ok(false),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(source) => Err(StorageError::Io { what: "cannot read", path, source }),
                })
                .await
                .map_err(|e| StorageError::Task(e.to_string()))?
            }
            Kind::Remote { store, prefix } => {
                let path = Self::object_path(prefix, rel);
                let meta = match store.head(&path).await {
                    Ok(m) => m,
                    Err(object_store::Error::NotFound { .. }) => return Ok(false),
                    Err(e) => return Err(e.into()),
                };
                match tail {
                    _ if meta.size != size => Ok(false),
                    None => Ok(true),
                    Some(_) if size < 8 => Ok(false),
                    Some(t) => {
                        let got = store.get_range(&path, size - 8..size).await?;
                        Ok(got.as_ref() == t)
                    }
                }
            }
        }
    }

    /// The stored file at `rel`, open for reading: a local destination's own file, or the object
    /// streamed into an unnamed temporary file in `scratch` (gone once closed, whatever happens to the
    /// reader) — so that a large file is read a part at a time, never held whole in memory.
    pub async fn open_stored(&self, rel: &str, scratch: &Path) -> Result<std::fs::File, StorageError> {
        match &self.kind {
            Kind::Local(root) => {
                let path = root.join(rel);
                std::fs::File::open(&path).map_err(|source| StorageError::Io { what: "cannot read", path, source })
            }
            Kind::Remote { store, prefix } => {
                let io = |what, source| StorageError::Io { what, path: scratch.to_path_buf(), source };
                tokio::fs::create_dir_all(scratch).await.map_err(|e| io("cannot create", e))?;
                let scratch_dir = scratch.to_path_buf();
                let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(scratch_dir))
                    .await
                    .map_err(|e| StorageError::Task(e.to_string()))?
                    .map_err(|e| io("cannot create a temporary file in", e))?;
                let mut file = tokio::fs::File::from_std(file);
                let mut parts = store.get(&Self::object_path(prefix, rel)).await?.into_stream();
                while let Some(part) = parts.try_next().await? {
                    file.write_all(&part).await.map_err(|e| io("cannot write a temporary file in", e))?;
                }
                file.flush().await.map_err(|e| io("cannot write a temporary file in", e))?;
                let mut file = file.into_std().await;
                std::io::Seek::rewind(&mut file).map_err(|e| io("cannot read a temporary file in", e))?;
                Ok(file)
            }
        }
    }

    /// Deletes the object at `rel` under the root; one already gone is no error.
    pub async fn delete(&self, rel: &str) -> Result<(), StorageError> {
        match &self.kind {
            Kind::Local(root) => {
                let path = root.join(rel);
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(StorageError::Io { what: "cannot delete", path, source }),
                }
            }
            Kind::Remote { store, prefix } => match store.delete(&Self::object_path(prefix, rel)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Every object under `dir` (relative to the root), for tests and tools.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        match &self.kind {
            Kind::Local(root) => {
                let mut out = Vec::new();
                let mut stack = vec![root.join(dir)];
                while let Some(d) = stack.pop() {
                    let Ok(entries) = std::fs::read_dir(&d) else { continue };
                    for e in entries.flatten() {
                        let p = e.path();
                        if p.is_dir() {
                            stack.push(p);
                        } else if let Ok(r) = p.strip_prefix(root) {
                            out.push(r.to_string_lossy().into_owned());
                        }
                    }
                }
                out.sort();
                Ok(out)
            }
            Kind::Remote { store, prefix } => {
                let base = Self::object_path(prefix, dir);
                let metas: Vec<_> = store.list(Some(&base)).try_collect().await?;
                let strip = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
                let mut out: Vec<String> =
                    metas.into_iter().map(|m| m.location.to_string().trim_start_matches(&strip).to_string()).collect();
                out.sort();
                Ok(out)
            }
        }
    }
}

/// Moves `from` to `to` so that it survives a power failure once this returns: renamed (or copied and
/// synced when `to` is on another file system), then every directory on the way fsynced.
fn move_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    let parent = to.parent().unwrap_or(Path::new("/"));
    create_dir_all_durably(parent)?;
    if let Err(e) = std::fs::rename(from, to) {
        if e.raw_os_error() != Some(libc_exdev()) {
            return Err(e);
        }
        let tmp = to.with_extension("parquet.copy");
        std::fs::copy(from, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, to)?;
        std::fs::remove_file(from)?;
    }
    std::fs::File::open(to)?.sync_all()?;
    sync_dir(parent)?;
    if let Some(staging) = from.parent() {
        sync_dir(staging)?;
    }
    Ok(())
}

/// Syncs `path` and every directory from its parent up to `root`: after this, the file survives a power cut
/// under its name, however the steps that put it there went.
fn sync_up_to(root: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    let mut dir = path.parent();
    while let Some(d) = dir {
        sync_dir(d)?;
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

/// `EXDEV`: rename across file systems.
fn libc_exdev() -> i32 {
    18
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_all(mut f: std::fs::File) -> Vec<u8> {
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    }

    fn content() -> Vec<u8> {
        (0..3_000_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_stored_object_is_read_from_a_temporary_file_that_leaves_nothing_behind() {
        let remote = Endpoint::parse("s3://bucket/pre", &BTreeMap::new()).unwrap();
        let store = Arc::new(object_store::memory::InMemory::new());
        let dest = Destination::open(&remote, &BTreeMap::new()).unwrap().with_store(store.clone());
        store.put(&ObjectPath::from("pre/a/f.parquet"), content().into()).await.unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let file = dest.open_stored("a/f.parquet", &scratch.path().join("s")).await.unwrap();
        assert_eq!(read_all(file), content());
        let left: Vec<_> = std::fs::read_dir(scratch.path().join("s")).unwrap().collect();
        assert!(left.is_empty(), "the copy has no name: {left:?}");
        let missing = dest.open_stored("a/none.parquet", scratch.path()).await.unwrap_err();
        assert!(missing.to_string().contains("none.parquet"), "{missing}");
    }

    #[tokio::test]
    async fn a_local_file_is_read_where_it_is_stored() {
        let root = tempfile::tempdir().unwrap();
        let dest = Destination::open(&Endpoint::Local(root.path().to_path_buf()), &BTreeMap::new()).unwrap();
        std::fs::create_dir_all(root.path().join("a")).unwrap();
        std::fs::write(root.path().join("a/f.parquet"), content()).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let file = dest.open_stored("a/f.parquet", scratch.path()).await.unwrap();
        assert_eq!(read_all(file), content());
        assert!(dest.verify("a/f.parquet", 3_000_000, Some(content()[2_999_992..].try_into().unwrap())).await.unwrap());
        assert!(!dest.verify("a/f.parquet", 3_000_000, Some([0; 8])).await.unwrap(), "another tail");
        assert!(!dest.verify("a/f.parquet", 2_999_999, None).await.unwrap(), "another size");
    }
}
