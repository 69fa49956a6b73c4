//! Measures and the text / JSON reports of a replay.
//!
//! A scenario counts as flagged when its verdict is Fail or Marginal and as clean when Pass.
//! Inconclusive is neither: it is reported as its own rate, and a positive that ends Inconclusive
//! counts against recall (it was not caught), never as a Pass. An Error (a scenario that could not
//! be loaded or judged) says nothing about the judge, so it is left out of recall, false-positive
//! rate and precision altogether and counted on its own (`errors`): a broken corpus must not read
//! as missed faults or clean passes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};

use super::{JudgeName, ScenarioResult};
use vigil_analyzer::verdict::Verdict;

/// Confusion counts and the measures derived from them.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Measures {
    pub scenarios: usize,
    /// Expected-fail scenarios that were judged (errors excluded): recall's denominator.
    pub positives: usize,
    pub negatives: usize,
    pub true_positives: usize,
    pub false_positives: usize,
    pub inconclusive: usize,
    pub errors: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub false_positive_rate: Option<f64>,
    pub f1: Option<f64>,
    pub inconclusive_rate: Option<f64>,
    pub median_time_to_detect_s: Option<f64>,
    pub p90_time_to_detect_s: Option<f64>,
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Measures of one judge over a set of results.
pub fn measures<'a>(
    results: impl IntoIterator<Item = &'a ScenarioResult>,
    judge: JudgeName,
) -> Measures {
    let mut m = Measures::default();
    let mut ttd = Vec::new();
    for r in results {
        let o = r.outcome(judge);
        m.scenarios += 1;
        // A scenario whose expectation could not even be read is an error and nothing else.
        let positive = match r.expected {
            "fail" => true,
            "pass" => false,
            _ => {
                m.errors += 1;
                continue;
            }
        };
        if o.verdict == Verdict::Error {
            m.errors += 1;
            continue;
        }
        if positive {
            m.positives += 1;
        } else {
            m.negatives += 1;
        }
        match o.verdict {
            Verdict::Inconclusive => m.inconclusive += 1,
            v if v.flagged() => {
                if positive {
                    m.true_positives += 1;
                    if let Some(t) = o.time_to_detect_s {
                        ttd.push(t);
                    }
                } else {
                    m.false_positives += 1;
                }
            }
            _ => {}
        }
    }
    m.precision = ratio(m.true_positives, m.true_positives + m.false_positives);
    m.recall = ratio(m.true_positives, m.positives);
    m.false_positive_rate = ratio(m.false_positives, m.negatives);
    m.f1 = match (m.precision, m.recall) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        (Some(_), Some(_)) => Some(0.0),
        _ => None,
    };
    m.inconclusive_rate = ratio(m.inconclusive, m.scenarios);
    ttd.sort_by(f64::total_cmp);
    m.median_time_to_detect_s = vigil_models::vigil_judge::quantile(&ttd, 0.5);
    m.p90_time_to_detect_s = vigil_models::vigil_judge::quantile(&ttd, 0.9);
    m
}

/// Measures per judge, per system and per fault type.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenarios: usize,
    pub seconds: f64,
    pub scenarios_per_s: f64,
    /// Overall measures per judge.
    pub judges: BTreeMap<&'static str, Measures>,
    /// judge -> system -> measures.
    pub by_system: BTreeMap<&'static str, BTreeMap<String, Measures>>,
    /// judge -> fault type -> measures (positives of that type; recall is the figure to read).
    pub by_fault_type: BTreeMap<&'static str, BTreeMap<String, Measures>>,
    /// With `--ablation`: Vigil's measures with one signal left out, keyed by that signal.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ablation: BTreeMap<&'static str, Measures>,
    /// With `--ablation`: left-out signal -> fault type -> Vigil's measures, to say which kinds of
    /// fault each signal is the one to catch.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ablation_by_fault_type: BTreeMap<&'static str, BTreeMap<String, Measures>>,
    /// With `--set`: the judge settings changed from their defaults, as typed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

impl Summary {
    /// `key=value, …` of the settings changed with `--set`, or None with the defaults.
    pub fn changed_settings(&self) -> Option<String> {
        (!self.settings.is_empty()).then(|| {
            let pairs: Vec<String> = self
                .settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            pairs.join(", ")
        })
    }
}

