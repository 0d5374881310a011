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
