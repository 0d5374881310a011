//! The filesystem's contents in two layers: what programs see (the page cache) and what a power cut would
//! leave (the disk). Writes, creates, renames and unlinks change the first; `fsync` of a file copies its
//! changed bytes to the second, `fsync` of a directory its entries. A cut keeps only the second.

use crate::faults::{Fault, Op};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

/// The root directory's inode number, as FUSE numbers it.
pub const ROOT: u64 = 1;

/// Byte ranges `[start, end)`, kept sorted and merged (appends stay one range).
#[derive(Clone, Debug, Default)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    pub fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        if let Some(last) = self.0.last_mut()
            && last.0 <= start
            && start <= last.1
        {
            last.1 = last.1.max(end);
            return;
        }
        self.0.push((start, end));
        self.0.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(s, e) in &self.0 {
            match merged.last_mut() {
                Some(m) if s <= m.1 => m.1 = m.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.0 = merged;
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().copied()
    }
}

/// A regular file: what reads return, what the disk holds, and what changed since the last sync.
#[derive(Clone, Debug, Default)]
pub struct FileData {
    pub data: Vec<u8>,
    pub durable: Vec<u8>,
    /// Bytes written since the last sync (successful or failed).
    pub dirty: Ranges,
    /// The size changed (truncate, extension) since the last sync.
    pub resized: bool,
}

impl FileData {
    /// A successful sync: the disk gets the current size and every changed byte. Bytes whose sync failed
    /// earlier are not among the changed ones any more: the disk keeps what it had there (zeros past its
    /// old end), as Linux does when it marks pages clean after a failed writeback.
    fn sync(&mut self) {
        let len = self.data.len();
        self.durable.resize(len, 0);
        for (s, e) in self.dirty.iter() {
            let (s, e) = (s as usize, (e as usize).min(len));
            if s < e {
                self.durable[s..e].copy_from_slice(&self.data[s..e]);
            }
        }
        self.dirty.clear();
        self.resized = false;
    }

    /// A failed sync: the changed pages are dropped from the writeback list without reaching the disk.
    fn sync_failed(&mut self) {
        self.dirty.clear();
    }
}

#[derive(Clone, Debug)]
pub enum Content {
    File(FileData),
    Dir { entries: BTreeMap<OsString, u64>, durable: BTreeMap<OsString, u64> },
}

#[derive(Clone, Debug)]
pub struct Inode {
    pub content: Content,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub atime: SystemTime,
    /// Entries naming this inode in the visible tree.
    pub nlink: u32,
    /// Open file handles.
    pub opens: u32,
    /// The last directory and name it was linked under (for fault rules matched by path).
    pub parent: u64,
    pub name: OsString,
}

impl Inode {
    fn new(content: Content, perm: u16, uid: u32, gid: u32, parent: u64, name: &OsStr) -> Inode {
        let now = SystemTime::now();
        Inode {
            content,
            perm,
            uid,
            gid,
            mtime: now,
            ctime: now,
            atime: now,
            nlink: 0,
            opens: 0,
            parent,
            name: name.into(),
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir { .. })
    }

    pub fn size(&self) -> u64 {
        match &self.content {
            Content::File(f) => f.data.len() as u64,
            Content::Dir { entries, .. } => entries.len() as u64,
        }
    }
}

/// Why an operation failed: an errno.
pub type Errno = i32;

/// The whole filesystem.
#[derive(Debug)]
pub struct State {
    pub inodes: HashMap<u64, Inode>,
    next_ino: u64,
    /// Which mount the state belongs to: a cut starts a new generation, and requests from the mount of an
    /// older one fail with EIO, as on a disk without power.
    pub generation: u64,
    /// Set for each request: it comes from the mount of an older generation.
    pub dead: bool,
    /// Full disk: writes that need space fail with ENOSPC.
    pub full: bool,
    pub faults: Vec<Fault>,
    /// How many operations the fault rules failed.
    pub injected: u64,
}

impl State {
    pub fn new(uid: u32, gid: u32) -> State {
        let mut root = Inode::new(
            Content::Dir { entries: BTreeMap::new(), durable: BTreeMap::new() },
            0o755,
            uid,
            gid,
            ROOT,
            OsStr::new(""),
        );
        root.nlink = 1;
        State {
            inodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            generation: 0,
            dead: false,
            full: false,
            faults: Vec::new(),
            injected: 0,
        }
    }

