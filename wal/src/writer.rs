//! Appending to the WAL, and recovering it on open.

use crate::format::{
    Appendable, Completion, HEADER_LEN, Record, Voided, WalBatch, header, put_frame, put_frame_with, record::Kind,
};
use crate::reader::{HeaderError, scan_segment};
use prost::Message;
use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// WAL settings.
#[derive(Clone, Debug)]
pub struct WalConfig {
    pub dir: PathBuf,
    /// fdatasync after every group of batches (the default). Off trades durability for speed.
    pub fsync: bool,
    /// A segment is sealed and a new one started past this size.
    pub segment_bytes: u64,
    /// Appends are refused (retryably) while the WAL holds more than this.
    pub max_disk_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O error in {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("WAL segment {path} cannot be read: {source}")]
    Header { path: PathBuf, source: HeaderError },
    #[error(
        "the WAL holds {used} bytes, over its budget of {budget} bytes (wal.max_disk_megabytes); data is refused until exporters catch up and segments are removed"
    )]
    Full { used: u64, budget: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_path_buf(), source }
}

/// What `open` found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Batches without a completion, in WAL order: to be replayed.
    pub pending: Vec<WalBatch>,
    /// The source offsets (Kafka) of every batch still on disk, complete or not, with the receiver
    /// each belongs to: what a receiver must not store again if the source redelivers it.
    pub sources: Vec<(String, crate::format::SourceRange)>,
    pub completed: usize,
    pub quarantined_records: usize,
    /// Segments that could not be read at all, moved to `quarantine/` whole.
    pub quarantined_segments: Vec<QuarantinedSegment>,
    /// Batches whose commit had failed: found on disk, not replayed.
    pub voided: usize,
    pub truncated_bytes: u64,
    pub segments: usize,
}

/// A segment set aside at open because it could not be read.
#[derive(Debug, Clone)]
pub struct QuarantinedSegment {
    /// The segment's file name (`00000000000000000007.wal`).
    pub name: String,
    pub reason: String,
}

/// Numbers for metrics and `wal inspect`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalStats {
    pub disk_bytes: u64,
    pub segments: usize,
    pub pending_batches: usize,
}

struct Segment {
    path: PathBuf,
    bytes: u64,
    /// Batches recorded in this segment that are not complete yet.
    pending: HashSet<Vec<u8>>,
    /// Every batch recorded in this segment (reported when the segment is deleted).
    batches: Vec<Vec<u8>>,
}

/// An open WAL. Not thread-safe: one writer owns it.
pub struct Wal {
    cfg: WalConfig,
    segments: BTreeMap<u64, Segment>,
    active: File,
    active_seq: u64,
    /// Which segment holds each pending batch.
    location: std::collections::HashMap<Vec<u8>, u64>,
    /// The sequence number the next segment gets (past any file a failed attempt may have left).
    next_seq: u64,
    /// The active segment must not be written or synced any more (it filled up, or a write to it could
    /// not be undone, or its fdatasync failed): a new one is started before the next write.
    sealed: bool,
    /// Batches whose commit failed and whose `Voided` record is not durable yet.
    unvoided: Vec<Vec<u8>>,
    /// Batches of segments deleted (at open, at rotation) since the last `collect_garbage` call, which
    /// reports them.
    cleaned: Vec<Vec<u8>>,
}

