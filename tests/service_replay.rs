//! Live equals replay through the service: `vigil serve` (a real process) runs a before/after
//! analysis of a bundled scenario whose metrics sit in a real Prometheus (Debian's `prometheus`,
//! backfilled with `promtool` from the scenario's own `metrics.csv`), and its final verdict is the
//! one `vigil replay` gives for the same scenario files. The spec is written the way a user would
//! write it for that scenario: the baseline's metric window, the canary's start, replay's 30-s
//! interval, and for each metric the direction, kind and smallest shift that replay's name rules
//! give it (the reference is replay's output, not the service's).

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::FAMILY;
use vigil::replay::scenario::Scenario;
use vigil_analyzer::judge::config::JudgeConfig;
use vigil_analyzer::judge::metrics::metric_spec;
use vigil_analyzer::telemetry::format_time;
use vigil_models::vigil_judge::MetricKind;
use vigil_models::Direction;

/// Metrics-only synthetic scenarios on a 30-s grid: one that fails, two that pass, one slow leak.
const SCENARIOS: &[&str] = &[
    "synthetic/syn-constant-metrics-jump",
    "synthetic/syn-constant-metrics-pass",
    "synthetic/syn-healthy-noisy",
    "synthetic/syn-slow-memory-leak",
];

struct Server {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Server {
    fn start() -> Server {
        let dir = std::env::temp_dir().join(format!("vigil-svc-replay-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
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
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr, dir }
    }

    fn analysis(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("analysis")
            .args(args)
            .args(["--server", &format!("http://{}", self.addr)])
            .env_remove("VIGIL_TOKEN")
            .output()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `vigil replay --json` of one scenario folder (copied alone into a temp corpus).
fn replay_verdict(rel: &str, tmp: &Path) -> String {
    let corpus = tmp.join(format!("corpus-{}", rel.replace('/', "-")));
    let dest = corpus.join(Path::new(rel).file_name().unwrap());
    copy_dir(&common::datasets().join(rel), &dest);
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("replay")
        .arg(&corpus)
        .args(["--json", "--quiet", "--jobs", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["scenarios"][0]["verdict"].as_str().unwrap().to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The spec a user would write for this scenario, with replay's defaults made explicit.
fn spec(s: &Scenario, prom: &str) -> String {
    let defaults = JudgeConfig::default();
    let bw = s.baseline.metric_window.unwrap_or(s.baseline_window);
    let t0 = s.canary_window.start;
    let end = s.canary.metric_window.unwrap_or(s.canary_window).end;
    let lifetime = end - t0;
    let mut out = format!(
        "app: replay-check\nprometheus: {{url: \"{prom}\"}}\n\
         baseline: {{labels: {{scenario: {id}, side: baseline}}, window: {{start: \"{bs}\", end: \"{be}\"}}}}\n\
         canary: {{labels: {{scenario: {id}, side: canary}}}}\n\
         start: \"{t0s}\"\ninterval: 30s\nlifetime: {lifetime}s\nstep: 30s\n\
         thresholds: {{pass: {pass}, marginal: {marginal}}}\n\
         min_samples: {{metrics: {{baseline: {mb}, canary: {mc}}}}}\n\
         on_inconclusive: pass\nmetrics:\n",
        id = s.id,
        bs = format_time(bw.start),
        be = format_time(bw.end),
        t0s = format_time(t0),
        pass = defaults.fusion.pass_threshold,
        marginal = defaults.fusion.marginal_threshold,
        mb = defaults.metric.min_baseline_points,
        mc = defaults.metric.min_canary_points,
    );
    let columns = s.baseline.metrics.as_ref().unwrap().columns.iter();
    for (i, (col, _)) in columns.enumerate() {
        // Replay judges the columns its name rules know; so does this spec.
        let Some(rule) = metric_spec(col) else {
            continue;
        };
        let direction = match rule.rule.direction {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
            Direction::Either => "either",
        };
        let kind = match rule.rule.kind {
            MetricKind::Gauge => "gauge",
            MetricKind::Count => "count",
        };
        out.push_str(&format!(
            "  - {{name: m{i}, query: '{FAMILY}{{${{scope}},column=\"{col}\"}}', direction: {direction}, kind: {kind}, min_shift: {}, critical: {}}}\n",
            rule.rule.min_abs_shift, rule.critical
        ));
    }
    out
}

#[test]
fn the_service_reaches_replays_verdict_on_metrics_from_a_real_prometheus() {
    let scenarios: Vec<Scenario> = SCENARIOS.iter().map(|r| common::load(r)).collect();
    let mut om = String::new();
    for s in &scenarios {
        common::scenario_samples(s, &mut om);
    }
    // On a 30-s grid a reading is visible at its own grid point only.
    let prom = common::start_prometheus("service-replay", &om, "29s");
    let server = Server::start();
    let mut seen = Vec::new();
    for (rel, s) in SCENARIOS.iter().zip(&scenarios) {
        let expected = replay_verdict(rel, &server.dir);
        let f = server.dir.join(format!("{}.yaml", s.id));
        std::fs::write(&f, spec(s, &prom.url)).unwrap();
        let id = format!("replay-{}", s.id);
        let o = server.analysis(&["create", f.to_str().unwrap(), "--id", &id]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // The window lies in the past: the analysis runs at once; watch waits for the end.
        let _ = server.analysis(&["watch", &id]);
        let o = server.analysis(&["get", &id, "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let verdict = got["verdict"].as_str().unwrap_or_default().to_string();
        assert_eq!(
            verdict.to_ascii_lowercase(),
            expected.to_ascii_lowercase(),
            "{}: service {got}, replay {expected}",
            s.id
        );
        seen.push(expected);
    }
    // The set is not one-sided: a judge that always passes (or always fails) cannot pass this.
    assert!(
        seen.iter().any(|v| v.eq_ignore_ascii_case("fail")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|v| v.eq_ignore_ascii_case("pass")),
        "{seen:?}"
    );
}
