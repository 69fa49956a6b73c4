//! The `vigil` command as a library: the command handlers (`cli`), and replay — the file source
//! that loads recorded scenarios, feeds the analyzer's engine and measures it. Kept apart from the
//! engine (`vigil-analyzer`) so that the engine builds without polars, clap or kube.

pub mod cli;
pub mod deployer;
pub mod replay;
