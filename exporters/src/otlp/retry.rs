//! `retry_on_failure`, with the Collector's keys and defaults, on top of `backon`.

use backon::ExponentialBuilder;
use serde::Deserialize;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    pub randomization_factor: f32,
    pub multiplier: f32,
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up after this long in total; 0 retries forever.
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

impl RetryConfig {
    /// The backoff policy; `None` when retries are off.
    pub fn backoff(&self) -> Option<ExponentialBuilder> {
        if !self.enabled {
            return None;
        }
        let mut b = ExponentialBuilder::new()
            .with_min_delay(self.initial_interval)
            .with_max_delay(self.max_interval)
            .with_factor(self.multiplier.max(1.0))
            .without_max_times();
        if self.randomization_factor > 0.0 {
            b = b.with_jitter();
        }
        if !self.max_elapsed_time.is_zero() {
            b = b.with_total_delay(Some(self.max_elapsed_time));
        }
        Some(b)
    }
}
