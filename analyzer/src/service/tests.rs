//! The runner end to end on the store's API, with a metric source of the test's own (the engine
//! judges; the source only decides what data exists).

use std::sync::Arc;
use std::time::Duration;

use super::metrics::{Fetch, MetricSource, PrometheusSource, Sample, Side};
use super::record::{EventRecord, IntervalRecord};
use super::runner::{now_s, Core, ServiceError};
use super::spec::Spec;
use super::store::{Entry, Feedback, Store};

/// Samples at every step of `[start, end]`: the baseline around 10 ± 1, the canary the same
/// times `canary_factor` (error counts per step, 0–3 on the baseline).
struct Synthetic {
    canary_factor: f64,
    /// Return no samples at all (a query that matches no series).
    empty: bool,
}

fn noise(t: f64, salt: u64) -> f64 {
    // A fixed hash of the time: the same data on every fetch, as a real TSDB gives.
    let mut x = (t * 1000.0) as u64 ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % 10_000) as f64 / 10_000.0
}

impl MetricSource for Synthetic {
    fn fetch<'a>(
        &'a self,
        spec: &'a Spec,
        side: Side,
        start: f64,
        end: f64,
        step: f64,
    ) -> Fetch<'a> {
        Box::pin(async move {
            let mut out = Vec::new();
            if self.empty {
                return Ok(out);
            }
            let factor = match side {
                Side::Baseline => 1.0,
                Side::Canary => self.canary_factor,
            };
            let mut t = start;
            while t <= end {
                for (i, m) in spec.metrics.iter().enumerate() {
                    let salt = i as u64 + if side == Side::Canary { 100 } else { 0 };
                    out.push(Sample {
                        time: t,
                        name: m.name.clone(),
                        value: (9.0 + 2.0 * noise(t, salt)) * factor,
                    });
                }
                t += step;
            }
            Ok(out)
        })
    }
}

/// A spec over a window wholly in the past: judged at once. The window is fixed, not relative to
/// now: the synthetic readings are a hash of their time, and the judge flags about 3 % of 5-minute
/// windows of pure noise (one of its trend, dispersion or location tests under 0.01 in one of five
/// interval looks), so a window that moved with the clock made these tests fail one run in 30.
fn past_spec(extra: &str) -> String {
    let start = "2026-01-05T12:00:00Z";
    format!(
        r#"
app: checkout
prometheus: {{url: "http://127.0.0.1:9"}}
baseline: {{labels: {{app: checkout, track: stable}}}}
canary: {{labels: {{app: checkout, track: canary}}}}
metrics:
  - {{name: latency_ms, query: "avg(latency_ms{{${{scope}}}})", direction: increase}}
start: "{start}"
interval: 1m
step: 10s
lifetime: 5m
{extra}"#
    )
}

async fn finished(core: &Arc<Core>, id: &str) -> (String, Vec<Entry>) {
    for _ in 0..200 {
        let key = id.to_owned();
        let row = core
            .with_store(move |s| s.get(&key))
            .await
            .unwrap()
            .unwrap();
        if super::record::is_final_state(&row.state) {
            let key = id.to_owned();
            let entries = core
                .with_store(move |s| s.entries_since(&key, 0, 10_000))
                .await
                .unwrap();
            return (row.state, entries);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("analysis {id} did not finish");
}

fn judgements(entries: &[Entry]) -> Vec<IntervalRecord> {
    entries
        .iter()
        .filter(|e| e.kind == "judgement")
        .map(|e| serde_json::from_str(&e.payload_json).unwrap())
        .collect()
}

fn events(entries: &[Entry]) -> Vec<EventRecord> {
    entries
        .iter()
        .filter(|e| e.kind == "event")
        .map(|e| serde_json::from_str(&e.payload_json).unwrap())
        .collect()
}

fn core(source: impl MetricSource + 'static) -> Arc<Core> {
    Core::new(Store::open_in_memory().unwrap(), Arc::new(source))
}

#[tokio::test]
async fn a_healthy_canary_in_the_past_passes_interval_by_interval() {
    let core = core(Synthetic {
        canary_factor: 1.0,
        empty: false,
    });
    let (row, created) = core.create("", &past_spec("")).await.unwrap();
    assert!(created && row.id.len() == 26, "a ULID: {}", row.id);
    let (state, entries) = finished(&core, &row.id).await;
    let js = judgements(&entries);
    // 5 one-minute intervals, each judging the canary's first k minutes.
    assert_eq!(js.len(), 5);
    assert_eq!(
        js.iter().map(|j| j.elapsed_s).collect::<Vec<_>>(),
        [60.0, 120.0, 180.0, 240.0, 300.0]
    );
    // Rows at t0+10 … t0+50 are before the end of interval 1: 5 per side (the 6th, at t0+60,
    // summarises the step before it but is stamped at the interval's end, so waits).
    assert_eq!(js[0].data[0].canary_samples, 5);
    assert_eq!(js[4].data[0].canary_samples, 29);
    assert_eq!(state, "succeeded", "{:?}", events(&entries));
    let last = events(&entries).pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.verdict.as_deref()),
        ("finished", Some("Pass"))
    );
    // Sequence numbers are 1, 2, … with the created event first.
    assert_eq!(entries[0].seq, 1);
    assert_eq!(events(&entries)[0].kind, "created");
}

