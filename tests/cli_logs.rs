//! End-to-end: `vigil logs compare` on an empty side, and `vigil logs learn` writing the library
//! that `compare --library` reads.

// Tests may unwrap (a panic is the failure report) and compare exact values on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run vigil")
}

/// A fresh folder per test under the system temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("vigil-cli-logs-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p).expect("temp dir");
        Dir(p)
    }
    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        path(&p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_owned()
}

fn healthy_lines() -> String {
    (0..40)
        .map(|i| format!("request {i} served in {} ms\n", 5 + i % 3))
        .collect()
}

fn compare_json(baseline: &str, canary: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "logs",
        "compare",
        "--json",
        "--baseline",
        baseline,
        "--canary",
        canary,
    ];
    args.extend_from_slice(extra);
    let out = vigil(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn an_empty_canary_is_inconclusive_not_a_clean_pass() {
    let dir = Dir::new("empty");
    let baseline = dir.file("baseline.log", &healthy_lines());
    let empty = dir.file("empty.log", "");

    let out = vigil(&[
        "logs",
        "compare",
        "--baseline",
        &baseline,
        "--canary",
        &empty,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("inconclusive") && text.contains("canary had no log records"),
        "{text}"
    );
    assert!(!text.contains("no regression"), "{text}");

    let f = compare_json(&baseline, &empty, &[]);
    assert!(f["score"].is_null(), "{f}");
    assert_eq!(f["regression"], false);
    assert!(
        f["inconclusive"].as_str().unwrap().contains("canary"),
        "{f}"
    );

    // The same for an empty baseline.
    let f = compare_json(&empty, &baseline, &[]);
    assert!(f["score"].is_null(), "{f}");
    assert!(
        f["inconclusive"]
            .as_str()
            .unwrap()
            .contains("baseline had no log records"),
        "{f}"
    );

    // Both sides with records: judged as before.
    let f = compare_json(&baseline, &baseline, &[]);
    assert_eq!(f["score"], 100.0);
    assert!(f["inconclusive"].is_null(), "{f}");
}

#[test]
fn learn_writes_the_library_compare_reads() {
    let dir = Dir::new("learn");
    let known: String = (0..20)
        .map(|i| format!("cache warmed for region r{i} in {} ms\n", 100 + i))
        .collect();
    let learned_from = dir.file("known.log", &known);
    let baseline = dir.file("baseline.log", &healthy_lines());
    let canary_text = format!(
        "{}{}",
        healthy_lines(),
        (0..8)
            .map(|i| format!("cache warmed for region r{} in {} ms\n", 50 + i, 300 + i))
            .collect::<String>()
    );
    let canary = dir.file("canary.log", &canary_text);
    let library = path(&dir.0.join("lib.json"));

    let out = vigil(&["logs", "learn", "--out", &library, &learned_from]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&library).expect("library written"))
            .expect("library is JSON");
    let templates = saved["templates"].as_array().expect("templates");
    assert!(
        templates.iter().any(|t| t["template"]
            .as_str()
            .unwrap()
            .starts_with("cache warmed for region")),
        "{saved}"
    );

    // Without the library the cache pattern is new in the canary; with it, it is known.
    let without = compare_json(&baseline, &canary, &[]);
    assert_eq!(without["counts"]["new"], 1, "{without}");
    let with = compare_json(&baseline, &canary, &["--library", &library]);
    assert_eq!(with["counts"]["new"], 0, "{with}");

    // Learning from nothing is refused rather than writing an empty library.
    let empty = dir.file("empty.log", "");
    let out = vigil(&["logs", "learn", "--out", &library, &empty]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no log records"));
}

/// `logs eval --leave-one-out` on two tiny labelled systems that every candidate setting
/// groups perfectly: each fold scores GA 1 and, on the tie, keeps the default setting (0.5, 3),
/// which the candidates list first.
#[test]
fn eval_leave_one_out_reports_a_fold_per_system() {
    let dir = Dir::new("eval-loo");
    let mut a = String::from("LineId,Content,EventId,EventTemplate\n");
    let mut b = a.clone();
    for i in 0..6 {
        a.push_str(&format!(
            "{},Connected to 10.0.0.{i},E1,Connected to <*>\n",
            2 * i + 1
        ));
        a.push_str(&format!("{},Disk {i} full,E2,Disk <*> full\n", 2 * i + 2));
        b.push_str(&format!(
            "{},Sent {} bytes,E1,Sent <*> bytes\n",
            i + 1,
            100 * i
        ));
    }
    dir.file("Alpha_2k.log_structured_corrected.csv", &a);
    dir.file("Beta_2k.log_structured_corrected.csv", &b);
    let out = vigil(&["logs", "eval", &path(&dir.0), "--json", "--leave-one-out"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let folds = v["leave_one_out"]["systems"].as_array().expect("folds");
    let names: Vec<&str> = folds.iter().filter_map(|f| f["system"].as_str()).collect();
    assert_eq!(names, ["Alpha", "Beta"]);
    for f in folds {
        assert_eq!(f["ga"], 1.0, "{f}");
        assert_eq!(f["similarity"], 0.5, "{f}");
        assert_eq!(f["distinct_constants"], 3, "{f}");
        assert_eq!(f["train_ga"], 1.0, "{f}");
    }
    assert_eq!(v["leave_one_out"]["average"]["ga"], 1.0);
    // Without the flag the JSON has no folds.
    let out = vigil(&["logs", "eval", &path(&dir.0), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert!(v.get("leave_one_out").is_none());
}
