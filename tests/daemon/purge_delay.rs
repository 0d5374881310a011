//! The allocator's purge delay follows the load: longer while batches pass through memory fast (freed
//! memory is soon reused, purging it only costs page faults), the short default again once they slow
//! down, and whatever the operator set in `MIMALLOC_PURGE_DELAY` left alone. The threshold is lowered
//! through `OPENWIT_PURGE_BUSY_MIB_PER_SEC` so that a debug build's throughput crosses it.

use crate::harness::{BASE, Daemon, log_request};
use prost::Message;
use std::time::{Duration, Instant};

const PIPELINE: &str = "
exporters:
  nop:
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [nop]
";

const DELAY: &str = "openwit_allocator_purge_delay_seconds";

async fn start(env: &[(&str, &str)]) -> (Daemon, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let d = Daemon::spawn_sources_env(tmp.path(), &[BASE, PIPELINE], &env);
    d.wait_ready().await;
    (d, tmp)
}

/// Sends 64 KiB log records (~0.6 MiB charged to the memory budget each) until the purge delay reads
/// `until` or `within` passes; returns the last delay read.
async fn load_until(d: &Daemon, until: f64, within: Duration) -> f64 {
    let body = log_request(&"x".repeat(64 << 10)).encode_to_vec();
    let deadline = Instant::now() + within;
    loop {
        for _ in 0..4 {
            assert_eq!(d.post_protobuf("/v1/logs", body.clone()).await, 200);
        }
        let delay = d.metric_sum(DELAY).await;
        if delay == until || Instant::now() > deadline {
            return delay;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_delay_is_longer_while_batches_flow_fast_and_short_again_after() {
    let (d, _tmp) = start(&[("OPENWIT_PURGE_BUSY_MIB_PER_SEC", "2")]).await;
    assert_eq!(d.metric_sum(DELAY).await, 0.01, "at rest, the short delay");
    assert_eq!(load_until(&d, 0.1, Duration::from_secs(20)).await, 0.1, "under load, the long one");
    // Two seconds under half the rate bring it back.
    let after = d.metric_until(DELAY, Duration::from_secs(20), |v| v == 0.01).await;
    assert_eq!(after, 0.01, "once the load has stopped, the short delay again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_delay_set_in_the_environment_is_left_as_it_is() {
    let (d, _tmp) = start(&[("OPENWIT_PURGE_BUSY_MIB_PER_SEC", "2"), ("MIMALLOC_PURGE_DELAY", "37")]).await;
    assert_eq!(d.metric_sum(DELAY).await, 0.037);
    // The same load as above, for longer than it took there to go busy.
    let delay = load_until(&d, 0.1, Duration::from_secs(3)).await;
    assert_eq!(delay, 0.037, "the operator's delay stays under load");
}
