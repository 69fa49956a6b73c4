//! Live telemetry sources: where a running analysis gets its data when it does not come from
//! files. Each source converts at its edge into the engine's types ([`crate::telemetry`]), so
//! the engine judges live data exactly as it judges a replayed scenario.
//!
//! - [`prometheus`]: range queries against a Prometheus server's HTTP API.

pub mod prometheus;

pub use prometheus::{
    fetch_side, render_query, render_vars, MetricQuery, OwnedMetricSample, Prometheus, Scope,
    Series, SourceError,
};