pub fn summarise(results: &[ScenarioResult], seconds: f64) -> Summary {
    let mut judges = BTreeMap::new();
    let mut by_system = BTreeMap::new();
    let mut by_fault = BTreeMap::new();
    for j in JudgeName::ALL {
        judges.insert(j.as_str(), measures(results, j));
        let mut systems: BTreeMap<String, Vec<&ScenarioResult>> = BTreeMap::new();
        for r in results {
            systems.entry(r.system.clone()).or_default().push(r);
        }
        by_system.insert(
            j.as_str(),
            systems
                .into_iter()
                .map(|(k, v)| (k, measures(v, j)))
                .collect(),
        );
        by_fault.insert(j.as_str(), by_fault_type(results, j));
    }
    Summary {
        scenarios: results.len(),
        seconds,
        scenarios_per_s: if seconds > 0.0 {
            results.len() as f64 / seconds
        } else {
            0.0
        },
        judges,
        by_system,
        by_fault_type: by_fault,
        ablation: BTreeMap::new(),
        ablation_by_fault_type: BTreeMap::new(),
        settings: BTreeMap::new(),
    }
}

/// One judge's measures per fault type (scenarios without a fault type are left out).
pub fn by_fault_type(results: &[ScenarioResult], judge: JudgeName) -> BTreeMap<String, Measures> {
    let mut faults: BTreeMap<String, Vec<&ScenarioResult>> = BTreeMap::new();
    for r in results {
        if let Some(f) = &r.fault_type {
            faults.entry(f.clone()).or_default().push(r);
        }
    }
    faults
        .into_iter()
        .map(|(k, v)| (k, measures(v, judge)))
        .collect()
}

/// The `--json` contract: `scenarios` (id, expected, verdict, score, time_to_detect_s, evidence,
/// plus context and the reference judges) and `summary`.
pub fn to_json(results: &[ScenarioResult], summary: &Summary) -> Value {
    let scenarios: Vec<Value> = results
        .iter()
        .map(|r| {
            let reference = |j: JudgeName| {
                let o = r.outcome(j);
                json!({
                    "verdict": o.verdict.as_str(),
                    "score": o.score,
                    "time_to_detect_s": o.time_to_detect_s,
                    "evidence": o.evidence,
                })
            };
            json!({
                "id": r.id,
                "system": r.system,
                "fault_type": r.fault_type,
                "expected": r.expected,
                "verdict": r.vigil.verdict.as_str(),
                "score": r.vigil.score,
                "time_to_detect_s": r.vigil.time_to_detect_s,
                "evidence": r.vigil.evidence,
                "findings": r.vigil.findings,
                "note": r.vigil.note,
                "timeline": r.vigil.timeline,
                "reference": { "kayenta": reference(JudgeName::Kayenta), "naive": reference(JudgeName::Naive) },
            })
        })
        .collect();
    json!({ "scenarios": scenarios, "summary": summary })
}

/// Whether Vigil's verdict disagrees with the expected outcome (the text table's `*`, the HTML
/// table's ✗): a missed fault, a flagged healthy pair, or an Inconclusive or Error either way.
pub fn disagrees(r: &ScenarioResult) -> bool {
    let right = match (r.expected, r.vigil.verdict.flagged()) {
        ("fail", true) | ("pass", false) => {
            !matches!(r.vigil.verdict, Verdict::Inconclusive | Verdict::Error)
        }
        _ => false,
    };
    !right
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

fn short(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "Pass",
        Verdict::Marginal => "Marg",
        Verdict::Fail => "FAIL",
        Verdict::Inconclusive => "Inc",
        Verdict::Error => "Err",
    }
}

