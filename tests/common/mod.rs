//! Shared by the end-to-end tests: converting bundled scenarios' `metrics.csv` to OpenMetrics,
//! backfilling a fresh TSDB with `promtool`, running `prometheus` on a free port, a raw HTTP/1.1
//! client that sends requests byte for byte as a given tool does, and temporary directories.
//!
//! The heavier shared parts are not declared here, so that the test files that only need the
//! above do not compile them: `serve.rs` (`vigil serve` as a process), `alerts.rs` (notification
//! receivers and SMTP) and `cluster.rs` (the Kubernetes API test server and the shop). A test file
//! includes them beside `mod common;` with `#[path = "common/alerts.rs"] mod alerts;` (and
//! likewise), since they refer to `crate::common` and `crate::serve`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vigil::replay::scenario::{self, Scenario};

/// The metric family every backfilled scenario column goes into; the column is a label, so that
/// names such as `CpuUsageRate(%)` (not valid metric names) survive unchanged.
pub const FAMILY: &str = "vigil_scenario_metric";

pub fn datasets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets")
}

pub fn load(rel: &str) -> Scenario {
    scenario::load(&datasets().join(rel)).unwrap_or_else(|e| panic!("loading {rel}: {e}"))
}

/// Fails the test with what to do when the Debian `prometheus` package is missing: the tests
/// that need it must not pass by skipping.
pub fn require_prometheus_tools() {
    for tool in ["promtool", "prometheus"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{tool}` is not installed: these tests run a real Prometheus server. Install Debian's \
             package (`apt-get install -y prometheus`); `.ci/run` does it when `promtool` is missing."
        );
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The median step between a table's rows (the scenario's sampling interval).
pub fn step_of(table: &vigil::replay::scenario::MetricTable) -> f64 {
    let mut d: Vec<f64> = table.times.windows(2).map(|w| w[1] - w[0]).collect();
    d.sort_by(f64::total_cmp);
    d.get(d.len() / 2).copied().unwrap_or(60.0)
}

/// OpenMetrics samples of one scenario: one series per side and column, labelled
/// `{scenario, side, column}`, with every cell of `metrics.csv` at its own timestamp — a missing
/// reading as `NaN`, so that Prometheus does not fill the gap from the previous sample.
pub fn scenario_samples(s: &Scenario, out: &mut String) {
    for (side, data) in [("baseline", &s.baseline), ("canary", &s.canary)] {
        let Some(table) = &data.metrics else { continue };
        for (column, values) in &table.columns {
            let labels = format!(
                "scenario=\"{}\",side=\"{side}\",column=\"{}\"",
                escape_label(&s.id),
                escape_label(column)
            );
            for (t, v) in table.times.iter().zip(values) {
                let v = if v.is_nan() {
                    "NaN".to_string()
                } else {
                    format!("{v}")
                };
                out.push_str(&format!("{FAMILY}{{{labels}}} {v} {t}\n"));
            }
        }
    }
}

/// A running Prometheus over a backfilled TSDB; killed (by its own pid) when dropped.
pub struct PromServer {
    child: Child,
    pub url: String,
    pub dir: PathBuf,
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Backfills a fresh TSDB from `openmetrics` (the text without `# EOF`, appended here) with
/// `promtool tsdb create-blocks-from openmetrics`, starts `prometheus` on a free port over it
/// and waits until it is ready. `lookback` is the query lookback delta: a sample is visible for
/// that long after its timestamp (the tests set it just under the scenario step, as a scrape
/// interval's staleness would).
pub fn start_prometheus(name: &str, openmetrics: &str, lookback: &str) -> PromServer {
    require_prometheus_tools();
    let dir = std::env::temp_dir().join(format!("vigil-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("backfill.om");
    let mut text = format!("# TYPE {FAMILY} gauge\n");
    text.push_str(openmetrics);
    text.push_str("# EOF\n");
    std::fs::write(&input, text).unwrap();
    let data = dir.join("data");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool backfill failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
    )
    .unwrap();
    let mut last_err = String::new();
    // A port picked free can be taken before prometheus binds it: try a few.
    for _ in 0..5 {
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let mut child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Backfilled samples are years old: the default 15 days would delete them.
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--query.lookback-delta={lookback}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                last_err = format!(
                    "prometheus exited ({status}): {}",
                    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
                );
                break;
            }
            if let Ok(r) = http(
                &format!("127.0.0.1:{port}"),
                &format!("GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
            ) {
                if r.status == 200 {
                    return PromServer { child, url, dir };
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        if last_err.is_empty() {
            last_err = "not ready within 60 s".into();
        }
    }
    panic!("could not start prometheus: {last_err}");
}

/// One HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.body))
    }
}

/// Sends `raw` (a complete HTTP/1.1 request, exactly as some tool writes it) to `addr` and reads
/// one response (Content-Length or chunked body). A fresh connection per request.
pub fn http(addr: &str, raw: &str) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(raw.as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before the headers",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[header_end + 4..].to_vec();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < len {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while !body.windows(5).any(|w| w == b"0\r\n\r\n") {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body = dechunk(&body);
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..i]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[i + 2..i + 2 + size]);
        raw = &raw[i + 2 + size + 2..];
    }
    out
}

/// A path relative to the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A fresh directory under the system temp dir (unique per process and call), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "vigil-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// Writes `text` to `name` inside; returns the file's path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
