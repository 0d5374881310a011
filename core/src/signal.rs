//! The three OTLP signals.

use std::fmt;

/// A telemetry signal: what a pipeline carries and what a component supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The name used in pipeline ids (`traces`, `metrics`, `logs`).
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// The item unit used in the Collector's own metric names (`spans`, `metric_points`, `log_records`).
    pub fn item_unit(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metric_points",
            Signal::Logs => "log_records",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|sig| sig.as_str() == s)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The plugin ABI's names for the signals (`openwit-plugin`).
impl From<openwit_plugin::Signal> for Signal {
    fn from(s: openwit_plugin::Signal) -> Signal {
        match s {
            openwit_plugin::Signal::Traces => Signal::Traces,
            openwit_plugin::Signal::Metrics => Signal::Metrics,
            openwit_plugin::Signal::Logs => Signal::Logs,
        }
    }
}

impl From<Signal> for openwit_plugin::Signal {
    fn from(s: Signal) -> openwit_plugin::Signal {
        match s {
            Signal::Traces => openwit_plugin::Signal::Traces,
            Signal::Metrics => openwit_plugin::Signal::Metrics,
            Signal::Logs => openwit_plugin::Signal::Logs,
        }
    }
}
