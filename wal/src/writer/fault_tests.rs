//! The WAL under disk faults and power cuts, on the lossy test filesystem (a real mount: root and
//! /dev/fuse).

use super::*;
use openwit_lossyfs::{Fault, LossyMount, Op};

fn batch(n: u8) -> WalBatch {
    WalBatch {
        id: vec![n; 16],
        signal: 3,
        tenant: "t".into(),
        receiver: "otlp".into(),
        items: 1,
        payload: vec![n; 100],
        ..Default::default()
    }
}

fn ids(batches: &[WalBatch]) -> Vec<u8> {
    batches.iter().map(|b| b.id[0]).collect()
}

struct Disk {
    mount: LossyMount,
    _dir: tempfile::TempDir,
}

impl Disk {
    fn new() -> Disk {
        let dir = tempfile::tempdir().unwrap();
        let mount = LossyMount::mount(dir.path()).unwrap();
        Disk { mount, _dir: dir }
    }

    fn cfg(&self) -> WalConfig {
        WalConfig { dir: self.mount.path().join("wal"), fsync: true, segment_bytes: 64 << 20, max_disk_bytes: 1 << 30 }
    }

    fn open(&self) -> (Wal, Recovered) {
        Wal::open(self.cfg()).unwrap()
    }
}

/// The WAL's directory must itself survive a cut: its parent is synced by whoever creates it (the daemon's
/// data directory); here the test does it.
fn sync_parent(d: &Disk) {
    std::fs::File::open(d.mount.path()).unwrap().sync_all().unwrap();
}

#[test]
fn a_failed_fdatasync_refuses_the_group_and_it_is_never_replayed_after_a_restart_or_a_cut() {
    let mut d = Disk::new();
    let (mut w, _) = d.open();
    sync_parent(&d);
    w.append_batches(&[batch(1)]).unwrap();
    d.mount.disk().inject(Fault::times(Op::Fsync, ".wal", libc::EIO, 1));
    let e = w.append_batches(&[batch(2), batch(3)]).unwrap_err();
    assert!(e.to_string().contains("Input/output error"), "{e}");
    w.append_batches(&[batch(4)]).unwrap();
    drop(w);
    // A restart without a cut: the refused frames are still in the page cache, and must not come back.
    let (w, rec) = d.open();
    assert_eq!(ids(&rec.pending), vec![1, 4]);
    assert_eq!(rec.voided, 2);
    drop(w);
    // A cut: what was acknowledged is all there, the refused batches still not.
    d.mount.power_cut(|| {}).unwrap();
    let (_, rec) = d.open();
    assert_eq!(ids(&rec.pending), vec![1, 4]);
}

#[test]
fn the_segment_whose_fdatasync_failed_is_never_written_or_synced_again() {
    let d = Disk::new();
    let (mut w, _) = d.open();
    let first = w.active_seq;
    d.mount.disk().inject(Fault::times(Op::Fsync, ".wal", libc::EIO, 1));
    w.append_batches(&[batch(1)]).unwrap_err();
    assert_ne!(w.active_seq, first, "a new segment took over");
    let before = std::fs::metadata(segment_path(&d.cfg().dir, first)).unwrap().len();
    w.append_batches(&[batch(2)]).unwrap();
    w.complete(&[batch(2).id]).unwrap();
    w.sync().unwrap();
    assert_eq!(std::fs::metadata(segment_path(&d.cfg().dir, first)).unwrap().len(), before);
}

#[test]
fn while_the_void_record_cannot_be_made_durable_every_append_is_refused() {
    let d = Disk::new();
    let (mut w, _) = d.open();
    sync_parent(&d);
    w.append_batches(&[batch(1)]).unwrap();
    d.mount.disk().inject(Fault::always(Op::Fsync, ".wal", libc::EIO));
    w.append_batches(&[batch(2)]).unwrap_err();
    for n in 3..6 {
        w.append_batches(&[batch(n)]).unwrap_err();
    }
    d.mount.disk().clear_faults();
    w.append_batches(&[batch(6)]).unwrap();
    drop(w);
    let (_, rec) = d.open();
    assert_eq!(ids(&rec.pending), vec![1, 6], "nothing refused comes back");
}

