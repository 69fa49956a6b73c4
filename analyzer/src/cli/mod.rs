//! Command handlers of the `vigil` binary, one module per subcommand group.

pub mod deploy;
