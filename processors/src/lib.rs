//! OpenWit's processors. Each module is one processor type and exposes its `factory()`.

pub mod batch;
pub mod testing;
