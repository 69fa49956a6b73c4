//! `vigil serve`: the verdict service. gRPC (`vigil.v1.Analyses`, `vigil.v1.Judge`, health,
//! reflection) and HTTP share one port through one axum router, behind one token check.
//!
//! - [`spec`]: the analysis spec and the plan it resolves to;
//! - [`runner`]: the [`runner::Core`] — store, metric source, running analyses, watchers — and the
//!   interval loop of each analysis;
//! - [`grpc`]: the tonic services; [`auth`]: tokens and scopes; [`record`]: the stored payloads;
//! - [`tls`]: TLS and mutual TLS on the shared port (rustls, ring);
//! - [`flagger`]: Flagger's rollout and rollback webhooks (one analysis per canary revision);
//! - [`metrics`]: where metric samples come from (Prometheus; tests bring their own).

pub mod action;
pub mod auth;
pub mod flagger;
pub mod grpc;
pub mod metrics;
pub mod page;
pub mod record;
pub mod routes;
pub mod runner;
pub mod snapshot;
pub mod spec;
#[cfg(test)]
mod tests;
pub mod tls;

/// The store the service runs on (SQLite today; one module, so PostgreSQL can take its place).
pub use crate::store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};

use self::auth::Tokens;
use self::runner::{Core, ServiceError};
use vigil_proto::v1::analyses_server::AnalysesServer;
use vigil_proto::v1::judge_server::JudgeServer;

/// The largest request accepted, gRPC message or HTTP body.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// What `vigil serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0: any free port; the bound address is reported).
    pub listen: SocketAddr,
    /// Where the store lives; `None`: in memory.
    pub data_dir: Option<PathBuf>,
    /// Accepted tokens; `None`: no authentication, loopback only.
    pub tokens: Option<Tokens>,
    /// How long finished analyses are kept.
    pub retention: Duration,
    /// The store's `synchronous` level. The service defaults to [`store::Durability::Normal`]:
    /// an acknowledged write survives a crash of the process (`kill -9`), and a power loss may roll
    /// back the last commits — which a restarted analysis re-judges, since its intervals are
    /// re-queried from the source. `Full` adds an fsync per write (about 240 writes/s here).
    pub durability: store::Durability,
    /// The Prometheus that Kayenta's canary executions (`POST /canary/{configId}`) read; `None`:
    /// those executions end in an error naming the missing source.
    pub kayenta_prometheus: Option<String>,
    /// Serve over TLS (HTTP/2 and HTTP/1.1 by ALPN), with client certificates when it names a
    /// client CA; `None`: plain HTTP (h2c for gRPC).
    pub tls: Option<tls::TlsFiles>,
    /// The notification worker: retries, and the base of the links it sends (an empty
    /// `public_url` means the bound address).
    pub notify: crate::notify::worker::Options,
    /// Who carries out the rollbacks and promotions analyses order; `None`: an ordered action
    /// ends in an event saying the service has no deployer.
    pub deployer: Option<DeployerHandle>,
}

/// The deployer of [`ServeConfig`] (the binary wires the Kubernetes one in).
#[derive(Clone)]
pub struct DeployerHandle(pub Arc<dyn crate::actions::Deployer>);

impl std::fmt::Debug for DeployerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeployerHandle")
    }
}

/// Where the OTLP receivers listen (issue 12), beside the service's own port.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// OTLP/gRPC; `None`: not served.
    pub grpc: Option<OtlpListen>,
    /// OTLP/HTTP; `None`: not served.
    pub http: Option<OtlpListen>,
    /// Bytes of pushed telemetry held for running analyses at most.
    pub memory_budget: usize,
}

/// One receiver's address, and whether it was asked for explicitly: a default port another
/// process holds only warns (several services on one machine, tests in parallel), an explicit
/// one that cannot be bound stops the start.
#[derive(Debug, Clone, Copy)]
pub struct OtlpListen {
    /// Address (port 0: any free port).
    pub addr: SocketAddr,
    /// Given on the command line.
    pub explicit: bool,
}

