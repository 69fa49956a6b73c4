//! Pure statistics for Vigil: no I/O, no async, nothing that knows where data came from.
//!
//! Everything here is a function of its arguments, so that the same numbers come out whether an
//! analysis runs live, interval by interval, or is replayed from files.

pub mod anomaly;
pub mod counts;
pub mod kayenta;
pub mod rank;
pub mod vigil_judge;
