//! OpenWit's receivers. Each module is one receiver type and exposes its `factory()`.

pub mod kafka;
pub mod otlp;
