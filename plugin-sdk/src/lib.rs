//! OpenWit plugins: processors and exporters in shared libraries, loaded by the daemon at start.
//!
//! - [`abi`]: the C ABI (a table of functions with an ABI version), the same as
//!   `include/openwit_plugin.h` declares for C;
//! - [`guest`]: what a Rust plugin implements ([`guest::Processor`], [`guest::Exporter`]) and the
//!   [`export_plugin!`] macro that makes the library's table;
//! - `host` (feature `host`): how the daemon opens a library, checks it and calls it.
//!
//! Rows cross the boundary as Arrow record batches through the Arrow C Data Interface: buffers are
//! handed over, never copied. The columns are the tables of `docs/schema.md`. `docs/plugins.md` is
//! the guide.

pub mod abi;
pub mod guest;
#[cfg(feature = "host")]
pub mod host;

/// The Arrow crate this SDK exchanges data with (a plugin may use another version: the C Data
/// Interface does not depend on it).
pub use arrow;
pub use serde;

/// The telemetry signals; a pipeline carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// Its `SIGNAL_*` bit in the ABI.
    pub fn bit(self) -> u32 {
        match self {
            Signal::Traces => abi::SIGNAL_TRACES,
            Signal::Metrics => abi::SIGNAL_METRICS,
            Signal::Logs => abi::SIGNAL_LOGS,
        }
    }

    /// The signal of a single `SIGNAL_*` bit.
    pub fn from_bits(bits: u32) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.bit() == bits)
    }

    /// The table its rows belong to (`docs/schema.md`).
    pub fn table(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

/// Why a plugin call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Worth trying again later: the batch stays in the write-ahead log and is delivered again.
    Retryable(String),
    /// Trying again will not help: the batch is marked failed, with this text.
    Permanent(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Retryable(t) => write!(f, "retryable: {t}"),
            Error::Permanent(t) => write!(f, "permanent: {t}"),
        }
    }
}

impl std::error::Error for Error {}
