//! The process's allocator: mimalloc, set up for a daemon whose memory comes and goes in bursts.
//!
//! mimalloc rather than glibc's allocator: the pipeline allocates and frees per item on several
//! threads, where glibc's arenas contend (a quarter of the CPU went to malloc and its locks; the
//! pass-through costs ~45 % less CPU with mimalloc, see docs/BENCHMARKS.md). The cargo feature
//! `system-allocator` leaves glibc's in place, for heap profilers that only see `malloc`
//! (heaptrack: mimalloc is linked statically, so its allocations are invisible to them).

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps memory freed by the pipeline before giving it back to the OS, by default.
///
/// mimalloc's own default is 1,000 ms. Under overload the budget turns over its 128 MiB of batches
/// several times a second, mostly on other threads than allocated them, so a second's worth of freed
/// pages stayed resident beside the live ones: peak RSS while storing 315–355 MiB, against 216–244 MiB
/// with 10 ms, for 1–17 % more CPU per item (the purges' `madvise` calls and the page faults that
/// follow; docs/BENCHMARKS.md § Memory). `MIMALLOC_PURGE_DELAY` in the environment still wins.
#[cfg(not(feature = "system-allocator"))]
pub const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// The purge delay while telemetry passes through memory fast (see [`follow_load`]): freed memory is
/// soon reused, so each purge only makes the next allocations fault fresh pages in again.
#[cfg(not(feature = "system-allocator"))]
pub const BUSY_PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Bytes charged to the memory budget for batches per second from which the pipeline counts as busy:
/// ~40k spans/s of the load generator's (measured: 810 MiB/s at 241k spans/s, 28 MiB/s at 10k). A
/// steady 10k items/s stays far under it, and so at [`PURGE_DELAY_MS`], where RSS is what matters.
/// `OPENWIT_PURGE_BUSY_MIB_PER_SEC` in the environment sets another (MiB per second).
#[cfg(not(feature = "system-allocator"))]
const BUSY_CHARGED_PER_SEC: u64 = 128 << 20;

/// How often [`follow_load`] reads the rate.
#[cfg(not(feature = "system-allocator"))]
const DIAL_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Readings under half the busy rate in a row before the delay goes back down: a load that
/// pauses between bursts keeps the busy delay.
#[cfg(not(feature = "system-allocator"))]
const QUIET_READINGS: u32 = 8;

/// Chooses the purge delay from the rate at which batches are charged to the memory budget.
#[cfg(not(feature = "system-allocator"))]
#[derive(Debug)]
struct Dial {
    /// Bytes per second from which the pipeline counts as busy.
    busy_from: u64,
    busy: bool,
    quiet: u32,
}

#[cfg(not(feature = "system-allocator"))]
impl Dial {
    fn new(busy_from: u64) -> Dial {
        Dial { busy_from, busy: false, quiet: 0 }
    }

    /// Takes one reading (bytes charged per second); says whether the pipeline is busy now.
    fn read(&mut self, charged_per_sec: u64) -> bool {
        if charged_per_sec >= self.busy_from {
            (self.busy, self.quiet) = (true, 0);
        } else if self.busy && charged_per_sec < self.busy_from / 2 {
            self.quiet += 1;
            if self.quiet >= QUIET_READINGS {
                (self.busy, self.quiet) = (false, 0);
            }
        } else {
            self.quiet = 0;
        }
        self.busy
    }
}