#[test]
fn a_full_disk_refuses_loses_nothing_and_appends_resume_when_space_returns() {
    let mut d = Disk::new();
    let (mut w, _) = d.open();
    sync_parent(&d);
    w.append_batches(&[batch(1)]).unwrap();
    d.mount.disk().set_full(true);
    let e = w.append_batches(&[batch(2)]).unwrap_err();
    assert!(e.to_string().contains("No space left"), "{e}");
    // Completions fail too; that only means a replay.
    let _ = w.complete(&[batch(1).id]);
    w.append_batches(&[batch(3)]).unwrap_err();
    d.mount.disk().set_full(false);
    w.append_batches(&[batch(4)]).unwrap();
    drop(w);
    d.mount.power_cut(|| {}).unwrap();
    let (_, rec) = d.open();
    assert_eq!(ids(&rec.pending), vec![1, 4]);
    assert_eq!(rec.quarantined_records, 0, "no partial frame was left behind");
}

#[test]
fn a_segment_that_cannot_be_read_at_open_is_quarantined_and_the_rest_replays() {
    let d = Disk::new();
    let mut c = d.cfg();
    // One batch per segment.
    c.segment_bytes = 100;
    {
        let (mut w, _) = Wal::open(c.clone()).unwrap();
        for n in 1..=4 {
            w.append_batches(&[batch(n)]).unwrap();
        }
    }
    let segs: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(&c.dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str().map(String::from))
            .filter(|n| n.ends_with(".wal"))
            .collect();
        v.sort();
        v
    };
    assert!(segs.len() >= 3, "{segs:?}");
    d.mount.disk().inject(Fault::always(Op::Read, &segs[1], libc::EIO));
    let (_, rec) = Wal::open(c.clone()).unwrap();
    assert_eq!(rec.quarantined_segments.len(), 1, "{:?}", rec.quarantined_segments);
    assert_eq!(rec.quarantined_segments[0].name, segs[1]);
    assert!(rec.quarantined_segments[0].reason.contains("Input/output error"));
    assert_eq!(rec.pending.len(), 3, "the other segments' batches replay");
    let moved: Vec<_> = std::fs::read_dir(c.dir.join("quarantine")).unwrap().collect();
    assert_eq!(moved.len(), 1);
    d.mount.disk().clear_faults();
    let (_, rec) = Wal::open(c).unwrap();
    assert!(rec.quarantined_segments.is_empty(), "it does not come back");
}

#[test]
fn a_segment_with_a_damaged_header_is_quarantined_too() {
    let d = Disk::new();
    {
        let (mut w, _) = d.open();
        w.append_batches(&[batch(1)]).unwrap();
    }
    std::fs::write(d.cfg().dir.join("00000000000000000009.wal"), b"OWW").unwrap();
    let (_, rec) = d.open();
    assert_eq!(rec.quarantined_segments.len(), 1);
    assert_eq!(ids(&rec.pending), vec![1]);
}

#[test]
fn a_write_that_fails_half_way_leaves_no_complete_frame_of_its_group_behind() {
    let mut d = Disk::new();
    let (mut w, _) = d.open();
    sync_parent(&d);
    let big = |n: u8, kib: usize| WalBatch { payload: vec![n; kib << 10], ..batch(n) };
    // The kernel hands the write over in requests of up to 128 KiB along page boundaries (the first one up
    // to the end of the segment header's page): the first two carry all of batch 2, the rest fail.
    d.mount.disk().inject(Fault::always(Op::Write, ".wal", libc::ENOSPC).after(2));
    let seg = segment_path(&d.cfg().dir, w.active_seq);
    w.append_batches(&[big(2, 64), big(3, 256)]).unwrap_err();
    d.mount.disk().clear_faults();
    let on_disk = std::fs::read(&seg).unwrap();
    let scan = crate::reader::scan_segment(&on_disk).unwrap();
    assert!(
        scan.records.is_empty() && scan.torn_bytes == 0,
        "the half-written group is cut away: {} records, {} torn bytes",
        scan.records.len(),
        scan.torn_bytes
    );
    w.append_batches(&[batch(4)]).unwrap();
    drop(w);
    let (w, rec) = d.open();
    assert_eq!(ids(&rec.pending), vec![4], "batch 2 was refused with its group");
    drop(w);
    d.mount.power_cut(|| {}).unwrap();
    let (_, rec) = d.open();
    assert_eq!(ids(&rec.pending), vec![4]);
}