/// Which half of a write went wrong.
enum WriteFailure {
    Write(WalError),
    Sync(WalError),
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Wal {
    /// Opens (creating if needed) the WAL in `cfg.dir`, recovering what it holds.
    pub fn open(cfg: WalConfig) -> Result<(Wal, Recovered), WalError> {
        std::fs::create_dir_all(&cfg.dir).map_err(io(&cfg.dir))?;
        let mut seqs: Vec<u64> = std::fs::read_dir(&cfg.dir)
            .map_err(io(&cfg.dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".wal")?.parse().ok())
            .collect();
        seqs.sort_unstable();
        let mut rec = Recovered { segments: seqs.len(), ..Default::default() };
        let mut segments = BTreeMap::new();
        let mut batches: Vec<(u64, WalBatch)> = Vec::new();
        let mut done: HashSet<Vec<u8>> = HashSet::new();
        let last = seqs.last().copied();
        let mut voided: HashSet<Vec<u8>> = HashSet::new();
        for seq in &seqs {
            let path = segment_path(&cfg.dir, *seq);
            let read = std::fs::read(&path).map_err(|e| format!("cannot read it: {e}"));
            let (data, scan) = match read.and_then(|d| scan_segment(&d).map(|s| (d, s)).map_err(|e| e.to_string())) {
                Ok(x) => x,
                Err(reason) => {
                    rec.quarantined_segments.push(quarantine_segment(&cfg.dir, &path, reason));
                    continue;
                }
            };
            for (start, end) in &scan.corrupt {
                rec.quarantined_records += 1;
                quarantine(&cfg.dir, &path, *start, &data[*start as usize..*end as usize]);
            }
            if scan.torn_bytes > 0 {
                rec.truncated_bytes += scan.torn_bytes;
                if Some(*seq) == last {
                    tracing::warn!(segment = %path.display(), bytes = scan.torn_bytes, "truncating a torn write at the end of the WAL");
                } else {
                    // A sealed segment should never end torn: keep the bytes for inspection.
                    rec.quarantined_records += 1;
                    quarantine(&cfg.dir, &path, scan.valid_len, &data[scan.valid_len as usize..]);
                }
                // New data always goes to a fresh segment, so a tail that cannot be cut stays harmless.
                let cut = OpenOptions::new().write(true).open(&path).and_then(|f| {
                    f.set_len(scan.valid_len)?;
                    f.sync_all()
                });
                if let Err(e) = cut {
                    tracing::error!(segment = %path.display(), "cannot truncate the torn tail of a WAL segment: {e}");
                }
            }
            for (_, r) in scan.records {
                match r.kind {
                    Some(Kind::Batch(b)) => batches.push((*seq, b)),
                    Some(Kind::Completion(c)) => done.extend(c.ids),
                    Some(Kind::Voided(v)) => voided.extend(v.ids),
                    None => {}
                }
            }
            segments
                .insert(*seq, Segment { path, bytes: scan.valid_len, pending: HashSet::new(), batches: Vec::new() });
        }
        let mut location = std::collections::HashMap::new();
        for (seq, b) in batches {
            if voided.contains(&b.id) {
                // Its request was refused: its offsets were never committed, its data never acknowledged.
                rec.voided += 1;
                continue;
            }
            rec.sources.extend(b.sources.iter().map(|r| (b.receiver.clone(), r.clone())));
            if let Some(s) = segments.get_mut(&seq) {
                s.batches.push(b.id.clone());
            }
            if done.contains(&b.id) {
                rec.completed += 1;
            } else if let Some(s) = segments.get_mut(&seq) {
                s.pending.insert(b.id.clone());
                location.insert(b.id.clone(), seq);
                rec.pending.push(b);
            }
        }
        if rec.quarantined_records > 0 {
            tracing::error!(count = rec.quarantined_records, dir = %cfg.dir.join("quarantine").display(), "corrupt WAL records were quarantined; the rest was recovered");
        }
        // Always write into a fresh segment: recovered segments stay as they were.
        let active_seq = last.map_or(1, |s| s + 1);
        let mut wal = Wal {
            active: create_segment(&cfg.dir, active_seq)?,
            active_seq,
            segments,
            location,
            next_seq: active_seq + 1,
            sealed: false,
            unvoided: Vec::new(),
            cleaned: Vec::new(),
            cfg,
        };
        wal.segments.insert(
            active_seq,
            Segment {
                path: segment_path(&wal.cfg.dir, active_seq),
                bytes: HEADER_LEN as u64,
                pending: HashSet::new(),
                batches: Vec::new(),
            },
        );
        wal.delete_complete_segments()?;
        Ok((wal, rec))
    }

    pub fn stats(&self) -> WalStats {
        WalStats { disk_bytes: self.disk_bytes(), segments: self.segments.len(), pending_batches: self.location.len() }
    }

    pub fn disk_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    /// Writes the batches and makes them durable with one fdatasync (group commit). All or none of
    /// them are accepted: over budget, nothing is written; on an I/O error none of them is ever replayed.
    pub fn append_batches<B: Appendable>(&mut self, batches: &[B]) -> Result<(), WalError> {
        self.writable()?;
        let used = self.disk_bytes();
        if used >= self.cfg.max_disk_bytes {
            return Err(WalError::Full { used, budget: self.cfg.max_disk_bytes });
        }
        let mut buf = Vec::with_capacity(batches.iter().map(Appendable::size_hint).sum());
        for b in batches {
            // Encoded straight into the frame buffer.
            put_frame_with(&mut buf, |out| b.encode_record(out));
        }
        if let Err(failure) = self.write(&buf, self.cfg.fsync) {
            let ids: Vec<Vec<u8>> = batches.iter().map(|b| b.id().to_vec()).collect();
            return Err(self.failed(failure, ids));
        }
        let seq = self.active_seq;
        if let Some(s) = self.segments.get_mut(&seq) {
            for b in batches {
                let id = b.id().to_vec();
                s.pending.insert(id.clone());
                s.batches.push(id.clone());
                self.location.insert(id, seq);
            }
        }
        // The batches are durable: what goes wrong from here must not refuse them.
        self.maybe_rotate();
        Ok(())
    }

    /// Records that these batches are complete. Not synced: a lost completion only causes a replay
    /// that idempotent exporters skip.
    pub fn complete(&mut self, ids: &[Vec<u8>]) -> Result<(), WalError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.writable()?;
        let mut buf = Vec::new();
        put_frame(&mut buf, &Record { kind: Some(Kind::Completion(Completion { ids: ids.to_vec() })) }.encode_to_vec());
        if let Err(failure) = self.write(&buf, false) {
            return Err(self.failed(failure, Vec::new()));
        }
        for id in ids {
            if let Some(seq) = self.location.remove(id)
                && let Some(s) = self.segments.get_mut(&seq)
            {
                s.pending.remove(id);
            }
        }
        self.maybe_rotate();
        Ok(())
    }

