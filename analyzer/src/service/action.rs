//! Rollback on a final Fail, promotion on a final Pass (the spec's `rollback` and `promote`),
//! carried out by the service's [`Deployer`] and recorded on the analysis.
//!
//! # Exactly once
//! The action is written to the store (`actions` table, state `ordered`) *before* the `finished`
//! event, and marked `started` before the deployer's first call. Its progress is appended as
//! `rollback_step` / `promote_step` events; its outcome as ONE `rollback` / `promote` event
//! (completed, failed, refused, or the dry run's plan), after which it is `done`. At start-up,
//! [`resume`] takes every action of a finished analysis that is not `done`: if its outcome event
//! is already stored (a crash between the event and the mark) it is only marked; otherwise the
//! deployer's action runs again, which resumes it — the deployer's rollback re-reads the plan
//! it recorded in the cluster and repeats only what is not done, a promotion re-checks each step.
//!
//! # Whose canary
//! Analyses created through Flagger's webhooks (`flagger.…` ids) never act: Flagger rolls its own
//! canary back when the rollback hook answers 200. The deployer refuses server groups another
//! controller owns (an Argo Rollout, a Flagger Canary); see `src/deployer.rs`.

use std::sync::Arc;

use super::record::EventRecord;
use super::runner::{event_entry, has_event, now_ms, Core, ServiceError};
use super::spec::Spec;
use crate::actions::{decide, Action, ActionError, ActionOrder, Target};
use crate::verdict::Verdict;

/// Writes the order the final `verdict` gives (or drops a stale one); returns it. Called before
/// the `finished` event is appended.
pub(crate) async fn order(
    core: &Core,
    id: &str,
    spec: &Spec,
    verdict: Verdict,
) -> Result<Option<(Action, bool)>, ServiceError> {
    let decided = decide(verdict, spec.rollback.as_ref(), spec.promote.as_ref())
        .map(|(a, dry_run, _)| (a, dry_run));
    let key = id.to_owned();
    match decided {
        Some((a, dry_run)) => {
            core.with_store(move |s| s.order_action(&key, a.as_str(), dry_run, now_ms()))
                .await?
        }
        None => {
            core.with_store(move |s| s.cancel_ordered_action(&key))
                .await?
        }
    }
    Ok(decided)
}

fn target_of(spec: &Spec, action: Action) -> Option<&Target> {
    let rollback = spec.rollback.as_ref().and_then(|r| r.target.as_ref());
    match action {
        Action::Rollback => rollback,
        Action::Promote => spec
            .promote
            .as_ref()
            .and_then(|p| p.target.as_ref())
            .or(rollback),
    }
}

/// Whether `id` ordered an action whose outcome event is not stored yet: a watcher keeps
/// streaming past the `finished` event until it is.
pub async fn pending(core: &Core, id: &str) -> Result<bool, ServiceError> {
    let key = id.to_owned();
    let row = core.with_store(move |s| s.action(&key)).await?;
    Ok(row.is_some_and(|r| r.state != "done"))
}

