//! The analysis page of `vigil serve` (a real process) over a real Prometheus (Debian's
//! `prometheus`, backfilled with `promtool` from the bundled scenario
//! `syn-slow-memory-leak`, judged before/after: the pod's last ten minutes before the change
//! against its first ten after): the page plots, per metric, the baseline and canary readings
//! the runner fetched — checked against the scenario's own `metrics.csv` — with the intervals and
//! their verdicts, shows the evidence, reloads only while the analysis runs, and escapes what a
//! source says (a Prometheus error echoing `<script>` from a query).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use common::FAMILY;

const SCENARIO: &str = "synthetic/syn-slow-memory-leak";
/// The baseline window of the analysis (the scenario's metrics reach back to 11:30).
const BASELINE: (&str, &str) = ("2026-01-05T11:50:00Z", "2026-01-05T12:00:00Z");

/// The spec's metric names (valid names) for the scenario's columns.
const METRICS: &[(&str, &str, &str)] = &[
    ("cpu", "CpuUsageRate(%)", "increase"),
    ("memory", "MemoryUsage(Mi)", "increase"),
    ("latency_p90", "PodServerLatencyP90(s)", "increase"),
    ("errors", "ErrorCount", "increase"),
    ("workload", "PodWorkload(Ops)", "either"),
];

