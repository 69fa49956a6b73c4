//! The `vigil` command as a library: the command handlers (`cli`), and replay — the file source
//! that loads recorded scenarios, feeds the analyzer's engine and measures it. Kept apart from the
//! engine (`vigil-analyzer`) so that the engine builds without polars, clap or kube.

#![warn(clippy::cast_possible_truncation)]
// Tests compare exact values on purpose and may unwrap: a panic is the failure report there.
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)
)]

pub mod cli;
pub mod deployer;
pub mod replay;
