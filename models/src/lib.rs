//! Pure statistics for Vigil: no I/O, no async, nothing that knows where data came from.
//!
//! Everything here is a function of its arguments, so that the same numbers come out whether an
//! analysis runs live, interval by interval, or is replayed from files.

// Tests compare exact values on purpose: reference values are given to the last digit.
#![cfg_attr(test, allow(clippy::float_cmp))]

pub mod anomaly;
pub mod counts;
pub mod kayenta;
pub mod rank;
pub mod vigil_judge;

/// Which change of a metric is harmful. One type for every judge (Kayenta's `canary.direction`
/// and Vigil's own rules), so a direction configured once means the same thing to both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Direction {
    /// Higher is worse (CPU, memory, latency, errors).
    Increase,
    /// Lower is worse (success rate, throughput).
    Decrease,
    /// Any change is suspicious.
    Either,
}
