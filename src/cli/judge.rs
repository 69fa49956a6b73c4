//! `vigil judge [--input FILE] [--mode kayenta|vigil]`: judge a Kayenta RemoteJudge request, as
//! NetflixACAJudge-v1.0 (the default) or with Vigil's own metric judge in the same result shape.
//!
//! The `CanaryJudgeResult` goes to stdout as pretty-printed JSON (the contract other tools
//! parse). A few lines for a person reading the terminal go to stderr, unless `--quiet`;
//! warnings about settings Kayenta accepts but should not (a negative group weight) go to
//! stderr even with `--quiet`, and into the result's `warnings`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use vigil_analyzer::kayenta_api::{self, CanaryJudgeResult, JudgeMode, DEFAULT_NOISE_SEED};

/// `--mode`: whose judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ModeArg {
    /// NetflixACAJudge-v1.0, bit for bit, quirks included (warnings say where it misleads).
    #[default]
    Kayenta,
    /// Vigil's metric judge in Kayenta's result shape; rejects weights and thresholds that
    /// push a score outside 0-100.
    Vigil,
}

#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// Kayenta RemoteJudge request (JSON: canaryConfig, scoreThresholds, metricSetPairList);
    /// read from stdin when absent.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Do not print the human summary on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Seed of the noise Kayenta adds when both sides of a metric are constant.
    #[arg(long, default_value_t = DEFAULT_NOISE_SEED)]
    pub seed: i64,
    /// Which judge answers.
    #[arg(long, value_enum, default_value_t = ModeArg::Kayenta)]
    pub mode: ModeArg,
}

pub fn run(args: &JudgeArgs) -> Result<()> {
    let text = match &args.input {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --input {}", path.display()))?,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the request from stdin")?;
            s
        }
    };
    let request = kayenta_api::parse_request(&text).context("invalid judge request")?;
    tracing::debug!(metrics = request.metrics.len(), "judging request");
    let mode = match args.mode {
        ModeArg::Kayenta => JudgeMode::Kayenta,
        ModeArg::Vigil => JudgeMode::Vigil,
    };
    let result = match mode {
        JudgeMode::Kayenta => kayenta_api::judge(&request, args.seed),
        JudgeMode::Vigil => {
            kayenta_api::judge_vigil(&request).context("request rejected by --mode vigil")?
        }
    };
    for w in &result.warnings {
        eprintln!("warning: {w}");
    }
    let json = serde_json::to_string_pretty(&result).context("cannot serialise the result")?;
    println!("{json}");
    if !args.quiet {
        eprint!("{}", summary(&result));
    }
    Ok(())
}

/// The verdict, the groups, and every metric that did not pass, in a few lines.
pub fn summary(result: &CanaryJudgeResult) -> String {
    let mut out = format!(
        "verdict: {} (score {})",
        result.score.classification, result.score.score
    );
    if !result.score.classification_reason.is_empty() {
        out.push_str(&format!(" — {}", result.score.classification_reason));
    }
    out.push('\n');
    let groups: Vec<String> = result
        .group_scores
        .iter()
        .map(|g| format!("{} {}", g.name, g.score))
        .collect();
    if !groups.is_empty() {
        out.push_str(&format!("groups: {}\n", groups.join(", ")));
    }
    let total = result.results.len();
    let flagged: Vec<_> = result
        .results
        .iter()
        .filter(|r| r.classification != "Pass")
        .collect();
    out.push_str(&format!(
        "metrics: {} of {total} passed\n",
        total - flagged.len()
    ));
    for r in flagged {
        let ratio = r.result_metadata.ratio;
        let ratio = if ratio.is_nan() {
            "n/a".to_string()
        } else {
            format!("{ratio:.3}")
        };
        out.push_str(&format!(
            "  {:<16} {}{}{} (canary/baseline mean ratio {ratio})\n",
            r.classification,
            r.name,
            if r.critical { " [critical]" } else { "" },
            if r.muted { " [muted]" } else { "" },
        ));
    }
    out
}
