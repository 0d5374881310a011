//! Where finalized files go: a local directory, or an object store (S3 and S3-compatible servers, GCS,
//! Azure) through `object_store`.

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use openwit_core::ConfigIssue;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// Files above this size are uploaded in parts.
const MULTIPART_ABOVE: u64 = 16 << 20;
const PART_SIZE: usize = 8 << 20;
const PARTS_IN_FLIGHT: usize = 4;

/// A parsed `endpoint`.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    Local(PathBuf),
    Remote { service: Service, bucket: String, prefix: String },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Service {
    S3,
    Gcs,
    Azure,
}

impl Endpoint {
    /// Parses `endpoint`, checking that every storage option is one the service knows.
    pub fn parse(endpoint: &str, options: &BTreeMap<String, String>) -> Result<Endpoint, ConfigIssue> {
        let bad = |m: String| ConfigIssue::new("endpoint", m);
        let Some((scheme, rest)) = endpoint.split_once("://") else {
            if endpoint.is_empty() {
                return Err(bad("is empty; give a directory or a file://, s3://, gs:// or az:// URL".into()));
            }
            return Ok(Endpoint::Local(PathBuf::from(endpoint)));
        };
        let service = match scheme.to_ascii_lowercase().as_str() {
            "file" => return Ok(Endpoint::Local(PathBuf::from(rest))),
            "s3" | "s3a" => Service::S3,
            "gs" | "gcs" => Service::Gcs,
            "az" | "azure" | "abfs" => Service::Azure,
            other => {
                return Err(bad(format!(
                    "unsupported scheme {other:?} in {endpoint:?}: use a directory, file://, s3://, gs:// or az://"
                )));
            }
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad(format!("{endpoint:?} names no bucket or container (expected {scheme}://NAME/prefix)")));
        }
        for key in options.keys() {
            let known = match service {
                Service::S3 => AmazonS3ConfigKey::from_str(key).is_ok(),
                Service::Gcs => GoogleConfigKey::from_str(key).is_ok(),
                Service::Azure => AzureConfigKey::from_str(key).is_ok(),
            };
            if !known {
                return Err(ConfigIssue::new(
                    format!("storage_options.{key}"),
                    format!(
                        "is not a {service:?} setting of object_store (for example aws_endpoint, aws_allow_http, google_service_account, azure_storage_account_name)"
                    ),
                ));
            }
        }
        Ok(Endpoint::Remote { service, bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() })
    }
}

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
    pub fn open(endpoint: &Endpoint, options: &BTreeMap<String, String>) -> anyhow::Result<Destination> {
        match endpoint {
            Endpoint::Local(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("cannot create the storage directory {}: {e}", dir.display()))?;
                let dir = dir.canonicalize()?;
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
                            b = b.with_config(k.parse()?, v);
                        }
                        Arc::new(b.build()?)
                    }
                    Service::Gcs => {
                        let mut b =
                            GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket).with_retry(retry.clone());
                        for (k, v) in opts {
                            b = b.with_config(k.parse()?, v);
                        }
                        Arc::new(b.build()?)
                    }
                    Service::Azure => {
                        let mut b =
                            MicrosoftAzureBuilder::from_env().with_container_name(bucket).with_retry(retry.clone());
                        for (k, v) in opts {
                            b = b.with_config(k.parse()?, v);
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
    pub fn open_for_reading(root: &str, options: &BTreeMap<String, String>) -> anyhow::Result<Destination> {
        match Endpoint::parse(root, options).map_err(|i| anyhow::anyhow!("{}", i.message))? {
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
    pub async fn upload(&self, local: &Path, rel: &str) -> Result<(), String> {
        match &self.kind {
            Kind::Local(root) => {
                let (from, to) = (local.to_path_buf(), root.join(rel));
                tokio::task::spawn_blocking(move || move_durably(&from, &to))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot store {}: {e}", local.display()))
            }
            Kind::Remote { store, prefix } => {
                let path = Self::object_path(prefix, rel);
                let size = tokio::fs::metadata(local).await.map_err(|e| e.to_string())?.len();
                if size <= MULTIPART_ABOVE {
                    let bytes = tokio::fs::read(local).await.map_err(|e| e.to_string())?;
                    store.put(&path, bytes.into()).await.map_err(|e| e.to_string())?;
                    return Ok(());
                }
                let upload = store.put_multipart(&path).await.map_err(|e| e.to_string())?;
                let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                let mut file = tokio::fs::File::open(local).await.map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; PART_SIZE];
                loop {
                    let n = match file.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => {
                            let _ = parts.abort().await;
                            return Err(e.to_string());
                        }
                    };
                    if let Err(e) = parts.wait_for_capacity(PARTS_IN_FLIGHT).await {
                        return Err(e.to_string());
                    }
                    parts.write(&buf[..n]);
                }
                parts.finish().await.map(|_| ()).map_err(|e| e.to_string())
            }
        }
    }

    /// Whether `rel` holds the file that was uploaded: same size and, when known, same last 8 bytes (the
    /// footer length and the `PAR1` magic). `Err` when the store cannot be asked.
    pub async fn verify(&self, rel: &str, size: u64, tail: Option<[u8; 8]>) -> Result<bool, String> {
        match &self.kind {
            Kind::Local(root) => {
                let path = root.join(rel);
                tokio::task::spawn_blocking(move || match std::fs::read(&path) {
                    Ok(b) => Ok(b.len() as u64 == size && tail.is_none_or(|t| b.len() >= 8 && b[b.len() - 8..] == t)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(e.to_string()),
                })
                .await
                .map_err(|e| e.to_string())?
            }
            Kind::Remote { store, prefix } => {
                let path = Self::object_path(prefix, rel);
                let meta = match store.head(&path).await {
                    Ok(m) => m,
                    Err(object_store::Error::NotFound { .. }) => return Ok(false),
                    Err(e) => return Err(e.to_string()),
                };
                match tail {
                    _ if meta.size != size => Ok(false),
                    None => Ok(true),
                    Some(_) if size < 8 => Ok(false),
                    Some(t) => {
                        let got = store.get_range(&path, size - 8..size).await.map_err(|e| e.to_string())?;
                        Ok(got.as_ref() == t)
                    }
                }
            }
        }
    }

    /// Every object under `dir` (relative to the root), for tests and tools.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, String> {
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
                let metas: Vec<_> = store.list(Some(&base)).try_collect().await.map_err(|e| e.to_string())?;
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
    let mut created = Vec::new();
    let mut d = Some(parent);
    while let Some(dir) = d {
        if dir.exists() {
            break;
        }
        created.push(dir.to_path_buf());
        d = dir.parent();
    }
    std::fs::create_dir_all(parent)?;
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
    for dir in created.iter().filter_map(|c| c.parent()) {
        sync_dir(dir)?;
    }
    if let Some(staging) = from.parent() {
        sync_dir(staging)?;
    }
    Ok(())
}

/// `EXDEV`: rename across file systems.
fn libc_exdev() -> i32 {
    18
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(e: &str) -> Endpoint {
        Endpoint::parse(e, &BTreeMap::new()).unwrap()
    }

    #[test]
    fn endpoints_name_a_directory_or_a_bucket_and_prefix() {
        assert_eq!(parse("/var/lib/openwit"), Endpoint::Local("/var/lib/openwit".into()));
        assert_eq!(parse("file:///data/x"), Endpoint::Local("/data/x".into()));
        assert_eq!(parse("relative/dir"), Endpoint::Local("relative/dir".into()));
        assert_eq!(
            parse("s3://telemetry/edge/a/"),
            Endpoint::Remote { service: Service::S3, bucket: "telemetry".into(), prefix: "edge/a".into() }
        );
        assert_eq!(parse("s3a://b"), Endpoint::Remote { service: Service::S3, bucket: "b".into(), prefix: "".into() });
        assert_eq!(
            parse("gs://b/p"),
            Endpoint::Remote { service: Service::Gcs, bucket: "b".into(), prefix: "p".into() }
        );
        assert_eq!(
            parse("az://c/p"),
            Endpoint::Remote { service: Service::Azure, bucket: "c".into(), prefix: "p".into() }
        );
        let opts = BTreeMap::from([("aws_endpoint".to_string(), "http://x".to_string())]);
        assert!(Endpoint::parse("s3://b", &opts).is_ok());
    }

    #[tokio::test]
    async fn a_local_destination_takes_the_file_and_verifies_size_and_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = Destination::open(&Endpoint::Local(tmp.path().join("store")), &BTreeMap::new()).unwrap();
        assert!(dest.root.starts_with("file:///"));
        let local = tmp.path().join("f.parquet");
        std::fs::write(&local, b"PAR1 body 12345678PAR1").unwrap();
        let tail: [u8; 8] = *b"5678PAR1";
        assert!(!dest.verify("a/b/f.parquet", 22, Some(tail)).await.unwrap(), "nothing there yet");
        dest.upload(&local, "a/b/f.parquet").await.unwrap();
        assert!(!local.exists(), "the staging copy moved into the store");
        assert!(dest.verify("a/b/f.parquet", 22, Some(tail)).await.unwrap());
        assert!(dest.verify("a/b/f.parquet", 22, None).await.unwrap());
        assert!(!dest.verify("a/b/f.parquet", 21, None).await.unwrap(), "size differs");
        assert!(!dest.verify("a/b/f.parquet", 22, Some(*b"xxxxPAR1")).await.unwrap(), "tail differs");
        assert_eq!(dest.list("a").await.unwrap(), vec!["a/b/f.parquet".to_string()]);
    }
}
