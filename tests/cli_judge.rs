//! End-to-end: the built `vigil` binary judging the bundled example and rejecting bad requests.

// Tests may unwrap (a panic is the failure report) and compare exact values on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/kayenta-request.json")
}

fn vigil(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil");
    let mut input = child.stdin.take().unwrap();
    // The binary may exit before reading (e.g. a bad --input path); a broken pipe is fine.
    let _ = input.write_all(stdin.unwrap_or("").as_bytes());
    drop(input);
    child.wait_with_output().unwrap()
}

fn judge_stdin(request: &Value) -> Output {
    vigil(&["judge", "--quiet"], Some(&request.to_string()))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small valid request to break one field at a time.
fn valid() -> Value {
    json!({
        "canaryConfig": {
            "judge": {"name": "NetflixACAJudge-v1.0"},
            "metrics": [{"name": "latency", "groups": ["g"],
                         "analysisConfigurations": {"canary": {"direction": "increase"}}}],
            "classifier": {"groupWeights": {"g": 100}}
        },
        "scoreThresholds": {"pass": 75, "marginal": 50},
        "metricSetPairList": [{
            "name": "latency", "id": "1", "tags": {},
            "values": {"control": [1.0, 2.0, 3.0, null, "NaN"], "experiment": [1.0, 2.0, 3.0]},
            "scopes": {}, "attributes": {}
        }]
    })
}

#[test]
fn judges_the_bundled_example() {
    let out = vigil(&["judge", "--input", example().to_str().unwrap()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(result["judgeName"], "NetflixACAJudge-v1.0");
    let results = result["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    // The example's one regression is latency; nothing else was changed in the canary.
    for r in results {
        let name = r["name"].as_str().unwrap();
        let want = if name.starts_with("request_latency") {
            "High"
        } else {
            "Pass"
        };
        assert_eq!(r["classification"], want, "{name}");
    }
    // latency 0 · 0.4 + errors 100 · 0.4 + cpu 100 · 0.2 = 60, below marginal 75.
    assert_eq!(result["score"]["score"], 60.0);
    assert_eq!(result["score"]["classification"], "Fail");
    for key in ["experimentMetadata", "controlMetadata"] {
        for stat in ["min", "max", "mean", "std", "count"] {
            assert!(
                !results[0][key]["stats"][stat].is_null(),
                "{key}.stats.{stat}"
            );
        }
    }
    // Two control points of the first metric are missing in the example and were removed.
    assert_eq!(results[0]["controlMetadata"]["stats"]["count"], 58);
    assert!(results[0]["resultMetadata"]["ratio"].is_number());
    assert_eq!(result["groupScores"].as_array().unwrap().len(), 3);
    // The human summary goes to stderr, stdout stays pure JSON.
    assert!(
        stderr(&out).contains("verdict: Fail (score 60)"),
        "{}",
        stderr(&out)
    );
    // Pretty-printed for a person.
    assert!(String::from_utf8_lossy(&out.stdout).contains("\n  \"results\": ["));
}

#[test]
fn reads_stdin_and_gives_the_same_result_twice() {
    let text = std::fs::read_to_string(example()).unwrap();
    let a = vigil(&["judge", "--quiet"], Some(&text));
    let b = vigil(&["judge", "--quiet"], Some(&text));
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(a.stderr.is_empty(), "--quiet prints nothing on stderr");
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn writes_nan_ratio_as_a_string_and_accepts_null_and_nan_samples() {
    let mut r = valid();
    r["metricSetPairList"][0]["values"] =
        json!({"control": [0.0, 0.0, 0.0], "experiment": [5.0, 6.0, null]});
    let out = judge_stdin(&r);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["resultMetadata"]["ratio"], "NaN");
    assert_eq!(v["results"][0]["experimentMetadata"]["stats"]["count"], 2);
}

fn assert_rejected(request: &str, needles: &[&str]) {
    let out = vigil(&["judge", "--quiet"], Some(request));
    assert!(!out.status.success(), "accepted: {request}");
    assert!(out.stdout.is_empty(), "nothing on stdout for a bad request");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "message {err:?} should mention {n:?}");
    }
}

#[test]
fn rejects_bad_requests_naming_the_field() {
    assert_rejected("{not json", &["not valid JSON"]);
    assert_rejected("[1, 2]", &["expected a JSON object"]);

    let mut r = valid();
    r.as_object_mut().unwrap().remove("metricSetPairList");
    assert_rejected(&r.to_string(), &["metricSetPairList"]);

    let mut r = valid();
    r.as_object_mut().unwrap().remove("scoreThresholds");
    assert_rejected(&r.to_string(), &["scoreThresholds", "pass"]);

    let mut r = valid();
    r["canaryConfig"]["metrics"][0]["analysisConfigurations"]["canary"]["direction"] = json!("up");
    assert_rejected(
        &r.to_string(),
        &[
            "canaryConfig.metrics[0].analysisConfigurations.canary.direction",
            "\"increase\"",
            "\"up\"",
        ],
    );

    let mut r = valid();
    r["metricSetPairList"] = json!([]);
    assert_rejected(&r.to_string(), &["metricSetPairList", "at least one"]);

    let mut r = valid();
    r["scoreThresholds"] = json!({"pass": 75, "marginal": 95});
    assert_rejected(&r.to_string(), &["scoreThresholds", "marginal <= pass"]);

    let mut r = valid();
    r["metricSetPairList"][0]["values"]["control"][1] = json!("two");
    assert_rejected(
        &r.to_string(),
        &["metricSetPairList[0].values.control[1]", "\"NaN\""],
    );

    let mut r = valid();
    r["metricSetPairList"][0]["values"]
        .as_object_mut()
        .unwrap()
        .remove("experiment");
    assert_rejected(
        &r.to_string(),
        &["metricSetPairList[0].values", "experiment"],
    );

    let mut r = valid();
    r["metricSetPairList"][0]["name"] = json!("nope");
    assert_rejected(&r.to_string(), &["metricSetPairList[0].name", "\"nope\""]);

    let mut r = valid();
    r["canaryConfig"]["metrics"][0]["analysisConfigurations"]["canary"]["critical"] = json!("true");
    assert_rejected(&r.to_string(), &["canary.critical", "true or false"]);

    let mut r = valid();
    r["canaryConfig"]["judge"]["name"] = json!("dredd-v1.0");
    assert_rejected(&r.to_string(), &["canaryConfig.judge.name", "dredd-v1.0"]);
}

#[test]
fn a_missing_input_file_is_an_error_naming_it() {
    let out = vigil(&["judge", "--input", "/nonexistent/request.json"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/request.json"),
        "{}",
        stderr(&out)
    );
}

/// Two groups: `ok` passes, `bad` doubles its latency. With `bad` weighted -50 and `ok` 150,
/// Kayenta's weighted sum is 150 · 1 + (-50) · 0 = 150: a Pass for a failing canary.
fn negative_weight_request() -> Value {
    let base: Vec<f64> = (0..30).map(|i| 100.0 + f64::from(i % 7)).collect();
    let doubled: Vec<f64> = base.iter().map(|v| v * 2.0).collect();
    json!({
        "canaryConfig": {
            "metrics": [
                {"name": "steady", "groups": ["ok"],
                 "analysisConfigurations": {"canary": {"direction": "increase"}}},
                {"name": "latency", "groups": ["bad"],
                 "analysisConfigurations": {"canary": {"direction": "increase"}}}
            ],
            "classifier": {"groupWeights": {"ok": 150, "bad": -50}}
        },
        "scoreThresholds": {"pass": 75, "marginal": 50},
        "metricSetPairList": [
            {"name": "steady", "values": {"control": base, "experiment": base}},
            {"name": "latency", "values": {"control": base, "experiment": doubled}}
        ]
    })
}

#[test]
fn kayenta_mode_keeps_kayentas_answer_to_a_negative_weight_but_warns() {
    let out = vigil(&["judge"], Some(&negative_weight_request().to_string()));
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    // Kayenta's own answer, kept: it is Kayenta's judge.
    assert_eq!(result["score"]["score"], 150.0);
    assert_eq!(result["score"]["classification"], "Pass");
    let warnings = result["warnings"].as_array().expect("a warnings field");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("groupWeights.bad")),
        "{warnings:?}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("warning:") && err.contains("groupWeights.bad"),
        "{err}"
    );
}

#[test]
fn a_clean_request_has_no_warnings_field() {
    let out = judge_stdin(&valid());
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert!(result.get("warnings").is_none(), "{result}");
}

#[test]
fn vigil_mode_rejects_weights_and_thresholds_naming_the_field() {
    let mode = ["judge", "--quiet", "--mode", "vigil"];
    let out = vigil(&mode, Some(&negative_weight_request().to_string()));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("canaryConfig.classifier.groupWeights.bad") && err.contains(">= 0"),
        "{err}"
    );

    let mut over = valid();
    over["canaryConfig"]["classifier"]["groupWeights"] = json!({"g": 80, "h": 40});
    let out = vigil(&mode, Some(&over.to_string()));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("canaryConfig.classifier.groupWeights:") && err.contains("120"),
        "{err}"
    );

    for (name, pass, marginal) in [("pass", 120, 50), ("marginal", 75, -5)] {
        let mut bad = valid();
        bad["scoreThresholds"] = json!({"pass": pass, "marginal": marginal});
        let out = vigil(&mode, Some(&bad.to_string()));
        assert!(!out.status.success(), "{name}");
        let err = stderr(&out);
        assert!(err.contains(&format!("scoreThresholds.{name}")), "{err}");
    }
}

#[test]
fn vigil_mode_answers_in_kayentas_shape() {
    let mut request = negative_weight_request();
    request["canaryConfig"]["classifier"]["groupWeights"] = json!({"ok": 50, "bad": 50});
    let out = vigil(
        &["judge", "--quiet", "--mode", "vigil"],
        Some(&request.to_string()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(result["judgeName"], "Vigil-v1");
    let keys: Vec<&String> = result.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["groupScores", "judgeName", "results", "score"]);
    let results = result["results"].as_array().unwrap();
    assert_eq!(results[0]["classification"], "Pass");
    assert_eq!(results[1]["classification"], "High");
    assert!(results[1]["classificationReason"]
        .as_str()
        .unwrap()
        .starts_with("High:"));
    // Half the weight on a failing group: 50, below marginal.
    assert_eq!(result["score"]["score"], 50.0);
    assert_eq!(result["score"]["classification"], "Marginal");
    for r in results {
        for key in [
            "experimentMetadata",
            "controlMetadata",
            "resultMetadata",
            "groups",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
    }
}
