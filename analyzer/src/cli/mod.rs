//! Command handlers of the `vigil` binary, one module per subcommand group.

pub mod logs;
pub mod logs_compare;
pub mod replay;