/// The addresses the service bound.
#[derive(Debug, Clone)]
pub struct Bound {
    /// The service (gRPC API and HTTP).
    pub api: SocketAddr,
    /// OTLP/gRPC, if served.
    pub otlp_grpc: Option<SocketAddr>,
    /// OTLP/HTTP, if served.
    pub otlp_http: Option<SocketAddr>,
    /// Why a receiver on a default port was not started (the port is taken).
    pub notes: Vec<String>,
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Listening beyond loopback needs tokens.
    #[error("refusing to listen on {0} without --tokens: anyone who can reach it could start and cancel analyses (use a loopback address, or give --tokens FILE)")]
    NoTokens(SocketAddr),
    /// Cannot bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The store.
    #[error("{0}")]
    Service(#[from] ServiceError),
    /// The store cannot be opened.
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// Reflection.
    #[error("reflection: {0}")]
    Reflection(String),
    /// TLS cannot be set up.
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    /// A source given on the command line is unusable.
    #[error("--kayenta-prometheus: {0}")]
    Source(String),
}

async fn fallback(req: Request<Body>) -> Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return tonic::Status::unimplemented(format!("no method {}", req.uri().path()))
            .into_http::<Body>()
            .into_response();
    }
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": format!("no route {} {}", req.method(), req.uri().path()) })
            .to_string(),
    )
        .into_response()
}

