//! `vigil analysis create FILE | get ID | watch ID | list | cancel ID`: the service's client, as a
//! person or a pipeline step uses it.
//!
//! Output contracts (scripts parse them):
//! - `create` prints the id alone on one line;
//! - `list` prints one analysis a line: id, state, verdict, score, separated by whitespace (`-`
//!   for a verdict or score not known yet); `--json`: a JSON array with every field;
//! - `get` prints `field: value` lines; `--json`: one JSON object with every field;
//! - `watch` prints each judgement and event as it comes and exits 0 when the analysis ends
//!   succeeded (a final Pass, or an Inconclusive accepted by `on_inconclusive: pass`), 1 on a
//!   final Fail or Marginal, 2 on Inconclusive, Error or cancellation, and 3 when it cannot
//!   watch (unreachable server, unknown id, refused token). A dropped stream is resumed from the
//!   last sequence number seen, so no judgement is missed or printed twice.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tonic::transport::Channel;

use vigil_proto::v1 as pb;
use vigil_proto::v1::analyses_client::AnalysesClient;

#[derive(Debug, Args)]
pub struct AnalysisArgs {
    /// The service's URL.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:7700",
        value_name = "URL"
    )]
    pub server: String,
    /// Bearer token (default: the VIGIL_TOKEN environment variable).
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "VIGIL_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// For an `https://` server: CA certificates (PEM) to verify it with, instead of none (the
    /// client has no built-in roots: a service's certificate is usually from a private CA).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// For a server that asks for client certificates (`vigil serve --client-ca`): this
    /// certificate chain (PEM); needs --client-key.
    #[arg(long, global = true, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The private key of --client-cert (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AnalysisCommand,
}

#[derive(Debug, Subcommand)]
pub enum AnalysisCommand {
    /// Start an analysis from a spec file (YAML or JSON; `-` for stdin); prints its id.
    Create {
        /// The spec.
        file: PathBuf,
        /// Choose the id (the same id and spec again returns the existing analysis).
        #[arg(long)]
        id: Option<String>,
    },
    /// Show one analysis.
    Get {
        /// The analysis's id.
        id: String,
        /// Every field as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print each judgement as it comes; the exit code is the verdict (0 pass, 1 fail or
    /// marginal, 2 inconclusive, error or cancelled, 3 cannot watch).
    Watch {
        /// The analysis's id.
        id: String,
    },
    /// List analyses, newest first.
    List {
        /// Only this app's.
        #[arg(long)]
        app: Option<String>,
        /// Only analyses in this state (pending, running, succeeded, failed, inconclusive,
        /// error, cancelled); repeatable.
        #[arg(long)]
        state: Vec<String>,
        /// Every field as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a pending or running analysis.
    Cancel {
        /// The analysis's id.
        id: String,
        /// Why (kept in the analysis's events).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

pub fn run(args: &AnalysisArgs) -> ExitCode {
    let watching = matches!(args.command, AnalysisCommand::Watch { .. });
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(dispatch(args)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(if watching { 3 } else { 1 })
        }
    }
}

struct Client {
    inner: AnalysesClient<Channel>,
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Client {
    async fn connect(args: &AnalysisArgs) -> Result<Client> {
        let tls = super::ClientTls {
            ca_file: args.ca_file.clone(),
            client_cert: args.client_cert.clone(),
            client_key: args.client_key.clone(),
        };
        let channel = super::grpc_channel(&args.server, "--server", &tls).await?;
        let token = match &args.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .context("the token has characters a header cannot carry")?,
            ),
            None => None,
        };
        Ok(Client {
            inner: AnalysesClient::new(channel).max_decoding_message_size(64 << 20),
            token,
        })
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        r
    }
}

pub(crate) fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", code_name(e.code()), e.message())
}

fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        InvalidArgument => "invalid argument",
        NotFound => "not found",
        AlreadyExists => "already exists",
        FailedPrecondition => "failed precondition",
        Unauthenticated => "unauthenticated",
        PermissionDenied => "permission denied",
        Unavailable => "unavailable",
        _ => "error",
    }
}