    /// Deletes the oldest sealed segments whose batches are all complete, and returns the ids of the
    /// batches they held, with those of segments deleted at open and at rotation since the last call.
    /// Only a prefix is deleted, so a completion or void record is never removed while the batch it
    /// names is still on disk.
    pub fn collect_garbage(&mut self) -> Result<Vec<Vec<u8>>, WalError> {
        self.delete_complete_segments()?;
        Ok(std::mem::take(&mut self.cleaned))
    }

    fn delete_complete_segments(&mut self) -> Result<(), WalError> {
        let mut any = false;
        while let Some((&seq, seg)) = self.segments.iter().next() {
            if seq == self.active_seq || !seg.pending.is_empty() {
                break;
            }
            std::fs::remove_file(&seg.path).map_err(io(&seg.path))?;
            if let Some(seg) = self.segments.remove(&seq) {
                self.cleaned.extend(seg.batches);
            }
            any = true;
        }
        if any {
            sync_dir(&self.cfg.dir)?;
        }
        Ok(())
    }

    /// Reads back a batch that is still pending (to retry it), from the segment that holds it.
    pub fn read_pending(&self, id: &[u8]) -> Result<Option<WalBatch>, WalError> {
        let Some(seg) = self.location.get(id).and_then(|seq| self.segments.get(seq)) else { return Ok(None) };
        let data = std::fs::read(&seg.path).map_err(io(&seg.path))?;
        let scan = scan_segment(&data).map_err(|source| WalError::Header { path: seg.path.clone(), source })?;
        Ok(scan.records.into_iter().find_map(|(_, r)| match r.kind {
            Some(Kind::Batch(b)) if b.id == id => Some(b),
            _ => None,
        }))
    }

    /// Flushes completions to disk (on shutdown).
    pub fn sync(&mut self) -> Result<(), WalError> {
        if self.sealed {
            // Already synced when it filled up, or no longer trusted: nothing to add.
            return Ok(());
        }
        let path = segment_path(&self.cfg.dir, self.active_seq);
        self.active.sync_data().map_err(io(&path))
    }

    fn write(&mut self, buf: &[u8], sync: bool) -> Result<(), WriteFailure> {
        let path = segment_path(&self.cfg.dir, self.active_seq);
        self.active.write_all(buf).map_err(|e| WriteFailure::Write(io(&path)(e)))?;
        if let Some(s) = self.segments.get_mut(&self.active_seq) {
            s.bytes += buf.len() as u64;
        }
        if sync {
            self.active.sync_data().map_err(|e| WriteFailure::Sync(io(&path)(e)))?;
        }
        Ok(())
    }