/// The router of the shared port: gRPC services and HTTP routes, the token check and the size
/// limit in front of all of them. Also returns the health reporter, to mark services serving.
pub fn router(
    core: Arc<Core>,
    tokens: Option<Tokens>,
    kayenta: crate::http::kayenta::KayentaState,
) -> Result<(axum::Router, tonic_health::server::HealthReporter), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(vigil_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    // grpcio-reflection's Python client and older grpcurl still speak v1alpha.
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let grpc = tonic::service::Routes::new(health_service)
        .add_service(
            AnalysesServer::new(grpc::AnalysesService::new(core.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            JudgeServer::new(grpc::JudgeService).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .into_axum_router();
    let http = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .merge(routes::router(core.clone()))
        .merge(flagger::router(core.clone()))
        // Kayenta's faces sit behind the same token check and size limit.
        .merge(crate::http::kayenta::router(kayenta));
    let app = grpc
        .merge(http)
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(tokens, auth::check))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(axum::middleware::from_fn(routes::malformed))
        .layer(axum::middleware::from_fn(routes::deadline))
        .layer(axum::middleware::from_fn_with_state(core, routes::count));
    Ok((app, health))
}

/// Runs the service until the process is stopped; `on_ready` gets the bound address once it
/// accepts connections.
pub async fn serve(
    config: ServeConfig,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    serve_with_otlp(
        config,
        OtlpConfig {
            grpc: None,
            http: None,
            memory_budget: crate::ingest::DEFAULT_BUDGET_BYTES,
        },
        |b| on_ready(b.api),
    )
    .await
}

/// Binds an OTLP receiver's port: `None` when it is not served, or when a default port is taken
/// (then with a note saying so).
async fn bind_otlp(
    listen: Option<OtlpListen>,
    what: &str,
    notes: &mut Vec<String>,
) -> Result<Option<tokio::net::TcpListener>, ServeError> {
    let Some(l) = listen else { return Ok(None) };
    match tokio::net::TcpListener::bind(l.addr).await {
        Ok(t) => Ok(Some(t)),
        Err(source) if !l.explicit => {
            notes.push(format!(
                "{what} receiver not started: cannot listen on {}: {source}",
                l.addr
            ));
            Ok(None)
        }
        Err(source) => Err(ServeError::Bind {
            addr: l.addr,
            source,
        }),
    }
}

/// [`serve`] with the OTLP receivers; `on_ready` gets every bound address.
pub async fn serve_with_otlp(
    config: ServeConfig,
    otlp: OtlpConfig,
    on_ready: impl FnOnce(Bound),
) -> Result<(), ServeError> {
    if config.tokens.is_none() && !config.listen.ip().is_loopback() {
        return Err(ServeError::NoTokens(config.listen));
    }
    // One rustls provider for the whole process, before anything (TLS listener, Prometheus
    // client) builds a configuration.
    tls::install_provider();
    let tls_config = config.tls.as_ref().map(tls::server_config).transpose()?;
    let store = match &config.data_dir {
        Some(dir) => store::Store::open_with(
            dir,
            &store::StoreOptions {
                durability: config.durability,
                ..store::StoreOptions::default()
            },
        )?,
        None => store::Store::open_in_memory()?,
    };
    for l in [otlp.grpc, otlp.http].into_iter().flatten() {
        if config.tokens.is_none() && !l.addr.ip().is_loopback() {
            return Err(ServeError::NoTokens(l.addr));
        }
    }
    let hub = Arc::new(crate::ingest::Hub::new(otlp.memory_budget));
    let core = Core::with_hub(store, Arc::new(metrics::PrometheusSource), hub.clone());
    if let Some(d) = &config.deployer {
        core.set_deployer(d.0.clone());
    }
    let resumed = core.resume_all().await?;
    if resumed > 0 {
        tracing::info!(resumed, "unfinished analyses resumed");
    }
    let sweeper = core.clone();
    let retention = config.retention;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match sweeper.sweep(retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "finished analyses past retention deleted"),
                Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
            }
        }
    });
    let prometheus = config
        .kayenta_prometheus
        .as_deref()
        .map(|url| crate::source::prometheus::Prometheus::new(url, Duration::from_secs(30)))
        .transpose()
        .map_err(|e| ServeError::Source(e.to_string()))?;
    let kayenta = crate::http::kayenta::KayentaState::new(prometheus);
    let core_for_worker = core.clone();
    let (app, health) = router(core, config.tokens.clone(), kayenta)?;
    health
        .set_serving::<AnalysesServer<grpc::AnalysesService>>()
        .await;
    health
        .set_serving::<JudgeServer<grpc::JudgeService>>()
        .await;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let mut notes = Vec::new();
    let otlp_grpc = bind_otlp(otlp.grpc, "OTLP/gRPC", &mut notes).await?;
    let otlp_http = bind_otlp(otlp.http, "OTLP/HTTP", &mut notes).await?;
    let bound = Bound {
        api: listener.local_addr()?,
        otlp_grpc: otlp_grpc.as_ref().map(|l| l.local_addr()).transpose()?,
        otlp_http: otlp_http.as_ref().map(|l| l.local_addr()).transpose()?,
        notes,
    };
    for (l, app) in [
        (
            otlp_grpc,
            crate::ingest::receiver::grpc_router(hub.clone(), config.tokens.clone()),
        ),
        (
            otlp_http,
            crate::ingest::receiver::http_router(hub.clone(), config.tokens.clone()),
        ),
    ] {
        if let Some(l) = l {
            // The receivers take the same tokens, so they get the same TLS.
            let tls = tls_config.clone();
            tokio::spawn(async move {
                let r = match tls {
                    Some(tls) => tls::serve(l, tls, app).await,
                    None => crate::ingest::receiver::serve(l, app).await,
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "OTLP receiver stopped");
                }
            });
        }
    }
    let mut notify = config.notify.clone();
    if notify.public_url.is_empty() {
        let scheme = if tls_config.is_some() {
            "https"
        } else {
            "http"
        };
        notify.public_url = format!("{scheme}://{}", bound.api);
    }
    crate::notify::worker::spawn(core_for_worker, notify);
    on_ready(bound);
    match tls_config {
        // `tls::serve` sets TCP_NODELAY on each accepted connection itself.
        Some(tls_config) => tls::serve(listener, tls_config, app).await?,
        None => {
            // Without TCP_NODELAY a small gRPC response waits for the peer's delayed ACK (about
            // 40 ms on Linux): benches/service.rs measured a 44 ms median for GetAnalysis before.
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            });
            axum::serve(listener, app).await?
        }
    }
    Ok(())
}