/// Sets mimalloc's purge delay by load until `stop`: [`BUSY_PURGE_DELAY_MS`] while batches are charged
/// to the budget faster than [`BUSY_CHARGED_PER_SEC`], [`PURGE_DELAY_MS`] otherwise. Under overload the
/// pipeline is CPU-bound and its memory bounded by the budget, and the short delay gave back memory
/// reused milliseconds later: storing spans, half again as many page faults and 70 % more `madvise`
/// calls as with the long delay, up to 12 % of the storing CPU, against 15–45 MiB of peak RSS (docs/BENCHMARKS.md § Memory "the purge
/// delay by load"); at a steady low rate the long delay saves nothing and keeps memory freed by
/// the row groups' writes and the index builds resident longer. A delay set in the environment
/// (`MIMALLOC_PURGE_DELAY`) stays as it is. The delay in force is `openwit_allocator_purge_delay_seconds`.
#[cfg(not(feature = "system-allocator"))]
pub async fn follow_load(
    memory: std::sync::Arc<openwit_core::memory::MemoryBudget>,
    gauge: openwit_core::telemetry::FloatGauge,
    stop: tokio_util::sync::CancellationToken,
) {
    let publish = || gauge.set(purge_delay_ms() as f64 / 1000.0);
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        publish();
        return;
    }
    let busy_from = match std::env::var("OPENWIT_PURGE_BUSY_MIB_PER_SEC") {
        Err(_) => BUSY_CHARGED_PER_SEC,
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(mib) => mib.saturating_mul(1 << 20),
            Err(_) => {
                tracing::warn!(
                    value = %v,
                    "OPENWIT_PURGE_BUSY_MIB_PER_SEC is not a whole number of MiB per second; using {}",
                    BUSY_CHARGED_PER_SEC >> 20
                );
                BUSY_CHARGED_PER_SEC
            }
        },
    };
    let mut dial = Dial::new(busy_from);
    let mut last = (std::time::Instant::now(), memory.batches_charged());
    publish();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(DIAL_EVERY) => {}
        }
        let now = (std::time::Instant::now(), memory.batches_charged());
        let secs = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
        let rate = (now.1.saturating_sub(last.1) as f64 / secs) as u64;
        last = now;
        let was_busy = dial.busy;
        let busy = dial.read(rate);
        if busy != was_busy {
            set_purge_delay(if busy { BUSY_PURGE_DELAY_MS } else { PURGE_DELAY_MS });
            publish();
            tracing::debug!(busy, charged_mib_per_sec = rate >> 20, "allocator purge delay set by load");
        }
    }
}

/// The daemon built with `system-allocator` has no purge delay to set.
#[cfg(feature = "system-allocator")]
pub async fn follow_load(
    _memory: std::sync::Arc<openwit_core::memory::MemoryBudget>,
    _gauge: openwit_core::telemetry::FloatGauge,
    _stop: tokio_util::sync::CancellationToken,
) {
}

#[cfg(not(feature = "system-allocator"))]
fn set_purge_delay(ms: std::ffi::c_long) {
    // SAFETY: mimalloc's documented way to change an option at run time: it stores the integer in its
    // static option table, which its purges read each time they schedule one.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) }
}

#[cfg(not(feature = "system-allocator"))]
fn purge_delay_ms() -> std::ffi::c_long {
    // SAFETY: reads one integer option.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
}

/// mimalloc's `mi_option_purge_delay` (v3's `mi_option_e`; the Rust binding does not name it).
/// `tests::purge_delay_option_is_the_one_set` checks the index against mimalloc's own name for it.
#[cfg(not(feature = "system-allocator"))]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Allocations from C libraries (zstd's contexts, SQLite, librdkafka) that glibc maps on their own and
/// unmaps when they are freed, from this size up.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub const C_MMAP_THRESHOLD: std::ffi::c_int = 128 * 1024;

/// Sets the process up before anything else runs: call first thing in `main`.
pub fn configure() {
    no_transparent_huge_pages();
    c_libraries_give_memory_back();
    #[cfg(not(feature = "system-allocator"))]
    // SAFETY: sets one of mimalloc's option values (an integer in a static table); the default only,
    // so a value from the environment stays.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS)
    };
}

