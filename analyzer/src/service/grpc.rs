//! The `vigil.v1` services over the [`Core`]: `Analyses` (create, get, watch, list, cancel,
//! feedback) and the stateless `Judge`. Statuses follow gRPC's meanings and every error names the
//! field or the resource.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::record::{state_name, state_proto, verdict_proto, EventRecord, IntervalRecord};
use super::runner::{event_entry, now_ms, plan_of, Core, ServiceError};
use super::spec::Spec;
use super::store::{AnalysisRow, CreateOutcome, Feedback, ListFilter, NewAnalysis};
use crate::analysis::{Analysis, AnalysisSpec, BaselineTiming, Batch, Masking, Role, SideSpec};
use crate::judge::{JudgeConfig, MetricSpec};
use crate::telemetry::{CallerEdge, LogRecord, MetricSample, Span, Window};
use vigil_models::vigil_judge::{Direction, MetricKind, MetricRule};
use vigil_proto::v1 as pb;

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        match e {
            ServiceError::Invalid(m) => Status::invalid_argument(m),
            ServiceError::NotFound(_) => Status::not_found(e.to_string()),
            ServiceError::Conflict(_) => Status::already_exists(e.to_string()),
            ServiceError::Precondition(m) => Status::failed_precondition(m),
            ServiceError::Store(_) | ServiceError::Internal(_) => {
                tracing::error!(error = %e, "request failed");
                Status::internal(e.to_string())
            }
        }
    }
}

/// Whether `id` may name an analysis: safe in a URL path and a file name.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

impl Core {
    /// Creates an analysis (or returns the existing one of the same id and spec) and starts it.
    pub async fn create(
        self: &Arc<Self>,
        id: &str,
        spec_text: &str,
    ) -> Result<(AnalysisRow, bool), ServiceError> {
        if !id.is_empty() && !valid_id(id) {
            return Err(ServiceError::Invalid(format!(
                "id: `{id}` is not an id (1-128 of letters, digits, . _ -, starting with a letter or digit)"
            )));
        }
        if spec_text.len() > 1 << 20 {
            return Err(ServiceError::Invalid("spec: larger than 1 MiB".into()));
        }
        let spec =
            Spec::parse(spec_text).map_err(|e| ServiceError::Invalid(format!("spec: {e}")))?;
        let id = if id.is_empty() {
            ulid::Ulid::new().to_string()
        } else {
            id.to_owned()
        };
        let new = NewAnalysis {
            id: id.clone(),
            app: spec.app.clone(),
            spec_json: spec.to_json(),
            created_ms: now_ms(),
        };
        let snapshots = self.snapshots_arc();
        let created = self
            .with_store(move |s| {
                let out = s.create_analysis(&new);
                if let Ok(CreateOutcome::Created(row)) = &out {
                    snapshots.invalidate(&row.id);
                }
                out
            })
            .await?;
        match created {
            CreateOutcome::Existing(row) => Ok((row, false)),
            CreateOutcome::Conflict(_) => Err(ServiceError::Conflict(id)),
            CreateOutcome::Created(row) => {
                let plan = spec
                    .plan(row.created_ms as f64 / 1000.0)
                    .map_err(|e| ServiceError::Invalid(format!("spec: {e}")))?;
                let ev = EventRecord {
                    kind: "created".into(),
                    message: format!(
                        "created: {} intervals of {} from {}",
                        plan.intervals,
                        spec.interval,
                        super::spec::rfc3339(plan.t0)
                    ),
                    state: "pending".into(),
                    verdict: None,
                    score: None,
                    time_to_detect_s: None,
                    intervals_total: Some(plan.intervals),
                };
                self.append(&row.id, vec![event_entry(&ev, None)]).await?;
                let row = self
                    .with_store({
                        let id = row.id.clone();
                        move |s| s.get(&id)
                    })
                    .await?
                    .unwrap_or(row);
                tracing::info!(analysis = %row.id, app = %row.app, "analysis created");
                self.start(row.clone(), spec);
                Ok((row, true))
            }
        }
    }

