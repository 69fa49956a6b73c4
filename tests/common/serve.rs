//! `vigil serve` as a real process for the end-to-end tests (notifications, rollback, the whole
//! loop): started on a free port, its log kept in a file beside the data directory (and echoed to
//! the test's stderr), killed with SIGKILL on `kill` or drop. Included with
//! `#[path = "common/serve.rs"] mod serve;` next to `mod common;` (it uses `common`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vigil_proto::v1 as pb;

/// A running `vigil serve`; SIGKILLed when dropped.
pub struct Serve {
    child: Child,
    /// `host:port` of its gRPC/HTTP listener.
    pub addr: String,
    /// Its stderr, line by line (`<data dir>.log`).
    pub log: PathBuf,
}

impl Serve {
    /// Starts `vigil serve` over `data` (OTLP listeners off, `KUBECONFIG` unset), with `args`
    /// appended and `env` set; returns once it says where it serves.
    pub fn start(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(["--otlp-grpc-listen", "off", "--otlp-http-listen", "off"])
            .args(args)
            .envs(env.iter().copied())
            .env_remove("KUBECONFIG")
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
        let log = data.with_extension("log");
        let path = log.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            // Appended: a restarted service's log follows the killed one's.
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            for l in lines.map_while(Result::ok) {
                eprintln!("[vigil serve] {l}");
                let _ = writeln!(f, "{l}");
            }
        });
        Serve { child, addr, log }
    }

    /// SIGKILL (Child::kill on Unix), as a crash: no chance to flush or mark anything.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn client(
        &self,
    ) -> (
        tokio::runtime::Runtime,
        pb::analyses_client::AnalysesClient<tonic::transport::Channel>,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = format!("http://{}", self.addr);
        let c = rt.block_on(async {
            let ch = tonic::transport::Channel::from_shared(url)
                .unwrap()
                .connect()
                .await
                .unwrap();
            pb::analyses_client::AnalysesClient::new(ch)
        });
        (rt, c)
    }

    /// CreateAnalysis over gRPC. Blocking: call it outside a runtime (or in `spawn_blocking`).
    pub fn create(&self, id: &str, spec: &str) {
        let (rt, mut c) = self.client();
        rt.block_on(c.create_analysis(pb::CreateAnalysisRequest {
            id: id.into(),
            spec: spec.into(),
        }))
        .unwrap();
    }

    /// `vigil analysis create FILE --id ID --server …`, the spec written to `dir/ID.yaml`.
    pub fn create_cli(&self, dir: &Path, id: &str, spec: &str) {
        let f = dir.join(format!("{id}.yaml"));
        std::fs::write(&f, spec).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["analysis", "create"])
            .arg(&f)
            .args(["--id", id, "--server", &format!("http://{}", self.addr)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// `vigil analysis ARGS… --server …`: its stdout; the command must succeed.
    pub fn cli(&self, args: &[&str]) -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("analysis")
            .args(args)
            .args(["--server", &format!("http://{}", self.addr)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }

    /// GetAnalysis over gRPC. Blocking, as `create`.
    pub fn get(&self, id: &str) -> pb::Analysis {
        let (rt, mut c) = self.client();
        rt.block_on(c.get_analysis(pb::GetAnalysisRequest { id: id.into() }))
            .unwrap()
            .into_inner()
    }

    /// Whether analysis `id` has finished (any final state).
    pub fn finished(&self, id: &str) -> bool {
        self.get(id).finished_ms.is_some()
    }

    /// The text of `GET /metrics`.
    pub fn metrics(&self) -> String {
        self.http_get("/metrics")
    }

    /// The whole HTTP/1.1 answer (status line, headers, body) to `GET path`.
    pub fn http_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    }

    /// The service's log so far (all runs over this data directory).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 100 ms until it holds; fails the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
