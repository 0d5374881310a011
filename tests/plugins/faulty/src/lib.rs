//! Test plugin: `faulty`, a logs processor that panics when a record's body contains `marker`, the
//! first `panics` times it sees one in this process (0: every time), and passes everything else on
//! unchanged. The end-to-end tests load it to show what a panic at the boundary does.

use openwit_plugin::arrow::array::{AsArray, RecordBatch};
use openwit_plugin::guest::Processor;
use openwit_plugin::{Error, Signal};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Panics so far, across instances (the daemon builds a fresh instance after a panic).
static PANICS: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultyConfig {
    pub marker: String,
    pub panics: u64,
}

pub struct Faulty(FaultyConfig);

impl Processor for Faulty {
    const TYPE_NAME: &'static str = "faulty";
    const DESCRIPTION: &'static str = "panics on records whose body holds a marker (test plugin)";
    const SIGNALS: &'static [Signal] = &[Signal::Logs];
    type Config = FaultyConfig;

    fn validate(config: &FaultyConfig) -> Result<(), String> {
        if config.marker.is_empty() { Err("marker: required".into()) } else { Ok(()) }
    }

    fn new(config: FaultyConfig, _signal: Signal) -> Result<Faulty, String> {
        Ok(Faulty(config))
    }

    fn process(&mut self, rows: RecordBatch, _keep: &mut [bool]) -> Result<RecordBatch, Error> {
        let body = rows.column_by_name("body").ok_or_else(|| Error::Permanent("no body column".into()))?;
        let hit = body.as_string::<i32>().iter().flatten().any(|b| b.contains(&self.0.marker));
        if hit && (self.0.panics == 0 || PANICS.load(Ordering::SeqCst) < self.0.panics) {
            PANICS.fetch_add(1, Ordering::SeqCst);
            panic!("found {:?} in a body", self.0.marker);
        }
        Ok(rows)
    }
}

openwit_plugin::export_plugin!(
    name: "openwit-plugin-faulty",
    version: env!("CARGO_PKG_VERSION"),
    processors: [Faulty],
    exporters: [],
);
