//! End-to-end tests: the real `openwit` binary, real OTLP clients, real HTTP.
//!
//! One test binary (modules below) so that the workspace links it once.

mod harness;

mod backpressure;
mod bad_input;
mod cli;
mod crash;
mod durability;
mod forward;
mod http_options;
mod ingest;
mod loadgen;
mod shutdown;
