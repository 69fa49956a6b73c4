//! `vigil analysis create | get | watch | list | cancel` against `vigil serve`, both as real
//! processes: the output formats scripts parse, and `watch`'s exit codes (0 pass, 1 fail or
//! marginal, 2 inconclusive, error or cancelled, 3 cannot watch).

// A test (or benchmark) crate: a panic is the failure report, and exact values are compared on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod common;

use common::TempDir;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A `vigil serve` on a free loopback port with its own data directory; killed on drop.
struct Server {
    child: Child,
    addr: String,
    _dir: TempDir,
}

impl Server {
    fn start(tokens: Option<&str>) -> Server {
        Server::start_in(TempDir::new("serve"), tokens)
    }

    /// A server on `dir/data`: a second one on the same directory sees the first one's store.
    fn start_in(dir: TempDir, tokens: Option<&str>) -> Server {
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

fn vigil(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("analysis")
        .args(args)
        .args(["--server", &format!("http://{}", server.addr)])
        .env_remove("VIGIL_TOKEN")
        .output()
        .unwrap()
}

/// `GET path` over HTTP/1.1: status and body.
fn http_get(server: &Server, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let code = r.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = r.split_once("\r\n\r\n").unwrap().1.to_owned();
    (code, body)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A spec over a window that ended an hour ago (judged at once), with `extra` lines.
fn past(app: &str, extra: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = (now / 60) * 60 - 3600;
    // RFC 3339 by hand (days from civil), to keep the test free of date crates.
    let days = (start / 86400) as i64;
    let rem = start % 86400;
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "app: {app}\nbaseline: {{attributes: {{service.version: v1}}}}\ncanary: {{attributes: {{service.version: v2}}}}\n\
         start: \"{y:04}-{m:02}-{d:02}T{:02}:{:02}:00Z\"\ninterval: 1m\nlifetime: 2m\n{extra}\n",
        rem / 3600,
        (rem % 3600) / 60
    )
}

fn spec_file(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.0.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn example() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/analysis.yaml")
        .display()
        .to_string()
}

#[test]
fn create_list_get_and_the_exit_codes_of_watch() {
    let server = Server::start(None);
    let dir = TempDir::new("cli");
    // The shipped example: its Prometheus is not there, and creating it still succeeds.
    let o = vigil(&server, &["create", &example()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let example_id = stdout(&o);
    assert_eq!(example_id.lines().count(), 1);
    let example_id = example_id.trim().to_owned();
    assert_eq!(example_id.len(), 26, "{example_id}");

    // No data at all (no source): Inconclusive; `on_inconclusive: pass` accepts it → 0,
    // the default `fail` does not → 2.
    let pass = spec_file(&dir, "pass.yaml", &past("a", "on_inconclusive: pass"));
    let o = vigil(&server, &["create", &pass, "--id", "nodata-pass"]);
    assert_eq!(stdout(&o), "nodata-pass\n", "{}", stderr(&o));
    let o = vigil(&server, &["watch", "nodata-pass"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("nodata-pass "), "{out}");
    assert_eq!(out.matches("\ninterval ").count(), 2, "{out}");
    assert!(out.contains("interval 1 (60s): Inconclusive 0.0"), "{out}");
    assert!(
        out.contains("event finished: finished Inconclusive: succeeded (on_inconclusive: pass)"),
        "{out}"
    );

    let fail = spec_file(&dir, "fail.yaml", &past("b", ""));
    let o = vigil(&server, &["create", &fail, "--id", "nodata-fail"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = vigil(&server, &["watch", "nodata-fail"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));

    // A source that errors: Error → 2, with the error in each judgement.
    let prom = past("c", "prometheus: {url: \"http://127.0.0.1:9\"}")
        .replace(
            "{attributes: {service.version: v1}}",
            "{labels: {version: v1}}",
        )
        .replace(
            "{attributes: {service.version: v2}}",
            "{labels: {version: v2}}",
        )
        + "metrics: [{name: errors, query: \"errors{${scope}}\", direction: increase}]\n";
    let prom = spec_file(&dir, "prom.yaml", &prom);
    let o = vigil(&server, &["create", &prom, "--id", "prom-down"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = vigil(&server, &["watch", "prom-down"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains(
            "  note: source error (baseline): metric \"errors\": prometheus at http://127.0.0.1:9"
        ) && stdout(&o).contains("unreachable"),
        "{}",
        stdout(&o)
    );

    // list: one line each, id first, then state, verdict, score.
    let o = vigil(&server, &["list"]);
    let lines: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines.contains(&"nodata-pass succeeded Inconclusive 0.0".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"prom-down error Error 0.0".to_string()),
        "{lines:?}"
    );
    let ex: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with(&example_id))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(ex, [example_id.as_str(), "pending", "-", "-"]);
    let o = vigil(&server, &["list", "--state", "error", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], "prom-down");

    // get --json: every field, the spec with its defaults.
    let o = vigil(&server, &["get", "nodata-fail", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["state"], "inconclusive");
    assert_eq!(v["verdict"], "Inconclusive");
    assert_eq!(v["intervals_judged"], 2);
    assert_eq!(v["spec"]["on_inconclusive"], "fail");
    assert_eq!(v["spec"]["interval"], "60s");
    assert_eq!(v["last_judgement"]["interval"], 2);
    assert!(
        v["note"]
            .as_str()
            .unwrap()
            .contains("on_inconclusive: fail"),
        "{v}"
    );

    // Argo Rollouts' `web` provider: always 200 with JSON, final or not, known or not.
    let (code, body) = http_get(&server, "/v1/analyses/nodata-fail/verdict");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            v["verdict"].as_str(),
            v["final"].as_bool(),
            v["state"].as_str()
        ),
        (Some("Inconclusive"), Some(true), Some("inconclusive"))
    );
    let (code, body) = http_get(&server, &format!("/v1/analyses/{example_id}/verdict"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (code, v["verdict"].as_str(), v["final"].as_bool()),
        (200, Some("Unknown"), Some(false))
    );
    let (code, body) = http_get(&server, "/v1/analyses/not-yet-created/verdict");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (code, v["verdict"].as_str(), v["state"].as_str()),
        (200, Some("Unknown"), Some("unknown"))
    );
    // /metrics: 2 + 2 Inconclusive intervals (no data), 2 Error (source down); states.
    let (code, body) = http_get(&server, "/metrics");
    assert_eq!(code, 200);
    for line in [
        "vigil_analyses{state=\"pending\"} 1",
        "vigil_analyses{state=\"succeeded\"} 1",
        "vigil_analyses{state=\"inconclusive\"} 1",
        "vigil_analyses{state=\"error\"} 1",
        "vigil_judgements_total{verdict=\"Inconclusive\"} 4",
        "vigil_judgements_total{verdict=\"Error\"} 2",
        "vigil_judgements_total{verdict=\"Pass\"} 0",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "{line} missing from\n{body}"
        );
    }

    // The pages: the list, and one analysis with its timeline (one bar per interval).
    let (code, body) = http_get(&server, "/");
    assert_eq!(code, 200);
    assert!(
        body.contains("<a href=\"/analyses/nodata-pass\">"),
        "{body}"
    );
    assert!(
        body.contains("http-equiv=\"refresh\""),
        "the example still runs: {body}"
    );
    let (code, body) = http_get(&server, "/analyses/prom-down");
    assert_eq!(code, 200);
    let svg = &body[body.find("<svg").unwrap()..body.find("</svg>").unwrap()];
    assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
    assert!(
        svg.contains("<title>interval 2 (120s): Error 0.0</title>"),
        "{svg}"
    );
    assert!(
        body.contains(
            "source error (baseline): metric &quot;errors&quot;: prometheus at http://127.0.0.1:9"
        ),
        "{body}"
    );
    assert!(
        !body.contains("http-equiv=\"refresh\""),
        "finished: no reload"
    );
    assert_eq!(http_get(&server, "/analyses/nope").0, 404);

    // Cancel the example (it runs on the wall clock): its watcher ends with 2.
    let watcher = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "analysis",
            "watch",
            &example_id,
            "--server",
            &format!("http://{}", server.addr),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let o = vigil(&server, &["cancel", &example_id, "--reason", "test"]);
    assert_eq!(
        stdout(&o),
        format!("{example_id} cancelled\n"),
        "{}",
        stderr(&o)
    );
    let w = watcher.wait_with_output().unwrap();
    assert_eq!(w.status.code(), Some(2));
    assert!(
        stdout(&w).contains("event cancelled: cancelled: test"),
        "{}",
        stdout(&w)
    );
    // Cancelling again is refused.
    let o = vigil(&server, &["cancel", &example_id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("failed precondition"), "{}", stderr(&o));

    // Cannot watch: 3. A bad spec: 1, naming the field.
    let o = vigil(&server, &["watch", "no-such-id"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    let bad = spec_file(&dir, "bad.yaml", &past("d", "on_inconclusive: maybe"));
    let o = vigil(&server, &["create", &bad]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("spec: on_inconclusive: unknown variant `maybe`"),
        "{}",
        stderr(&o)
    );
    drop(server);
}

#[test]
fn the_token_comes_from_the_flag_or_vigil_token() {
    let server = Server::start(Some("write w-secret-123\n"));
    let o = vigil(&server, &["list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unauthenticated"), "{}", stderr(&o));
    let o = vigil(&server, &["list", "--token", "w-secret-123"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "analysis",
            "list",
            "--server",
            &format!("http://{}", server.addr),
        ])
        .env("VIGIL_TOKEN", "w-secret-123")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "analysis",
            "watch",
            "x",
            "--server",
            &format!("http://{}", server.addr),
        ])
        .env("VIGIL_TOKEN", "wrong-token-1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(!stderr(&o).contains("wrong-token-1"), "{}", stderr(&o));
}

#[test]
fn a_killed_server_resumes_its_analyses_where_they_stopped() {
    let server = Server::start(None);
    let spec_dir = TempDir::new("spec");
    // On the wall clock: six 1 s intervals from now; no source, so each is Inconclusive, and
    // `on_inconclusive: pass` makes the end a success (exit 0) if every interval ran.
    let spec = past("live", "on_inconclusive: pass")
        .replace("interval: 1m\nlifetime: 2m", "interval: 1s\nlifetime: 6s")
        .lines()
        .filter(|l| !l.starts_with("start:"))
        .collect::<Vec<_>>()
        .join("\n");
    let f = spec_file(&spec_dir, "live.yaml", &spec);
    let o = vigil(&server, &["create", &f, "--id", "live-1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(2500));
    // kill -9: no chance to flush anything.
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let dir = std::mem::replace(&mut server._dir, TempDir(PathBuf::new()));
    drop(server);
    let again = Server::start_in(dir, None);
    let o = vigil(&again, &["watch", "live-1"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("event resumed: resumed at interval "), "{out}");
    for k in 1..=6 {
        assert_eq!(
            out.matches(&format!("\ninterval {k} (")).count(),
            1,
            "interval {k}: {out}"
        );
    }
}
