//! SCAFFOLDING, to be deleted at merge: an in-memory stand-in with exactly the API of Seam 1
//! (`crate::store::Store`, the SQLite store built on branch `store`), so that the service and its
//! tests run before that branch is merged. Nothing here is durable. At merge, `service/mod.rs`
//! switches its one `use` line to `crate::store` and this file goes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A new analysis.
#[derive(Debug, Clone)]
pub struct NewAnalysis {
    /// Id.
    pub id: String,
    /// App.
    pub app: String,
    /// The spec (opaque JSON).
    pub spec_json: String,
    /// Created, Unix ms.
    pub created_ms: i64,
}

/// The result of [`Store::create_analysis`].
#[derive(Debug, Clone)]
pub enum CreateOutcome {
    /// Stored.
    Created(AnalysisRow),
    /// Same id, same spec.
    Existing(AnalysisRow),
    /// Same id, different spec.
    Conflict(AnalysisRow),
}

/// One stored analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisRow {
    /// Id.
    pub id: String,
    /// App.
    pub app: String,
    /// Spec JSON.
    pub spec_json: String,
    /// State.
    pub state: String,
    /// Verdict.
    pub verdict: Option<String>,
    /// Score.
    pub score: Option<f64>,
    /// Created ms.
    pub created_ms: i64,
    /// Updated ms.
    pub updated_ms: i64,
    /// Finished ms.
    pub finished_ms: Option<i64>,
    /// Highest entry seq.
    pub last_seq: u64,
    /// Where a restarted analysis resumes.
    pub next_interval: u32,
}

/// An entry to append.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// `judgement` or `event`.
    pub kind: String,
    /// Opaque JSON.
    pub payload_json: String,
    /// New state.
    pub state: Option<String>,
    /// New verdict.
    pub verdict: Option<String>,
    /// New score.
    pub score: Option<f64>,
    /// New next interval.
    pub next_interval: Option<u32>,
    /// Finished at.
    pub finished_ms: Option<i64>,
    /// Recorded at.
    pub at_ms: i64,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Sequence number within the analysis.
    pub seq: u64,
    /// Kind.
    pub kind: String,
    /// Payload.
    pub payload_json: String,
    /// At ms.
    pub at_ms: i64,
}

/// A list filter.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// App.
    pub app: Option<String>,
    /// States (empty: any).
    pub states: Vec<String>,
    /// Page size.
    pub page_size: u32,
    /// Page token.
    pub page_token: Option<String>,
}

/// Feedback on a finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    /// App.
    pub app: String,
    /// Finding key.
    pub subject: String,
    /// `false_positive` | `critical`.
    pub kind: String,
    /// Note.
    pub note: String,
    /// Created ms.
    pub created_ms: i64,
    /// Expires ms.
    pub expires_ms: i64,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such analysis.
    #[error("not found: {0}")]
    NotFound(String),
    /// Corrupt data.
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// A malformed argument (a page token).
    #[error("invalid {0}")]
    Invalid(String),
}

#[derive(Default)]
struct Inner {
    rows: BTreeMap<String, (u64, AnalysisRow, Vec<Entry>)>,
    order: u64,
    feedback: Vec<Feedback>,
}

/// The in-memory store.
#[derive(Clone, Default)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
}

fn finished(state: &str) -> bool {
    !matches!(state, "pending" | "running")
}

impl Store {
    /// Ignores `dir` (nothing is durable here).
    pub fn open(_dir: &Path) -> Result<Store, StoreError> {
        Ok(Store::default())
    }

