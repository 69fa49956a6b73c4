//! The Vigil analysis engine: one telemetry model, a judge per signal, verdict fusion and the
//! lifecycle of an analysis. It knows no file format, command line or cluster: sources (the
//! replay loader of the `vigil` binary today, OTLP and Prometheus next) feed it, and callers wire
//! actions such as a rollback through [`actions`].

#![warn(missing_docs)]
#![warn(clippy::cast_possible_truncation)]
// Tests compare exact values on purpose and may unwrap: a panic is the failure report there.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::float_cmp,
        clippy::cast_possible_truncation
    )
)]

pub mod actions;
pub mod analysis;
pub mod callers;
pub mod http;
pub mod ingest;
pub mod judge;
pub mod kayenta_api;
pub mod service;
// Token offsets are u32: a line is mined on at most `telemetry::MAX_LOG_BODY_BYTES` (4 MiB), and a
// buffer holds one block of at most 1,024 lines. (Known limit: a block whose every line is at the
// cap would reach 2^32 bytes; blocks are not split by size yet.)
#[allow(clippy::cast_possible_truncation)]
pub mod logs;
pub mod notify;
pub mod plot;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod traces;
pub mod verdict;