/// The per-scenario table and the summary, as text for a terminal.
pub fn to_text(results: &[ScenarioResult], summary: &Summary) -> String {
    let mut out = String::new();
    let idw = results
        .iter()
        .map(|r| r.id.len())
        .max()
        .unwrap_or(2)
        .clamp(2, 48);
    let _ = writeln!(
        out,
        "{:<idw$}  {:<4}  {:<5} {:>5} {:>5}  {:<5} {:<5}  top evidence (vigil)",
        "scenario", "exp", "vigil", "score", "ttd", "kayen", "naive"
    );
    for r in results {
        let mark = if disagrees(r) { "*" } else { " " };
        let ev = r
            .vigil
            .evidence
            .first()
            .map(|f| format!("{}: {}: {}", f.signal.as_str(), f.subject, f.detail))
            .or_else(|| r.vigil.note.clone())
            .unwrap_or_default();
        let ev = vigil_analyzer::text::clip(&ev, 110);
        let id: String = r.id.chars().take(idw).collect();
        let _ = writeln!(
            out,
            "{id:<idw$}  {:<4}{mark} {:<5} {:>5.0} {:>5}  {:<5} {:<5}  {ev}",
            r.expected,
            short(r.vigil.verdict),
            r.vigil.score,
            r.vigil
                .time_to_detect_s
                .map(|t| format!("{t:.0}s"))
                .unwrap_or_else(|| "-".into()),
            short(r.kayenta.verdict),
            short(r.naive.verdict),
        );
    }
    let _ = writeln!(
        out,
        "\n(* = verdict disagrees with the expected outcome; ttd = time to detect)\n"
    );
    let _ = writeln!(
        out,
        "{:<8} {:>9} {:>6} {:>6} {:>6} {:>5} {:>6} {:>8} {:>6} {:>8}",
        "judge", "precision", "recall", "FPR", "F1", "TP", "FP", "inconcl", "errors", "ttd p50/p90"
    );
    for j in JudgeName::ALL {
        let m = &summary.judges[j.as_str()];
        let _ = writeln!(
            out,
            "{:<8} {:>9} {:>6} {:>6} {:>6} {:>5} {:>6} {:>8} {:>6} {:>5}/{}",
            j.as_str(),
            fmt_opt(m.precision, 2),
            fmt_opt(m.recall, 2),
            fmt_opt(m.false_positive_rate, 3),
            fmt_opt(m.f1, 2),
            format!("{}/{}", m.true_positives, m.positives),
            format!("{}/{}", m.false_positives, m.negatives),
            fmt_opt(m.inconclusive_rate, 2),
            m.errors,
            fmt_opt(m.median_time_to_detect_s, 0),
            fmt_opt(m.p90_time_to_detect_s, 0),
        );
    }
    let errors = summary.judges["vigil"].errors;
    if errors > 0 {
        let _ = writeln!(
            out,
            "\n{errors} of {} scenarios could not be judged (Error rows above, note in --json); \
             they are left out of precision, recall and FPR.",
            summary.scenarios
        );
    }
    let _ = writeln!(out, "\nby system (recall / FPR / F1):");
    for (system, _) in summary.by_system["vigil"].iter() {
        let cells: Vec<String> = JudgeName::ALL
            .iter()
            .map(|j| {
                let m = &summary.by_system[j.as_str()][system];
                format!(
                    "{} {}/{}/{}",
                    j.as_str(),
                    fmt_opt(m.recall, 2),
                    fmt_opt(m.false_positive_rate, 3),
                    fmt_opt(m.f1, 2)
                )
            })
            .collect();
        let _ = writeln!(out, "  {system:<16} {}", cells.join("   "));
    }
    let _ = writeln!(out, "by fault type (recall):");
    for (fault, m0) in summary.by_fault_type["vigil"].iter() {
        let cells: Vec<String> = JudgeName::ALL
            .iter()
            .map(|j| {
                let m = &summary.by_fault_type[j.as_str()][fault];
                format!("{} {}/{}", j.as_str(), m.true_positives, m.positives)
            })
            .collect();
        let _ = writeln!(
            out,
            "  {fault:<16} {}   (n={})",
            cells.join("   "),
            m0.positives
        );
    }
    if !summary.ablation.is_empty() {
        let all = &summary.judges["vigil"];
        let _ = writeln!(
            out,
            "\nwhat each signal adds (vigil with it left out; caught / false = faults and false positives that go away without it):"
        );
        let all_by_fault = summary.by_fault_type.get("vigil");
        for (signal, m) in &summary.ablation {
            // Faults of each type caught only with the signal.
            let per_type: Vec<String> = summary
                .ablation_by_fault_type
                .get(signal)
                .into_iter()
                .flatten()
                .filter_map(|(fault, without)| {
                    let with = all_by_fault?.get(fault)?;
                    let added = with.true_positives as i64 - without.true_positives as i64;
                    (added != 0).then(|| format!("{fault} {added:+}"))
                })
                .collect();
            let per_type = if per_type.is_empty() {
                String::new()
            } else {
                format!("   ({})", per_type.join(", "))
            };
            let _ = writeln!(
                out,
                "  without {signal:<8} recall {:>5} FPR {:>6}   caught {:+}   false {:+}{per_type}",
                fmt_opt(m.recall, 2),
                fmt_opt(m.false_positive_rate, 3),
                all.true_positives as i64 - m.true_positives as i64,
                all.false_positives as i64 - m.false_positives as i64,
            );
        }
    }
    if let Some(changed) = summary.changed_settings() {
        let _ = writeln!(out, "\nsettings changed from the defaults: {changed}");
    }
    let _ = writeln!(
        out,
        "\n{} scenarios in {:.1} s ({:.1} scenarios/s)",
        summary.scenarios, summary.seconds, summary.scenarios_per_s
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{Conclusion, ScenarioResult};

    fn outcome(v: Verdict, ttd: Option<f64>) -> Conclusion {
        Conclusion {
            verdict: v,
            score: 0.0,
            time_to_detect_s: ttd,
            evidence: vec![],
            findings: vec![],
            note: None,
            timeline: vec![],
        }
    }

    fn result(expected: &'static str, v: Verdict, ttd: Option<f64>) -> ScenarioResult {
        ScenarioResult {
            id: "x".into(),
            system: "s".into(),
            fault_type: None,
            expected,
            vigil: outcome(v, ttd),
            kayenta: outcome(v, ttd),
            naive: outcome(v, ttd),
        }
    }

    #[test]
    fn inconclusive_is_neither_pass_nor_detection() {
        let rs = vec![
            result("fail", Verdict::Fail, Some(30.0)),
            result("fail", Verdict::Marginal, Some(90.0)),
            result("fail", Verdict::Inconclusive, None),
            result("fail", Verdict::Pass, None),
            result("pass", Verdict::Fail, Some(30.0)),
            result("pass", Verdict::Pass, None),
            result("pass", Verdict::Inconclusive, None),
            result("pass", Verdict::Pass, None),
        ];
        let m = measures(&rs, JudgeName::Vigil);
        assert_eq!(m.errors, 0);
        assert_eq!(m.recall, Some(0.5));
        assert_eq!(m.false_positive_rate, Some(0.25));
        assert_eq!(m.precision, Some(2.0 / 3.0));
        assert_eq!(m.inconclusive_rate, Some(0.25));
        assert_eq!(m.median_time_to_detect_s, Some(60.0));
        let f1 = 2.0 * (2.0 / 3.0) * 0.5 / (2.0 / 3.0 + 0.5);
        assert!((m.f1.unwrap() - f1).abs() < 1e-12);
    }

    #[test]
    fn errors_are_counted_apart_and_never_as_misses_or_passes() {
        // One fault caught, one fault that errored, one clean pass, one healthy pair that errored:
        // recall must be 1/1 and FPR 0/1, with two errors reported.
        let rs = vec![
            result("fail", Verdict::Fail, Some(30.0)),
            result("fail", Verdict::Error, None),
            result("pass", Verdict::Pass, None),
            result("pass", Verdict::Error, None),
        ];
        let m = measures(&rs, JudgeName::Vigil);
        assert_eq!(m.errors, 2);
        assert_eq!((m.true_positives, m.positives), (1, 1));
        assert_eq!((m.false_positives, m.negatives), (0, 1));
        assert_eq!(m.recall, Some(1.0));
        assert_eq!(m.false_positive_rate, Some(0.0));
        let text = to_text(&rs, &summarise(&rs, 1.0));
        assert!(
            text.contains("2 of 4 scenarios could not be judged"),
            "the summary must say how many errored:\n{text}"
        );
    }
}