    /// An empty store.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Ok(Store::default())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Corrupt("poisoned".into()))
    }

    /// Creates unless the id exists.
    pub fn create_analysis(&self, a: &NewAnalysis) -> Result<CreateOutcome, StoreError> {
        let mut g = self.lock()?;
        if let Some((_, row, _)) = g.rows.get(&a.id) {
            return Ok(if row.spec_json == a.spec_json {
                CreateOutcome::Existing(row.clone())
            } else {
                CreateOutcome::Conflict(row.clone())
            });
        }
        let row = AnalysisRow {
            id: a.id.clone(),
            app: a.app.clone(),
            spec_json: a.spec_json.clone(),
            state: "pending".into(),
            verdict: None,
            score: None,
            created_ms: a.created_ms,
            updated_ms: a.created_ms,
            finished_ms: None,
            last_seq: 0,
            next_interval: 0,
        };
        g.order += 1;
        let order = g.order;
        g.rows
            .insert(a.id.clone(), (order, row.clone(), Vec::new()));
        Ok(CreateOutcome::Created(row))
    }

    /// One analysis.
    pub fn get(&self, id: &str) -> Result<Option<AnalysisRow>, StoreError> {
        Ok(self.lock()?.rows.get(id).map(|(_, r, _)| r.clone()))
    }

    /// Newest first; the page token is the insertion order to continue below.
    pub fn list(&self, f: &ListFilter) -> Result<(Vec<AnalysisRow>, Option<String>), StoreError> {
        let g = self.lock()?;
        let below: u64 = match &f.page_token {
            Some(t) => t
                .parse()
                .map_err(|_| StoreError::Invalid(format!("page token `{t}`")))?,
            None => u64::MAX,
        };
        let mut all: Vec<&(u64, AnalysisRow, Vec<Entry>)> = g
            .rows
            .values()
            .filter(|(o, r, _)| {
                *o < below
                    && f.app.as_ref().is_none_or(|a| *a == r.app)
                    && (f.states.is_empty() || f.states.contains(&r.state))
            })
            .collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.0));
        let size = f.page_size.max(1) as usize;
        let next = (all.len() > size).then(|| all[size - 1].0.to_string());
        Ok((
            all.into_iter()
                .take(size)
                .map(|(_, r, _)| r.clone())
                .collect(),
            next,
        ))
    }

    /// Appends entries and applies their state changes.
    pub fn append(&self, id: &str, entries: &[NewEntry]) -> Result<u64, StoreError> {
        let mut g = self.lock()?;
        let (_, row, list) = g
            .rows
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.into()))?;
        for e in entries {
            row.last_seq += 1;
            list.push(Entry {
                seq: row.last_seq,
                kind: e.kind.clone(),
                payload_json: e.payload_json.clone(),
                at_ms: e.at_ms,
            });
            if let Some(s) = &e.state {
                row.state = s.clone();
            }
            if e.verdict.is_some() {
                row.verdict = e.verdict.clone();
            }
            if e.score.is_some() {
                row.score = e.score;
            }
            if let Some(n) = e.next_interval {
                row.next_interval = n;
            }
            if e.finished_ms.is_some() {
                row.finished_ms = e.finished_ms;
            }
            row.updated_ms = e.at_ms;
        }
        Ok(row.last_seq)
    }

    /// Entries after `after_seq`.
    pub fn entries_since(
        &self,
        id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError> {
        let g = self.lock()?;
        let (_, _, list) = g
            .rows
            .get(id)
            .ok_or_else(|| StoreError::NotFound(id.into()))?;
        Ok(list
            .iter()
            .filter(|e| e.seq > after_seq)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    /// Analyses not finished.
    pub fn unfinished(&self) -> Result<Vec<AnalysisRow>, StoreError> {
        Ok(self
            .lock()?
            .rows
            .values()
            .filter(|(_, r, _)| !finished(&r.state))
            .map(|(_, r, _)| r.clone())
            .collect())
    }

    /// Stores feedback.
    pub fn add_feedback(&self, f: &Feedback) -> Result<i64, StoreError> {
        let mut g = self.lock()?;
        g.feedback.push(f.clone());
        Ok(g.feedback.len() as i64)
    }

    /// Unexpired feedback of an app.
    pub fn feedback_for(&self, app: &str, now_ms: i64) -> Result<Vec<Feedback>, StoreError> {
        Ok(self
            .lock()?
            .feedback
            .iter()
            .filter(|f| f.app == app && f.expires_ms > now_ms)
            .cloned()
            .collect())
    }

    /// Deletes analyses finished before `cutoff_ms`.
    pub fn purge_finished_before(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let mut g = self.lock()?;
        let before = g.rows.len();
        g.rows
            .retain(|_, (_, r, _)| r.finished_ms.is_none_or(|f| f >= cutoff_ms));
        Ok(before - g.rows.len())
    }
}