/// Keeps glibc's allocator, which the C libraries linked in still use (Rust's allocations go to
/// mimalloc), from holding on to large blocks they free. zstd allocates a compression context of about
/// a megabyte per column chunk it compresses (parquet keeps one per column of the row group being
/// written) and frees it with the row group. glibc maps such a block on its own the first time, but
/// then raises its threshold to the size freed, so every later context comes from a per-thread arena
/// that freeing does not shrink: in a steady 10k spans/s run, three of those arenas held 52 MiB of the
/// daemon's 152 MiB of anonymous memory four minutes in (`/proc/<pid>/smaps`), and the heap's floor rose
/// with them. A fixed threshold keeps such blocks mapped on their own and unmapped when freed
/// (docs/BENCHMARKS.md § Memory). `MALLOC_MMAP_THRESHOLD_` or a `GLIBC_TUNABLES` threshold in the
/// environment still wins.
fn c_libraries_give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"));
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() && !tuned {
            // SAFETY: sets one of glibc's allocator parameters (an integer), before other threads run.
            if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, C_MMAP_THRESHOLD) } != 1 {
                eprintln!(
                    "openwit: could not set glibc's mmap threshold (large blocks freed by C libraries stay resident)"
                );
            }
        }
    }
}

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` says otherwise.
/// mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so each first touch of a region the
/// allocator has handed back faults in, and zeroes, a whole 2 MiB page, and every page counts whole
/// in RSS. In a steady 10k spans/s run that was an eighth of the daemon's CPU (the kernel's
/// `clear_page_erms` under `do_huge_pmd_anonymous_page`) and a quarter of its RSS; without huge pages
/// CPU per span fell by 11 % and RSS by 60 MiB (docs/BENCHMARKS.md § Memory).
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes this process's flags.
        let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if r != 0 {
            // Not fatal: the daemon runs as before, at the cost described above.
            eprintln!("openwit: could not turn transparent huge pages off ({})", std::io::Error::last_os_error());
        }
    }
}

#[cfg(all(test, not(feature = "system-allocator")))]
mod tests {
    use super::*;
    use std::ffi::{CStr, c_char, c_void};

    // Not in the Rust binding: prints mimalloc's version and every option, by name, to `out`.
    unsafe extern "C" {
        fn mi_options_print_out(out: libmimalloc_sys::mi_output_fun, arg: *mut c_void);
    }

    /// Appends one of mimalloc's messages to the `String` that `arg` points at.
    unsafe extern "C" fn collect(msg: *const c_char, arg: *mut c_void) {
        // SAFETY: mimalloc passes a NUL-terminated message and the `arg` given to it, a `&mut String`.
        let (msg, out) = unsafe { (CStr::from_ptr(msg), &mut *arg.cast::<String>()) };
        out.push_str(&msg.to_string_lossy());
    }

    #[test]
    fn the_dial_is_busy_from_the_threshold_and_quiet_only_after_a_lull() {
        let mut d = Dial::new(BUSY_CHARGED_PER_SEC);
        assert!(!d.read(0) && !d.read(BUSY_CHARGED_PER_SEC - 1), "under the threshold: not busy");
        assert!(d.read(BUSY_CHARGED_PER_SEC), "at it: busy");
        for _ in 0..QUIET_READINGS - 1 {
            assert!(d.read(0), "still busy within a lull");
        }
        // A reading between half the threshold and it ends the lull without being busy itself.
        assert!(d.read(BUSY_CHARGED_PER_SEC / 2));
        for _ in 0..QUIET_READINGS - 1 {
            assert!(d.read(BUSY_CHARGED_PER_SEC / 2 - 1), "a new lull, not yet long enough");
        }
        assert!(!d.read(0), "quiet after {QUIET_READINGS} readings under half the threshold");
        assert!(!d.read(BUSY_CHARGED_PER_SEC / 2), "and stays so until the threshold again");
    }

    /// The option index is a bare number: if a mimalloc upgrade moves it, this fails rather than the
    /// daemon setting some other option. With `MIMALLOC_PURGE_DELAY` set, the value read through the
    /// index is the environment's, and must still be what mimalloc prints as `purge_delay`.
    #[test]
    fn purge_delay_option_is_the_one_set() {
        configure();
        let mut printed = String::new();
        // SAFETY: reads one option; prints the options through `collect` into `printed`, which
        // outlives the call.
        let value = unsafe {
            mi_options_print_out(Some(collect), (&raw mut printed).cast());
            libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)
        };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(value, PURGE_DELAY_MS, "the daemon's default is in place");
        }
        assert!(printed.contains("option 'purge_delay'"), "mimalloc printed no options: {printed:?}");
        assert!(
            printed.contains(&format!("option 'purge_delay': {value} ")),
            "mimalloc's purge_delay is not option {MI_OPTION_PURGE_DELAY} any more: {printed}"
        );
        // What `follow_load` sets at run time is what mimalloc's purges read (in this test, not one of
        // its own: tests run in parallel, and the default is checked above).
        set_purge_delay(BUSY_PURGE_DELAY_MS);
        // SAFETY: reads one integer option.
        let read = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        set_purge_delay(value);
        assert_eq!(read, BUSY_PURGE_DELAY_MS);
        assert_eq!(purge_delay_ms(), value);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod c_library_tests {
    /// A block of a megabyte that C code frees and allocates again is mapped on its own each time: with
    /// glibc's dynamic threshold the second one would come from an arena (and stay resident once freed).
    #[test]
    fn large_c_blocks_are_mapped_on_their_own_every_time() {
        super::configure();
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
            return; // the environment's threshold is in place, whatever it is
        }
        for round in 0..3 {
            // SAFETY: glibc's own malloc, free and statistics; the block is freed once.
            unsafe {
                let before = libc::mallinfo2().hblkhd;
                let p = libc::malloc(1 << 20);
                assert!(!p.is_null());
                let mapped = libc::mallinfo2().hblkhd;
                libc::free(p);
                assert!(mapped >= before + (1 << 20), "round {round}: a 1 MiB block came from an arena");
            }
        }
    }
}
