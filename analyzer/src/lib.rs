//! The Vigil analyzer: telemetry, judges per signal, verdicts, and the `vigil` command line.

pub mod analysis;
pub mod callers;
pub mod cli;
pub mod kayenta_api;
pub mod logs;
pub mod replay;
pub mod text;
pub mod traces;
pub mod verdict;
