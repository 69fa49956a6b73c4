//! `vigil`: the command line. Each subcommand is a contract other tools call, so its input and
//! output formats are documented in the README and tested end to end.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Canary analysis: judge a canary against its baseline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay recorded incidents through the judges and report accuracy and time to detect.
    Replay(vigil_analyzer::cli::replay::ReplayArgs),
    /// Log pattern mining: parse, eval.
    Logs {
        #[command(subcommand)]
        command: vigil_analyzer::cli::logs::LogsCommand,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => vigil_analyzer::cli::replay::run(&args),
        Command::Logs { command } => vigil_analyzer::cli::logs::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
