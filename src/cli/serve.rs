//! `vigil serve [--listen 127.0.0.1:7700] [--data-dir DIR] [--tokens FILE] [--tls-cert FILE
//! --tls-key FILE [--client-ca FILE]] [--deployer-config FILE [--kubeconfig FILE]]`: the verdict
//! service, gRPC and HTTP on one port; with a deployer config it also rolls back on a final Fail
//! and promotes on a final Pass when an analysis's spec asks (see `src/deployer.rs`). Prints
//! `vigil: serving on http://ADDR` (`https://` with TLS) on stderr once it accepts connections
//! (with `--listen 127.0.0.1:0`, ADDR has the port it got).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use vigil_analyzer::service::{self, auth::Tokens, spec::Dur, ServeConfig};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on; beyond loopback only with --tokens.
    #[arg(long, default_value = "127.0.0.1:7700", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Directory of the store (created if missing); without it, nothing survives a restart.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Tokens file: one `<scope> <token>` a line (scopes ingest, read, write, admin; `#` comments).
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// How long finished analyses are kept (e.g. 30d, 12h).
    #[arg(long, default_value = "30d", value_name = "DURATION")]
    pub retention: String,
    /// The store's SQLite `synchronous` level: `normal` (an acknowledged write survives a crash of
    /// the process; a power loss may roll back the last writes, which a restarted analysis
    /// re-judges) or `full` (survives a power loss too; one fsync per write).
    #[arg(long, default_value = "normal", value_name = "LEVEL", value_parser = ["normal", "full"])]
    pub durability: String,
    /// Prometheus base URL for Kayenta's canary executions (`POST /canary/{configId}`).
    #[arg(long, value_name = "URL")]
    pub kayenta_prometheus: Option<String>,
    /// Serve over TLS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: refuse clients without a certificate signed by one of these CAs (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// OTLP/gRPC receiver address [default: 127.0.0.1:4317], or `off`. A default port that is
    /// taken only warns; a port given here must be free.
    #[arg(long, value_name = "ADDR|off")]
    pub otlp_grpc_listen: Option<String>,
    /// OTLP/HTTP receiver address (`/v1/logs`, `/v1/traces`, `/v1/metrics`) [default:
    /// 127.0.0.1:4318], or `off`.
    #[arg(long, value_name = "ADDR|off")]
    pub otlp_http_listen: Option<String>,
    /// Pushed telemetry held for running analyses at most (e.g. 512MiB, 2GiB); beyond it OTLP
    /// exports are refused with a retry hint.
    #[arg(long, default_value = "512MiB", value_name = "SIZE")]
    pub memory_budget: String,
    /// Base URL of this service as people reach it (the links in notifications); default: the
    /// listen address.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Longest wait between two attempts of a notification (exponential backoff with jitter
    /// from 2s up to it; a Slack `Retry-After` is honoured as given).
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub notify_backoff_max: String,
    /// Deployer config (YAML, as `vigil rollback --config`): traffic, strategy and rollback timing
    /// for the rollbacks and promotions analyses order (`rollback:`/`promote:` in a spec).
    /// Without it, `vigil serve` changes nothing in a cluster.
    #[arg(long, value_name = "FILE")]
    pub deployer_config: Option<PathBuf>,
    /// Kubeconfig for the deployer; without it: $KUBECONFIG, ~/.kube/config, then the in-cluster
    /// service account.
    #[arg(long, value_name = "FILE", requires = "deployer_config")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for the deployer.
    #[arg(long, value_name = "NAME", requires = "deployer_config")]
    pub kube_context: Option<String>,
    /// Holder identity of the deployer's traffic locks (Leases). Fixed, not per process, so that
    /// a restarted service resumes a rollback under the lock its predecessor held: give each
    /// `vigil serve` sharing a cluster its own.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "vigil-serve",
        requires = "deployer_config"
    )]
    pub deployer_identity: String,
}

/// The Kubernetes deployer `--deployer-config` asks for (inside the runtime: kube needs it).
async fn deployer(args: &ServeArgs) -> Result<Option<service::DeployerHandle>> {
    let Some(path) = &args.deployer_config else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--deployer-config: reading {}", path.display()))?;
    let config = vigil_deployer::config::parse(&text)
        .with_context(|| format!("--deployer-config: in {}", path.display()))?;
    let (client, _) =
        vigil_deployer::cluster::connect(args.kubeconfig.as_deref(), args.kube_context.as_deref())
            .await
            .context("--deployer-config: connecting to the cluster")?;
    Ok(Some(service::DeployerHandle(std::sync::Arc::new(
        crate::deployer::KubeDeployer::new(client, config, &args.deployer_identity),
    ))))
}