    /// What a power cut leaves: the tree as the disk holds it, reached from the root through synced
    /// entries only, each file with its synced bytes. Faults and the full flag carry over (the same disk).
    pub fn after_cut(&self) -> State {
        let mut out = State::new(0, 0);
        out.next_ino = self.next_ino;
        out.generation = self.generation + 1;
        out.faults = self.faults.clone();
        out.injected = self.injected;
        out.full = self.full;
        out.inodes.clear();
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if out.inodes.contains_key(&ino) {
                continue;
            }
            let Some(old) = self.inodes.get(&ino) else { continue };
            let mut node = old.clone();
            node.opens = 0;
            node.nlink = u32::from(ino == ROOT);
            node.content = match &old.content {
                Content::File(f) => Content::File(FileData {
                    data: f.durable.clone(),
                    durable: f.durable.clone(),
                    ..Default::default()
                }),
                Content::Dir { durable, .. } => {
                    todo.extend(durable.values().copied());
                    Content::Dir { entries: durable.clone(), durable: durable.clone() }
                }
            };
            out.inodes.insert(ino, node);
        }
        // Link counts and parents as the surviving entries say.
        let links: Vec<(u64, u64, OsString)> = out
            .inodes
            .iter()
            .filter_map(|(&dir, n)| match &n.content {
                Content::Dir { entries, .. } => {
                    Some(entries.iter().map(move |(name, &child)| (dir, child, name.clone())))
                }
                _ => None,
            })
            .flatten()
            .collect();
        for (dir, child, name) in links {
            if let Some(n) = out.inodes.get_mut(&child) {
                n.nlink += 1;
                n.parent = dir;
                n.name = name;
            }
        }
        out
    }

    /// The path of an inode from the root, as last linked (`/wal/00000000000000000001.wal`).
    pub fn path(&self, mut ino: u64) -> String {
        let mut parts = Vec::new();
        while ino != ROOT {
            let Some(n) = self.inodes.get(&ino) else { break };
            parts.push(n.name.to_string_lossy().into_owned());
            ino = n.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// Fails the operation if the disk is dead or a fault rule says so.
    pub fn check(&mut self, op: Op, ino: u64) -> Result<(), Errno> {
        if self.dead {
            return Err(libc::EIO);
        }
        if self.faults.is_empty() {
            return Ok(());
        }
        let path = self.path(ino);
        for f in &mut self.faults {
            if f.matches(op, &path) {
                self.injected += 1;
                return Err(f.errno);
            }
        }
        Ok(())
    }

    pub fn node(&self, ino: u64) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(libc::ENOENT)
    }

    pub fn node_mut(&mut self, ino: u64) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn entries(&self, dir: u64) -> Result<&BTreeMap<OsString, u64>, Errno> {
        match &self.node(dir)?.content {
            Content::Dir { entries, .. } => Ok(entries),
            Content::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        let node = self.node_mut(dir)?;
        node.mtime = SystemTime::now();
        match &mut node.content {
            Content::Dir { entries, .. } => Ok(entries),
            Content::File(_) => Err(libc::ENOTDIR),
        }
    }

    pub fn lookup(&self, dir: u64, name: &OsStr) -> Result<u64, Errno> {
        self.entries(dir)?.get(name).copied().ok_or(libc::ENOENT)
    }

    /// Creates a file or directory `name` in `dir`.
    pub fn create(
        &mut self,
        dir: u64,
        name: &OsStr,
        is_dir: bool,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> Result<u64, Errno> {
        self.check(if is_dir { Op::Mkdir } else { Op::Create }, dir)?;
        if self.entries(dir)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let content = if is_dir {
            Content::Dir { entries: BTreeMap::new(), durable: BTreeMap::new() }
        } else {
            Content::File(FileData::default())
        };
        let mut node = Inode::new(content, perm, uid, gid, dir, name);
        node.nlink = 1;
        self.inodes.insert(ino, node);
        self.entries_mut(dir)?.insert(name.into(), ino);
        Ok(ino)
    }

    /// Removes the entry `name` from `dir` (a file, or an empty directory when `dir_only`).
    pub fn remove(&mut self, dir: u64, name: &OsStr, want_dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(dir, name)?;
        self.check(Op::Unlink, ino)?;
        let node = self.node(ino)?;
        match (&node.content, want_dir) {
            (Content::Dir { entries, .. }, true) if !entries.is_empty() => return Err(libc::ENOTEMPTY),
            (Content::Dir { .. }, false) => return Err(libc::EISDIR),
            (Content::File(_), true) => return Err(libc::ENOTDIR),
            _ => {}
        }
        self.entries_mut(dir)?.remove(name);
        let node = self.node_mut(ino)?;
        node.nlink = node.nlink.saturating_sub(1);
        node.ctime = SystemTime::now();
        self.forget_if_unused(ino);
        Ok(())
    }

    pub fn rename(
        &mut self,
        dir: u64,
        name: &OsStr,
        new_dir: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(dir, name)?;
        self.check(Op::Rename, ino)?;
        self.entries(new_dir)?;
        let replaced = self.entries(new_dir)?.get(new_name).copied();
        if let Some(old) = replaced {
            if old == ino {
                return Ok(());
            }
            if no_replace {
                return Err(libc::EEXIST);
            }
            let moving_dir = self.node(ino)?.is_dir();
            match &self.node(old)?.content {
                Content::Dir { entries, .. } if !moving_dir || !entries.is_empty() => {
                    return Err(if moving_dir { libc::ENOTEMPTY } else { libc::EISDIR });
                }
                Content::File(_) if moving_dir => return Err(libc::ENOTDIR),
                _ => {}
            }
        }
        self.entries_mut(dir)?.remove(name);
        self.entries_mut(new_dir)?.insert(new_name.into(), ino);
        let node = self.node_mut(ino)?;
        node.parent = new_dir;
        node.name = new_name.into();
        node.ctime = SystemTime::now();
        if let Some(old) = replaced {
            let n = self.node_mut(old)?;
            n.nlink = n.nlink.saturating_sub(1);
            self.forget_if_unused(old);
        }
        Ok(())
    }

    pub fn read(&mut self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        self.check(Op::Read, ino)?;
        match &self.node(ino)?.content {
            Content::File(f) => {
                let start = (offset as usize).min(f.data.len());
                let end = (start + size as usize).min(f.data.len());
                Ok(f.data[start..end].to_vec())
            }
            Content::Dir { .. } => Err(libc::EISDIR),
        }
    }

    pub fn write(&mut self, ino: u64, offset: u64, buf: &[u8]) -> Result<u32, Errno> {
        self.check(Op::Write, ino)?;
        let full = self.full;
        let node = self.node_mut(ino)?;
        let Content::File(f) = &mut node.content else { return Err(libc::EISDIR) };
        let end = offset as usize + buf.len();
        if full && end > f.data.len() {
            return Err(libc::ENOSPC);
        }
        if end > f.data.len() {
            f.data.resize(end, 0);
            f.resized = true;
        }
        f.data[offset as usize..end].copy_from_slice(buf);
        f.dirty.add(offset, end as u64);
        node.mtime = SystemTime::now();
        Ok(buf.len() as u32)
    }

    pub fn truncate(&mut self, ino: u64, size: u64) -> Result<(), Errno> {
        // Shrinking needs no space: a full or failing-writes disk still does it.
        if size > self.node(ino)?.size() {
            self.check(Op::Write, ino)?;
        } else if self.dead {
            return Err(libc::EIO);
        }
        let full = self.full;
        let node = self.node_mut(ino)?;
        let Content::File(f) = &mut node.content else { return Err(libc::EISDIR) };
        if full && size as usize > f.data.len() {
            return Err(libc::ENOSPC);
        }
        let old = f.data.len() as u64;
        f.data.resize(size as usize, 0);
        if size > old {
            f.dirty.add(old, size);
        }
        f.resized = true;
        node.mtime = SystemTime::now();
        Ok(())
    }

    /// `fsync`/`fdatasync` of a file, or `fsync` of a directory.
    pub fn fsync(&mut self, ino: u64) -> Result<(), Errno> {
        let is_dir = self.node(ino)?.is_dir();
        let result = self.check(if is_dir { Op::Fsyncdir } else { Op::Fsync }, ino);
        let node = self.node_mut(ino)?;
        match &mut node.content {
            Content::File(f) => match result {
                Ok(()) => f.sync(),
                Err(_) => f.sync_failed(),
            },
            Content::Dir { entries, durable } => {
                if result.is_ok() {
                    let gone: Vec<u64> =
                        durable.values().filter(|c| !entries.values().any(|e| e == *c)).copied().collect();
                    *durable = entries.clone();
                    for ino in gone {
                        self.forget_if_unused(ino);
                    }
                }
            }
        }
        result
    }

    pub fn opened(&mut self, ino: u64) {
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.opens += 1;
        }
    }

    pub fn released(&mut self, ino: u64) {
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.opens = n.opens.saturating_sub(1);
        }
        self.forget_if_unused(ino);
    }

    /// An unlinked, closed file no longer needs what programs saw of it. What it has on disk stays while a
    /// synced entry still names it (an unlink that was never synced comes back after a cut); once none
    /// does, the inode is gone.
    fn forget_if_unused(&mut self, ino: u64) {
        let Some(n) = self.inodes.get(&ino) else { return };
        if n.nlink > 0 || n.opens > 0 || ino == ROOT {
            return;
        }
        let durably_linked = self.inodes.values().any(|d| match &d.content {
            Content::Dir { durable, .. } => durable.values().any(|&c| c == ino),
            Content::File(_) => false,
        });
        if !durably_linked {
            self.inodes.remove(&ino);
        } else if let Some(Inode { content: Content::File(f), .. }) = self.inodes.get_mut(&ino) {
            f.data = Vec::new();
            f.dirty.clear();
        }
    }

    /// Bytes held in memory, both layers (for the statfs figures).
    pub fn bytes(&self) -> u64 {
        self.inodes
            .values()
            .map(|n| match &n.content {
                Content::File(f) => (f.data.len() + f.durable.len()) as u64,
                Content::Dir { .. } => 0,
            })
            .sum()
    }
}