#[tokio::test]
async fn a_slower_canary_fails_fast_with_its_time_to_detect() {
    let core = core(Synthetic {
        canary_factor: 1.6,
        empty: false,
    });
    let (row, _) = core.create("slow-1", &past_spec("")).await.unwrap();
    let (state, entries) = finished(&core, &row.id).await;
    let js = judgements(&entries);
    assert_eq!(state, "failed");
    // 60 % slower with 5 samples a side: the first interval already fails, and the analysis
    // stops there (fail fast).
    assert_eq!(js.len(), 1, "{js:?}");
    assert_eq!(js[0].judgement.verdict, "Fail");
    let ev = js[0].judgement.evidence[0].clone();
    assert_eq!(ev.key, "metric:latency_ms");
    assert_eq!(ev.severity, "fail");
    let fin = events(&entries).pop().unwrap();
    assert_eq!(fin.time_to_detect_s, Some(60.0));
}

#[tokio::test]
async fn no_data_is_inconclusive_and_the_policy_decides_the_end() {
    for (policy, state, n) in [
        ("", "inconclusive", 5),
        ("on_inconclusive: pass", "succeeded", 5),
        ("on_inconclusive: extend\nextend_by: 2m", "inconclusive", 7),
    ] {
        let core = core(Synthetic {
            canary_factor: 1.0,
            empty: true,
        });
        let (row, _) = core.create("", &past_spec(policy)).await.unwrap();
        let (got, entries) = finished(&core, &row.id).await;
        let js = judgements(&entries);
        assert_eq!(got, state, "{policy}");
        assert_eq!(js.len(), n, "{policy}");
        assert!(js.iter().all(|j| j.judgement.verdict == "Inconclusive"));
        assert!(js.iter().all(|j| j.data[0].canary_samples == 0));
        let kinds: Vec<String> = events(&entries).into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds.contains(&"extended".to_string()), n == 7, "{kinds:?}");
    }
}

#[tokio::test]
async fn an_unreachable_source_is_an_error_in_every_judgement() {
    let core = core(PrometheusSource);
    let (row, _) = core.create("", &past_spec("")).await.unwrap();
    let (state, entries) = finished(&core, &row.id).await;
    let js = judgements(&entries);
    assert_eq!(state, "error");
    assert_eq!(js.len(), 5);
    for j in &js {
        assert_eq!(j.judgement.verdict, "Error");
        let note = j.judgement.note.as_deref().unwrap();
        assert!(note.contains("http://127.0.0.1:9"), "{note}");
    }
}

