//! `vigil`: the command line. Each subcommand is a contract other tools call, so its input and
//! output formats are documented in the README and tested end to end.

#![warn(clippy::cast_possible_truncation)]
// Tests compare exact values on purpose and may unwrap: a panic is the failure report there.
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)
)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil::cli;

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
    /// Judge a Kayenta RemoteJudge request as NetflixACAJudge-v1.0; prints a CanaryJudgeResult.
    Judge(cli::judge::JudgeArgs),
    /// Replay recorded incidents through the judges and report accuracy and time to detect.
    Replay(cli::replay::ReplayArgs),
    /// Log pattern mining: parse, eval, compare.
    Logs {
        #[command(subcommand)]
        command: cli::logs::LogsCommand,
    },
    /// Statistical tests with scipy's conventions: JSON request on stdin, JSON result on stdout.
    #[command(subcommand)]
    Stats(cli::stats::StatsCommand),
    /// Roll a failed canary back: size and ready the baseline, then move traffic, then remove the canary.
    Rollback(cli::deploy::RollbackArgs),
    /// Deploy a new server group with the configured strategy (red/black, rolling, highlander).
    Deploy(cli::deploy::DeployArgs),
    /// Give all traffic to an existing server group.
    Promote(cli::deploy::PromoteArgs),
    /// Run the verdict service: gRPC and HTTP on one port.
    // Boxed: its flags make it much the largest variant, and it is parsed once.
    Serve(Box<cli::serve::ServeArgs>),
    /// Create, get, watch, list and cancel analyses on a running service.
    Analysis(cli::analysis::AnalysisArgs),
    /// Push a recorded scenario to a running service as OTLP, into an event-time analysis, and
    /// print its final verdict as `vigil replay --json` prints the scenario.
    Push(cli::push::PushArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: in a redirected log or a CI capture
        // they are noise around every warning.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Judge(args) => cli::judge::run(&args),
        Command::Replay(args) => cli::replay::run(&args),
        Command::Logs { command } => cli::logs::run(command),
        Command::Stats(command) => cli::stats::run(&command),
        Command::Rollback(args) => cli::deploy::rollback(&args),
        Command::Deploy(args) => cli::deploy::deploy(&args),
        Command::Promote(args) => cli::deploy::promote(&args),
        Command::Serve(args) => cli::serve::run(&args),
        Command::Push(args) => cli::push::run(&args),
        // Its exit code is the verdict (`watch`), so it reports its own errors.
        Command::Analysis(args) => return cli::analysis::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
