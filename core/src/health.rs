//! The daemon's lifecycle state, as the health check reports it.

use std::sync::Mutex;
use std::time::{Instant, SystemTime};

/// Where the daemon is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    Starting,
    Ready,
    Stopping,
}

/// Shared lifecycle state.
#[derive(Debug)]
pub struct Health {
    inner: Mutex<(HealthStatus, SystemTime, Instant)>,
}

impl Default for Health {
    fn default() -> Self {
        Health { inner: Mutex::new((HealthStatus::Starting, SystemTime::now(), Instant::now())) }
    }
}

impl Health {
    pub fn set(&self, status: HealthStatus) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 != status {
            *g = (status, SystemTime::now(), Instant::now());
        }
    }

    /// The status, when it was entered, and for how long it has held.
    pub fn get(&self) -> (HealthStatus, SystemTime, std::time::Duration) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (g.0, g.1, g.2.elapsed())
    }
}
