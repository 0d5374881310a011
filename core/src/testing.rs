//! Support for the test-only components (`testing` exporter and processor), which exist for OpenWit's
//! own end-to-end tests and are registered only when `OPENWIT_TEST_COMPONENTS=1`.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// The environment variable that enables test-only components.
pub const ENABLE_ENV: &str = "OPENWIT_TEST_COMPONENTS";

/// Whether test-only components are registered in this process.
pub fn enabled() -> bool {
    std::env::var(ENABLE_ENV).as_deref() == Ok("1")
}

/// Calls counted per key for the whole process: a component rebuilt after a panic keeps counting where
/// its predecessor stopped, so "panic once, on the Nth call" means once.
static CALLS: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Mutex::default);

/// Counts one call under `key` and says whether it is the `nth` (never when `nth` is 0).
pub fn nth_call(key: &str, nth: u64) -> bool {
    let mut calls = CALLS.lock().unwrap_or_else(|p| p.into_inner());
    let n = calls.entry(key.to_string()).or_default();
    *n += 1;
    nth > 0 && *n == nth
}

/// The environment variable naming a step at which the process aborts, as `kill -9` would there (only
/// with `OPENWIT_TEST_COMPONENTS=1`): crash tests of multi-step work (a compaction between its upload and
/// its swap) that a signal from outside could not hit reliably.
pub const CRASH_ENV: &str = "OPENWIT_TEST_CRASH_AT";

/// Aborts the process when the tests asked to crash at `step`.
pub fn crash_point(step: &str) {
    if enabled() && std::env::var(CRASH_ENV).as_deref() == Ok(step) {
        eprintln!("openwit: aborting at {step} ({CRASH_ENV})");
        std::process::abort();
    }
}

/// The environment variable naming a step at which the process waits for a while (only with
/// `OPENWIT_TEST_COMPONENTS=1`), and `OPENWIT_TEST_PAUSE_MS` how long (2 s unless set): tests that look
/// at the daemon while a short step runs (what an index build holds of the memory budget).
pub const PAUSE_ENV: &str = "OPENWIT_TEST_PAUSE_AT";

/// Blocks the calling thread for a while when the tests asked to pause at `step`, after saying so on
/// stderr (the tests wait for that line). Call it on a thread that may block.
pub fn pause_point(step: &str) {
    if enabled() && std::env::var(PAUSE_ENV).as_deref() == Ok(step) {
        let ms = std::env::var("OPENWIT_TEST_PAUSE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
        eprintln!("openwit: pausing {ms} ms at {step} ({PAUSE_ENV})");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_nth_call_fires_once_per_key() {
        let fired: Vec<bool> = (0..5).map(|_| super::nth_call("a", 3)).collect();
        assert_eq!(fired, [false, false, true, false, false]);
        assert!(super::nth_call("b", 1));
        assert!(!(0..3).any(|_| super::nth_call("c", 0)));
    }
}
