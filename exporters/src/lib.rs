//! OpenWit's exporters. Each module is one exporter type and exposes its `factory()`.

pub mod debug;
pub mod file;
pub mod nop;
pub mod otlp;
pub mod parquet;
pub mod plugin;
pub mod testing;