    /// One analysis as `GetAnalysis` shows it, with its last judgement, note and time to detect:
    /// from the in-memory snapshot when one is current, else read from the store (row and entries
    /// in one blocking call) and kept.
    pub async fn analysis_detail(&self, id: &str) -> Result<Arc<pb::Analysis>, ServiceError> {
        if let Some(a) = self.snapshots().get(id) {
            return Ok(a);
        }
        let ticket = self.snapshots().ticket();
        let key = id.to_owned();
        let read = self
            .with_store(move |s| {
                let Some(row) = s.get(&key)? else {
                    return Ok(None);
                };
                let entries = s.entries_since(&key, 0, u32::MAX)?;
                let outbox = s.outbox_of(&key)?;
                let action = s.action(&key)?;
                Ok(Some((row, entries, outbox, action)))
            })
            .await?;
        let (row, entries, outbox, action) =
            read.ok_or_else(|| ServiceError::NotFound(id.to_owned()))?;
        let mut a = with_entries(to_proto(&row), &entries);
        a.deliveries = outbox.iter().map(delivery_proto).collect();
        a.action = action.map(|x| action_proto(&x, &entries));
        let a = Arc::new(a);
        self.snapshots().fill(ticket, a.clone());
        Ok(a)
    }

    /// One analysis as the API shows it; `detail` adds its last judgement, note and time to
    /// detect (reads its entries). Read from the store, never from the snapshot cache: a watcher
    /// starts from here and must not start from an answer older than its subscription.
    pub async fn analysis(&self, id: &str, detail: bool) -> Result<pb::Analysis, ServiceError> {
        let key = id.to_owned();
        let row = self
            .with_store(move |s| s.get(&key))
            .await?
            .ok_or_else(|| ServiceError::NotFound(id.to_owned()))?;
        let mut a = to_proto(&row);
        if detail {
            let key = id.to_owned();
            let entries = self
                .with_store(move |s| s.entries_since(&key, 0, u32::MAX))
                .await?;
            a = with_entries(a, &entries);
        }
        Ok(a)
    }
}

/// `a` completed from its stored entries: the last judgement, the interval count, and the final
/// note and time to detect.
fn with_entries(mut a: pb::Analysis, entries: &[super::store::Entry]) -> pb::Analysis {
    for e in entries {
        if e.kind == "judgement" {
            if let Ok(r) = serde_json::from_str::<IntervalRecord>(&e.payload_json) {
                a.last_judgement = Some(r.to_proto());
            }
        } else if let Ok(ev) = serde_json::from_str::<EventRecord>(&e.payload_json) {
            if let Some(t) = ev.intervals_total {
                a.intervals_total = t;
            }
            if matches!(ev.kind.as_str(), "finished" | "cancelled") {
                a.note = ev.message.clone();
                a.time_to_detect_s = ev.time_to_detect_s;
            }
        }
    }
    a
}

/// The API's view of a stored row.
pub fn to_proto(row: &AnalysisRow) -> pb::Analysis {
    pb::Analysis {
        id: row.id.clone(),
        app: row.app.clone(),
        state: state_proto(&row.state) as i32,
        verdict: verdict_proto(row.verdict.as_deref()) as i32,
        score: row.score,
        // Inline secrets (a Slack URL, a password, an HMAC key) never leave the store.
        spec_json: if row.spec_json.contains("\"notify\"") {
            crate::notify::config::redact_spec_json(&row.spec_json)
        } else {
            row.spec_json.clone()
        },
        created_ms: row.created_ms,
        updated_ms: row.updated_ms,
        finished_ms: row.finished_ms,
        last_seq: row.last_seq,
        intervals_judged: row.next_interval.saturating_sub(1),
        intervals_total: plan_of(row).map_or(0, |(_, p)| p.intervals),
        time_to_detect_s: None,
        note: String::new(),
        last_judgement: None,
        deliveries: Vec::new(),
        action: None,
    }
}

/// The API's view of a stored action, its steps and outcome message read from the analysis's
/// events (`<action>_step`, then one `<action>`).
pub fn action_proto(
    x: &super::store::ActionRow,
    entries: &[super::store::Entry],
) -> pb::ActionState {
    let step_kind = format!("{}_step", x.action);
    let mut steps = Vec::new();
    let mut message = String::new();
    for e in entries.iter().filter(|e| e.kind == "event") {
        let Ok(ev) = serde_json::from_str::<EventRecord>(&e.payload_json) else {
            continue;
        };
        if ev.kind == step_kind {
            steps.push(ev.message);
        } else if ev.kind == x.action {
            message = ev.message;
        }
    }
    pb::ActionState {
        action: x.action.clone(),
        state: x.state.clone(),
        dry_run: x.dry_run,
        outcome: x.outcome.clone().unwrap_or_default(),
        ordered_ms: x.ordered_ms,
        steps,
        message,
        target_json: x.target_json.clone().unwrap_or_default(),
    }
}