    /// Makes sure the frames of a failed write (of the batches `ids`) are never replayed, and returns the
    /// error for the caller. After a failed write the segment is cut back to where it was and synced;
    /// after a failed fdatasync, or if that cut fails, the segment is never touched again and the batches
    /// are recorded as voided in a new segment.
    fn failed(&mut self, failure: WriteFailure, ids: Vec<Vec<u8>>) -> WalError {
        let path = segment_path(&self.cfg.dir, self.active_seq);
        let error = match failure {
            WriteFailure::Write(e) => {
                let valid = self.segments.get(&self.active_seq).map_or(HEADER_LEN as u64, |s| s.bytes);
                match self.active.set_len(valid).and_then(|()| self.active.sync_data()) {
                    Ok(()) => return e,
                    Err(cut) => {
                        tracing::error!(segment = %path.display(), "WAL write failed ({e}) and cannot be undone ({cut}); the segment is sealed");
                        e
                    }
                }
            }
            WriteFailure::Sync(e) => {
                tracing::error!(segment = %path.display(), "WAL fdatasync failed ({e}); the segment is sealed and never synced again, its last batches are voided");
                e
            }
        };
        self.sealed = true;
        self.unvoided.extend(ids);
        if let Err(e) = self.writable() {
            tracing::error!("cannot start a new WAL segment ({e}); appends are refused until it can");
        }
        error
    }

    /// Starts a new segment if the active one is sealed, writing the pending `Voided` record into it.
    fn writable(&mut self) -> Result<(), WalError> {
        if !self.sealed {
            return Ok(());
        }
        let seq = self.next_seq;
        // Whatever this attempt leaves behind, the next one uses a new name.
        self.next_seq += 1;
        let path = segment_path(&self.cfg.dir, seq);
        let mut bytes = HEADER_LEN as u64;
        let started = create_segment(&self.cfg.dir, seq).and_then(|mut f| {
            if !self.unvoided.is_empty() {
                let mut buf = Vec::new();
                let record = Record { kind: Some(Kind::Voided(Voided { ids: self.unvoided.clone() })) };
                put_frame(&mut buf, &record.encode_to_vec());
                f.write_all(&buf).and_then(|()| f.sync_data()).map_err(io(&path))?;
                bytes += buf.len() as u64;
            }
            Ok(f)
        });
        let file = match started {
            Ok(f) => f,
            Err(e) => {
                // Not even a header survives a cut unless synced; a partial file is quarantined at open.
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        self.active = file;
        self.active_seq = seq;
        self.segments.insert(seq, Segment { path, bytes, pending: HashSet::new(), batches: Vec::new() });
        self.sealed = false;
        self.unvoided.clear();
        Ok(())
    }

    /// Seals the active segment once it is full and starts the next one. Failures are logged: the data
    /// written so far is durable, and the next write retries.
    fn maybe_rotate(&mut self) {
        let size = self.segments.get(&self.active_seq).map_or(0, |s| s.bytes);
        if size < self.cfg.segment_bytes {
            return;
        }
        let path = segment_path(&self.cfg.dir, self.active_seq);
        // Makes the completion records in it durable; batches were synced when written.
        if let Err(e) = self.active.sync_data() {
            tracing::error!(segment = %path.display(), "WAL fdatasync at rotation failed: {e}");
        }
        self.sealed = true;
        if let Err(e) = self.writable() {
            tracing::error!("cannot start a new WAL segment ({e}); appends are refused until it can");
            return;
        }
        if let Err(e) = self.delete_complete_segments() {
            tracing::error!("WAL janitor at rotation: {e}");
        }
    }
}

fn create_segment(dir: &Path, seq: u64) -> Result<File, WalError> {
    let path = segment_path(dir, seq);
    let mut f = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io(&path))?;
    f.write_all(&header()).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    // The new file's directory entry must be durable before anything in it is acknowledged.
    sync_dir(dir)?;
    Ok(f)
}

/// Moves a segment that cannot be read into `quarantine/`, under a name that never clashes.
fn quarantine_segment(dir: &Path, segment: &Path, reason: String) -> QuarantinedSegment {
    let name = segment.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let qdir = dir.join("quarantine");
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let moved = std::fs::create_dir_all(&qdir)
        .and_then(|()| std::fs::rename(segment, qdir.join(format!("{name}.{stamp}.segment"))))
        .and_then(|()| sync_dir(dir).map_err(std::io::Error::other));
    match moved {
        Ok(()) => {
            tracing::error!(segment = %name, "WAL segment cannot be read ({reason}); moved to quarantine/, the rest replays")
        }
        Err(e) => {
            tracing::error!(segment = %name, "WAL segment cannot be read ({reason}) nor moved to quarantine/ ({e}); skipped, the rest replays")
        }
    }
    QuarantinedSegment { name, reason }
}

fn quarantine(dir: &Path, segment: &Path, offset: u64, bytes: &[u8]) {
    let qdir = dir.join("quarantine");
    let name = format!("{}-{offset}.bad", segment.file_stem().and_then(|s| s.to_str()).unwrap_or("segment"));
    let result = std::fs::create_dir_all(&qdir).and_then(|_| std::fs::write(qdir.join(&name), bytes));
    match result {
        Ok(()) => {
            tracing::error!(segment = %segment.display(), offset, bytes = bytes.len(), file = %name, "corrupt WAL record quarantined")
        }
        Err(e) => {
            tracing::error!(segment = %segment.display(), offset, "corrupt WAL record could not be quarantined: {e}")
        }
    }
}

#[cfg(test)]
mod fault_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(dir: &Path) -> WalConfig {
        WalConfig { dir: dir.to_path_buf(), fsync: true, segment_bytes: 64 << 20, max_disk_bytes: 1 << 30 }
    }

