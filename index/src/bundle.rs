//! One index as one object: Tantivy's files end to end, then a table of contents (JSON: name → offset
//! and length), its length (8 bytes, little-endian) and a magic number. A reader needs the last bytes
//! for the table and then only the ranges of the files a query touches (`BundleDirectory`).

use crate::IndexError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tantivy::Index;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, OwnedBytes, WatchCallback, WatchHandle, WritePtr,
};

const MAGIC: &[u8; 8] = b"OWIDX\x00\x00\x01";

/// A valid document store (of one empty document, with Tantivy's file footer) standing for the stores
/// `pack` leaves out; `None` if Tantivy would not make one (then such bundles cannot be opened).
static EMPTY_STORE: std::sync::LazyLock<Option<OwnedBytes>> = std::sync::LazyLock::new(|| {
    let make = || -> tantivy::Result<Vec<u8>> {
        let ram = tantivy::directory::RamDirectory::create();
        let mut schema = tantivy::schema::Schema::builder();
        schema.add_u64_field("x", tantivy::schema::FAST);
        let index = Index::create(ram.clone(), schema.build(), tantivy::IndexSettings::default())?;
        let mut writer = index.writer_with_num_threads::<tantivy::TantivyDocument>(1, 15_000_000)?;
        writer.add_document(tantivy::TantivyDocument::new())?;
        writer.commit()?;
        let segment = index
            .searchable_segment_metas()?
            .pop()
            .ok_or_else(|| tantivy::TantivyError::InternalError("no segment in the empty-store index".into()))?;
        let path = segment.relative_path(tantivy::index::SegmentComponent::Store);
        Ok(ram.atomic_read(&path)?)
    };
    make().ok().map(OwnedBytes::new)
});

/// The table of contents: each file's offset and length in the bundle.
type Toc = BTreeMap<String, (u64, u64)>;

/// Packs the index files of `dir` into a bundle: not Tantivy's lock files, and not its document stores.
/// Nothing is stored in documents (a hit is a row of the Parquet file), yet Tantivy writes a 4-byte
/// offset per document in each store (a tenth of the bundle); a reader is served an empty store
/// instead (`EMPTY_STORE`), which it opens but never reads.
pub fn pack(dir: &Path) -> Result<Vec<u8>, IndexError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".lock") && !n.ends_with(".store"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    let mut toc = Toc::new();
    for n in names {
        let bytes = std::fs::read(dir.join(&n))?;
        toc.insert(n, (out.len() as u64, bytes.len() as u64));
        out.extend_from_slice(&bytes);
    }
    let table = serde_json::to_vec(&toc).map_err(|e| IndexError::Bundle(e.to_string()))?;
    out.extend_from_slice(&table);
    out.extend_from_slice(&(table.len() as u64).to_le_bytes());
    out.extend_from_slice(MAGIC);
    Ok(out)
}

/// Opens a bundle held in memory as a searchable index.
pub fn open(bytes: Vec<u8>) -> Result<Index, IndexError> {
    let dir = BundleDirectory::new(OwnedBytes::new(bytes))?;
    Ok(Index::open(dir)?)
}

/// A read-only Tantivy directory over a bundle.
#[derive(Clone)]
pub struct BundleDirectory {
    data: OwnedBytes,
    toc: Arc<Toc>,
}

impl std::fmt::Debug for BundleDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BundleDirectory({} files, {} bytes)", self.toc.len(), self.data.len())
    }
}

impl BundleDirectory {
    pub fn new(data: OwnedBytes) -> Result<BundleDirectory, IndexError> {
        let bad = |m: &str| IndexError::Bundle(m.to_string());
        let n = data.len();
        if n < 16 || &data.as_slice()[n - 8..] != MAGIC {
            return Err(bad("not an OpenWit index bundle (no magic number at its end)"));
        }
        let len = u64::from_le_bytes(data.as_slice()[n - 16..n - 8].try_into().expect("8 bytes"));
        let start =
            usize::try_from(len).ok().and_then(|l| (n - 16).checked_sub(l)).ok_or_else(|| bad("table too long"))?;
        let toc: Toc = serde_json::from_slice(&data.as_slice()[start..n - 16]).map_err(|e| bad(&e.to_string()))?;
        if toc.values().any(|(o, l)| o.checked_add(*l).is_none_or(|end| end > start as u64)) {
            return Err(bad("a file lies outside the bundle"));
        }
        Ok(BundleDirectory { data, toc: Arc::new(toc) })
    }

    /// The names of the files the bundle holds.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.toc.keys().map(String::as_str)
    }

    fn file(&self, path: &Path) -> Option<OwnedBytes> {
        let name = path.to_str()?;
        match self.toc.get(name) {
            Some((o, l)) => Some(self.data.slice(*o as usize..(*o + *l) as usize)),
            None if name.ends_with(".store") => EMPTY_STORE.clone(),
            None => None,
        }
    }

    fn read_only(path: &Path) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{}: an index bundle is read-only", path.display()),
        )
    }
}

impl Directory for BundleDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let f = self.file(path).ok_or_else(|| OpenReadError::FileDoesNotExist(PathBuf::from(path)))?;
        Ok(Arc::new(f))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError { io_error: Arc::new(Self::read_only(path)), filepath: path.to_path_buf() })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        Ok(path.to_str().is_some_and(|p| self.toc.contains_key(p)))
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::IoError { io_error: Arc::new(Self::read_only(path)), filepath: path.to_path_buf() })
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.file(path).map(|b| b.as_slice().to_vec()).ok_or_else(|| OpenReadError::FileDoesNotExist(path.into()))
    }

    fn atomic_write(&self, path: &Path, _: &[u8]) -> std::io::Result<()> {
        Err(Self::read_only(path))
    }

    fn sync_directory(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// Nothing changes a bundle: readers need no lock.
    fn acquire_lock(&self, _: &Lock) -> Result<DirectoryLock, LockError> {
        Ok(DirectoryLock::from(Box::new(())))
    }

    fn watch(&self, _: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(WatchHandle::empty())
    }
}