/// The API's view of an outbox row.
pub fn delivery_proto(o: &super::store::OutboxRow) -> pb::Delivery {
    pb::Delivery {
        key: o.key.clone(),
        channel: o.channel.clone(),
        target: o.target,
        event: o.event.clone(),
        state: o.state.clone(),
        attempts: o.attempts,
        last_error: o.last_error.clone().unwrap_or_default(),
        next_attempt_ms: (o.state == "pending").then_some(o.next_ms),
        done_ms: o.done_ms,
    }
}

/// `vigil.v1.Analyses`.
pub struct AnalysesService {
    core: Arc<Core>,
}

impl AnalysesService {
    /// Over `core`.
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

type WatchStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchUpdate, Status>> + Send + 'static>>;

fn entry_update(e: &super::store::Entry) -> (pb::WatchUpdate, bool) {
    let mut fin = false;
    let update = if e.kind == "judgement" {
        serde_json::from_str::<IntervalRecord>(&e.payload_json)
            .ok()
            .map(|r| pb::watch_update::Update::Judgement(r.to_proto()))
    } else {
        serde_json::from_str::<EventRecord>(&e.payload_json)
            .ok()
            .map(|ev| {
                fin = super::record::is_final_state(&ev.state);
                pb::watch_update::Update::Event(ev.to_proto())
            })
    };
    (
        pb::WatchUpdate {
            seq: e.seq,
            at_ms: e.at_ms,
            update,
        },
        fin,
    )
}

#[tonic::async_trait]
impl pb::analyses_server::Analyses for AnalysesService {
    async fn create_analysis(
        &self,
        request: Request<pb::CreateAnalysisRequest>,
    ) -> Result<Response<pb::CreateAnalysisResponse>, Status> {
        let r = request.into_inner();
        let (row, created) = self.core.create(&r.id, &r.spec).await?;
        Ok(Response::new(pb::CreateAnalysisResponse {
            analysis: Some(to_proto(&row)),
            created,
        }))
    }

    async fn get_analysis(
        &self,
        request: Request<pb::GetAnalysisRequest>,
    ) -> Result<Response<pb::Analysis>, Status> {
        let id = request.into_inner().id;
        if id.is_empty() {
            return Err(Status::invalid_argument("id: empty"));
        }
        let a = self.core.analysis_detail(&id).await?;
        Ok(Response::new(Arc::unwrap_or_clone(a)))
    }

    type WatchAnalysisStream = WatchStream;

