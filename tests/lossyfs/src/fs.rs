//! The FUSE side: kernel requests translated into operations on the shared [`State`].

use crate::state::{Content, Inode, State};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// Nothing is cached by the kernel: every lookup and attribute comes from the state, which a cut replaces.
const TTL: Duration = Duration::ZERO;

/// A directory's entries: inode, kind, name (`.` and `..` first).
pub type Listing = Vec<(u64, FileType, OsString)>;

pub struct LossyFs {
    pub state: Arc<Mutex<State>>,
    /// The state's generation when this was mounted.
    pub generation: u64,
    /// Each open directory's entries as they were when it was read from the start: a listing read in
    /// several calls resumes by position, and positions in the live entries shift when a name is added
    /// or removed before them, which returned an entry twice (an index file `<file>.tantivy` created
    /// beside its file while a test listed the directory) or skipped one. A real filesystem's cookies
    /// are stable; this is how this one keeps them so.
    pub listings: Mutex<HashMap<u64, Listing>>,
    pub next_handle: AtomicU64,
}

fn err(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn attr(ino: u64, n: &Inode) -> FileAttr {
    let size = n.size();
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: n.atime,
        mtime: n.mtime,
        ctime: n.ctime,
        crtime: n.ctime,
        kind: if n.is_dir() { FileType::Directory } else { FileType::RegularFile },
        perm: n.perm,
        nlink: n.nlink.max(1),
        uid: n.uid,
        gid: n.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl LossyFs {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a state that is still consistent enough for a test tool.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.dead = st.generation != self.generation;
        st
    }

    fn entry(&self, reply: ReplyEntry, result: Result<u64, i32>) {
        let st = self.state();
        match result.and_then(|ino| st.node(ino).map(|n| attr(ino, n))) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(err(e)),
        }
    }
}

fn empty(reply: ReplyEmpty, result: Result<(), i32>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(err(e)),
    }
}

impl Filesystem for LossyFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // Large writes reach the filesystem in several requests, so a fault can hit the middle of one, as
        // a disk that fills up mid-write does.
        let _ = config.set_max_write(128 << 10);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = {
            let st = self.state();
            if st.dead { Err(libc::EIO) } else { st.lookup(parent.0, name) }
        };
        self.entry(reply, found)
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let st = self.state();
        match st.node(ino.0) {
            Ok(n) if !st.dead => reply.attr(&TTL, &attr(ino.0, n)),
            Ok(_) => reply.error(Errno::EIO),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut st = self.state();
        let result = (|| {
            if st.dead {
                return Err(libc::EIO);
            }
            if let Some(size) = size {
                st.truncate(ino.0, size)?;
            }
            let n = st.node_mut(ino.0)?;
            if let Some(m) = mode {
                n.perm = (m & 0o7777) as u16;
            }
            if let Some(u) = uid {
                n.uid = u;
            }
            if let Some(g) = gid {
                n.gid = g;
            }
            if let Some(t) = atime {
                n.atime = time(t);
            }
            if let Some(t) = mtime {
                n.mtime = time(t);
            }
            n.ctime = SystemTime::now();
            Ok(attr(ino.0, n))
        })();
        match result {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let made = self.state().create(parent.0, name, true, (mode & !umask & 0o7777) as u16, req.uid(), req.gid());
        self.entry(reply, made)
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.state().remove(parent.0, name, false))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.state().remove(parent.0, name, true))
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        empty(reply, self.state().rename(parent.0, name, newparent.0, newname, no_replace))
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut st = self.state();
        let result = (|| {
            if st.dead {
                return Err(libc::EIO);
            }
            if st.node(ino.0)?.is_dir() {
                return Err(libc::EISDIR);
            }
            if flags.0 & libc::O_TRUNC != 0 {
                st.truncate(ino.0, 0)?;
            }
            st.opened(ino.0);
            Ok(())
        })();
        match result {
            Ok(()) => reply.opened(FileHandle(ino.0), FopenFlags::empty()),
            Err(e) => reply.error(err(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut st = self.state();
        let result = match st.lookup(parent.0, name) {
            Ok(_) if flags & libc::O_EXCL != 0 => Err(libc::EEXIST),
            Ok(ino) if flags & libc::O_TRUNC != 0 => st.truncate(ino, 0).map(|()| ino),
            Ok(ino) => Ok(ino),
            Err(_) => st.create(parent.0, name, false, (mode & !umask & 0o7777) as u16, req.uid(), req.gid()),
        };
        match result.and_then(|ino| st.node(ino).map(|n| (ino, attr(ino, n)))) {
            Ok((ino, a)) => {
                st.opened(ino);
                reply.created(&TTL, &a, Generation(0), FileHandle(ino), FopenFlags::empty())
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.state().read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(err(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.state().write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock: fuser::LockOwner, reply: ReplyEmpty) {
        let dead = self.state().dead;
        empty(reply, if dead { Err(libc::EIO) } else { Ok(()) })
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.state().released(ino.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        empty(reply, self.state().fsync(ino.0))
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let st = self.state();
        match st.node(ino.0) {
            Ok(n) if n.is_dir() && !st.dead => {
                reply.opened(FileHandle(self.next_handle.fetch_add(1, Ordering::Relaxed)), FopenFlags::empty())
            }
            Ok(_) if st.dead => reply.error(Errno::EIO),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut listings = self.listings.lock().unwrap_or_else(|p| p.into_inner());
        if offset == 0 || !listings.contains_key(&fh.0) {
            let st = self.state();
            if st.dead {
                return reply.error(Errno::EIO);
            }
            let node = match st.node(ino.0) {
                Ok(n) => n,
                Err(e) => return reply.error(err(e)),
            };
            let Content::Dir { entries, .. } = &node.content else { return reply.error(Errno::ENOTDIR) };
            let mut all: Listing = vec![
                (ino.0, FileType::Directory, OsString::from(".")),
                (node.parent, FileType::Directory, OsString::from("..")),
            ];
            for (name, &child) in entries {
                let kind = match st.inodes.get(&child) {
                    Some(c) if c.is_dir() => FileType::Directory,
                    _ => FileType::RegularFile,
                };
                all.push((child, kind, name.clone()));
            }
            listings.insert(fh.0, all);
        }
        let all = &listings[&fh.0];
        for (i, (child, kind, name)) in all.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*child), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok()
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.listings.lock().unwrap_or_else(|p| p.into_inner()).remove(&fh.0);
        reply.ok()
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        empty(reply, self.state().fsync(ino.0))
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let st = self.state();
        let bsize = 4096u64;
        let used = st.bytes() / bsize;
        let total = (64u64 << 30) / bsize;
        let free = if st.full { 0 } else { total.saturating_sub(used) };
        reply.statfs(total, free, free, 1 << 20, 1 << 20, bsize as u32, 255, bsize as u32);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
