//! End-to-end: the built `vigil stats mann-whitney` against scipy's values (the reference JSON that
//! `models/tests/reference/rank_refs.py` produced with scipy 1.17.1), and its bad-input messages.

// Tests may unwrap (a panic is the failure report) and compare exact values on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

const REFS: &str = include_str!("../models/tests/data/rank_refs.json");

fn mann_whitney(stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["stats", "mann-whitney"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil");
    let mut input = child.stdin.take().expect("stdin");
    // The binary may reject the request before reading all of it; a broken pipe is fine.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    child.wait_with_output().expect("wait for vigil")
}

fn close(actual: f64, expected: f64) -> bool {
    actual == expected
        || (actual - expected).abs() <= 1e-300
        || (actual - expected).abs() <= 1e-9 * expected.abs().max(actual.abs())
}

#[test]
fn matches_scipy_on_every_reference_case_json_can_express() {
    let refs: Value = serde_json::from_str(REFS).expect("reference JSON");
    let mut checked = 0;
    for set in refs["datasets"].as_array().expect("datasets") {
        // Infinities are written as strings in the reference file; JSON numbers cannot carry them.
        let finite = |v: &Value| v.as_array().expect("values").iter().all(Value::is_number);
        if !finite(&set["x"]) || !finite(&set["y"]) {
            continue;
        }
        for r in set["results"].as_array().expect("results") {
            // The exact-rational cases are large forced-exact tables; the models tests cover
            // their numerics, and a debug build would spend seconds on each here.
            if r["source"] != "scipy" {
                continue;
            }
            let request = json!({
                "x": set["x"], "y": set["y"],
                "alternative": r["alternative"], "method": r["method"],
                "use_continuity": r["use_continuity"],
            });
            let out = mann_whitney(&request.to_string());
            let context = format!("{} {}", set["name"], r);
            assert!(
                out.status.success(),
                "{context}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
            let keys: Vec<&String> = got.as_object().expect("object").keys().collect();
            assert_eq!(keys, ["pvalue", "statistic"], "{context}");
            assert_eq!(
                got["statistic"].as_f64(),
                r["statistic"].as_f64(),
                "{context}"
            );
            match r["pvalue"].as_f64() {
                Some(want) => {
                    let p = got["pvalue"].as_f64().expect("numeric p-value");
                    assert!(close(p, want), "{context}: got p={p:e}");
                }
                // scipy's NaN (all values tied, no continuity) is printed as null.
                None => assert!(got["pvalue"].is_null(), "{context}: {got}"),
            }
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} cases checked");
}

#[test]
fn optional_fields_default_to_scipys_defaults() {
    // scipy.stats.mannwhitneyu([19, 22, 16, 29, 24], [20, 11, 17, 12]): auto picks exact here.
    let out = mann_whitney(r#"{"x": [19, 22, 16, 29, 24], "y": [20, 11, 17, 12]}"#);
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(got["statistic"], 17.0);
    assert!(close(
        got["pvalue"].as_f64().expect("p"),
        0.1111111111111111
    ));
}

/// Bad input: non-zero exit, nothing on stdout, and a message naming the field and what it should be.
fn rejects(request: &str, expected_fragments: &[&str]) {
    let out = mann_whitney(request);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{request} was accepted");
    assert!(out.stdout.is_empty(), "{request} printed a result");
    for fragment in expected_fragments {
        assert!(
            stderr.contains(fragment),
            "{request}: {stderr:?} lacks {fragment:?}"
        );
    }
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    rejects(
        r#"{"x": [1], "y": [2], "alternatve": "less"}"#,
        &["unknown field `alternatve`", "`alternative`"],
    );
}

#[test]
fn missing_and_malformed_samples_name_the_field() {
    rejects(r#"{"y": [2]}"#, &["missing field `x`"]);
    rejects(r#"{"x": [1]}"#, &["missing field `y`"]);
    rejects(
        r#"{"x": "1,2", "y": [2]}"#,
        &["`x`", "expected a non-empty array of numbers"],
    );
    rejects(
        r#"{"x": [1], "y": []}"#,
        &["`y` is empty", "non-empty array"],
    );
    rejects(
        r#"{"x": [1, null], "y": [2]}"#,
        &["`x[1]` is null", "expected a number"],
    );
    rejects(
        r#"{"x": [1], "y": [2, "NaN"]}"#,
        &["`y[1]`", "expected a number"],
    );
    rejects(
        r#"{"x": [1], "y": [[2]]}"#,
        &["`y[0]` is an array", "expected a number"],
    );
}

#[test]
fn malformed_options_name_the_field_and_the_choices() {
    rejects(
        r#"{"x": [1], "y": [2], "alternative": "two_sided"}"#,
        &["`alternative`", "\"two-sided\", \"less\", \"greater\""],
    );
    rejects(
        r#"{"x": [1], "y": [2], "method": 3}"#,
        &[
            "`method` is the number 3",
            "\"auto\", \"exact\", \"asymptotic\"",
        ],
    );
    rejects(
        r#"{"x": [1], "y": [2], "use_continuity": "true"}"#,
        &["`use_continuity`", "expected true or false"],
    );
    rejects(
        r#"{"x": [1], "y": [2], "method": null}"#,
        &["`method` is null"],
    );
}

#[test]
fn non_objects_and_non_json_are_rejected() {
    rejects(
        "[[1], [2]]",
        &["an array", "expected a JSON object with fields `x`, `y`"],
    );
    rejects("x=1", &["not valid JSON"]);
    rejects("", &["not valid JSON"]);
}

#[test]
fn forced_exact_on_huge_samples_fails_cleanly() {
    let x: Vec<f64> = (0..20_000).map(f64::from).collect();
    let y: Vec<f64> = (0..20_000).map(|i| f64::from(i) + 0.5).collect();
    let request = json!({"x": x, "y": y, "method": "exact"});
    rejects(&request.to_string(), &["exact p-value", "asymptotic"]);
}

/// The issue's case: forced exact on 2 × 800 values near the mean printed `"pvalue": 1.0` (the
/// asymptotic p is about 0.75); other sizes up to 2 000 printed `null`, which means "all values
/// tied". Now the exact value (the exact rational from models/tests/reference/mw_exact_large.py).
#[test]
fn forced_exact_on_800_values_each_is_the_exact_p() {
    let n = 800usize;
    let u1 = 323_000usize;
    let (q, r) = (u1 / n, u1 % n);
    let x: Vec<f64> = (0..n)
        .map(|i| (if i < n - r { q } else { q + 1 }) as f64 - 0.5 + i as f64 * 1e-7)
        .collect();
    let y: Vec<f64> = (0..n).map(|j| j as f64).collect();
    let request = json!({"x": x, "y": y, "method": "exact"});
    let out = mann_whitney(&request.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(got["statistic"].as_f64(), Some(u1 as f64));
    let p = got["pvalue"].as_f64().expect("numeric p");
    let exact = 0.7455475211802539;
    assert!(((p - exact) / exact).abs() < 1e-10, "{p}");
}
