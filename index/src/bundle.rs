//! One index as one object: Tantivy's files end to end, each compressed with zstd, then a table of
//! contents (JSON: name → offset, length and length once decompressed), its length (8 bytes,
//! little-endian) and a magic number. A reader decompresses the files as it opens the bundle
//! (`BundleDirectory`): Tantivy opens every file of a segment anyway.
//!
//! Compression takes a third off an index (Tantivy's postings, term dictionary and positions are
//! bit-packed but not entropy-coded) for about 0.2 CPU-seconds per million log rows at level 3; higher
//! levels cost several times that for a few per cent more.
//!
//! Format 3 (this one) holds indexes whose term dictionaries are Tantivy's sstables; formats 1 and 2
//! held FST term dictionaries, which this build of Tantivy cannot read: such a bundle is refused as
//! older, which the query path treats like a missing index (the file is scanned) and the exporter's
//! indexer rebuilds it from its Parquet file.

use crate::IndexError;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tantivy::Index;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, OwnedBytes, WatchCallback, WatchHandle, WritePtr,
};

/// The magic numbers of bundle formats this version no longer reads.
pub(crate) const OLDER: [&[u8; 8]; 2] = [b"OWIDX\x00\x00\x01", b"OWIDX\x00\x00\x02"];
const MAGIC: &[u8; 8] = b"OWIDX\x00\x00\x03";
/// zstd's level for the files of a bundle.
const LEVEL: i32 = 3;
/// zstd's window: 16 MiB (readers accept up to 128 MiB).
const WINDOW_LOG: u32 = 24;

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

/// The table of contents of a bundle: each file's offset, length and decompressed length.
type Toc = BTreeMap<String, (u64, u64, u64)>;

/// Packs the index files of `dir` into a bundle: not Tantivy's lock files, and not its document stores.
/// Nothing is stored in documents (a hit is a row of the Parquet file), yet Tantivy writes a 4-byte
/// offset per document in each store (a tenth of the bundle); a reader is served an empty store
/// instead (`EMPTY_STORE`), which it opens but never reads.
pub fn pack(dir: &Path) -> Result<Vec<u8>, IndexError> {
    let mut out = Vec::new();
    pack_to(dir, &mut out)?;
    Ok(out)
}

/// As [`pack`], written to `out` as it is made: each file is read and compressed a buffer at a time, so
/// a large index is never held whole in memory. Returns the bundle's length.
pub fn pack_to(dir: &Path, out: &mut impl std::io::Write) -> Result<u64, IndexError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".lock") && !n.ends_with(".store"))
        .collect();
    names.sort();
    let mut out = Counting { inner: out, written: 0 };
    let mut toc = Toc::new();
    for n in names {
        let mut file = std::fs::File::open(dir.join(&n))?;
        let raw = file.metadata()?.len();
        let start = out.written;
        let mut zstd = zstd::stream::write::Encoder::new(&mut out, LEVEL)?;
        // Each file carries zstd's checksum: a damaged one fails to open (and is rebuilt) rather than
        // answering wrongly.
        zstd.include_checksum(true)?;
        zstd.include_contentsize(true)?;
        zstd.set_pledged_src_size(Some(raw))?;
        // A window the size of a large file's postings (level 3 looks back 2 MB by default): the postings
        // of words that occur together (a log template's) repeat each other across the file. 2.4 % off
        // the postings at no extra CPU; a reader holds the whole file in memory anyway.
        zstd.window_log(WINDOW_LOG)?;
        let copied = std::io::copy(&mut file, &mut zstd)?;
        zstd.finish()?;
        if copied != raw {
            return Err(IndexError::Bundle(format!("{n} changed while it was packed ({raw} → {copied} bytes)")));
        }
        toc.insert(n, (start, out.written - start, raw));
    }
    let table = serde_json::to_vec(&toc).map_err(|e| IndexError::Bundle(e.to_string()))?;
    out.write_all(&table)?;
    out.write_all(&(table.len() as u64).to_le_bytes())?;
    out.write_all(MAGIC)?;
    Ok(out.written)
}