/// Runs the ordered action of `id` to its outcome event. `resumed`: after a restart.
pub(crate) async fn run(
    core: &Arc<Core>,
    id: &str,
    spec: &Spec,
    action: Action,
    dry_run: bool,
    reason: String,
    resumed: bool,
) -> Result<(), ServiceError> {
    let key = id.to_owned();
    let state = core
        .with_store(move |s| s.get(&key))
        .await?
        .map_or_else(|| "error".to_owned(), |r| r.state);
    let event = |kind: &str, message: String| {
        event_entry(
            &EventRecord {
                kind: kind.to_owned(),
                message,
                state: state.clone(),
                verdict: None,
                score: None,
                time_to_detect_s: None,
                intervals_total: None,
            },
            None,
        )
    };
    let what = action.as_str();
    // Err carries how it ended: `refused` (nothing was changed) or `failed`.
    let outcome: Result<String, (String, &'static str)> = async {
        let target = target_of(spec, action).ok_or_else(|| {
            (
                format!("{what} not possible: the spec names no target"),
                "refused",
            )
        })?;
        if id.starts_with("flagger.") {
            return Err((
                format!(
                    "{what} refused: this analysis answers Flagger's webhooks, and Flagger acts on \
                     its own canary (the rollback hook's answer is Vigil's action)"
                ),
                "refused",
            ));
        }
        let deployer = core.deployer().ok_or_else(|| {
            (
                format!(
                    "{what} not possible: `vigil serve` runs without a deployer (start it with \
                     --deployer-config)"
                ),
                "refused",
            )
        })?;
        let mut order = ActionOrder {
            action,
            target: target.clone(),
            analysis: id.to_owned(),
            reason: reason.clone(),
        };
        let key = id.to_owned();
        let stored = core
            .with_store(move |s| s.action(&key))
            .await
            .map_err(|e| (e.to_string(), "failed"))?
            .and_then(|a| a.target_json)
            .and_then(|t| serde_json::from_str::<Target>(&t).ok());
        order.target = match stored {
            Some(t) => t,
            None => deployer.resolve(&order).await.map_err(|e| match e {
                ActionError::Refused(m) => (format!("{what} refused: {m}"), "refused"),
                ActionError::Failed(m) => (format!("{what} failed: {m}"), "failed"),
            })?,
        };
        if dry_run {
            let plan = deployer.plan(&order).await.map_err(|e| match e {
                ActionError::Refused(m) => (format!("dry run: {what} refused: {m}"), "refused"),
                ActionError::Failed(m) => {
                    (format!("dry run: {what} cannot be planned: {m}"), "failed")
                }
            })?;
            let mut m = format!("dry run (nothing changed): {}", plan.summary);
            for s in &plan.steps {
                m.push('\n');
                m.push_str(s);
            }
            return Ok(m);
        }
        let key = id.to_owned();
        let target_json =
            serde_json::to_string(&order.target).map_err(|e| (e.to_string(), "failed"))?;
        core.with_store(move |s| s.start_action(&key, &target_json, now_ms()))
            .await
            .map_err(|e| (e.to_string(), "failed"))?;
        // GetAnalysis shows the action's state: no snapshot may outlive a change of it.
        core.snapshots().invalidate(id);
        let first = if resumed {
            format!("{what} resumed after a restart ({reason})")
        } else {
            format!("{what} started: {reason}")
        };
        core.append(id, vec![event(action.step_kind(), first)])
            .await
            .map_err(|e| (e.to_string(), "failed"))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let run = deployer.execute(&order, tx);
        tokio::pin!(run);
        let result = loop {
            tokio::select! {
                r = &mut run => break r,
                Some(step) = rx.recv() => {
                    core.append(id, vec![event(action.step_kind(), step)])
                        .await
                        .map_err(|e| (e.to_string(), "failed"))?;
                }
            }
        };
        let mut rest = Vec::new();
        while let Ok(step) = rx.try_recv() {
            rest.push(event(action.step_kind(), step));
        }
        if !rest.is_empty() {
            core.append(id, rest)
                .await
                .map_err(|e| (e.to_string(), "failed"))?;
        }
        match result {
            Ok(report) => Ok(report.summary),
            Err(ActionError::Refused(m)) => Err((format!("{what} refused: {m}"), "refused")),
            Err(ActionError::Failed(m)) => Err((format!("{what} failed: {m}"), "failed")),
        }
    }
    .await;
    let (message, ended) = match outcome {
        Ok(m) => (m, if dry_run { "planned" } else { "succeeded" }),
        Err((m, ended)) => {
            tracing::warn!(analysis = %id, action = what, "{m}");
            (m, ended)
        }
    };
    core.append(id, vec![event(what, message)]).await?;
    let key = id.to_owned();
    core.with_store(move |s| s.finish_action(&key, ended, now_ms()))
        .await?;
    core.snapshots().invalidate(id);
    Ok(())
}

