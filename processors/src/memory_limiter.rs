//! The `memory_limiter` processor, with the Collector's keys: every `check_interval` it measures the
//! process's memory (its resident set, what the kernel's OOM killer counts — the Collector measures
//! Go's heap instead); above the soft limit (`limit - spike`) the receivers of its pipelines refuse new
//! requests with a retryable answer (HTTP 503 with `Retry-After`, gRPC `UNAVAILABLE`, Kafka pauses)
//! until usage falls back under it. Refusal happens before the WAL, so nothing accepted is ever
//! dropped; batches already in the pipeline pass through untouched.
//!
//! One limiter per component id, shared by every pipeline that lists it (as in the Collector). The Go
//! garbage-collector keys (`min_gc_interval_when_*`) are accepted and do nothing: there is no GC to run.

use async_trait::async_trait;
use openwit_core::factory::{ComponentConfig, typed};
use openwit_core::telemetry::{Gauge, Telemetry, labels};
use openwit_core::{
    Admission, Batch, BuildEnv, ComponentId, ConfigIssue, ConsumeError, Factory, Fanout, Processor, Signal,
};
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// `processors: memory_limiter: {…}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// Hard limit, MiB.
    pub limit_mib: u64,
    /// Room kept for spikes between checks, MiB (default: 20 % of the limit); soft limit = limit - spike.
    pub spike_limit_mib: u64,
    /// Hard limit as a percentage of the memory available (the cgroup's limit, else the machine's).
    pub limit_percentage: u64,
    pub spike_limit_percentage: u64,
    #[serde(with = "humantime_serde")]
    pub min_gc_interval_when_soft_limited: Duration,
    #[serde(with = "humantime_serde")]
    pub min_gc_interval_when_hard_limited: Duration,
    /// The limiter this component id's pipelines share (made on first build).
    #[serde(skip)]
    shared: Arc<OnceLock<Arc<Limiter>>>,
}

impl ComponentConfig for MemoryLimiterConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.check_interval.is_zero() {
            return Err(ConfigIssue::new(
                "check_interval",
                "must be greater than zero (the Collector's docs suggest 1s)",
            ));
        }
        if self.limit_mib == 0 && self.limit_percentage == 0 {
            return Err(ConfigIssue::new("limit_mib", "give limit_mib or limit_percentage (greater than zero)"));
        }
        if self.limit_mib > 0 && self.limit_percentage > 0 {
            return Err(ConfigIssue::new("limit_percentage", "give limit_mib or limit_percentage, not both"));
        }
        if self.limit_mib > 0 && self.spike_limit_mib >= self.limit_mib {
            return Err(ConfigIssue::new(
                "spike_limit_mib",
                format!("must be smaller than limit_mib ({}), got {}", self.limit_mib, self.spike_limit_mib),
            ));
        }
        if self.limit_percentage > 100 || self.spike_limit_percentage > 100 {
            return Err(ConfigIssue::new(
                "limit_percentage",
                "limit_percentage and spike_limit_percentage are at most 100",
            ));
        }
        if self.limit_percentage > 0 && self.spike_limit_percentage >= self.limit_percentage {
            return Err(ConfigIssue::new(
                "spike_limit_percentage",
                format!("must be smaller than limit_percentage ({})", self.limit_percentage),
            ));
        }
        Ok(())
    }
}

impl MemoryLimiterConfig {
    /// Hard and soft limits in bytes, given the memory available (for the percentages).
    fn limits(&self, total: u64) -> (u64, u64) {
        let (limit, spike) = if self.limit_mib > 0 {
            let spike = if self.spike_limit_mib > 0 { self.spike_limit_mib } else { self.limit_mib / 5 };
            (self.limit_mib << 20, spike << 20)
        } else {
            let pct =
                if self.spike_limit_percentage > 0 { self.spike_limit_percentage } else { self.limit_percentage / 5 };
            (total / 100 * self.limit_percentage, total / 100 * pct)
        };
        (limit, limit - spike)
    }
}

pub fn factory() -> Arc<dyn Factory<dyn Processor>> {
    typed::<MemoryLimiterConfig, dyn Processor>(
        "memory_limiter",
        &[],
        &Signal::ALL,
        "refuses new data at the receivers while the process is over its memory limit",
        |id: &ComponentId, cfg: &MemoryLimiterConfig, env: &BuildEnv| {
            let limiter = cfg
                .shared
                .get_or_init(|| {
                    let (hard, soft) = cfg.limits(total_memory());
                    let limiter = Limiter::new(&id.to_string(), hard, soft, &env.telemetry);
                    if !cfg.min_gc_interval_when_soft_limited.is_zero() || !cfg.min_gc_interval_when_hard_limited.is_zero() {
                        tracing::info!(processor = %id, "min_gc_interval_when_* has no effect: OpenWit has no garbage collector");
                    }
                    tracing::info!(processor = %id, hard_mib = hard >> 20, soft_mib = soft >> 20, "memory limits");
                    spawn_monitor(Arc::downgrade(&limiter), cfg.check_interval, resident_bytes);
                    limiter
                })
                .clone();
            Ok(Box::new(MemoryLimiterProcessor { limiter }))
        },
    )
}

/// What the receivers consult, and the checker updates.
pub struct Limiter {
    name: String,
    hard: u64,
    soft: u64,
    used: AtomicU64,
    refusing: AtomicBool,
    refusing_gauge: Gauge,
    used_gauge: Gauge,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("name", &self.name).field("hard", &self.hard).field("soft", &self.soft).finish()
    }
}

