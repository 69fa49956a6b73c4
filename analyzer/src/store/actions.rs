//! The action (rollback or promotion) a final verdict ordered, one per analysis, and how far it
//! got: `ordered` (written before the `finished` event), `started` (before the deployer's first
//! call), `done` (after the event that reports its outcome). A restart resumes every action of a
//! finished analysis that is not `done`.

use rusqlite::{params, OptionalExtension};

use super::error::{sql, sql_op};
use super::{Store, StoreError};

/// An action as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRow {
    /// The analysis that ordered it.
    pub analysis_id: String,
    /// `rollback` or `promote` (opaque to the store).
    pub action: String,
    /// Only the plan is recorded; nothing changes.
    pub dry_run: bool,
    /// `ordered`, `started` or `done`.
    pub state: String,
    /// When it was ordered, Unix ms.
    pub ordered_ms: i64,
    /// The target as resolved when it started (opaque JSON), if it started.
    pub target_json: Option<String>,
    /// How it ended once `done`: `succeeded`, `failed`, `refused` or `planned` (a dry run); `None`
    /// while it runs, or when a restart found its outcome event already stored.
    pub outcome: Option<String>,
}

impl Store {
    /// Orders `action` for analysis `id` (replacing an order that never started: a verdict
    /// re-judged after a crash may differ). An action already started or done is kept as is.
    pub fn order_action(
        &self,
        id: &str,
        action: &str,
        dry_run: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if action.is_empty() {
            return Err(StoreError::Invalid(format!(
                "action for analysis {id:?}: must not be empty"
            )));
        }
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO actions (analysis_id, action, dry_run, state, ordered_ms, updated_ms) \
                 VALUES (?1, ?2, ?3, 'ordered', ?4, ?4) \
                 ON CONFLICT (analysis_id) DO UPDATE SET action = excluded.action, \
                 dry_run = excluded.dry_run, ordered_ms = excluded.ordered_ms, \
                 updated_ms = excluded.updated_ms WHERE actions.state = 'ordered'",
            )
            .and_then(|mut s| s.execute(params![id, action, dry_run, now_ms]))
            .map_err(sql(|| format!("order {action} for analysis {id:?}")))?;
            Ok(())
        })
    }

    /// Drops an order that never started (the re-judged verdict asks for nothing).
    pub fn cancel_ordered_action(&self, id: &str) -> Result<(), StoreError> {
        self.write(|c| {
            c.prepare_cached("DELETE FROM actions WHERE analysis_id = ?1 AND state = 'ordered'")
                .and_then(|mut s| s.execute([id]))
                .map_err(sql(|| {
                    format!("drop the ordered action of analysis {id:?}")
                }))?;
            Ok(())
        })
    }

    /// Moves the action of `id` to `state` (`started` or `done`).
    pub fn set_action_state(&self, id: &str, state: &str, now_ms: i64) -> Result<(), StoreError> {
        self.write(|c| {
            let n = c
                .prepare_cached(
                    "UPDATE actions SET state = ?2, updated_ms = max(updated_ms, ?3) \
                     WHERE analysis_id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, state, now_ms]))
                .map_err(sql(|| {
                    format!("mark the action of analysis {id:?} {state}")
                }))?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("action of {id}")));
            }
            Ok(())
        })
    }

    /// Marks the action of `id` started, on the server groups `target_json` (kept if it was
    /// started before: a resumed action acts on what the first start resolved).
    pub fn start_action(&self, id: &str, target_json: &str, now_ms: i64) -> Result<(), StoreError> {
        self.write(|c| {
            let n = c
                .prepare_cached(
                    "UPDATE actions SET state = 'started', target_json = coalesce(target_json, ?2), \
                     updated_ms = max(updated_ms, ?3) WHERE analysis_id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, target_json, now_ms]))
                .map_err(sql(|| format!("mark the action of analysis {id:?} started")))?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("action of {id}")));
            }
            Ok(())
        })
    }

    /// The action of analysis `id`, if one was ordered.
    pub fn action(&self, id: &str) -> Result<Option<ActionRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT analysis_id, action, dry_run, state, ordered_ms, target_json, outcome \
                 FROM actions WHERE analysis_id = ?1",
            )
            .and_then(|mut s| s.query_row([id], row).optional())
            .map_err(sql(|| format!("read the action of analysis {id:?}")))
        })
    }

    /// Marks the action of `id` done with its `outcome` (`succeeded`, `failed`, `refused`,
    /// `planned`), after its outcome event is stored.
    pub fn finish_action(&self, id: &str, outcome: &str, now_ms: i64) -> Result<(), StoreError> {
        self.write(|c| {
            let n = c
                .prepare_cached(
                    "UPDATE actions SET state = 'done', outcome = ?2, \
                     updated_ms = max(updated_ms, ?3) WHERE analysis_id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, outcome, now_ms]))
                .map_err(sql(|| {
                    format!("mark the action of analysis {id:?} done ({outcome})")
                }))?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("action of {id}")));
            }
            Ok(())
        })
    }

    /// Actions not `done` whose analysis has finished, oldest first: what to resume after a
    /// restart (an unfinished analysis orders its action again when it finishes).
    pub fn open_actions(&self) -> Result<Vec<ActionRow>, StoreError> {
        self.read(|c| {
            let op = "list open actions";
            let mut stmt = c
                .prepare_cached(
                    "SELECT x.analysis_id, x.action, x.dry_run, x.state, x.ordered_ms, x.target_json, \
                     x.outcome FROM actions x JOIN analyses a ON a.id = x.analysis_id \
                     WHERE x.state <> 'done' AND a.state NOT IN ('pending', 'running') \
                     ORDER BY x.ordered_ms, x.analysis_id",
                )
                .map_err(sql_op(op))?;
            let rows = stmt
                .query_map([], row)
                .map_err(sql_op(op))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_op(op))?;
            Ok(rows)
        })
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ActionRow> {
    Ok(ActionRow {
        analysis_id: r.get(0)?,
        action: r.get(1)?,
        dry_run: r.get(2)?,
        state: r.get(3)?,
        ordered_ms: r.get(4)?,
        target_json: r.get(5)?,
        outcome: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{NewAnalysis, NewEntry};
    use super::*;

    fn store_with(id: &str) -> Store {
        let s = Store::open_in_memory().unwrap();
        s.create_analysis(&NewAnalysis {
            id: id.into(),
            app: "shop".into(),
            spec_json: "{}".into(),
            created_ms: 1,
        })
        .unwrap();
        s
    }

    fn finish(s: &Store, id: &str) {
        s.append(
            id,
            &[NewEntry {
                kind: "event".into(),
                payload_json: "{}".into(),
                state: Some("failed".into()),
                verdict: None,
                score: None,
                next_interval: None,
                finished_ms: Some(5),
                at_ms: 5,
            }],
        )
        .unwrap();
    }

    #[test]
    fn an_action_is_resumed_only_once_its_analysis_finished_and_until_done() {
        let s = store_with("a");
        s.order_action("a", "rollback", false, 2).unwrap();
        // Not finished yet: its runner orders again when it finishes.
        assert!(s.open_actions().unwrap().is_empty());
        // A re-judged verdict replaces an order that never started …
        s.order_action("a", "promote", false, 3).unwrap();
        assert_eq!(s.action("a").unwrap().unwrap().action, "promote");
        s.cancel_ordered_action("a").unwrap();
        assert!(s.action("a").unwrap().is_none());
        s.order_action("a", "rollback", true, 4).unwrap();
        finish(&s, "a");
        let open = s.open_actions().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(
            (
                open[0].action.as_str(),
                open[0].dry_run,
                open[0].state.as_str()
            ),
            ("rollback", true, "ordered")
        );
        s.start_action("a", "{\"canary\":\"x\"}", 6).unwrap();
        // A second start keeps the first resolution.
        s.start_action("a", "{\"canary\":\"y\"}", 6).unwrap();
        assert_eq!(
            s.action("a").unwrap().unwrap().target_json.as_deref(),
            Some("{\"canary\":\"x\"}")
        );
        // … but not one that started.
        s.order_action("a", "promote", false, 7).unwrap();
        s.cancel_ordered_action("a").unwrap();
        let a = s.action("a").unwrap().unwrap();
        assert_eq!(
            (a.action.as_str(), a.state.as_str()),
            ("rollback", "started")
        );
        assert_eq!(s.open_actions().unwrap().len(), 1);
        s.finish_action("a", "succeeded", 8).unwrap();
        assert!(s.open_actions().unwrap().is_empty());
        let a = s.action("a").unwrap().unwrap();
        assert_eq!(
            (a.state.as_str(), a.outcome.as_deref()),
            ("done", Some("succeeded"))
        );
        // The outcome is checked by the schema.
        assert!(s.finish_action("a", "maybe", 9).is_err());
        // The state is checked by the schema.
        assert!(s.set_action_state("a", "half", 9).is_err());
        assert!(matches!(
            s.set_action_state("nope", "done", 9),
            Err(StoreError::NotFound(_))
        ));
    }
}
