//! `vigil serve` over TLS and mutual TLS, driven by real clients: Python grpcio with
//! `grpc.ssl_channel_credentials` (HTTP/2 by ALPN) and Python's `ssl`/`http.client` for HTTPS
//! (`tests/python/tls_client.py`), and `vigil analysis --server https://…`. A throwaway CA, server
//! and client certificates are made per test with rcgen; a second, unrelated CA makes a client
//! certificate the server must refuse.

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod common;

use common::TempDir;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM files: `ca.pem`, `server.pem`/`server.key` (for 127.0.0.1 and localhost),
/// `client.pem`/`client.key` (signed by the CA), `stranger.pem`/`stranger.key` (signed by another
/// CA).
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("pki");
        let ca = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
        };
        let leaf = |sans: &[&str], cn: &str, usage: ExtendedKeyUsagePurpose| {
            let mut p =
                CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            (p, KeyPair::generate().unwrap())
        };
        let root = ca("vigil test CA");
        let other = ca("someone else's CA");
        dir.write("ca.pem", &root.pem());
        let (p, k) = leaf(
            &["127.0.0.1", "localhost"],
            "vigil",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        dir.write("server.pem", &p.signed_by(&k, &root).unwrap().pem());
        dir.write("server.key", &k.serialize_pem());
        let (p, k) = leaf(&[], "ci-pipeline", ExtendedKeyUsagePurpose::ClientAuth);
        dir.write("client.pem", &p.signed_by(&k, &root).unwrap().pem());
        dir.write("client.key", &k.serialize_pem());
        let (p, k) = leaf(&[], "stranger", ExtendedKeyUsagePurpose::ClientAuth);
        dir.write("stranger.pem", &p.signed_by(&k, &other).unwrap().pem());
        dir.write("stranger.key", &k.serialize_pem());
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.0.join(name).display().to_string()
    }
}

struct Server {
    child: Child,
    addr: String,
    _dir: TempDir,
}

impl Server {
    fn start(pki: &Pki, client_ca: bool) -> Server {
        let dir = TempDir::new("tls");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.0.join("data"))
            .args(["--tls-cert", &pki.path("server.pem")])
            .args(["--tls-key", &pki.path("server.key")]);
        if client_ca {
            cmd.args(["--client-ca", &pki.path("ca.pem")]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first
            .strip_prefix("vigil: serving on https://")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_owned();
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with grpcio at {}: run .ci/run (it creates the venv), or set VIGIL_TEST_PYTHON",
        venv.display()
    );
    venv
}

fn tls_client(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tls_client.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python TLS client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn vigil_list(server: &Server, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["analysis", "list", "--server"])
        .arg(format!("https://{}", server.addr))
        .args(extra)
        .env_remove("VIGIL_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn grpc_and_https_over_tls() {
    let pki = Pki::new();
    let server = Server::start(&pki, false);
    let out = tls_client(&[&server.addr, &pki.path("ca.pem")]);
    assert!(out.trim_end().ends_with("ok: 6 checks"), "{out}");
    // The CLI client: it verifies the server against --ca-file, and sees what Python created.
    let o = vigil_list(&server, &["--ca-file", &pki.path("ca.pem")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(listed.starts_with("over-tls "), "{listed}");
    // Without a CA to check the server with, the client refuses to guess.
    let o = vigil_list(&server, &[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("give --ca-file"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A CA that did not sign the server's certificate: the client refuses the server.
    let o = vigil_list(&server, &["--ca-file", &pki.path("stranger.pem")]);
    assert!(!o.status.success());
}

#[test]
fn mutual_tls_refuses_clients_without_a_certificate_the_client_ca_signed() {
    let pki = Pki::new();
    let server = Server::start(&pki, true);
    let ca = pki.path("ca.pem");
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let out = tls_client(&[&server.addr, &ca, "--cert", &cert, "--key", &key]);
    assert!(out.trim_end().ends_with("ok: 6 checks"), "{out}");
    // No client certificate, and one from another CA: refused at the handshake.
    let out = tls_client(&[&server.addr, &ca, "--expect-refused"]);
    assert!(out.trim_end().ends_with("ok: 2 checks"), "{out}");
    let (scert, skey) = (pki.path("stranger.pem"), pki.path("stranger.key"));
    let out = tls_client(&[
        &server.addr,
        &ca,
        "--cert",
        &scert,
        "--key",
        &skey,
        "--expect-refused",
    ]);
    assert!(out.trim_end().ends_with("ok: 2 checks"), "{out}");
    // The CLI client with and without its certificate.
    let o = vigil_list(
        &server,
        &[
            "--ca-file",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("over-tls "));
    let o = vigil_list(&server, &["--ca-file", &ca]);
    assert!(!o.status.success());
}
