//! OpenWit's processors. Each module is one processor type and exposes its `factory()`.

pub mod attributes;
pub mod batch;
pub mod filter;
pub mod memory_limiter;
pub mod ottl;
pub mod probabilistic_sampler;
pub mod resource;
pub mod testing;
pub mod transform;
pub mod value;
