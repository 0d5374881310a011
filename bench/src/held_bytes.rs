//! What a batch holds in memory per byte of its protobuf: the check behind the memory budget's
//! estimate (`openwit_core::memory::HELD_PER_PROTOBUF_BYTE`).
//!
//! This test binary counts every allocation of the thread that makes it (a global allocator over the
//! system's), so a batch's decoded size is what decoding it allocated, slack of merged vectors
//! included, rather than a guess from struct sizes.

use crate::data::Generator;
use openwit_core::{Batch, Payload, TenantId};
use prost::Message;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Bytes allocated and not yet freed by this thread.
    static NET: Cell<i64> = const { Cell::new(0) };
}

fn count(delta: i64) {
    // A thread being torn down has no counter left; what it frees then is not measured.
    let _ = NET.try_with(|n| n.set(n.get() + delta));
}

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size() as i64);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size() as i64);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(-(l.size() as i64));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new as i64 - l.size() as i64);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn net() -> i64 {
    NET.with(Cell::get)
}

/// (decoded bytes, Arrow bytes) per protobuf byte of one batch of `requests` requests of 500 items,
/// merged as the WAL writer merges them.
fn held_per_byte(requests: Vec<Vec<u8>>, decode: impl Fn(&[u8]) -> Payload) -> (f64, f64) {
    let raw: usize = requests.iter().map(Vec::len).sum();
    let before = net();
    let mut merged: Option<Payload> = None;
    for r in &requests {
        let p = decode(r);
        match &mut merged {
            Some(m) => m.append(p),
            None => merged = Some(p),
        }
    }
    let decoded = net() - before;
    let batch = Batch::new(TenantId::new("t").unwrap(), merged.unwrap());
    let arrow = batch.columnar_grouped().unwrap().get_array_memory_size();
    (decoded as f64 / raw as f64, arrow as f64 / raw as f64)
}

#[test]
fn the_budgets_estimate_covers_what_a_batch_holds() {
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceRequest as L, metrics::v1::ExportMetricsServiceRequest as M,
        trace::v1::ExportTraceServiceRequest as T,
    };
    let mut g = Generator::new(7);
    let n = 16;
    let cases = [
        (
            "spans",
            held_per_byte((0..n).map(|_| g.traces(500).encode_to_vec()).collect(), |b| {
                Payload::Traces(T::decode(b).unwrap())
            }),
        ),
        (
            "logs",
            held_per_byte((0..n).map(|_| g.logs(500).encode_to_vec()).collect(), |b| {
                Payload::Logs(L::decode(b).unwrap())
            }),
        ),
        (
            "metrics",
            held_per_byte((0..n).map(|_| g.metrics(500).encode_to_vec()).collect(), |b| {
                Payload::Metrics(M::decode(b).unwrap())
            }),
        ),
    ];
    let estimate = openwit_core::memory::HELD_PER_PROTOBUF_BYTE as f64;
    for (signal, (decoded, arrow)) in &cases {
        println!("{signal}: decoded {decoded:.2}, Arrow {arrow:.2} bytes per protobuf byte");
    }
    for (signal, (decoded, arrow)) in cases {
        let held = decoded + arrow;
        // The estimate bounds the budget: under it, the budget lets more into memory than it counts;
        // far over it, the budget refuses data it has room for.
        assert!(held <= estimate, "{signal}: {held:.2} bytes held per protobuf byte, over the estimate {estimate}");
        assert!(held >= estimate / 2.0, "{signal}: {held:.2} bytes held per protobuf byte, under half the estimate");
    }
}
