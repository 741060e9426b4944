//! Waits for an event: a run parked on an event of its interaction, and the wake that
//! moves it on, journaled as a step so that a timeout handled at the same moment cannot
//! also commit.

use crate::db::params;
use coda_types::Values;
use serde::{Deserialize, Serialize};

use crate::runs::{RUN_COLUMNS, RunRecord, RunStatus, run_from_row};
use crate::{Result, Store};

/// A wait for an event: where the run goes when it arrives (none: the run ends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventWait {
    pub event: String,
    pub on_event: Option<String>,
    /// The node that waits: the event's or the timeout's step is journaled there.
    #[serde(default)]
    pub node: Option<String>,
}

impl Store {
    /// Wakes the runs of this interaction that wait for `event`: each goes on at its wait's
    /// event target (or ends), with the payload in the data source `Event`, journaled as a
    /// step so that a timeout being handled at the same moment cannot also commit.
    pub async fn wake_waiting(
        &self,
        tenant: &str,
        interaction: &str,
        event: &str,
        payload: coda_types::Value,
        now_ms: i64,
    ) -> Result<Vec<String>> {
        self.wake_waiting_with(tenant, interaction, event, payload, Values::new(), now_ms)
            .await
    }

    /// [`Store::wake_waiting`], also setting the data sources `data` on each woken run (a
    /// submitted disposition's `Disposition`, `DispositionAmount`).
    pub async fn wake_waiting_with(
        &self,
        tenant: &str,
        interaction: &str,
        event: &str,
        payload: coda_types::Value,
        extra: Values,
        now_ms: i64,
    ) -> Result<Vec<String>> {
        let (tenant, interaction, event) =
            (tenant.to_owned(), interaction.to_owned(), event.to_owned());
        let woken = self.writer
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs
                     WHERE tenant = ?1 AND interaction = ?2 AND status = 'waiting'"
                ))?;
                let waiting: Vec<RunRecord> = stmt
                    .query_map(params![tenant, interaction], run_from_row)?
                    .map(|r| r?)
                    .collect::<Result<_>>()?;
                let mut woken = Vec::new();
                for run in waiting {
                    let Some(wait) = run.wait.as_ref().filter(|w| w.event == event) else {
                        continue;
                    };
                    let mut data = run.data.clone();
                    data.extend(extra.clone());
                    data.insert("Event".into(), payload.clone());
                    let (status, node, note) = match &wait.on_event {
                        Some(node) => ("ready", Some(node.clone()), format!("event `{event}` received → {node}")),
                        None => ("done", None, format!("event `{event}` received; its exit is not wired: the run ends")),
                    };
                    conn.prepare_cached("UPDATE runs SET status = ?1, node = ?2, step_seq = step_seq + 1, attempt = 1,
                            data = ?3, due_at = ?4, wait = NULL, updated_at = ?4
                         WHERE id = ?5 AND step_seq = ?6")?.execute(
                        params![status, node, serde_json::to_string(&data)?, now_ms, run.id, run.step_seq],
                    )?;
                    let mut changes = extra.clone();
                    changes.insert("Event".into(), payload.clone());
                    conn.prepare_cached("INSERT INTO steps (run_id, seq, plan, plan_version, node, applet, attempt,
                            result, note, fuel_used, duration_us, data_changes, at, data_delta)
                         VALUES (?1, ?2, ?3, ?4, ?5, '', 1, ?6, ?7, 0, 0, ?8, ?9, '=')")?.execute(
                        params![
                            run.id,
                            run.step_seq,
                            run.plan,
                            run.plan_version,
                            wait.node.clone().or_else(|| run.node.clone()).unwrap_or_default(),
                            serde_json::json!({ "event": event }).to_string(),
                            note,
                            serde_json::to_string(&changes)?,
                            now_ms
                        ],
                    )?;
                    woken.push((run.id, run.step_seq, RunStatus::parse(status)?));
                }
                if !woken.is_empty() {
                    conn.made_work();
                }
                Ok(woken)
            })
            .await?;
        for (run_id, seq, status) in &woken {
            self.commits.send(run_id, *seq, *status);
        }
        Ok(woken.into_iter().map(|(id, ..)| id).collect())
    }
}