/// At start-up: every action of a finished analysis that is not `done` — marked done when its
/// outcome event is stored, run again (resumed) otherwise, each in its own task.
pub(crate) async fn resume(core: &Arc<Core>) -> Result<usize, ServiceError> {
    let open = core.with_store(|s| s.open_actions()).await?;
    let mut n = 0;
    for a in open {
        let id = a.analysis_id.clone();
        let Some(action) = Action::parse(&a.action) else {
            tracing::warn!(analysis = %id, action = %a.action, "unknown stored action left alone");
            continue;
        };
        let key = id.clone();
        let (row, entries) = core
            .with_store(move |s| Ok((s.get(&key)?, s.entries_since(&key, 0, u32::MAX)?)))
            .await?;
        let has = |kind: &str| has_event(&entries, kind);
        // Reported already (a crash between the outcome and the mark), or ordered by a verdict
        // that was never stored (the analysis was cancelled in between): nothing to do.
        if has(action.as_str()) || !has("finished") {
            let key = id.clone();
            core.with_store(move |s| s.set_action_state(&key, "done", now_ms()))
                .await?;
            core.snapshots().invalidate(&id);
            continue;
        }
        let Some(row) = row else { continue };
        let spec = match Spec::parse(&row.spec_json) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(analysis = %id, error = %e, "stored spec no longer valid; action not resumed");
                continue;
            }
        };
        let reason = format!(
            "verdict {} (score {:.1})",
            row.verdict.as_deref().unwrap_or("unknown"),
            row.score.unwrap_or(f64::NAN)
        );
        let core = core.clone();
        n += 1;
        tokio::spawn(async move {
            if let Err(e) = run(&core, &id, &spec, action, a.dry_run, reason, true).await {
                tracing::error!(analysis = %id, error = %e, "resumed action stopped");
            }
        });
    }
    if n > 0 {
        tracing::info!(resumed = n, "unfinished rollbacks and promotions resumed");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::super::metrics::{Fetch, MetricSource, Sample, Side};
    use super::super::store::{Entry, Store};
    use super::*;
    use crate::actions::{ActionReport, BoxFuture, Deployer, Progress};

    /// The baseline around 10, the canary `factor` times that (a fixed hash of the time).
    struct Source(f64);

    impl MetricSource for Source {
        fn fetch<'a>(
            &'a self,
            spec: &'a Spec,
            side: Side,
            start: f64,
            end: f64,
            step: f64,
        ) -> Fetch<'a> {
            Box::pin(async move {
                let f = if side == Side::Canary { self.0 } else { 1.0 };
                let mut out = Vec::new();
                let mut t = start;
                while t <= end {
                    let mut x = (t * 1000.0) as u64 ^ if f == 1.0 { 0 } else { 7 };
                    x ^= x >> 33;
                    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
                    x ^= x >> 33;
                    out.push(Sample {
                        time: t,
                        name: spec.metrics[0].name.clone(),
                        value: (9.0 + 2.0 * (x % 1000) as f64 / 1000.0) * f,
                    });
                    t += step;
                }
                Ok(out)
            })
        }
    }

    /// Records every call; each execution reports two steps.
    #[derive(Default)]
    struct Recorder {
        plans: Mutex<Vec<ActionOrder>>,
        runs: Mutex<Vec<ActionOrder>>,
    }

    impl Deployer for Recorder {
        fn resolve<'a>(
            &'a self,
            order: &'a ActionOrder,
        ) -> BoxFuture<'a, Result<Target, ActionError>> {
            Box::pin(async move {
                let mut t = order.target.clone();
                if let Some(app) = t.app.take() {
                    t.canary = Some(format!("{app}-v002"));
                    t.baseline = Some(format!("{app}-v001"));
                }
                Ok(t)
            })
        }

        fn plan<'a>(
            &'a self,
            order: &'a ActionOrder,
        ) -> BoxFuture<'a, Result<ActionReport, ActionError>> {
            Box::pin(async move {
                self.plans.lock().unwrap().push(order.clone());
                Ok(ActionReport {
                    summary: "would move traffic".into(),
                    steps: vec!["PATCH httproutes/shop".into()],
                })
            })
        }

        fn execute<'a>(
            &'a self,
            order: &'a ActionOrder,
            progress: Progress,
        ) -> BoxFuture<'a, Result<ActionReport, ActionError>> {
            Box::pin(async move {
                self.runs.lock().unwrap().push(order.clone());
                for s in ["[pin_hpa] done", "[move_traffic] done"] {
                    let _ = progress.send(s.into());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok(ActionReport {
                    summary: format!("{} completed", order.action.as_str()),
                    steps: vec![],
                })
            })
        }
    }

    fn spec(extra: &str) -> String {
        format!(
            "app: shop\nprometheus: {{url: \"http://127.0.0.1:9\"}}\n\
             baseline: {{labels: {{v: \"1\"}}}}\ncanary: {{labels: {{v: \"2\"}}}}\n\
             metrics: [{{name: latency_ms, query: \"m{{${{scope}}}}\", direction: increase}}]\n\
             start: \"2026-01-05T12:00:00Z\"\ninterval: 1m\nstep: 10s\nlifetime: 5m\n{extra}"
        )
    }

    const TARGET: &str = "target: {namespace: shop, canary: shop-v002, baseline: shop-v001}";

    /// Entries of `id` once its action is done (or it finished without one).
    async fn settled(core: &Arc<Core>, id: &str) -> Vec<EventRecord> {
        for _ in 0..400 {
            let key = id.to_owned();
            let (row, action, entries): (_, _, Vec<Entry>) = core
                .with_store(move |s| {
                    Ok((
                        s.get(&key)?,
                        s.action(&key)?,
                        s.entries_since(&key, 0, 10_000)?,
                    ))
                })
                .await
                .unwrap();
            let fin = row.is_some_and(|r| r.is_finished());
            if fin && action.is_none_or(|a| a.state == "done") {
                return entries
                    .iter()
                    .filter_map(|e| serde_json::from_str(&e.payload_json).ok())
                    .filter(|e: &EventRecord| e.kind != "created")
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{id} did not settle");
    }

    fn kinds(evs: &[EventRecord]) -> Vec<&str> {
        evs.iter().map(|e| e.kind.as_str()).collect()
    }

    fn core_with(factor: f64, store: Store, d: Option<Arc<Recorder>>) -> Arc<Core> {
        let core = Core::new(store, Arc::new(Source(factor)));
        if let Some(d) = d {
            assert!(core.set_deployer(d));
        }
        core
    }

    #[tokio::test]
    async fn a_fail_rolls_back_once_with_its_steps_as_events() {
        let d = Arc::new(Recorder::default());
        let core = core_with(1.6, Store::open_in_memory().unwrap(), Some(d.clone()));
        let text = spec(&format!(
            "rollback: {{mode: on, {TARGET}}}\npromote: {{mode: on}}\n"
        ));
        let (row, _) = core.create("bad", &text).await.unwrap();
        let evs = settled(&core, &row.id).await;
        assert_eq!(
            kinds(&evs),
            [
                "finished",
                "rollback_step",
                "rollback_step",
                "rollback_step",
                "rollback"
            ]
        );
        assert_eq!(evs[0].verdict.as_deref(), Some("Fail"));
        assert!(
            evs[1].message.starts_with("rollback started: verdict Fail"),
            "{}",
            evs[1].message
        );
        assert_eq!(evs[3].message, "[move_traffic] done");
        assert_eq!(evs[4].message, "rollback completed");
        // The action events keep the analysis's final state.
        assert!(evs.iter().all(|e| e.state == "failed"));
        let runs = d.runs.lock().unwrap().clone();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].action, Action::Rollback);
        assert_eq!(runs[0].target.canary.as_deref(), Some("shop-v002"));
        assert!(d.plans.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn watch_analysis_streams_past_the_verdict_until_the_actions_outcome() {
        use tokio_stream::StreamExt;
        use vigil_proto::v1 as pb;
        use vigil_proto::v1::analyses_server::Analyses;
        let d = Arc::new(Recorder::default());
        let core = core_with(1.6, Store::open_in_memory().unwrap(), Some(d));
        let text = spec(&format!("rollback: {{mode: on, {TARGET}}}\n"));
        let (row, _) = core.create("w", &text).await.unwrap();
        // Watch at once: the verdict, the steps and the outcome come while the watch is open.
        let svc = super::super::grpc::AnalysesService::new(core.clone());
        let stream = svc
            .watch_analysis(tonic::Request::new(pb::WatchAnalysisRequest {
                id: row.id.clone(),
                after_seq: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        let updates: Vec<_> =
            tokio::time::timeout(Duration::from_secs(20), stream.collect::<Vec<_>>())
                .await
                .expect("the stream ends after the rollback's outcome");
        let kinds: Vec<String> = updates
            .into_iter()
            .filter_map(|u| match u.unwrap().update {
                Some(pb::watch_update::Update::Event(e)) => Some(e.kind),
                _ => None,
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "created",
                "finished",
                "rollback_step",
                "rollback_step",
                "rollback_step",
                "rollback"
            ]
        );
        // A watch opened after it all replays it and ends.
        let stream = svc
            .watch_analysis(tonic::Request::new(pb::WatchAnalysisRequest {
                id: row.id.clone(),
                after_seq: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        let n = tokio::time::timeout(Duration::from_secs(5), stream.collect::<Vec<_>>())
            .await
            .unwrap()
            .len();
        assert!(n >= 7, "{n}");
    }

    #[tokio::test]
    async fn a_pass_promotes_only_when_asked_and_dry_run_only_plans() {
        let d = Arc::new(Recorder::default());
        let core = core_with(1.0, Store::open_in_memory().unwrap(), Some(d.clone()));
        let (row, _) = core
            .create(
                "good",
                &spec(&format!(
                    "rollback: {{mode: on, {TARGET}}}\npromote: {{mode: on}}\n"
                )),
            )
            .await
            .unwrap();
        let evs = settled(&core, &row.id).await;
        assert_eq!(evs[0].verdict.as_deref(), Some("Pass"), "{evs:?}");
        assert_eq!(kinds(&evs).last(), Some(&"promote"));
        assert_eq!(evs.last().unwrap().message, "promote completed");
        assert_eq!(d.runs.lock().unwrap()[0].action, Action::Promote);
        // Promote off: a Pass does nothing.
        let (row, _) = core
            .create(
                "good-2",
                &spec(&format!("rollback: {{mode: on, {TARGET}}}\n")),
            )
            .await
            .unwrap();
        assert_eq!(kinds(&settled(&core, &row.id).await), ["finished"]);
        assert_eq!(d.runs.lock().unwrap().len(), 1);

        let d = Arc::new(Recorder::default());
        let core = core_with(1.6, Store::open_in_memory().unwrap(), Some(d.clone()));
        let (row, _) = core
            .create(
                "dry",
                &spec(&format!("rollback: {{mode: dry_run, {TARGET}}}\n")),
            )
            .await
            .unwrap();
        let evs = settled(&core, &row.id).await;
        assert_eq!(kinds(&evs), ["finished", "rollback"]);
        assert_eq!(
            evs[1].message,
            "dry run (nothing changed): would move traffic\nPATCH httproutes/shop"
        );
        assert!(d.runs.lock().unwrap().is_empty());
        assert_eq!(d.plans.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn without_a_deployer_or_for_flagger_the_outcome_says_why() {
        let core = core_with(1.6, Store::open_in_memory().unwrap(), None);
        let text = spec(&format!("rollback: {{mode: on, {TARGET}}}\n"));
        let (row, _) = core.create("x", &text).await.unwrap();
        let evs = settled(&core, &row.id).await;
        assert_eq!(kinds(&evs), ["finished", "rollback"]);
        assert!(
            evs[1].message.contains("runs without a deployer"),
            "{}",
            evs[1].message
        );
        let d = Arc::new(Recorder::default());
        let core = core_with(1.6, Store::open_in_memory().unwrap(), Some(d.clone()));
        let (row, _) = core
            .create("flagger.test.podinfo.abc", &text)
            .await
            .unwrap();
        let evs = settled(&core, &row.id).await;
        assert!(evs[1]
            .message
            .starts_with("rollback refused: this analysis answers Flagger"));
        assert!(d.runs.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_restart_resumes_an_unfinished_action_once_and_never_repeats_a_finished_one() {
        let dir = std::env::temp_dir().join(format!("vigil-action-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = spec(&format!("rollback: {{mode: on, {TARGET}}}\n"));
        // First life: no deployer wired yet, so hold the action: finish the analysis by hand as
        // a crash mid-rollback leaves it (ordered, started, one step, no outcome).
        {
            let store = Store::open(&dir).unwrap();
            let core = core_with(1.6, store.clone(), None);
            let (row, _) = core.create("r", &text).await.unwrap();
            let _ = settled(&core, &row.id).await;
            // Undo the outcome the deployer-less run wrote: the state a crash leaves.
            let c = rusqlite::Connection::open(dir.join("vigil.db")).unwrap();
            c.execute(
                "DELETE FROM entries WHERE analysis_id = 'r' AND payload_json LIKE '{\"kind\":\"rollback\"%'",
                [],
            )
            .unwrap();
            // As first resolved (before, say, the canary was deleted): what a resume acts on.
            c.execute(
                "UPDATE actions SET state = 'started', target_json = \
                 '{\"namespace\":\"shop\",\"canary\":\"shop-v009\",\"baseline\":\"shop-v008\"}'",
                [],
            )
            .unwrap();
        }
        let d = Arc::new(Recorder::default());
        let core = core_with(1.6, Store::open(&dir).unwrap(), Some(d.clone()));
        assert_eq!(core.resume_all().await.unwrap(), 0);
        let evs = settled(&core, "r").await;
        let k = kinds(&evs);
        assert_eq!(k.iter().filter(|k| **k == "rollback").count(), 1, "{k:?}");
        assert!(evs
            .iter()
            .any(|e| e.message.starts_with("rollback resumed after a restart")));
        assert_eq!(d.runs.lock().unwrap().len(), 1);
        assert_eq!(
            d.runs.lock().unwrap()[0].target.canary.as_deref(),
            Some("shop-v009")
        );
        // Another restart: done, nothing runs again.
        let d2 = Arc::new(Recorder::default());
        let core = core_with(1.6, Store::open(&dir).unwrap(), Some(d2.clone()));
        core.resume_all().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(d2.runs.lock().unwrap().is_empty());
        assert_eq!(
            kinds(&settled(&core, "r").await)
                .iter()
                .filter(|k| **k == "rollback")
                .count(),
            1
        );
        // An order whose verdict never got stored (cancelled in between) is dropped, not run.
        let store = Store::open(&dir).unwrap();
        store
            .create_analysis(&super::super::store::NewAnalysis {
                id: "c".into(),
                app: "shop".into(),
                spec_json: text.clone(),
                created_ms: 1,
            })
            .unwrap();
        store.order_action("c", "rollback", false, 2).unwrap();
        let cancelled = EventRecord {
            kind: "cancelled".into(),
            message: "cancelled".into(),
            state: "cancelled".into(),
            verdict: None,
            score: None,
            time_to_detect_s: None,
            intervals_total: None,
        };
        store
            .append("c", &[event_entry(&cancelled, Some(3))])
            .unwrap();
        let d4 = Arc::new(Recorder::default());
        let core = core_with(1.6, store.clone(), Some(d4.clone()));
        core.resume_all().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(d4.runs.lock().unwrap().is_empty());
        assert_eq!(store.action("c").unwrap().unwrap().state, "done");
        // An outcome stored but not marked (a crash between the two): only marked, not re-run.
        let c = rusqlite::Connection::open(dir.join("vigil.db")).unwrap();
        c.execute("UPDATE actions SET state = 'started'", [])
            .unwrap();
        let d3 = Arc::new(Recorder::default());
        let core = core_with(1.6, Store::open(&dir).unwrap(), Some(d3.clone()));
        core.resume_all().await.unwrap();
        assert_eq!(
            core.with_store(|s| s.action("r"))
                .await
                .unwrap()
                .unwrap()
                .state,
            "done"
        );
        assert!(d3.runs.lock().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