    fn batch(i: u32, payload: Vec<u8>) -> WalBatch {
        WalBatch {
            id: {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                id.to_vec()
            },
            created_unix_ms: 1_700_000_000_000 + i as i64,
            signal: (i % 3) as i32 + 1,
            tenant: format!("t{}", i % 4),
            receiver: "otlp".into(),
            items: i,
            payload,
            ..Default::default()
        }
    }

    fn write_all(dir: &Path, batches: &[WalBatch]) {
        let (mut w, _) = Wal::open(cfg(dir)).unwrap();
        for b in batches {
            w.append_batches(std::slice::from_ref(b)).unwrap();
        }
    }

    #[test]
    fn batches_appended_in_parts_are_read_and_replayed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let whole = [batch(1, b"abcdef".to_vec()), batch(2, Vec::new()), batch(3, vec![7; 5000])];
        let parts: Vec<crate::OutgoingBatch> = whole
            .iter()
            .map(|b| {
                let mut header = b.clone();
                let payload = std::mem::take(&mut header.payload);
                let (a, z) = payload.split_at(payload.len() / 3);
                crate::OutgoingBatch::new(
                    header,
                    vec![bytes::Bytes::copy_from_slice(a), bytes::Bytes::copy_from_slice(z)],
                )
            })
            .collect();
        {
            let (mut w, _) = Wal::open(cfg(dir.path())).unwrap();
            w.append_batches(&parts).unwrap();
            for b in &whole {
                assert_eq!(w.read_pending(&b.id).unwrap().as_ref(), Some(b));
            }
        }
        let (_, rec) = Wal::open(cfg(dir.path())).unwrap();
        assert_eq!(rec.pending, whole);
    }

    fn the_segment(dir: &Path) -> PathBuf {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        v.sort();
        // The first segment holds the data (opening again starts a new, empty one).
        v.remove(0)
    }

    fn copy_dir(from: &Path) -> tempfile::TempDir {
        let to = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                std::fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
            }
        }
        to
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn batches_read_back_as_written(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..20)) {
            let dir = tempfile::tempdir().unwrap();
            let batches: Vec<WalBatch> = payloads.into_iter().enumerate().map(|(i, p)| batch(i as u32, p)).collect();
            write_all(dir.path(), &batches);
            let (_, rec) = Wal::open(cfg(dir.path())).unwrap();
            prop_assert_eq!(rec.pending, batches);
            prop_assert_eq!(rec.quarantined_records, 0);
            prop_assert_eq!(rec.truncated_bytes, 0);
        }

        #[test]
        fn a_single_bit_flip_loses_only_its_own_record(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..200), 3..8),
            which in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let batches: Vec<WalBatch> = payloads.into_iter().enumerate().map(|(i, p)| batch(i as u32, p)).collect();
            write_all(dir.path(), &batches);
            let seg = the_segment(dir.path());
            let mut data = std::fs::read(&seg).unwrap();
            let pos = HEADER_LEN + which.index(data.len() - HEADER_LEN);
            data[pos] ^= 1 << bit;
            std::fs::write(&seg, &data).unwrap();
            let (_, rec) = Wal::open(cfg(dir.path())).unwrap();
            // Every recovered batch is one that was written, unchanged; at most the hit record is lost.
            for b in &rec.pending {
                prop_assert!(batches.contains(b), "a corrupted batch came back");
            }
            prop_assert!(rec.pending.len() + 1 >= batches.len(), "lost {} records for one flipped bit", batches.len() - rec.pending.len());
            if rec.pending.len() < batches.len() {
                prop_assert!(rec.quarantined_records + usize::from(rec.truncated_bytes > 0) >= 1, "loss must be reported");
            }
        }
    }

    #[test]
    fn truncation_at_every_byte_of_the_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<WalBatch> = (0..4).map(|i| batch(i, vec![i as u8; 50 + i as usize])).collect();
        write_all(dir.path(), &batches);
        let seg = the_segment(dir.path());
        let full = std::fs::read(&seg).unwrap();
        // Where the last frame starts: the length of a WAL holding the first three batches.
        let three = tempfile::tempdir().unwrap();
        write_all(three.path(), &batches[..3]);
        let last_start = std::fs::metadata(the_segment(three.path())).unwrap().len() as usize;
        for cut in last_start..full.len() {
            let copy = copy_dir(dir.path());
            let seg_copy = copy.path().join(seg.file_name().unwrap());
            std::fs::write(&seg_copy, &full[..cut]).unwrap();
            let (_, rec) = Wal::open(cfg(copy.path())).unwrap();
            assert_eq!(rec.pending, batches[..3].to_vec(), "cut at {cut}");
            assert_eq!(rec.truncated_bytes as usize, cut - last_start, "cut at {cut}");
            assert_eq!(std::fs::metadata(&seg_copy).unwrap().len() as usize, last_start, "torn tail truncated");
            // And the WAL is usable afterwards.
            let (mut w, _) = Wal::open(cfg(copy.path())).unwrap();
            w.append_batches(&[batch(9, vec![9])]).unwrap();
            drop(w);
            let (_, rec) = Wal::open(cfg(copy.path())).unwrap();
            assert_eq!(rec.pending.len(), 4);
        }
    }

    #[test]
    fn source_offsets_of_complete_and_pending_batches_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let range = |p, a, b| crate::format::SourceRange {
            topic: "spans".into(),
            partition: p,
            first_offset: a,
            last_offset: b,
        };
        let mut a = batch(1, vec![1]);
        a.receiver = "kafka".into();
        a.sources = vec![range(0, 10, 19), range(1, 5, 5)];
        let mut b = batch(2, vec![2]);
        b.receiver = "kafka".into();
        b.sources = vec![range(0, 20, 29)];
        {
            let (mut w, _) = Wal::open(cfg(dir.path())).unwrap();
            w.append_batches(&[a.clone(), b.clone(), batch(3, vec![3])]).unwrap();
            w.complete(std::slice::from_ref(&a.id)).unwrap();
        }
        let (_, rec) = Wal::open(cfg(dir.path())).unwrap();
        assert_eq!(rec.pending.len(), 2, "b and the batch without sources");
        assert_eq!(rec.pending[0].sources, b.sources, "pending batches keep their sources");
        let got: Vec<_> =
            rec.sources.iter().map(|(r, s)| (r.as_str(), s.partition, s.first_offset, s.last_offset)).collect();
        assert_eq!(got, vec![("kafka", 0, 10, 19), ("kafka", 1, 5, 5), ("kafka", 0, 20, 29)]);
    }

    #[test]
    fn corrupt_middle_record_is_quarantined_and_the_rest_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<WalBatch> = (0..5).map(|i| batch(i, vec![7; 100])).collect();
        write_all(dir.path(), &batches);
        let seg = the_segment(dir.path());
        let mut data = std::fs::read(&seg).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        std::fs::write(&seg, &data).unwrap();
        let (_, rec) = Wal::open(cfg(dir.path())).unwrap();
        assert_eq!(rec.pending.len(), 4);
        assert_eq!(rec.quarantined_records, 1);
        let q: Vec<_> = std::fs::read_dir(dir.path().join("quarantine")).unwrap().collect();
        assert_eq!(q.len(), 1, "the bad bytes are kept for inspection");
    }

    #[test]
    fn completions_rotation_and_garbage_collection() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.segment_bytes = 300;
        let (mut w, _) = Wal::open(c.clone()).unwrap();
        let batches: Vec<WalBatch> = (0..10).map(|i| batch(i, vec![1; 100])).collect();
        for b in &batches {
            w.append_batches(std::slice::from_ref(b)).unwrap();
        }
        assert!(w.stats().segments >= 4, "rotated: {:?}", w.stats());
        // Completing a later batch frees nothing while an older one is pending.
        w.complete(&[batches[9].id.clone()]).unwrap();
        assert!(w.collect_garbage().unwrap().is_empty());
        let ids: Vec<Vec<u8>> = batches[..9].iter().map(|b| b.id.clone()).collect();
        w.complete(&ids).unwrap();
        let removed = w.collect_garbage().unwrap();
        let all: Vec<Vec<u8>> = batches.iter().map(|b| b.id.clone()).collect();
        assert!(removed.len() >= 3 && removed.iter().all(|id| all.contains(id)), "{removed:?}");
        assert_eq!(w.stats().pending_batches, 0);
        drop(w);
        let (w, rec) = Wal::open(c).unwrap();
        assert!(rec.pending.is_empty(), "completed batches are not replayed");
        assert!(w.stats().segments <= 2, "{:?}", w.stats());
    }

    #[test]
    fn batches_of_segments_deleted_at_rotation_and_at_open_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        // One batch per segment.
        c.segment_bytes = 100;
        let (mut w, _) = Wal::open(c.clone()).unwrap();
        let (a, b) = (batch(1, vec![1; 100]), batch(2, vec![2; 100]));
        w.append_batches(std::slice::from_ref(&a)).unwrap();
        w.complete(std::slice::from_ref(&a.id)).unwrap();
        // Rotating after this append deletes the first segment.
        w.append_batches(std::slice::from_ref(&b)).unwrap();
        assert_eq!(w.collect_garbage().unwrap(), vec![a.id.clone()]);
        w.complete(std::slice::from_ref(&b.id)).unwrap();
        drop(w);
        // Opening deletes the segment of the completed `b`.
        let (mut w, _) = Wal::open(c).unwrap();
        assert_eq!(w.collect_garbage().unwrap(), vec![b.id]);
    }

    #[test]
    fn pending_batches_can_be_read_back_completed_ones_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(cfg(dir.path())).unwrap();
        let (a, b) = (batch(1, vec![1; 10]), batch(2, vec![2; 10]));
        w.append_batches(&[a.clone(), b.clone()]).unwrap();
        w.complete(std::slice::from_ref(&a.id)).unwrap();
        assert_eq!(w.read_pending(&b.id).unwrap(), Some(b));
        assert_eq!(w.read_pending(&a.id).unwrap(), None);
        assert_eq!(w.read_pending(&[9; 16]).unwrap(), None);
    }

    #[test]
    fn over_budget_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.max_disk_bytes = 500;
        let (mut w, _) = Wal::open(c.clone()).unwrap();
        w.append_batches(&[batch(1, vec![0; 600])]).unwrap();
        let e = w.append_batches(&[batch(2, vec![0; 10])]).unwrap_err();
        assert!(matches!(e, WalError::Full { .. }), "{e}");
        assert!(e.to_string().contains("wal.max_disk_megabytes"));
        w.complete(&[batch(1, vec![]).id]).unwrap();
        drop(w);
        let (mut w, rec) = Wal::open(c).unwrap();
        assert!(rec.pending.is_empty());
        w.append_batches(&[batch(3, vec![0; 10])]).unwrap();
    }
}