async fn dispatch(args: &AnalysisArgs) -> Result<ExitCode> {
    match &args.command {
        AnalysisCommand::Create { file, id } => {
            let spec = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("cannot read the spec from stdin")?;
                s
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let mut c = Client::connect(args).await?;
            let req = c.request(pb::CreateAnalysisRequest {
                id: id.clone().unwrap_or_default(),
                spec,
            });
            let r = c
                .inner
                .create_analysis(req)
                .await
                .map_err(status)?
                .into_inner();
            let a = r.analysis.context("the server sent no analysis")?;
            println!("{}", a.id);
            Ok(ExitCode::SUCCESS)
        }
        AnalysisCommand::Get { id, json } => {
            let mut c = Client::connect(args).await?;
            let req = c.request(pb::GetAnalysisRequest { id: id.clone() });
            let a = c
                .inner
                .get_analysis(req)
                .await
                .map_err(status)?
                .into_inner();
            if *json {
                println!("{}", serde_json::to_string_pretty(&analysis_json(&a))?);
            } else {
                print_analysis(&a);
            }
            Ok(ExitCode::SUCCESS)
        }
        AnalysisCommand::List { app, state, json } => {
            let mut states = Vec::new();
            for s in state {
                states.push(state_of(s)? as i32);
            }
            let mut c = Client::connect(args).await?;
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let req = c.request(pb::ListAnalysesRequest {
                    app: app.clone().unwrap_or_default(),
                    states: states.clone(),
                    page_size: 500,
                    page_token: token.clone(),
                });
                let r = c
                    .inner
                    .list_analyses(req)
                    .await
                    .map_err(status)?
                    .into_inner();
                all.extend(r.analyses);
                if r.next_page_token.is_empty() {
                    break;
                }
                token = r.next_page_token;
            }
            if *json {
                let v: Vec<Value> = all.iter().map(analysis_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for a in &all {
                    println!(
                        "{} {} {} {}",
                        a.id,
                        state_str(a.state),
                        verdict_str(a.verdict),
                        a.score.map_or("-".to_string(), |s| format!("{s:.1}"))
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AnalysisCommand::Cancel { id, reason } => {
            let mut c = Client::connect(args).await?;
            let req = c.request(pb::CancelAnalysisRequest {
                id: id.clone(),
                reason: reason.clone(),
            });
            let a = c
                .inner
                .cancel_analysis(req)
                .await
                .map_err(status)?
                .into_inner();
            println!("{} {}", a.id, state_str(a.state));
            Ok(ExitCode::SUCCESS)
        }
        AnalysisCommand::Watch { id } => watch(args, id).await,
    }
}

fn state_of(s: &str) -> Result<pb::State> {
    Ok(match s {
        "pending" => pb::State::Pending,
        "running" => pb::State::Running,
        "succeeded" => pb::State::Succeeded,
        "failed" => pb::State::Failed,
        "inconclusive" => pb::State::Inconclusive,
        "error" => pb::State::Error,
        "cancelled" => pb::State::Cancelled,
        _ => bail!("--state {s}: one of pending, running, succeeded, failed, inconclusive, error, cancelled"),
    })
}

pub(crate) fn state_str(v: i32) -> &'static str {
    match pb::State::try_from(v) {
        Ok(pb::State::Pending) => "pending",
        Ok(pb::State::Running) => "running",
        Ok(pb::State::Succeeded) => "succeeded",
        Ok(pb::State::Failed) => "failed",
        Ok(pb::State::Inconclusive) => "inconclusive",
        Ok(pb::State::Error) => "error",
        Ok(pb::State::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

pub(crate) fn verdict_str(v: i32) -> &'static str {
    match pb::Verdict::try_from(v) {
        Ok(pb::Verdict::Pass) => "Pass",
        Ok(pb::Verdict::Marginal) => "Marginal",
        Ok(pb::Verdict::Fail) => "Fail",
        Ok(pb::Verdict::Inconclusive) => "Inconclusive",
        Ok(pb::Verdict::Error) => "Error",
        _ => "-",
    }
}

fn is_final(state: i32) -> bool {
    !matches!(
        pb::State::try_from(state),
        Ok(pb::State::Pending | pb::State::Running)
    )
}

/// The exit code of a finished analysis's state.
fn exit_of(state: i32) -> ExitCode {
    match pb::State::try_from(state) {
        Ok(pb::State::Succeeded) => ExitCode::SUCCESS,
        Ok(pb::State::Failed) => ExitCode::from(1),
        _ => ExitCode::from(2),
    }
}

async fn watch(args: &AnalysisArgs, id: &str) -> Result<ExitCode> {
    let mut after = 0u64;
    let mut retries = 0;
    loop {
        let attempt = async {
            let mut c = Client::connect(args).await?;
            let req = c.request(pb::WatchAnalysisRequest {
                id: id.to_owned(),
                after_seq: after,
            });
            let stream = c.inner.watch_analysis(req).await.map_err(status)?;
            Ok::<_, anyhow::Error>(stream.into_inner())
        };
        let mut stream = match attempt.await {
            Ok(s) => s,
            // The first connection must work; later ones get a few tries.
            Err(e) if after == 0 || retries >= 5 => return Err(e),
            Err(e) => {
                retries += 1;
                eprintln!("vigil: reconnecting ({e:#})");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut final_state = None;
        loop {
            match stream.message().await {
                Ok(Some(u)) => {
                    retries = 0;
                    match u.update {
                        Some(pb::watch_update::Update::Analysis(a)) => {
                            if after == 0 {
                                println!(
                                    "{} {} {} {}/{} intervals",
                                    a.id,
                                    state_str(a.state),
                                    verdict_str(a.verdict),
                                    a.intervals_judged,
                                    a.intervals_total
                                );
                            }
                            if is_final(a.state) && a.last_seq <= after {
                                final_state = Some(a.state);
                            }
                        }
                        Some(pb::watch_update::Update::Judgement(j)) => {
                            after = u.seq;
                            print_judgement(&j);
                        }
                        Some(pb::watch_update::Update::Event(e)) => {
                            after = u.seq;
                            println!("event {}: {}", e.kind, e.message);
                            if is_final(e.state) {
                                final_state = Some(e.state);
                            }
                        }
                        None => after = u.seq.max(after),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if matches!(
                        e.code(),
                        tonic::Code::NotFound
                            | tonic::Code::InvalidArgument
                            | tonic::Code::Unauthenticated
                            | tonic::Code::PermissionDenied
                    ) || retries >= 5
                    {
                        return Err(status(e));
                    }
                    retries += 1;
                    eprintln!("vigil: stream interrupted ({}); resuming", e.message());
                    break;
                }
            }
        }
        if let Some(s) = final_state {
            return Ok(exit_of(s));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_judgement(j: &pb::IntervalJudgement) {
    let Some(jd) = &j.judgement else { return };
    println!(
        "interval {} ({:.0}s): {} {:.1}",
        j.interval,
        j.elapsed_s,
        verdict_str(jd.verdict),
        jd.score
    );
    if !jd.note.is_empty() {
        println!("  note: {}", jd.note);
    }
    for f in &jd.evidence {
        let sev = match pb::Severity::try_from(f.severity) {
            Ok(pb::Severity::Fail) => "fail",
            Ok(pb::Severity::Review) => "review",
            _ => "warn",
        };
        println!("  {sev} {}: {}", f.key, f.detail);
        if !f.feedback.is_empty() {
            println!("    feedback: {}", f.feedback);
        }
    }
}

fn print_analysis(a: &pb::Analysis) {
    println!("id: {}", a.id);
    println!("app: {}", a.app);
    println!("state: {}", state_str(a.state));
    println!("verdict: {}", verdict_str(a.verdict));
    println!(
        "score: {}",
        a.score.map_or("-".to_string(), |s| format!("{s:.1}"))
    );
    println!("intervals: {}/{}", a.intervals_judged, a.intervals_total);
    if let Some(t) = a.time_to_detect_s {
        println!("time to detect: {t:.0}s");
    }
    if !a.note.is_empty() {
        println!("note: {}", a.note);
    }
    if let Some(j) = &a.last_judgement {
        print_judgement(j);
    }
    if let Some(x) = &a.action {
        let how = if x.outcome.is_empty() {
            x.state.clone()
        } else {
            format!("{}, {}", x.state, x.outcome)
        };
        let dry = if x.dry_run { " (dry run)" } else { "" };
        println!("action: {}{dry}: {how}", x.action);
        for step in &x.steps {
            println!("  {step}");
        }
        if !x.message.is_empty() {
            println!("  {}", x.message);
        }
    }
    if !a.deliveries.is_empty() {
        println!("notifications:");
        for d in &a.deliveries {
            let error = if d.last_error.is_empty() {
                String::new()
            } else {
                format!(" ({})", d.last_error)
            };
            println!(
                "  {} {} {}, {} attempt{}{error}",
                d.channel,
                d.event,
                d.state,
                d.attempts,
                if d.attempts == 1 { "" } else { "s" }
            );
        }
    }
}

pub(crate) fn opt<T: Into<Value>>(x: Option<T>) -> Value {
    x.map_or(Value::Null, Into::into)
}

pub(crate) fn finding_json(f: &pb::Finding) -> Value {
    json!({
        "signal": pb::Signal::try_from(f.signal).map_or("unspecified", |s| match s {
            pb::Signal::Metrics => "metrics",
            pb::Signal::Logs => "logs",
            pb::Signal::Traces => "traces",
            pb::Signal::Callers => "callers",
            pb::Signal::Anomaly => "anomaly",
            pb::Signal::Unspecified => "unspecified",
        }),
        "subject": f.subject,
        "severity": match pb::Severity::try_from(f.severity) {
            Ok(pb::Severity::Fail) => "fail",
            Ok(pb::Severity::Review) => "review",
            _ => "warn",
        },
        "strength": f.strength,
        "detail": f.detail,
        "key": f.key,
        "test": f.test,
        "statistic": opt(f.statistic),
        "p": opt(f.p),
        "q": opt(f.q),
        "effect": f.effect.as_ref().map(|e| json!({"kind": e.kind, "estimate": e.estimate, "low": opt(e.low), "high": opt(e.high)})),
        "counts": f.counts.as_ref().map(|c| json!({"baseline": c.baseline, "canary": c.canary, "of": c.of})),
        "examples": f.examples,
        "operation": f.operation,
        "shift_ms": opt(f.shift_ms),
        "feedback": f.feedback,
    })
}

pub(crate) fn judgement_json(j: &pb::IntervalJudgement) -> Value {
    let jd = j.judgement.clone().unwrap_or_default();
    json!({
        "interval": j.interval,
        "elapsed_s": j.elapsed_s,
        "window_start": j.window_start,
        "window_end": j.window_end,
        "verdict": verdict_str(jd.verdict),
        "score": jd.score,
        "note": jd.note,
        "evidence": jd.evidence.iter().map(finding_json).collect::<Vec<_>>(),
        "findings": jd.findings.iter().map(finding_json).collect::<Vec<_>>(),
        "data": j.data.iter().map(|d| json!({"name": d.name, "baseline_samples": d.baseline_samples, "canary_samples": d.canary_samples})).collect::<Vec<_>>(),
    })
}

fn analysis_json(a: &pb::Analysis) -> Value {
    json!({
        "id": a.id,
        "app": a.app,
        "state": state_str(a.state),
        "verdict": if a.verdict == 0 { Value::Null } else { verdict_str(a.verdict).into() },
        "score": opt(a.score),
        "created_ms": a.created_ms,
        "updated_ms": a.updated_ms,
        "finished_ms": opt(a.finished_ms),
        "last_seq": a.last_seq,
        "intervals_judged": a.intervals_judged,
        "intervals_total": a.intervals_total,
        "time_to_detect_s": opt(a.time_to_detect_s),
        "note": a.note,
        "spec": serde_json::from_str::<Value>(&a.spec_json).unwrap_or(Value::Null),
        "last_judgement": a.last_judgement.as_ref().map(judgement_json),
        "action": a.action.as_ref().map(|x| json!({
            "action": x.action,
            "state": x.state,
            "dry_run": x.dry_run,
            "outcome": x.outcome,
            "ordered_ms": x.ordered_ms,
            "steps": x.steps,
            "message": x.message,
            "target": serde_json::from_str::<Value>(&x.target_json).unwrap_or(Value::Null),
        })),
        "deliveries": a.deliveries.iter().map(|d| json!({
            "key": d.key,
            "channel": d.channel,
            "target": d.target,
            "event": d.event,
            "state": d.state,
            "attempts": d.attempts,
            "last_error": d.last_error,
            "next_attempt_ms": opt(d.next_attempt_ms),
            "done_ms": opt(d.done_ms),
        })).collect::<Vec<_>>(),
    })
}
