//! OpenWit's processors. Each module is one processor type and exposes its `factory()`.

pub mod attributes;
pub mod batch;
pub mod filter;
pub mod memory_limiter;
pub mod ottl;
pub mod plugin;
pub mod probabilistic_sampler;
pub mod resource;
pub mod testing;
pub mod transform;
pub mod value;

/// What a processor that removes items does with what is left: a batch with no items left is settled
/// as dropped on this path (its items were settled when they were removed); the rest goes on. `false`
/// when downstream has closed (the daemon is stopping).
pub(crate) async fn pass_on(batch: openwit_core::Batch, output: &openwit_core::Fanout) -> bool {
    if batch.item_count() == 0 {
        batch.settle(&openwit_core::Verdict::Dropped);
        return true;
    }
    output.send(batch).await.is_ok()
}
