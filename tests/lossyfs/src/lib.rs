//! A filesystem for testing durability: it keeps everything in memory in two layers, what programs see and
//! what a disk would hold after a power cut, and moves data from the first to the second only on `fsync`
//! (of the file for its bytes, of the directory for its entries: creates, renames, unlinks). A cut
//! discards the first layer, as losing power discards the page cache; a program that forgot an `fsync`
//! finds its data gone after the restart, where a `kill -9` would have left it in place.
//!
//! It also fails operations on command ([`Fault`]): `fsync` with EIO (after which, as on Linux, the
//! bytes that were being written are never written unless written again), `write` with ENOSPC
//! ([`Disk::set_full`]), `read` with EIO.
//!
//! Mounted with FUSE through `fuser` (the mount(2) path: root and `/dev/fuse`, no libfuse or fusermount).
//! Attributes and entries are not cached by the kernel, so every answer comes from the current state.
//!
//! ```no_run
//! # fn run() -> std::io::Result<()> {
//! let mut fs = openwit_lossyfs::LossyMount::mount(std::path::Path::new("/tmp/disk"))?;
//! std::fs::write(fs.path().join("a"), b"never synced")?;
//! fs.power_cut(|| { /* kill whatever runs on the disk */ })?;
//! assert!(!fs.path().join("a").exists());
//! # Ok(()) }
//! ```

mod faults;
mod fs;
mod state;

pub use faults::{Fault, Op};

use fuser::{BackgroundSession, Config, MountOption};
use state::State;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A handle on the disk's state, to inject faults while something runs on it.
#[derive(Clone)]
pub struct Disk {
    state: Arc<Mutex<State>>,
}

impl Disk {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a fault rule; rules are checked in the order they were added.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Adds several fault rules.
    pub fn inject_all(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state().faults.extend(faults);
    }

    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// A full disk: writes that need space fail with ENOSPC (overwrites in place still work).
    pub fn set_full(&self, full: bool) {
        self.state().full = full;
    }

    /// How many operations fault rules have failed so far.
    pub fn injected(&self) -> u64 {
        self.state().injected
    }
}

/// The filesystem, mounted.
pub struct LossyMount {
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
    state: Arc<Mutex<State>>,
}

impl LossyMount {
    /// Mounts an empty filesystem on `mountpoint` (an existing, empty directory).
    pub fn mount(mountpoint: &Path) -> io::Result<LossyMount> {
        // The root belongs to whoever mounts it, so that the tests' processes can write to it.
        // SAFETY: getuid/getgid cannot fail and have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let state = Arc::new(Mutex::new(State::new(uid, gid)));
        let mut m = LossyMount { mountpoint: mountpoint.to_path_buf(), session: None, state };
        m.start()?;
        Ok(m)
    }

    fn start(&mut self) -> io::Result<()> {
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("lossyfs".into()), MountOption::Subtype("lossyfs".into())];
        let generation = self.state.lock().unwrap_or_else(|p| p.into_inner()).generation;
        let fs = fs::LossyFs {
            state: self.state.clone(),
            generation,
            listings: Default::default(),
            next_handle: std::sync::atomic::AtomicU64::new(1),
        };
        let session = fuser::spawn_mount(fs, &self.mountpoint, &config).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot mount the lossy test filesystem on {}: {e} (it needs /dev/fuse and root, or CAP_SYS_ADMIN)",
                    self.mountpoint.display()
                ),
            )
        })?;
        self.session = Some(session);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    pub fn disk(&self) -> Disk {
        Disk { state: self.state.clone() }
    }

    /// Cuts the power: from this instant every operation fails with EIO and nothing more reaches the
    /// disk; `stop` then ends what runs on it (a SIGKILL); then the filesystem is mounted again holding
    /// only what was synced before the cut. Whatever still has files open on the old mount keeps getting
    /// EIO from it.
    pub fn power_cut(&mut self, stop: impl FnOnce()) -> io::Result<()> {
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let survived = st.after_cut();
            *st = survived;
        }
        stop();
        self.unmount()?;
        self.start()
    }

    /// Detaches the mount (lazily: a process that still holds files on it does not keep it busy) and lets
    /// its session thread end when the kernel lets go of it.
    fn unmount(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else { return Ok(()) };
        let path = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: a valid NUL-terminated path; umount2 has no other preconditions.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("cannot unmount {}: {e}", self.mountpoint.display())));
        }
        drop(session);
        Ok(())
    }
}

