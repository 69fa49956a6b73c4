//! `vigil rollback`, `vigil deploy`, `vigil promote`: the deployer over a kubeconfig (or the
//! in-cluster service account), with strategy, traffic and windows from the deployer's YAML config
//! file (documented in `vigil_deployer::config`). Human-readable progress by default; `--json`
//! prints one JSON document for tools.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use vigil_deployer::cluster::{connect, Cluster, GroupRef, TrafficSpec};
use vigil_deployer::config::{self, DeployerConfig, TrafficConfig};
use vigil_deployer::rollback::{execute_rollback, plan_rollback, RollbackRequest, StepReport};
use vigil_deployer::strategy::{self, StepVerdict};
use vigil_deployer::Error;

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Deployer config file (YAML): namespace, cluster, traffic, strategy, rollback, windows.
    #[arg(long)]
    pub config: PathBuf,
    /// Kubeconfig file; without it: $KUBECONFIG, ~/.kube/config, then in-cluster config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace, overriding the config file's.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Print one JSON document instead of human-readable progress.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The failed canary server group: deployment/NAME, replicaset/NAME or NAME.
    #[arg(long)]
    pub canary: String,
    /// The baseline server group to return traffic to.
    #[arg(long)]
    pub baseline: String,
    /// HTTPRoute backend (Service) of the canary; default: the canary's name.
    #[arg(long)]
    pub canary_backend: Option<String>,
    /// HTTPRoute backend (Service) of the baseline; default: the baseline's name.
    #[arg(long)]
    pub baseline_backend: Option<String>,
    /// Drain delay in seconds, overriding the config file's.
    #[arg(long)]
    pub drain_seconds: Option<u64>,
    /// Print the plan and the API calls it would make; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Deployment manifest (YAML or JSON) of the new server group; its name is replaced by the
    /// next `<cluster>-vNNN`.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Print what the deploy would do (new server group, traffic steps, config versions, groups
    /// the clean-up would delete); change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The server group (e.g. shop-v003) to give all traffic to.
    #[arg(long)]
    pub server_group: String,
    /// Print what the promotion would do (traffic now, groups the clean-up would delete); change
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn load(args: &ClusterArgs) -> Result<DeployerConfig> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading config file {}", args.config.display()))?;
    let mut cfg = config::parse(&text)
        .with_context(|| format!("in config file {}", args.config.display()))?;
    if let Some(ns) = &args.namespace {
        cfg.namespace = ns.clone();
    }
    Ok(cfg)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn cluster(args: &ClusterArgs, cfg: &DeployerConfig) -> Result<Cluster> {
    let (client, _) = connect(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
    Ok(Cluster::new(client, &cfg.namespace))
}

/// The plan of a `--dry-run` deploy or promote.
fn print_plan(plan: &strategy::DeployPlan, json_out: bool) -> Result<()> {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"dry_run": true, "plan": plan}))?
        );
    } else {
        print!("{plan}");
        println!("Dry run: nothing was changed.");
    }
    Ok(())
}

fn print_step(r: &StepReport) {
    println!("  [{}] read: {}; changed: {}", r.step, r.read, r.changed);
}

pub fn rollback(args: &RollbackArgs) -> Result<()> {
    let cfg = load(&args.cluster)?;
    let canary = GroupRef::parse(&args.canary).context("--canary")?;
    let baseline = GroupRef::parse(&args.baseline).context("--baseline")?;
    let traffic = match &cfg.traffic {
        TrafficConfig::Service { service } => TrafficSpec::Service {
            service: service.clone(),
        },
        TrafficConfig::HttpRoute { route, .. } => TrafficSpec::HttpRoute {
            route: route.clone(),
            canary_backend: args
                .canary_backend
                .clone()
                .unwrap_or_else(|| canary.name.clone()),
            baseline_backend: args
                .baseline_backend
                .clone()
                .unwrap_or_else(|| baseline.name.clone()),
        },
    };
    let req = RollbackRequest {
        canary,
        baseline,
        traffic,
    };
    let mut opts = cfg.rollback.options();
    if let Some(d) = args.drain_seconds {
        opts.drain = std::time::Duration::from_secs(d);
    }
    let json_out = args.cluster.json;
    runtime()?.block_on(async {
        let cluster = cluster(&args.cluster, &cfg).await?;
        let plan = match plan_rollback(&cluster, &req).await {
            Ok(p) => p,
            Err(Error::NothingToRollBack { canary, baseline }) => {
                if json_out {
                    println!("{}", json!({"status": "nothing_to_do", "canary": canary, "baseline": baseline}));
                } else {
                    println!("Nothing to roll back: {canary} is gone and no unfinished rollback is recorded on {baseline}.");
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if args.dry_run {
            let calls = plan.api_calls(&opts)?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&json!({"dry_run": true, "plan": plan, "api_calls": calls}))?);
            } else {
                print!("{plan}");
                println!("API calls it would make (dry run: nothing was changed):");
                for c in calls {
                    println!("  {c}");
                }
            }
            return Ok(());
        }
        if !json_out {
            print!("{plan}");
            println!("Rolling back:");
        }
        let mut progress = |r: &StepReport| {
            if !json_out {
                print_step(r);
            }
        };
        let report = execute_rollback(&cluster, &plan, &opts, &mut progress).await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&json!({"status": "rolled_back", "report": report}))?);
        } else {
            println!("Rolled back: all traffic on {}; {} removed.", req.baseline, req.canary);
        }
        Ok(())
    })
}

pub fn deploy(args: &DeployArgs) -> Result<()> {
    let cfg = load(&args.cluster)?;
    let text = std::fs::read_to_string(&args.manifest)
        .with_context(|| format!("reading manifest {}", args.manifest.display()))?;
    let manifest = config::parse_manifest(&text)
        .with_context(|| format!("in manifest {}", args.manifest.display()))?;
    let json_out = args.cluster.json;
    runtime()?.block_on(async {
        let cluster = cluster(&args.cluster, &cfg).await?;
        if args.dry_run {
            let plan = strategy::plan_deploy(&cluster, &cfg, &manifest).await?;
            print_plan(&plan, json_out)?;
            return Ok(());
        }
        // The command line has no analysis attached: steps continue. The service drives the hook.
        let report = strategy::deploy(&cluster, &cfg, manifest, |p| async move {
            if !json_out {
                println!("  traffic on the new server group: {p}%");
            }
            StepVerdict::Continue
        })
        .await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "Deployed {} (previous: {}); deleted: {}",
                report.server_group,
                report.previous.as_deref().unwrap_or("none"),
                if report.deleted_groups.is_empty() {
                    "none".into()
                } else {
                    report.deleted_groups.join(", ")
                }
            );
        }
        Ok(())
    })
}

pub fn promote(args: &PromoteArgs) -> Result<()> {
    let cfg = load(&args.cluster)?;
    let json_out = args.cluster.json;
    runtime()?.block_on(async {
        let cluster = cluster(&args.cluster, &cfg).await?;
        if args.dry_run {
            let plan = strategy::plan_promote(&cluster, &cfg, &args.server_group).await?;
            print_plan(&plan, json_out)?;
            return Ok(());
        }
        let report = strategy::promote(&cluster, &cfg, &args.server_group).await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "Promoted {}: all traffic on it (previous: {}).",
                report.server_group,
                report.previous.as_deref().unwrap_or("none")
            );
        }
        Ok(())
    })
}
