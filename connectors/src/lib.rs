//! OpenWit's connectors: each is the exporter of some pipelines and the receiver of others, as in the
//! Collector. A connector runs as a processor whose output is the entries of the pipelines that list it
//! as a receiver (`BuildEnv::connector_outputs`). Nothing is written to the WAL again: the items a
//! connector passes on keep the obligations of the WAL batch they came from, so they are stored (or
//! redelivered after a crash) exactly as items that never left their first pipeline.

pub mod forward;
pub mod routing;