impl Drop for LossyMount {
    fn drop(&mut self) {
        let _ = self.unmount();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{File, OpenOptions};
    use std::io::{Read, Write};

    fn mounted() -> (tempfile::TempDir, LossyMount) {
        let dir = tempfile::tempdir().unwrap();
        let m = LossyMount::mount(dir.path()).unwrap();
        (dir, m)
    }

    fn sync_dir(p: &Path) {
        File::open(p).unwrap().sync_all().unwrap();
    }

    fn read(p: &Path) -> Vec<u8> {
        std::fs::read(p).unwrap()
    }

    #[test]
    fn a_directory_listed_while_names_are_added_before_the_reader_returns_no_entry_twice() {
        let (_d, m) = mounted();
        let dir = m.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        // Enough long names that one listing takes several requests of the kernel.
        let long = "x".repeat(120);
        for i in 0..1500 {
            File::create(dir.join(format!("m{i:05}-{long}"))).unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        let mut listing = std::fs::read_dir(&dir).unwrap();
        let first = listing.next().unwrap().unwrap().file_name();
        seen.insert(first);
        // Names that sort before everything read so far, as an index file lands beside its file.
        for i in 0..300 {
            File::create(dir.join(format!("a{i:05}-{long}"))).unwrap();
        }
        for e in listing {
            let name = e.unwrap().file_name();
            assert!(seen.insert(name.clone()), "{name:?} listed twice");
        }
        let old = seen.iter().filter(|n| n.to_string_lossy().starts_with('m')).count();
        assert_eq!(old, 1500, "every name there when the listing began is listed once");
    }

    #[test]
    fn a_write_without_sync_is_gone_after_a_cut() {
        let (_d, mut m) = mounted();
        let p = m.path().join("f");
        File::create(&p).unwrap();
        sync_dir(m.path());
        std::fs::write(&p, b"unsynced").unwrap();
        assert_eq!(read(&p), b"unsynced", "visible before the cut");
        m.power_cut(|| {}).unwrap();
        assert_eq!(read(&p), b"", "the entry was synced, the bytes were not");
    }

    #[test]
    fn a_synced_write_stays_and_later_unsynced_bytes_do_not() {
        let (_d, mut m) = mounted();
        let p = m.path().join("f");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"durable").unwrap();
        f.sync_data().unwrap();
        sync_dir(m.path());
        f.write_all(b" and not").unwrap();
        drop(f);
        m.power_cut(|| {}).unwrap();
        assert_eq!(read(&p), b"durable");
    }

    #[test]
    fn a_created_file_without_a_directory_sync_is_gone() {
        let (_d, mut m) = mounted();
        let p = m.path().join("f");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"data").unwrap();
        f.sync_all().unwrap();
        drop(f);
        m.power_cut(|| {}).unwrap();
        assert!(!p.exists(), "its entry was never synced");
    }

    #[test]
    fn a_rename_without_a_directory_sync_is_gone() {
        let (_d, mut m) = mounted();
        let (tmp, fin) = (m.path().join("f.tmp"), m.path().join("f"));
        let mut f = File::create(&tmp).unwrap();
        f.write_all(b"data").unwrap();
        f.sync_all().unwrap();
        sync_dir(m.path());
        std::fs::rename(&tmp, &fin).unwrap();
        m.power_cut(|| {}).unwrap();
        assert!(!fin.exists() && read(&tmp) == b"data", "the old name is back");

        std::fs::rename(&tmp, &fin).unwrap();
        sync_dir(m.path());
        m.power_cut(|| {}).unwrap();
        assert!(!tmp.exists() && read(&fin) == b"data", "a synced rename stays");
    }

    #[test]
    fn an_unlink_without_a_directory_sync_comes_back_with_its_synced_bytes() {
        let (_d, mut m) = mounted();
        let p = m.path().join("f");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"kept").unwrap();
        f.sync_all().unwrap();
        sync_dir(m.path());
        drop(f);
        std::fs::remove_file(&p).unwrap();
        m.power_cut(|| {}).unwrap();
        assert_eq!(read(&p), b"kept");
        std::fs::remove_file(&p).unwrap();
        sync_dir(m.path());
        m.power_cut(|| {}).unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn directories_need_their_parent_synced() {
        let (_d, mut m) = mounted();
        let sub = m.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("f"), b"x").unwrap();
        sync_dir(&sub);
        m.power_cut(|| {}).unwrap();
        assert!(!m.path().join("a").exists());
    }

    #[test]
    fn bytes_whose_fsync_failed_never_reach_the_disk_even_after_a_later_successful_fsync() {
        let (_d, mut m) = mounted();
        let p = m.path().join("seg.wal");
        let mut f = File::create(&p).unwrap();
        sync_dir(m.path());
        f.write_all(b"AAAA").unwrap();
        f.sync_data().unwrap();
        m.disk().inject(Fault::times(Op::Fsync, ".wal", libc::EIO, 1));
        f.write_all(b"BBBB").unwrap();
        let e = f.sync_data().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        assert_eq!(m.disk().injected(), 1);
        f.write_all(b"CCCC").unwrap();
        f.sync_data().unwrap();
        let mut seen = Vec::new();
        File::open(&p).unwrap().read_to_end(&mut seen).unwrap();
        assert_eq!(seen, b"AAAABBBBCCCC", "the page cache still shows them");
        drop(f);
        m.power_cut(|| {}).unwrap();
        assert_eq!(read(&p), b"AAAA\0\0\0\0CCCC", "the failed bytes are a hole on disk");
    }

    #[test]
    fn a_full_disk_refuses_writes_until_space_returns_and_faults_fail_reads() {
        let (_d, m) = mounted();
        let p = m.path().join("f");
        let mut f = OpenOptions::new().create(true).append(true).open(&p).unwrap();
        m.disk().set_full(true);
        let e = f.write_all(b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        m.disk().set_full(false);
        f.write_all(b"x").unwrap();
        m.disk().inject(Fault::always(Op::Read, "/f", libc::EIO));
        let e = std::fs::read(&p).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        m.disk().clear_faults();
        assert_eq!(read(&p), b"x");
    }

    #[test]
    fn after_the_cut_instant_nothing_reaches_the_disk() {
        let (_d, mut m) = mounted();
        let p = m.path().join("f");
        let mut f = File::create(&p).unwrap();
        sync_dir(m.path());
        let mut late = None;
        m.power_cut(|| {
            // What runs on the disk between the cut and its end fails.
            late =
                Some((f.write_all(b"late").map_err(|e| e.raw_os_error()), f.sync_data().map_err(|e| e.raw_os_error())));
        })
        .unwrap();
        assert_eq!(late, Some((Err(Some(libc::EIO)), Err(Some(libc::EIO)))));
        assert_eq!(read(&p), b"");
    }
}