struct Server {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Server {
    fn start() -> Server {
        let dir = std::env::temp_dir().join(format!("vigil-page-{}", std::process::id()));
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

    fn vigil(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("analysis")
            .args(args)
            .args(["--server", &format!("http://{}", self.addr)])
            .env_remove("VIGIL_TOKEN")
            .output()
            .unwrap()
    }

    fn create(&self, id: &str, spec: &str) {
        let f = self.dir.join(format!("{id}.yaml"));
        std::fs::write(&f, spec).unwrap();
        let o = self.vigil(&["create", f.to_str().unwrap(), "--id", id]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    fn get(&self, path: &str) -> common::HttpResponse {
        common::http(
            &self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
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

fn spec(app: &str, prom: &str, metrics: &[(&str, String, &str)], extra: &str) -> String {
    let id = "syn-slow-memory-leak";
    let (from, to) = BASELINE;
    let mut s = format!(
        "app: {app}\nprometheus: {{url: \"{prom}\"}}\n\
         baseline: {{labels: {{scenario: {id}, side: baseline}}, window: {{start: \"{from}\", end: \"{to}\"}}}}\n\
         canary: {{labels: {{scenario: {id}, side: canary}}}}\n{extra}metrics:\n"
    );
    for (name, query, dir) in metrics {
        s.push_str(&format!(
            "  - {{name: {name}, query: '{query}', direction: {dir}}}\n"
        ));
    }
    s
}

/// The `<svg>` elements of a page, in order.
fn svgs(body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(a) = rest.find("<svg") {
        let b = rest[a..].find("</svg>").unwrap() + a + 6;
        out.push(&rest[a..b]);
        rest = &rest[b..];
    }
    out
}

#[test]
fn the_page_plots_the_fetched_series_with_the_verdicts_and_escapes_what_sources_say() {
    let s = common::load(SCENARIO);
    let mut om = String::new();
    common::scenario_samples(&s, &mut om);
    // The scenario is on a 30 s grid: a reading is visible at its own grid point only.
    let prom = common::start_prometheus("page", &om, "29s");
    let server = Server::start();

    let metrics: Vec<(&str, String, &str)> = METRICS
        .iter()
        .map(|(n, col, d)| (*n, format!("{FAMILY}{{${{scope}},column=\"{col}\"}}"), *d))
        .collect();
    let window = "start: \"2026-01-05T12:00:00Z\"\ninterval: 1m\nlifetime: 10m\nstep: 30s\n";
    server.create("page-fail", &spec("checkout", &prom.url, &metrics, window));
    // A query Prometheus rejects, with its error quoting the query's `<script>`.
    let bad = vec![(
        "bad",
        format!("{FAMILY}{{${{scope}},column=~\"<script>alert(1)</script>(\"}}"),
        "increase",
    )];
    server.create("page-escape", &spec("checkout", &prom.url, &bad, window));
    for id in ["page-fail", "page-escape"] {
        let o = server.vigil(&["watch", id]);
        assert!(o.status.code().is_some(), "watch {id}");
    }

    // The verdict, as the API gives it.
    let o = server.vigil(&["get", "page-fail", "--json"]);
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let verdict = got["verdict"].as_str().unwrap().to_owned();
    // The scenario is a memory leak: the analysis must fail.
    assert_eq!(verdict, "Fail", "{got}");

    let r = server.get("/analyses/page-fail");
    assert_eq!(r.status, 200);
    let body = &r.body;
    assert!(
        body.contains("verdict <span class=\"v\" style=\"color:#c62828\">Fail</span>"),
        "{body}"
    );
    assert!(
        !body.contains("http-equiv=\"refresh\""),
        "finished: no reload"
    );
    let svgs = svgs(body);
    // The verdict timeline first, then one chart per metric.
    assert_eq!(svgs.len(), 1 + METRICS.len(), "{body}");
    let intervals = svgs[0].matches("<rect").count();
    assert!((1..=10).contains(&intervals), "{}", svgs[0]);
    // What the runner fetched: the baseline window after its first step, the canary from t0 +
    // 30 s to before the last judged interval's end; in the scenario's files, every non-NaN cell
    // in those ranges.
    let t0 = s.canary_window.start;
    let end = t0 + 60.0 * intervals as f64;
    let (b0, b1) = (t0 - 600.0, t0);
    for (name, col, _) in METRICS {
        let title = format!("font-weight=\"600\">{name}</text>");
        let charts: Vec<&&str> = svgs[1..].iter().filter(|c| c.contains(&title)).collect();
        assert_eq!(charts.len(), 1, "{name}: {body}");
        let chart = charts[0];
        assert_eq!(
            chart.matches("<path class=\"baseline\"").count(),
            1,
            "{chart}"
        );
        assert_eq!(
            chart.matches("<path class=\"canary\"").count(),
            1,
            "{chart}"
        );
        let cells = |t: &Option<vigil::replay::scenario::MetricTable>, from: f64, to: f64| {
            let t = t.as_ref().unwrap();
            let (_, v) = t.columns.iter().find(|(c, _)| c == col).unwrap();
            t.times
                .iter()
                .zip(v)
                .filter(|(x, y)| **x >= from + 30.0 && **x < to && y.is_finite())
                .count()
        };
        let expected = cells(&s.baseline.metrics, b0, b1) + cells(&s.canary.metrics, t0, end);
        assert!(expected >= 2 * intervals, "{name}: {expected}");
        assert_eq!(
            chart.matches("<circle").count(),
            expected,
            "{name}: {chart}"
        );
        // One band per interval, its verdict in the tooltip.
        assert_eq!(chart.matches("<rect class=\"band\"").count(), intervals);
        assert!(chart.contains(&format!("<title>interval {intervals} (")));
    }
    // The evidence: the failing metric's finding with its typed fields.
    assert!(body.contains("<table class=\"evidence\">"), "{body}");
    let evidence = &body[body.find("<table class=\"evidence\">").unwrap()..];
    let evidence = &evidence[..evidence.find("</table>").unwrap()];
    assert!(evidence.contains(">fail</td>"), "{evidence}");
    assert!(evidence.contains("<td>metrics</td>"), "{evidence}");
    // A leak: memory is in the evidence, and its chart comes first.
    assert!(evidence.contains("<code>memory</code>"), "{evidence}");
    assert!(
        svgs[1].contains("font-weight=\"600\">memory</text>"),
        "{}",
        svgs[1]
    );

    // The list: state, verdict and score.
    let r = server.get("/");
    assert_eq!(r.status, 200);
    let row = r
        .body
        .split("<tr>")
        .find(|l| l.contains("/analyses/page-fail"))
        .unwrap();
    assert!(row.contains("<td>failed</td>"), "{row}");
    assert!(row.contains(">Fail</span>"), "{row}");

    // What a source said is escaped, never markup.
    let r = server.get("/analyses/page-escape");
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("<script>"), "{}", r.body);
    assert!(
        r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;("),
        "{}",
        r.body
    );

    // A running analysis reloads itself; the list too while anything runs.
    server.create(
        "page-live",
        &spec("checkout", &prom.url, &metrics, "lifetime: 10m\n"),
    );
    let r = server.get("/analyses/page-live");
    assert!(
        r.body.contains("<meta http-equiv=\"refresh\""),
        "{}",
        r.body
    );
    assert!(server.get("/").body.contains("http-equiv=\"refresh\""));
    let o = server.vigil(&["cancel", "page-live"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = server.get("/analyses/page-live");
    assert!(!r.body.contains("http-equiv=\"refresh\""), "{}", r.body);

    if let Ok(dir) = std::env::var("VIGIL_PAGE_SCREENSHOT_WAIT") {
        // For a person taking a screenshot: keep the server up.
        eprintln!("page: http://{}/analyses/page-fail", server.addr);
        std::thread::sleep(std::time::Duration::from_secs(dir.parse().unwrap_or(120)));
    }
}
