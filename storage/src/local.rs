//! Local files that must survive a power cut: a file's bytes are durable after its fsync, its name after
//! its directory's fsync, and a new directory's name after its parent's. Everything OpenWit creates on
//! local disk before it acknowledges or records anything goes through here.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Makes a directory's entries (files created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// `create_dir_all`, then the parent of every directory it created synced, so that the new directories
/// are still there after a power cut.
pub fn create_dir_all_durably(dir: &Path) -> std::io::Result<()> {
    let mut created: Vec<PathBuf> = Vec::new();
    let mut d = Some(dir);
    while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
        if p.exists() {
            break;
        }
        created.push(p.to_path_buf());
        d = p.parent();
    }
    std::fs::create_dir_all(dir)?;
    // Outermost first: a parent's entry is durable before its children's are made so.
    for p in created.iter().rev() {
        sync_dir(p.parent().filter(|q| !q.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Writes a small file whole, durably: a temporary file written and synced, renamed over `path`, the
/// directory synced. A power cut leaves either the old content or the new one.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_durably_with(path, |f| f.write_all(bytes))
}

/// As [`write_durably`], the content written by `fill` as it is made (a file too large to hold whole in
/// memory); `fill`'s error leaves `path` as it was.
pub fn write_durably_with<T, E: From<std::io::Error>>(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<T, E>,
) -> Result<T, E> {
    let dir = path.parent().filter(|q| !q.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_dir_all_durably(dir)?;
    // `name.tmp` beside `name` (not `name` with its extension replaced, which may be another file's).
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let filled = fill(&mut f).and_then(|v| {
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(v)
    });
    let v = match filled {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)?;
    Ok(v)
}

/// A local file's size and last 8 bytes (how a stored file is told from another without reading it).
pub fn size_and_tail(path: &Path) -> std::io::Result<(u64, [u8; 8])> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let mut tail = [0u8; 8];
    if size >= 8 {
        f.seek(SeekFrom::End(-8))?;
        f.read_exact(&mut tail)?;
    }
    Ok((size, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openwit_lossyfs::LossyMount;

    #[test]
    fn created_directories_and_written_files_survive_a_power_cut() {
        let backing = tempfile::tempdir().unwrap();
        let mut disk = LossyMount::mount(backing.path()).unwrap();
        let deep = disk.path().join("a/b/c");
        create_dir_all_durably(&deep).unwrap();
        write_durably(&deep.join("node_id"), b"n1").unwrap();
        std::fs::create_dir_all(disk.path().join("plain/x")).unwrap();
        disk.power_cut(|| {}).unwrap();
        assert_eq!(std::fs::read(deep.join("node_id")).unwrap(), b"n1");
        assert!(!disk.path().join("plain").exists(), "the lossy disk forgets what create_dir_all alone made");
    }

    #[test]
    fn a_file_written_as_it_is_made_replaces_the_old_one_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tantivy");
        // A directory named as the file with another extension (the indexer's scratch) is no obstacle.
        std::fs::create_dir(dir.path().join("x.tmp")).unwrap();
        write_durably_with(&path, |w| w.write_all(b"first")).unwrap();
        let failed = write_durably_with(&path, |w| {
            w.write_all(b"half")?;
            Err::<(), _>(std::io::Error::other("the build failed"))
        });
        assert_eq!(failed.unwrap_err().to_string(), "the build failed");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let mut names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["x.tantivy", "x.tmp"], "no temporary file is left");
        assert_eq!(size_and_tail(&path).unwrap(), (5, [0; 8]), "shorter than 8 bytes: no tail");
    }
}
