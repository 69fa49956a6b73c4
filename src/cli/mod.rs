//! Subcommand handlers of the `vigil` binary. Each reads its documented input, calls the library,
//! and prints its documented output; errors go back to `main` as `anyhow` errors.

pub mod analysis;
pub mod deploy;
pub mod judge;
pub mod logs;
pub mod logs_compare;
pub mod push;
pub mod replay;
pub mod serve;
pub mod stats;
