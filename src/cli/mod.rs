//! Subcommand handlers of the `vigil` binary. Each reads its documented input, calls the library,
//! and prints its documented output; errors go back to `main` as `anyhow` errors.

pub mod analysis;
pub mod deploy;
pub mod judge;
pub mod logs;
pub mod logs_compare;
pub mod push;
pub mod replay;
pub mod serve;
pub mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tonic::transport::Channel;

/// How a client command trusts an `https://` service, and proves itself to one that asks
/// (`vigil serve --client-ca`). The same flags on every command that talks to the service.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// CA certificates (PEM) to verify the service with; required for `https://`: the client has
    /// no built-in roots, since a service's certificate usually comes from a private CA.
    pub ca_file: Option<PathBuf>,
    /// The client's certificate chain (PEM), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// The private key of `client_cert` (PEM).
    pub client_key: Option<PathBuf>,
}

/// A gRPC channel to `url` (named by `flag` in errors): plain for `http://`, TLS with `tls`'s
/// files for `https://`.
pub async fn grpc_channel(url: &str, flag: &str, tls: &ClientTls) -> Result<Channel> {
    let mut endpoint = Channel::from_shared(url.to_owned())
        .with_context(|| format!("{flag} {url} is not a URL"))?
        .connect_timeout(Duration::from_secs(10));
    if url.starts_with("https://") {
        // The one process-wide rustls provider (ring), as the service uses.
        vigil_analyzer::service::tls::install_provider();
        let read = |what: &str, p: &PathBuf| {
            std::fs::read(p).with_context(|| format!("{what} {}", p.display()))
        };
        let Some(ca) = &tls.ca_file else {
            bail!("{flag} {url} is https: give --ca-file with the CA that signed its certificate");
        };
        let mut config = tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(read("--ca-file", ca)?),
        );
        if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
            config = config.identity(tonic::transport::Identity::from_pem(
                read("--client-cert", cert)?,
                read("--client-key", key)?,
            ));
        }
        endpoint = endpoint
            .tls_config(config)
            .with_context(|| format!("cannot set up TLS for {flag}"))?;
    } else if tls.ca_file.is_some() || tls.client_cert.is_some() {
        bail!("--ca-file and --client-cert are for an https:// {flag}; {url} is not");
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url} ({flag})"))
}
