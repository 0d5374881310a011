//! End-to-end tests: the real `openwit` binary, real OTLP clients, real HTTP.
//!
//! One test binary (modules below) so that the workspace links it once.

mod harness;
/// The throwaway PostgreSQL cluster the catalog tests use.
#[path = "../catalog/postgres.rs"]
mod postgres;

mod auth;
mod backpressure;
mod bad_input;
mod batch_monitor;
mod cli;
mod connectors;
mod crash;
mod disk_faults;
mod durability;
mod exporters;
mod fleet;
mod forward;
mod fresh;
mod hostile;
mod http_options;
mod huge_pages;
mod ingest;
mod interop;
mod janitor;
mod kafka;
mod loadgen;
mod own_metrics;
mod parquet;
mod plugins;
mod power_loss;
mod processors;
mod purge_delay;
mod query;
mod readers;
mod search;
mod shutdown;
mod stores;
mod tls;
mod verdicts;
