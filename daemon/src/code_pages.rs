//! Keeps the binary's code and read-only data resident only as far as the daemon runs it.
//!
//! The daemon's binary is large (~120 MiB of `.text`: DataFusion, Tantivy, three object-store clients,
//! Kafka, two SQL drivers), and starting it runs through much of it: config and plugin loading, the
//! catalog's migrations, the query engine's registries, each component's first batch. Every page run
//! stays mapped, with the neighbours the kernel maps around each fault from its page cache
//! (fault-around, 64 KiB), and counts in the process's RSS (`RssFile`) for as long as it runs: 65–79 MiB
//! of every sample in the steady runs of docs/BENCHMARKS.md § Memory. Yet a minute of storing 10k
//! spans/s touched only ~7 MiB of them (`Referenced` in `/proc/<pid>/smaps` after `clear_refs`).
//!
//! So once the pipelines run, and again 10 s and a minute later, the daemon lets go of those pages: it
//! drops its mappings of them (`MADV_DONTNEED`) and asks the kernel to drop the binary's pages no process
//! maps from its page cache (`POSIX_FADV_DONTNEED`). The code still in use is mapped back on its next
//! call, from the file; with the cache holding little else of the binary, fault-around no longer maps
//! cold neighbours with it. Measured, storing 10k spans/s: `RssFile` 57 MiB after the first release (the
//! first requests run code only they run, and read it back into the cache), 14–23 MiB after the second,
//! 28 once an index build has run (docs/BENCHMARKS.md § Memory, "The binary's code, let go of"). Each
//! half needs the other: the cache cannot drop pages still mapped, and mappings dropped alone are mapped
//! back with every cached neighbour (a binary fresh in the cache had 88–91 MiB of code resident, against
//! 66–68 from a cold one, same docs).
//!
//! Every ten minutes after, it drops its mappings only: what index builds, compactions and queries ran
//! leaves the resident set but stays cached, so that the next query maps its code back without reading
//! it from disk (which cost the first query after an emptied cache ~65 ms). A query maps ~45 MiB of the
//! query engine's code: while queries run, that is resident too.
//!
//! Only mappings it is safe to drop are dropped: the binary's own, not writable, and holding no private
//! (copy-on-write) page. The latter excludes the relocated read-only data (`.data.rel.ro`, made
//! read-only after the loader wrote it): dropping those pages would bring back the file's unrelocated
//! bytes (the test binary crashes at once if they are dropped, checked by hand).

use std::io;
use std::time::Duration;

/// How long the daemon waits before each time it lets go of its code pages: at once (it is ready), 10 s
/// and a minute later (the first batches run code that later ones do not: the first file, the first row
/// group, the catalog's first writes), then every [`EVERY`].
const FIRST_WAITS: [Duration; 3] = [Duration::ZERO, Duration::from_secs(10), Duration::from_secs(50)];
/// Then, mappings only (the module's doc): what index builds, compactions, retention and queries ran
/// and no longer run.
pub const EVERY: Duration = Duration::from_secs(600);

/// One mapping of the binary's file, from `/proc/self/smaps`.
#[derive(Debug)]
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    /// Bytes of private copies (`Anonymous`): pages written since the mapping was made.
    anonymous: u64,
    /// Bytes resident (`Rss`).
    resident: u64,
}

