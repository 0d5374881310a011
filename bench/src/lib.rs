//! OpenWit's benchmark tooling: realistic OTLP data, a load generator, and the measurements the
//! benchmark runner takes.

pub mod daemon;
pub mod data;
pub mod evaluation;
#[cfg(test)]
mod held_bytes;
pub mod load;
pub mod measure;
pub mod realism;
pub mod storage;