fn otlp_listen(
    given: Option<&str>,
    default: &str,
    flag: &str,
) -> Result<Option<service::OtlpListen>> {
    match given {
        Some("off") => Ok(None),
        Some(a) => Ok(Some(service::OtlpListen {
            addr: a
                .parse()
                .with_context(|| format!("{flag}: `{a}` is not ADDR:PORT or `off`"))?,
            explicit: true,
        })),
        None => Ok(Some(service::OtlpListen {
            addr: default.parse().context(flag.to_owned())?,
            explicit: false,
        })),
    }
}

/// `512MiB`, `2GiB`, `100MB`, `1048576`: bytes.
fn parse_size(s: &str) -> Result<usize> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("--memory-budget: `{s}` is not a size such as 512MiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            anyhow::bail!("--memory-budget: unknown unit `{other}` (B, KiB, MiB, GiB, KB, MB, GB)")
        }
    };
    let bytes = n * mult;
    if !(1.0..=1e15).contains(&bytes) {
        anyhow::bail!("--memory-budget: `{s}` is out of range");
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked to be in 1..1e15 above"
    )]
    Ok(bytes as usize)
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let tokens = args
        .tokens
        .as_deref()
        .map(Tokens::load)
        .transpose()
        .context("--tokens")?;
    let retention = Dur::parse(&args.retention)
        .map_err(anyhow::Error::msg)
        .context("--retention")?;
    let backoff_max = Dur::parse(&args.notify_backoff_max)
        .map_err(anyhow::Error::msg)
        .context("--notify-backoff-max")?;
    if backoff_max.secs() < 0.001 {
        anyhow::bail!("--notify-backoff-max: must be at least 1ms");
    }
    let mut notify = vigil_analyzer::notify::worker::Options {
        public_url: args.public_url.clone().unwrap_or_default(),
        backoff_max: Duration::from_secs_f64(backoff_max.secs()),
        ..Default::default()
    };
    notify.backoff_base = notify.backoff_base.min(notify.backoff_max);
    if let Some(u) = &args.public_url {
        let ok = u.starts_with("http://") || u.starts_with("https://");
        if !ok {
            anyhow::bail!("--public-url: `{u}` is not an http(s) URL");
        }
    }
    let mut config = ServeConfig {
        notify,
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        tokens,
        retention: Duration::from_secs_f64(retention.secs()),
        durability: if args.durability == "full" {
            service::store::Durability::Full
        } else {
            service::store::Durability::Normal
        },
        kayenta_prometheus: args.kayenta_prometheus.clone(),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(service::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.client_ca.clone(),
            }),
            _ => None,
        },
        deployer: None,
    };
    let otlp = service::OtlpConfig {
        grpc: otlp_listen(
            args.otlp_grpc_listen.as_deref(),
            "127.0.0.1:4317",
            "--otlp-grpc-listen",
        )?,
        http: otlp_listen(
            args.otlp_http_listen.as_deref(),
            "127.0.0.1:4318",
            "--otlp-http-listen",
        )?,
        memory_budget: parse_size(&args.memory_budget)?,
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        config.deployer = deployer(args).await?;
        tokio::select! {
            // The service's line first: scripts and tests read it as the first line.
            r = service::serve_with_otlp(config, otlp, |b| {
                eprintln!("vigil: serving on {scheme}://{}", b.api);
                if let Some(a) = b.otlp_grpc {
                    eprintln!("vigil: OTLP/gRPC on {scheme}://{a}");
                }
                if let Some(a) = b.otlp_http {
                    eprintln!("vigil: OTLP/HTTP on {scheme}://{a}");
                }
                for n in &b.notes {
                    eprintln!("vigil: {n}");
                }
            }) => {
                r.map_err(anyhow::Error::from)
            }
            _ = shutdown() => {
                eprintln!("vigil: stopping");
                Ok(())
            }
        }
    })
}

/// Ctrl-C or SIGTERM. Every acknowledged write is already in the store, so stopping at once loses
/// nothing; running analyses resume at their next interval on the next start.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
