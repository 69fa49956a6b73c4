//! Command handlers of the `vigil` binary (one module per subcommand).

pub mod replay;
