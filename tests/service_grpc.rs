//! `vigil serve` as a real process, driven by a real gRPC client: Python `grpcio` with stubs
//! generated from `proto/` at test time (`tests/python/grpc_client.py`), health checked with
//! `grpcio-health-checking` and reflection with `grpcio-reflection`. The Python environment is the
//! venv `.ci/run` creates (`.venv/`, or `VIGIL_TEST_PYTHON`).

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod common;

use common::TempDir;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `vigil serve` on a free loopback port with its own data directory; killed on drop.
struct Server {
    child: Child,
    addr: String,
    _dir: TempDir,
}

impl Server {
    fn start(tokens: Option<&str>) -> Server {
        let dir = TempDir::new("serve");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.0.join("data"));
        if let Some(t) = tokens {
            let f = dir.0.join("tokens");
            std::fs::write(&f, t).unwrap();
            cmd.arg("--tokens").arg(f);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first
            .strip_prefix("vigil: serving on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_owned();
        // Keep draining stderr so the server never blocks on a full pipe.
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
        "no Python with grpcio at {}: run .ci/run (it creates the venv), or \
         `python3 -m venv .venv && .venv/bin/pip install grpcio==1.85.* grpcio-tools==1.85.* \
         grpcio-health-checking==1.85.* grpcio-reflection==1.85.*`, or set VIGIL_TEST_PYTHON",
        venv.display()
    );
    venv
}

fn run_client(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/grpc_client.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_python_grpc_client_creates_watches_and_reads_an_analysis() {
    let server = Server::start(None);
    let out = run_client(&[&server.addr]);
    // The script counts its checks; fewer would mean a branch was skipped.
    assert!(out.trim_end().ends_with("ok: 46 checks"), "{out}");
}

#[test]
fn tokens_and_scopes_over_grpc_and_http() {
    let server = Server::start(Some(
        "# CD pipeline\nwrite writer-secret-1\nread reader-secret-1 # dashboards\n",
    ));
    let out = run_client(&[
        &server.addr,
        "--write-token",
        "writer-secret-1",
        "--read-token",
        "reader-secret-1",
    ]);
    assert!(out.contains("scopes: 7 checks"), "{out}");
    // HTTP: 401 without a token, 403 with too small a scope, the `token` query parameter for
    // tools that cannot send a header, health open.
    let http = |method: &str, path: &str, auth: Option<&str>| -> u16 {
        let mut s = TcpStream::connect(&server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let auth = auth.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n{auth}connection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(http("GET", "/healthz", None), 200);
    assert_eq!(http("GET", "/v1/analyses/x/verdict", None), 401);
    assert_eq!(
        http("GET", "/v1/analyses/x/verdict", Some("nope-nope-nope")),
        401
    );
    assert_eq!(
        http("GET", "/v1/analyses/x/verdict", Some("reader-secret-1")),
        200
    );
    assert_eq!(
        http("GET", "/v1/analyses/x/verdict?token=reader-secret-1", None),
        200
    );
    assert_eq!(http("GET", "/metrics", None), 200);
    // Too small a scope, then authorised but no such route: 404.
    assert_eq!(http("POST", "/canary/cfg?token=reader-secret-1", None), 403);
    assert_eq!(http("POST", "/canary/cfg", Some("writer-secret-1")), 404);
}

#[test]
fn without_tokens_it_refuses_to_listen_beyond_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without --tokens"),
        "{err}"
    );
    // A tokens file with an unknown scope is refused, naming the line but not the token.
    let dir = TempDir::new("tokens");
    let f = dir.0.join("tokens");
    std::fs::write(&f, "read r-secret-123\nroot s3cret-value-9\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["serve", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2: unknown scope `root`"), "{err}");
    assert!(!err.contains("s3cret-value-9"), "{err}");
}