    async fn watch_analysis(
        &self,
        request: Request<pb::WatchAnalysisRequest>,
    ) -> Result<Response<Self::WatchAnalysisStream>, Status> {
        let r = request.into_inner();
        if r.id.is_empty() {
            return Err(Status::invalid_argument("id: empty"));
        }
        // Subscribe before reading, so an entry appended in between still wakes us.
        let mut wake = self.core.subscribe(&r.id);
        let first = self.core.analysis(&r.id, false).await?;
        if r.after_seq > first.last_seq {
            return Err(Status::invalid_argument(format!(
                "after_seq: {} is beyond the analysis's last sequence number {}",
                r.after_seq, first.last_seq
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let core = self.core.clone();
        let id = r.id.clone();
        tokio::spawn(async move {
            let initial = pb::WatchUpdate {
                seq: first.last_seq,
                at_ms: first.updated_ms,
                update: Some(pb::watch_update::Update::Analysis(first.clone())),
            };
            if tx.send(Ok(initial)).await.is_err() {
                return;
            }
            let mut after = r.after_seq;
            let mut final_seen =
                super::record::is_final_state(state_name(first.state).unwrap_or("error"));
            loop {
                let key = id.clone();
                let entries = match core
                    .with_store(move |s| s.entries_since(&key, after, 1000))
                    .await
                {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                let mut action_done = false;
                for e in &entries {
                    after = e.seq;
                    let (u, fin) = entry_update(e);
                    // A rollback's or promotion's outcome is the last entry an analysis gets.
                    action_done |= matches!(&u.update, Some(pb::watch_update::Update::Event(ev))
                        if ev.kind == "rollback" || ev.kind == "promote");
                    if tx.send(Ok(u)).await.is_err() {
                        return;
                    }
                    final_seen |= fin;
                }
                if entries.len() == 1000 {
                    continue;
                }
                // After the final verdict, an ordered action's steps and outcome still follow.
                if action_done
                    || (final_seen && !super::action::pending(&core, &id).await.unwrap_or(false))
                {
                    return;
                }
                tokio::select! {
                    changed = wake.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_analyses(
        &self,
        request: Request<pb::ListAnalysesRequest>,
    ) -> Result<Response<pb::ListAnalysesResponse>, Status> {
        let r = request.into_inner();
        let mut states = Vec::new();
        for (i, s) in r.states.iter().enumerate() {
            let name = state_name(*s).ok_or_else(|| {
                Status::invalid_argument(format!("states[{i}]: {s} is not a state"))
            })?;
            states.push(name.to_owned());
        }
        if r.page_size > 1000 {
            return Err(Status::invalid_argument(
                "page_size: at most 1000".to_string(),
            ));
        }
        let filter = ListFilter {
            app: (!r.app.is_empty()).then_some(r.app),
            states,
            page_size: if r.page_size == 0 { 50 } else { r.page_size },
            page_token: (!r.page_token.is_empty()).then_some(r.page_token),
        };
        let (rows, next) = self
            .core
            .with_store(move |s| s.list(&filter))
            .await
            .map_err(|e| match e {
                ServiceError::Store(super::store::StoreError::Invalid(m)) => {
                    Status::invalid_argument(format!("page_token: {m}"))
                }
                other => Status::from(other),
            })?;
        Ok(Response::new(pb::ListAnalysesResponse {
            analyses: rows.iter().map(to_proto).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn cancel_analysis(
        &self,
        request: Request<pb::CancelAnalysisRequest>,
    ) -> Result<Response<pb::Analysis>, Status> {
        let r = request.into_inner();
        if r.id.is_empty() {
            return Err(Status::invalid_argument("id: empty"));
        }
        self.core.cancel(&r.id, &r.reason).await?;
        Ok(Response::new(self.core.analysis(&r.id, true).await?))
    }

    async fn end_input(
        &self,
        request: Request<pb::EndInputRequest>,
    ) -> Result<Response<pb::Analysis>, Status> {
        let r = request.into_inner();
        if r.id.is_empty() {
            return Err(Status::invalid_argument("id: empty"));
        }
        self.core.end_input(&r.id).await?;
        Ok(Response::new(self.core.analysis(&r.id, true).await?))
    }

    async fn record_feedback(
        &self,
        request: Request<pb::RecordFeedbackRequest>,
    ) -> Result<Response<pb::RecordFeedbackResponse>, Status> {
        let r = request.into_inner();
        if r.app.is_empty() {
            return Err(Status::invalid_argument("app: empty"));
        }
        if r.key.is_empty() || !r.key.contains(':') {
            return Err(Status::invalid_argument(
                "key: a finding key such as `metric:http_errors`",
            ));
        }
        let kind = match pb::FeedbackKind::try_from(r.kind) {
            Ok(pb::FeedbackKind::FalsePositive) => "false_positive",
            Ok(pb::FeedbackKind::Critical) => "critical",
            _ => {
                return Err(Status::invalid_argument(
                    "kind: FEEDBACK_KIND_FALSE_POSITIVE or FEEDBACK_KIND_CRITICAL",
                ))
            }
        };
        let now = now_ms();
        if r.expires_ms <= now || r.expires_ms > now + 366 * 86_400_000 {
            return Err(Status::invalid_argument(
                "expires_ms: must be in the future and within a year",
            ));
        }
        let f = Feedback {
            app: r.app,
            subject: r.key,
            kind: kind.into(),
            note: r.note,
            created_ms: now,
            expires_ms: r.expires_ms,
        };
        let id = self.core.with_store(move |s| s.add_feedback(&f)).await?;
        Ok(Response::new(pb::RecordFeedbackResponse { id }))
    }
}

/// `vigil.v1.Judge`.
#[derive(Debug, Default, Clone, Copy)]
pub struct JudgeService;

struct Prepared {
    spec: AnalysisSpec,
    baseline: SideData,
    canary: SideData,
    elapsed: f64,
}

/// One side's metric samples (time, name, value), log records and spans.
type SideData = (Vec<(f64, String, f64)>, Vec<LogRecord>, Vec<Span>);

fn side_data(
    field: &str,
    s: &pb::SideData,
) -> Result<(SideSpec, SideData, Option<Window>), Status> {
    let mut metrics = Vec::new();
    for (i, m) in s.metrics.iter().enumerate() {
        if m.name.is_empty() {
            return Err(Status::invalid_argument(format!(
                "{field}.metrics[{i}].name: empty"
            )));
        }
        for (j, p) in m.points.iter().enumerate() {
            if !p.time.is_finite() {
                return Err(Status::invalid_argument(format!(
                    "{field}.metrics[{i}].points[{j}].time: {} is not a finite number of seconds",
                    p.time
                )));
            }
            if p.value.is_infinite() {
                return Err(Status::invalid_argument(format!(
                    "{field}.metrics[{i}].points[{j}].value: infinite (a gap is NaN)"
                )));
            }
            metrics.push((p.time, m.name.clone(), p.value));
        }
    }
    let logs: Vec<LogRecord> = s
        .logs
        .iter()
        .map(|l| LogRecord {
            time: l.time,
            severity: (!l.severity.is_empty()).then(|| l.severity.clone()),
            body: l.body.clone(),
        })
        .collect();
    let mut spans = Vec::new();
    for (i, sp) in s.spans.iter().enumerate() {
        if !sp.start.is_finite() || !sp.duration_ms.is_finite() || sp.duration_ms < 0.0 {
            return Err(Status::invalid_argument(format!(
                "{field}.spans[{i}]: start and duration_ms must be finite, duration_ms non-negative"
            )));
        }
        spans.push(Span {
            trace_id: sp.trace_id.clone(),
            span_id: sp.span_id.clone(),
            parent_id: (!sp.parent_id.is_empty()).then(|| sp.parent_id.clone()),
            operation: sp.operation.clone(),
            start: sp.start,
            duration_ms: sp.duration_ms,
            error: sp.error,
            caller: sp.caller.as_ref().map(|c| CallerEdge {
                callee_span_id: c.callee_span_id.clone(),
                callee_operation: c.callee_operation.clone(),
                callee_duration_ms: c.callee_duration_ms,
            }),
        });
    }
    let window = match &s.window {
        Some(w) if !(w.start.is_finite() && w.end.is_finite() && w.end > w.start) => {
            return Err(Status::invalid_argument(format!(
                "{field}.window: end must be after start"
            )))
        }
        Some(w) => Some(Window {
            start: w.start,
            end: w.end,
        }),
        None => {
            let times = logs
                .iter()
                .filter_map(|l| l.time)
                .chain(spans.iter().map(|s| s.start));
            let (lo, hi) = times.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), t| {
                (a.min(t), b.max(t))
            });
            (hi > lo).then_some(Window { start: lo, end: hi })
        }
    };
    let declared = s.window.is_some();
    let spec = SideSpec {
        metrics: !metrics.is_empty(),
        logs: declared || !logs.is_empty(),
        spans: declared || spans.iter().any(|s| s.caller.is_none()),
        callers: spans.iter().any(|s| s.caller.is_some()),
        log_window: window,
        trace_window: window,
        log_seconds_covered: None,
        trace_seconds_covered: None,
    };
    Ok((spec, (metrics, logs, spans), window))
}

fn prepare(r: pb::JudgeRequest) -> Result<Prepared, Status> {
    let empty = pb::SideData::default();
    let (b_spec, b_data, _) = side_data("baseline", r.baseline.as_ref().unwrap_or(&empty))?;
    let (c_spec, c_data, c_window) = side_data("canary", r.canary.as_ref().unwrap_or(&empty))?;
    let mut judges = JudgeConfig::default();
    if let Some(t) = r.thresholds {
        if !(0.0..=100.0).contains(&t.pass) {
            return Err(Status::invalid_argument(
                "thresholds.pass: must be in [0, 100]",
            ));
        }
        if !(0.0..=t.pass).contains(&t.marginal) {
            return Err(Status::invalid_argument(
                "thresholds.marginal: must be in [0, thresholds.pass]",
            ));
        }
        judges.fusion.pass_threshold = t.pass;
        judges.fusion.marginal_threshold = t.marginal;
    }
    if !r.critical_signals.is_empty() {
        let mut crit = Vec::new();
        for (i, s) in r.critical_signals.iter().enumerate() {
            crit.push(super::record::signal_from_proto(*s).ok_or_else(|| {
                Status::invalid_argument(format!("critical_signals[{i}]: {s} is not a signal"))
            })?);
        }
        judges.fusion.critical = crit;
    }
    for (i, m) in r.metrics.iter().enumerate() {
        if m.name.is_empty() {
            return Err(Status::invalid_argument(format!(
                "metrics[{i}].name: empty"
            )));
        }
        let direction = match pb::Direction::try_from(m.direction) {
            Ok(pb::Direction::Increase) => Direction::Increase,
            Ok(pb::Direction::Decrease) => Direction::Decrease,
            Ok(pb::Direction::Either) => Direction::Either,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "metrics[{i}].direction: INCREASE, DECREASE or EITHER"
                )))
            }
        };
        if !m.min_shift.is_finite() || m.min_shift < 0.0 {
            return Err(Status::invalid_argument(format!(
                "metrics[{i}].min_shift: must be a non-negative number"
            )));
        }
        judges.metrics.overrides.insert(
            m.name.clone(),
            Some(MetricSpec {
                rule: MetricRule {
                    direction,
                    kind: if m.count {
                        MetricKind::Count
                    } else {
                        MetricKind::Gauge
                    },
                    min_abs_shift: m.min_shift,
                },
                critical: m.critical,
            }),
        );
    }
    // The canary starts at its window, else at its first record.
    let first = c_data
        .0
        .iter()
        .map(|m| m.0)
        .chain(c_data.1.iter().filter_map(|l| l.time))
        .chain(c_data.2.iter().map(|s| s.start));
    let (lo, hi) = first.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), t| {
        (a.min(t), b.max(t))
    });
    let (start, until) = match c_window {
        Some(w) if r.canary.as_ref().is_some_and(|c| c.window.is_some()) => (w.start, w.end),
        // Without a window the last record is judged too: the view holds data before `until`.
        _ if lo.is_finite() => (lo, hi + 1e-6),
        _ => (0.0, 1e-6),
    };
    let elapsed = until - start;
    Ok(Prepared {
        spec: AnalysisSpec {
            judges,
            canary_start: start,
            baseline_timing: BaselineTiming::Before,
            masking: Masking {
                enabled: false,
                ..Masking::default()
            },
            baseline: b_spec,
            canary: c_spec,
        },
        baseline: b_data,
        canary: c_data,
        elapsed,
    })
}

fn judge_now(p: Prepared) -> Result<pb::JudgeResponse, Status> {
    let mut a = Analysis::new(p.spec);
    for (role, (metrics, logs, spans)) in [(Role::Baseline, p.baseline), (Role::Canary, p.canary)] {
        let samples: Vec<MetricSample> = metrics
            .iter()
            .map(|(t, n, v)| MetricSample {
                time: *t,
                name: n,
                value: *v,
            })
            .collect();
        a.ingest(
            role,
            Batch {
                metrics: &samples,
                logs,
                spans,
            },
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    }
    let j = a
        .judge(p.elapsed)
        .cloned()
        .ok_or_else(|| Status::internal("the judge returned nothing"))?;
    let d = a.dropped();
    Ok(pb::JudgeResponse {
        judgement: Some(super::record::JudgementRecord::from_judgement(&j).to_proto()),
        dropped: d.untimed_logs + d.undeclared,
    })
}

#[tonic::async_trait]
impl pb::judge_server::Judge for JudgeService {
    async fn judge(
        &self,
        request: Request<pb::JudgeRequest>,
    ) -> Result<Response<pb::JudgeResponse>, Status> {
        let prepared = prepare(request.into_inner())?;
        // Judging is CPU work: off the async workers.
        let out = tokio::task::spawn_blocking(move || judge_now(prepared))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(out))
    }
}