impl Limiter {
    fn new(name: &str, hard: u64, soft: u64, telemetry: &Telemetry) -> Arc<Limiter> {
        let l = labels(&[("processor", name)]);
        let refusing_gauge = telemetry
            .gauges("openwit_memory_limiter_refusing", "1 while a memory_limiter makes receivers refuse data")
            .get_or_create(&l)
            .clone();
        let used_gauge = telemetry
            .gauges("openwit_memory_limiter_used_bytes", "Process memory (resident) at a memory_limiter's last check")
            .get_or_create(&l)
            .clone();
        Arc::new(Limiter {
            name: name.to_string(),
            hard,
            soft,
            used: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
            refusing_gauge,
            used_gauge,
        })
    }

    /// Takes a measurement: refuse from above the soft limit, accept again once under it.
    fn observe(&self, used: u64) {
        self.used.store(used, Ordering::Relaxed);
        self.used_gauge.set(i64::try_from(used).unwrap_or(i64::MAX));
        let refuse = used > self.soft;
        let was = self.refusing.swap(refuse, Ordering::Relaxed);
        self.refusing_gauge.set(i64::from(refuse));
        if refuse && !was {
            tracing::warn!(
                processor = %self.name,
                used_mib = used >> 20,
                soft_mib = self.soft >> 20,
                hard_mib = self.hard >> 20,
                "memory over the soft limit: refusing new data until it falls"
            );
        } else if was && !refuse {
            tracing::info!(processor = %self.name, used_mib = used >> 20, "memory back under the soft limit: accepting data");
        }
    }
}

impl Admission for Limiter {
    fn admit(&self) -> Result<(), ConsumeError> {
        if self.refusing.load(Ordering::Relaxed) {
            return Err(ConsumeError::MemoryLimit(format!(
                "memory_limiter {}: the process uses {} MiB, over its soft limit of {} MiB; retry later",
                self.name,
                self.used.load(Ordering::Relaxed) >> 20,
                self.soft >> 20
            )));
        }
        Ok(())
    }
}

/// Measures every `interval` while the limiter lives. The first measurement is taken at once, so a
/// process that starts over its limit refuses from its first request.
fn spawn_monitor(limiter: Weak<Limiter>, interval: Duration, measure: fn() -> Option<u64>) {
    if let Some(l) = limiter.upgrade()
        && let Some(used) = measure()
    {
        l.observe(used);
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(l) = limiter.upgrade() else { return };
            match measure() {
                Some(used) => l.observe(used),
                None => tracing::warn!(processor = %l.name, "cannot read the process's memory use (/proc/self/status)"),
            }
        }
    });
}

/// The process's resident set size (`VmRSS`), in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_field(&status, "VmRSS:")
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib << 10)
}

/// The memory this process may use: its cgroup's limit (v2, then v1) when it has one, else the machine's.
fn total_memory() -> u64 {
    let cgroup = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| t.trim().parse::<u64>().ok())
        // v1 writes a huge number for "no limit".
        .find(|b| *b < (1 << 60));
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| kib_field(&t, "MemTotal:")).unwrap_or(0);
    cgroup.map_or(machine, |c| if machine > 0 { c.min(machine) } else { c })
}

struct MemoryLimiterProcessor {
    limiter: Arc<Limiter>,
}

#[async_trait]
impl Processor for MemoryLimiterProcessor {
    async fn run(&mut self, input: &mut mpsc::Receiver<Batch>, output: &Fanout) {
        // What reaches it is already in the WAL: it goes on. The limiting is at the receivers.
        while let Some(batch) = input.recv().await {
            if output.send(batch).await.is_err() {
                return;
            }
        }
    }

    fn admission(&self) -> Option<Arc<dyn Admission>> {
        Some(self.limiter.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> MemoryLimiterConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn limits_follow_the_collector() {
        assert_eq!(cfg("{check_interval: 1s, limit_mib: 1000}").limits(0), (1000 << 20, 800 << 20));
        assert_eq!(
            cfg("{check_interval: 1s, limit_mib: 1000, spike_limit_mib: 100}").limits(0),
            (1000 << 20, 900 << 20)
        );
        let (hard, soft) =
            cfg("{check_interval: 1s, limit_percentage: 50, spike_limit_percentage: 10}").limits(1000 << 20);
        assert_eq!((hard, soft), ((1000 << 20) / 100 * 50, (1000 << 20) / 100 * 50 - (1000 << 20) / 100 * 10));
    }

    #[test]
    fn refuses_above_the_soft_limit_and_accepts_again_below() {
        let l = Limiter::new("memory_limiter", 100, 80, &Telemetry::default());
        l.observe(50);
        assert!(l.admit().is_ok());
        l.observe(81);
        let e = l.admit().unwrap_err();
        assert!(matches!(e, ConsumeError::MemoryLimit(_)), "{e:?}");
        assert!(e.to_string().contains("retry later"), "{e}");
        l.observe(79);
        assert!(l.admit().is_ok());
    }

    #[test]
    fn reads_this_process_memory() {
        let used = resident_bytes().expect("/proc/self/status has VmRSS");
        assert!(used > 1 << 20, "{used}");
        assert!(total_memory() >= used);
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        for (yaml, path) in [
            ("{limit_mib: 100}", "check_interval"),
            ("{check_interval: 1s}", "limit_mib"),
            ("{check_interval: 1s, limit_mib: 100, spike_limit_mib: 100}", "spike_limit_mib"),
            ("{check_interval: 1s, limit_percentage: 101}", "limit_percentage"),
            ("{check_interval: 1s, limit_percentage: 50, spike_limit_percentage: 60}", "spike_limit_percentage"),
        ] {
            assert_eq!(cfg(yaml).validate().unwrap_err().path, path, "{yaml}");
        }
        assert!(
            cfg("{check_interval: 1s, limit_mib: 4000, spike_limit_mib: 800, min_gc_interval_when_soft_limited: 10s}")
                .validate()
                .is_ok()
        );
    }
}
