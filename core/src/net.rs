//! Loopback ports for tools and tests that start daemons (the benchmark driver, the end-to-end tests).
//!
//! Asking the OS for port 0 and releasing it is racy twice over: the kernel hands the same ephemeral range
//! to every outgoing connection (a test's own HTTP client can take the port before the daemon binds it),
//! and two calls in a row may return the same port. Ports here come from below the ephemeral range
//! (32768–60999 on Linux), from a process-wide counter so one process never hands out a port twice, with a
//! per-process starting point so concurrent processes rarely meet; each is checked to be free when handed out.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 15_000;
const LAST: u32 = 32_000;

/// A TCP port on 127.0.0.1 that nothing listens on now and that this process has not handed out before.
pub fn free_loopback_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = LAST - FIRST;
    let start = (std::process::id() % 17) * (span / 17);
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {LAST}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| free_loopback_port()).collect();
        let mut unique = ports.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
        assert!(ports.iter().all(|p| (15_000..32_000).contains(&(*p as u32))));
        // The next candidate is taken (by us, or if that fails, by someone else): it is skipped.
        let taken = ports[199] + 1;
        let _held = TcpListener::bind(("127.0.0.1", taken));
        let next = free_loopback_port();
        assert_ne!(next, taken);
        assert!(TcpListener::bind(("127.0.0.1", next)).is_ok());
    }
}
