//! OpenWit's processors. Each module is one processor type and exposes its `factory()`.

pub mod attributes;
pub mod batch;
pub mod memory_limiter;
pub mod resource;
pub mod testing;
pub mod value;