/// Lets go of the binary's code and read-only data (see the module's doc): drops this process's
/// mappings of them and, if `from_cache`, the page cache's unmapped pages of the binary. Returns the
/// bytes that were resident in the mappings before. Linux only; elsewhere nothing is done.
pub fn release(from_cache: bool) -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut released = 0;
        for m in droppable(&binary_mappings()?) {
            // SAFETY: the range is one whole mapping of the binary's file, read-only and without a
            // private page (`droppable`): dropping it loses nothing, the next access maps the file's
            // pages back, which are what the mapping held. Pages of code running meanwhile on another
            // thread are mapped back the same way.
            let r = unsafe { libc::madvise(m.start as *mut libc::c_void, m.end - m.start, libc::MADV_DONTNEED) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            released += m.resident;
        }
        if from_cache {
            let exe = std::fs::File::open("/proc/self/exe")?;
            // SAFETY: advice on an open file's cached pages; clean pages that no process maps are
            // dropped, and read again from the file when next needed.
            let r = unsafe { libc::posix_fadvise(exe.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
        }
        Ok(released)
    }
    #[cfg(not(target_os = "linux"))]
    Ok(0)
}

/// Lets go of the code pages after each of [`FIRST_WAITS`] (from the cache too), then every [`EVERY`]
/// (mappings only), until `stop`.
pub async fn keep_released(stop: tokio_util::sync::CancellationToken) {
    let first = FIRST_WAITS.into_iter().map(|w| (w, true));
    for (wait, from_cache) in first.chain(std::iter::repeat((EVERY, false))) {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        // Reading smaps and the madvise calls take a few milliseconds: off the async threads.
        match tokio::task::spawn_blocking(move || release(from_cache)).await {
            Ok(Ok(bytes)) => tracing::debug!(mib = bytes >> 20, "let go of the binary's code pages"),
            Ok(Err(e)) => {
                // Not fatal: RSS stays higher, nothing else changes.
                tracing::warn!("could not let go of the binary's code pages ({e}); RSS stays higher");
                return;
            }
            Err(e) => tracing::warn!("letting go of the binary's code pages ended abnormally: {e}"),
        }
    }
}

/// The mappings that `release` drops.
fn droppable(mappings: &[Mapping]) -> impl Iterator<Item = &Mapping> {
    mappings.iter().filter(|m| !m.writable && m.anonymous == 0)
}

/// The mappings of the running binary's file, read from `/proc/self/smaps`.
#[cfg(target_os = "linux")]
fn binary_mappings() -> io::Result<Vec<Mapping>> {
    use std::os::unix::fs::MetadataExt;
    let exe = std::fs::metadata("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    parse_smaps(&smaps, exe.ino(), libc::major(exe.dev()), libc::minor(exe.dev()))
}

/// The mappings in `smaps` of the file with inode `ino` on device `major:minor`.
fn parse_smaps(smaps: &str, ino: u64, major: u32, minor: u32) -> io::Result<Vec<Mapping>> {
    let bad = |line: &str| io::Error::new(io::ErrorKind::InvalidData, format!("unexpected line in smaps: {line:?}"));
    let mut found = Vec::new();
    // The mapping whose fields are being read, if it is one of the file's.
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        let mut words = line.split_ascii_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-') {
            // A mapping's header: `start-end perms offset major:minor inode [path]`.
            found.extend(current.take());
            let (perms, _offset, dev, inode) = (words.next(), words.next(), words.next(), words.next());
            let (Some(perms), Some(dev), Some(inode)) = (perms, dev, inode) else { return Err(bad(line)) };
            let (maj, min) = dev.split_once(':').ok_or_else(|| bad(line))?;
            let same_file = inode.parse::<u64>().map_err(|_| bad(line))? == ino
                && u32::from_str_radix(maj, 16).map_err(|_| bad(line))? == major
                && u32::from_str_radix(min, 16).map_err(|_| bad(line))? == minor;
            if same_file {
                let address = |s: &str| usize::from_str_radix(s, 16).map_err(|_| bad(line));
                current = Some(Mapping {
                    start: address(start)?,
                    end: address(end)?,
                    writable: perms.contains('w'),
                    anonymous: 0,
                    resident: 0,
                });
            }
        } else if let Some(m) = current.as_mut() {
            let mut kib = || -> io::Result<u64> { words.next().and_then(|n| n.parse().ok()).ok_or_else(|| bad(line)) };
            match first {
                "Rss:" => m.resident = kib()? << 10,
                "Anonymous:" => m.anonymous = kib()? << 10,
                _ => {}
            }
        }
    }
    found.extend(current);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c2b00000 r--p 00000000 fd:01 4242 /usr/bin/openwit
Size:              44032 kB
Rss:               17408 kB
Anonymous:             0 kB
55d0c2b00000-55d0ca600000 r-xp 02b00000 fd:01 4242 /usr/bin/openwit
Rss:               55296 kB
Anonymous:             0 kB
55d0ca600000-55d0cad00000 r--p 0a600000 fd:01 4242 /usr/bin/openwit
Rss:                7168 kB
Anonymous:          7000 kB
55d0cad00000-55d0cae00000 rw-p 0ad00000 fd:01 4242 /usr/bin/openwit
Rss:                 512 kB
Anonymous:           100 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 99 /usr/lib/libc.so.6
Rss:                 800 kB
Anonymous:             0 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Rss:                  64 kB
Anonymous:            64 kB
";

    #[test]
    fn only_the_binarys_read_only_mappings_without_private_pages_are_dropped() {
        let all = parse_smaps(SMAPS, 4242, 0xfd, 1).unwrap();
        assert_eq!(all.len(), 4, "the binary's four mappings, not libc's nor the stack: {all:?}");
        let dropped: Vec<_> = droppable(&all).map(|m| (m.start, m.end, m.resident >> 10)).collect();
        assert_eq!(
            dropped,
            [(0x55d0c0000000, 0x55d0c2b00000, 17408), (0x55d0c2b00000, 0x55d0ca600000, 55296)],
            "the relocated read-only data (private pages) and the writable data stay"
        );
        assert!(parse_smaps(SMAPS, 4242, 0xfd, 2).unwrap().is_empty(), "the same inode on another device");
        assert!(parse_smaps("55d0c0000000-55d0c2b00000 r--p\n", 4242, 0xfd, 1).is_err());
    }

    /// In this very process (the test binary, a build of the daemon's code): with every page of its
    /// code and read-only data made resident first (as if starting up had run all of it), most of it
    /// is let go, and code keeps running, calls through vtables in the relocated data included.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_binarys_code_leaves_the_resident_set_and_still_runs() {
        let resident = || -> u64 { droppable(&binary_mappings().unwrap()).map(|m| m.resident).sum() };
        for m in droppable(&binary_mappings().unwrap()) {
            for page in (m.start..m.end).step_by(4096) {
                // SAFETY: reads a byte of a readable mapping of the binary.
                unsafe { std::ptr::read_volatile(page as *const u8) };
            }
        }
        let before = resident();
        assert!(before > 4 << 20, "the test binary's code is resident: {before} bytes");
        let released = release(true).unwrap();
        assert!(released >= before / 2, "released {released} of {before} bytes");
        // Code runs on: formatting goes through `dyn Write` and `Display` vtables.
        let text = format!("{:?}", (1, "two", [3.0]));
        assert_eq!(text, "(1, \"two\", [3.0])");
        let after = resident();
        assert!(after < before / 4, "{after} bytes of {before} are resident again");
    }
}
