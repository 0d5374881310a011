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
    let dir = path.parent().filter(|q| !q.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_dir_all_durably(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
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
}