#[tokio::test]
async fn ids_are_idempotent_per_spec() {
    let core = core(Synthetic {
        canary_factor: 1.0,
        empty: false,
    });
    let spec = past_spec("");
    let (a, created) = core.create("rollout-7", &spec).await.unwrap();
    assert!(created);
    let (b, created) = core.create("rollout-7", &spec).await.unwrap();
    assert!(!created);
    assert_eq!(a.created_ms, b.created_ms);
    let other = spec.replace("lifetime: 5m", "lifetime: 6m");
    assert!(matches!(
        core.create("rollout-7", &other).await,
        Err(ServiceError::Conflict(_))
    ));
    let e = core.create("bad id", &spec).await.unwrap_err().to_string();
    assert!(e.starts_with("id: "), "{e}");
    let e = core
        .create("", &spec.replace("direction: increase", "direction: up"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("spec: metrics[0].direction: unknown variant `up`"),
        "{e}"
    );
}

#[tokio::test]
async fn a_live_analysis_follows_the_wall_clock_and_can_be_cancelled() {
    let core = core(Synthetic {
        canary_factor: 1.0,
        empty: false,
    });
    let live = |lifetime: &str| {
        let start = super::spec::rfc3339(now_s().floor());
        format!(
            r#"{{"app": "a", "prometheus": {{"url": "http://127.0.0.1:9"}},
            "baseline": {{"labels": {{"v": "1"}}}}, "canary": {{"labels": {{"v": "2"}}}},
            "metrics": [{{"name": "m", "query": "m{{${{scope}}}}", "direction": "increase"}}],
            "start": "{start}", "interval": "1s", "step": "1s", "lifetime": "{lifetime}",
            "min_samples": {{"metrics": {{"baseline": 2, "canary": 1}}}}}}"#
        )
    };
    let t = std::time::Instant::now();
    let (row, _) = core.create("", &live("3s")).await.unwrap();
    let (_, entries) = finished(&core, &row.id).await;
    // Three 1 s intervals from a start at most 1 s ago, each closing 1 s (one step) late.
    let took = t.elapsed().as_secs_f64();
    assert!((2.0..6.0).contains(&took), "{took}");
    assert_eq!(judgements(&entries).len(), 3);

    let (row, _) = core.create("", &live("60s")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    core.cancel(&row.id, "rolled back by hand").await.unwrap();
    let (state, entries) = finished(&core, &row.id).await;
    assert_eq!(state, "cancelled");
    let n = judgements(&entries).len();
    assert!((1..=3).contains(&n), "{n}");
    let last = events(&entries).pop().unwrap();
    assert_eq!(last.message, "cancelled: rolled back by hand");
    // Nothing is appended after the cancellation.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, again) = finished(&core, &row.id).await;
    assert_eq!(again.len(), entries.len());
    assert!(matches!(
        core.cancel(&row.id, "").await,
        Err(ServiceError::Precondition(_))
    ));
    assert!(matches!(
        core.cancel("nope", "").await,
        Err(ServiceError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_restart_resumes_at_the_next_interval() {
    let store = Store::open_in_memory().unwrap();
    let slow = Synthetic {
        canary_factor: 1.0,
        empty: false,
    };
    // First life: the analysis is created and its entries up to interval 2 are stored, as if
    // the process died right after.
    let first = Core::new(store.clone(), Arc::new(PrometheusSource));
    let spec = past_spec("");
    let parsed = Spec::parse(&spec).unwrap();
    let new = super::store::NewAnalysis {
        id: "resume-1".into(),
        app: "checkout".into(),
        spec_json: parsed.to_json(),
        created_ms: super::runner::now_ms(),
    };
    store.create_analysis(&new).unwrap();
    for k in 1..=2u32 {
        let rec = IntervalRecord {
            interval: k,
            elapsed_s: 60.0 * f64::from(k),
            window_start: 0.0,
            window_end: 0.0,
            judgement: super::record::JudgementRecord::from_judgement(
                &super::runner::error_judgement("before the restart"),
            ),
            data: vec![],
            series: vec![],
        };
        store
            .append(
                "resume-1",
                &[super::store::NewEntry {
                    kind: "judgement".into(),
                    payload_json: serde_json::to_string(&rec).unwrap(),
                    state: Some("running".into()),
                    verdict: Some("Error".into()),
                    score: Some(0.0),
                    next_interval: Some(k + 1),
                    finished_ms: None,
                    at_ms: 0,
                }],
            )
            .unwrap();
    }
    drop(first);
    // Second life: the unfinished analysis resumes at interval 3.
    let second = Core::new(store.clone(), Arc::new(slow));
    assert_eq!(second.resume_all().await.unwrap(), 1);
    let (state, entries) = finished(&second, "resume-1").await;
    let js = judgements(&entries);
    assert_eq!(
        js.iter().map(|j| j.interval).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(events(&entries)[0].kind, "resumed");
    assert_eq!(state, "succeeded");
}

#[tokio::test]
async fn feedback_turns_a_metric_fail_into_a_warning_and_says_so() {
    let core = core(Synthetic {
        canary_factor: 1.6,
        empty: false,
    });
    let fb = Feedback {
        app: "checkout".into(),
        subject: "metric:latency_ms".into(),
        kind: "false_positive".into(),
        note: "cache warm-up".into(),
        created_ms: 0,
        expires_ms: super::runner::now_ms() + 3_600_000,
    };
    core.with_store(move |s| s.add_feedback(&fb)).await.unwrap();
    let (row, _) = core.create("", &past_spec("")).await.unwrap();
    let (state, entries) = finished(&core, &row.id).await;
    let js = judgements(&entries);
    // Not critical any more: the shift warns (Marginal at most), the analysis runs its lifetime.
    assert_eq!(js.len(), 5);
    let f = js[4]
        .judgement
        .findings
        .iter()
        .find(|f| f.key == "metric:latency_ms")
        .unwrap();
    assert_eq!(f.severity, "warn");
    assert!(f
        .feedback
        .as_deref()
        .unwrap()
        .starts_with("false_positive: cache warm-up (until "));
    assert_ne!(js[4].judgement.verdict, "Fail");
    assert_ne!(state, "succeeded");
}

#[tokio::test]
async fn the_sweep_deletes_only_what_is_past_retention() {
    let core = core(Synthetic {
        canary_factor: 1.0,
        empty: false,
    });
    let (row, _) = core.create("", &past_spec("")).await.unwrap();
    finished(&core, &row.id).await;
    assert_eq!(core.sweep(Duration::from_secs(3600)).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(core.sweep(Duration::from_millis(1)).await.unwrap(), 1);
    let id = row.id.clone();
    assert!(core
        .with_store(move |s| s.get(&id))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn get_analysis_from_the_cache_follows_every_write() {
    let core = core(Synthetic {
        canary_factor: 1.0,
        empty: false,
    });
    let start = super::spec::rfc3339(now_s().floor());
    let spec = format!(
        r#"{{"app": "a", "prometheus": {{"url": "http://127.0.0.1:9"}},
        "baseline": {{"labels": {{"v": "1"}}}}, "canary": {{"labels": {{"v": "2"}}}},
        "metrics": [{{"name": "m", "query": "m{{${{scope}}}}", "direction": "increase"}}],
        "start": "{start}", "interval": "1s", "step": "1s", "lifetime": "3s",
        "min_samples": {{"metrics": {{"baseline": 2, "canary": 1}}}}}}"#
    );
    let (row, _) = core.create("", &spec).await.unwrap();
    // Poll as a CD tool does while the analysis runs: every answer is one the store held, and
    // the sequence number never goes back.
    let mut seen = Vec::new();
    let mut last_seq = 0;
    for _ in 0..400 {
        let a = core.analysis_detail(&row.id).await.unwrap();
        assert!(a.last_seq >= last_seq, "{} < {last_seq}", a.last_seq);
        last_seq = a.last_seq;
        seen.push(a.intervals_judged);
        if a.finished_ms.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (state, entries) = finished(&core, &row.id).await;
    // The cached answer after the end equals a fresh read of the store, field for field.
    let cached = core.analysis_detail(&row.id).await.unwrap();
    let fresh = core.analysis(&row.id, true).await.unwrap();
    assert_eq!(*cached, fresh);
    assert_eq!(state, "succeeded");
    assert_eq!(cached.last_seq, entries.last().unwrap().seq);
    assert_eq!(cached.intervals_judged, 3);
    assert!(cached.last_judgement.is_some() && !cached.note.is_empty());
    // The polls saw the analysis progress, not one frozen answer.
    assert!(seen.first() < seen.last(), "{seen:?}");
    assert!(core.snapshots().get(&row.id).is_some());
    // A sweep that deletes it drops the cached answer with it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(core.sweep(Duration::from_millis(1)).await.unwrap(), 1);
    assert!(matches!(
        core.analysis_detail(&row.id).await,
        Err(ServiceError::NotFound(_))
    ));
}
