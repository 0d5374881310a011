//! `openwit wal inspect DIR`: what a WAL directory holds, without changing it.

use openwit_wal::{record::Kind, scan_segment};
use std::collections::HashSet;
use std::fmt::Write;
use std::path::Path;

/// A text report of every segment and record in `dir`.
pub fn inspect(dir: &Path) -> anyhow::Result<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read WAL directory {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    names.sort();
    let mut scans = Vec::new();
    for p in &names {
        let data = std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
        scans.push((p, data.len(), scan_segment(&data)));
    }
    let ids_of = |want_void: bool| -> HashSet<Vec<u8>> {
        scans
            .iter()
            .filter_map(|(_, _, s)| s.as_ref().ok())
            .flat_map(|s| &s.records)
            .filter_map(|(_, r)| match &r.kind {
                Some(Kind::Completion(c)) if !want_void => Some(c.ids.clone()),
                Some(Kind::Voided(v)) if want_void => Some(v.ids.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    };
    let (completed, voided) = (ids_of(false), ids_of(true));
    let mut out = String::new();
    let (mut batches, mut pending, mut items_pending) = (0usize, 0usize, 0u64);
    for (path, size, scan) in &scans {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let scan = match scan {
            Ok(s) => s,
            Err(e) => {
                let _ = writeln!(out, "segment {name}: {size} bytes, UNREADABLE: {e}");
                continue;
            }
        };
        let _ = writeln!(
            out,
            "segment {name}: {size} bytes, {} records, CRC {}{}",
            scan.records.len(),
            if scan.corrupt.is_empty() {
                "ok".to_string()
            } else {
                format!("FAILED for {} range(s)", scan.corrupt.len())
            },
            if scan.torn_bytes > 0 { format!(", torn tail of {} bytes", scan.torn_bytes) } else { String::new() }
        );
        for (start, end) in &scan.corrupt {
            let _ = writeln!(
                out,
                "  @{start}: CRC mismatch, {} bytes skipped (quarantined when the daemon opens the WAL)",
                end - start
            );
        }
        for (offset, r) in &scan.records {
            match &r.kind {
                Some(Kind::Batch(b)) => {
                    batches += 1;
                    let done = completed.contains(&b.id);
                    let void = voided.contains(&b.id);
                    if !done && !void {
                        pending += 1;
                        items_pending += u64::from(b.items);
                    }
                    let id = openwit_core::BatchId::from_slice(&b.id).map_or_else(|| hex_of(&b.id), |i| i.to_string());
                    let signal = crate::durable::signal_of(b.signal).map_or("?", |s| s.as_str());
                    let _ = writeln!(
                        out,
                        "  @{offset} batch {id} tenant={} signal={signal} receiver={} items={} bytes={} created_ms={} {}",
                        b.tenant,
                        b.receiver,
                        b.items,
                        b.payload.len(),
                        b.created_unix_ms,
                        if void {
                            "VOIDED (its commit failed and its requests were refused; never replayed)"
                        } else if done {
                            "complete"
                        } else {
                            "PENDING"
                        }
                    );
                    // Where a Kafka batch came from: what Kafka would redeliver until it is committed.
                    if !b.sources.is_empty() {
                        let runs: Vec<String> = b
                            .sources
                            .iter()
                            .map(|r| format!("{}/{}@{}..={}", r.topic, r.partition, r.first_offset, r.last_offset))
                            .collect();
                        let _ = writeln!(out, "      sources {}", runs.join(" "));
                    }
                }
                Some(Kind::Completion(c)) => {
                    let _ = writeln!(out, "  @{offset} completion of {} batch(es)", c.ids.len());
                }
                Some(Kind::Voided(v)) => {
                    let _ = writeln!(out, "  @{offset} void record for {} batch(es) whose commit failed", v.ids.len());
                }
                None => {
                    let _ = writeln!(out, "  @{offset} empty record");
                }
            }
        }
    }
    let _ =
        writeln!(out, "total: {} segments, {batches} batches, {pending} pending ({items_pending} items)", scans.len());
    Ok(out)
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