/// A writer that counts what passes through it (the offsets of a bundle's files).
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: std::io::Write> std::io::Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Opens a bundle held in memory as a searchable index; also says how many bytes it holds in memory
/// once open (its files decompressed), for a cache to count.
pub fn open(bytes: Vec<u8>) -> Result<(Index, u64), IndexError> {
    let dir = BundleDirectory::new(OwnedBytes::new(bytes))?;
    let resident = dir.resident_bytes();
    Ok((Index::open(dir)?, resident))
}

/// A read-only Tantivy directory over a bundle: its files, decompressed.
#[derive(Clone)]
pub struct BundleDirectory {
    files: Arc<BTreeMap<String, OwnedBytes>>,
}

impl std::fmt::Debug for BundleDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BundleDirectory({} files, {} bytes)", self.files.len(), self.resident_bytes())
    }
}

impl BundleDirectory {
    pub fn new(data: OwnedBytes) -> Result<BundleDirectory, IndexError> {
        let bad = |m: &str| IndexError::Bundle(m.to_string());
        let n = data.len();
        let magic = if n >= 16 { &data.as_slice()[n - 8..] } else { &[][..] };
        if OLDER.iter().any(|m| magic == m.as_slice()) {
            return Err(bad(
                "built in an older format (FST term dictionary) this version does not read; it is rebuilt",
            ));
        }
        if magic != MAGIC {
            return Err(bad("not an OpenWit index bundle (no magic number at its end)"));
        }
        let len = u64::from_le_bytes(data.as_slice()[n - 16..n - 8].try_into().expect("8 bytes"));
        let start =
            usize::try_from(len).ok().and_then(|l| (n - 16).checked_sub(l)).ok_or_else(|| bad("table too long"))?;
        let table = &data.as_slice()[start..n - 16];
        let toc: Toc = serde_json::from_slice(table).map_err(|e| bad(&e.to_string()))?;
        let mut files = BTreeMap::new();
        for (name, (o, l, raw)) in toc {
            if o.checked_add(l).is_none_or(|end| end > start as u64) {
                return Err(bad(&format!("{name} lies outside the bundle")));
            }
            let stored = data.slice(o as usize..(o + l) as usize);
            let bytes = decompress(&name, stored.as_slice(), raw)?;
            files.insert(name, bytes);
        }
        Ok(BundleDirectory { files: Arc::new(files) })
    }

    /// The names of the files the bundle holds.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The bytes of its files (decompressed).
    pub fn resident_bytes(&self) -> u64 {
        self.files.values().map(|f| f.len() as u64).sum()
    }

    fn file(&self, path: &Path) -> Option<OwnedBytes> {
        let name = path.to_str()?;
        match self.files.get(name) {
            Some(f) => Some(f.clone()),
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
        Ok(path.to_str().is_some_and(|p| self.files.contains_key(p)))
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

/// Decompresses one file of a bundle, which the table says is `raw` bytes long: a damaged table or
/// file is an error, never an allocation the machine cannot make or a file of another length.
fn decompress(name: &str, stored: &[u8], raw: u64) -> Result<OwnedBytes, IndexError> {
    let bad = |m: String| IndexError::Bundle(format!("{name}: {m}"));
    let mut out = Vec::new();
    usize::try_from(raw)
        .ok()
        .and_then(|r| out.try_reserve_exact(r).ok())
        .ok_or_else(|| bad(format!("cannot hold its {raw} bytes")))?;
    let got = zstd::bulk::Decompressor::new()
        .and_then(|mut d| d.decompress_to_buffer(stored, &mut out))
        .map_err(|e| bad(format!("cannot be decompressed ({e})")))?;
    if got as u64 != raw {
        return Err(bad(format!("decompressed to {got} bytes where the table says {raw}")));
    }
    Ok(OwnedBytes::new(out))
}
