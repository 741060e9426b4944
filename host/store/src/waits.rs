//! Waits for an event: a run parked on an event of its interaction, and the wake that
//! moves it on, journaled as a step so that a timeout handled at the same moment cannot
//! also commit. The event itself is kept by `events.rs`, which wakes through here.

use crate::db::{Conn, params};
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

/// A run woken inside a write: its id, the step that journaled the event, its status after.
pub(crate) type Woken = (String, u64, RunStatus);

/// An event as a wait receives it: its name, its payload (the data source `Event`) and the
/// further data sources it sets (a disposition's `Disposition`, `DispositionAmount`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival<'a> {
    pub event: &'a str,
    pub payload: &'a coda_types::Value,
    pub extra: &'a Values,
}

/// The runs of this interaction waiting for `event`, read inside the write.
pub(crate) fn waiting_for(
    conn: &Conn<'_>,
    tenant: &str,
    interaction: &str,
    event: &str,
) -> Result<Vec<RunRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs
         WHERE tenant = ?1 AND interaction = ?2 AND status = 'waiting'"
    ))?;
    let waiting: Vec<RunRecord> = stmt
        .query_map(params![tenant, interaction], run_from_row)?
        .map(|r| r?)
        .collect::<Result<_>>()?;
    Ok(waiting
        .into_iter()
        .filter(|run| run.wait.as_ref().is_some_and(|w| w.event == event))
        .collect())
}

/// Moves a waiting run on with `arrival`: at its wait's event target (or to its end), the
/// payload in `Event` and the extra data sources set, journaled as the step `step_seq`
/// at the node that waited. Fenced by the run's step sequence like any commit.
pub(crate) fn wake_run(
    conn: &Conn<'_>,
    run: &RunRecord,
    arrival: Arrival<'_>,
    now_ms: i64,
) -> Result<Option<Woken>> {
    let Some(wait) = run.wait.as_ref() else {
        return Ok(None);
    };
    let event = arrival.event;
    let mut changes = arrival.extra.clone();
    changes.insert("Event".into(), arrival.payload.clone());
    let mut data = run.data.clone();
    data.extend(changes.clone());
    let (status, node, note) = match &wait.on_event {
        Some(node) => (
            RunStatus::Ready,
            Some(node.clone()),
            format!("event `{event}` received → {node}"),
        ),
        None => (
            RunStatus::Done,
            None,
            format!("event `{event}` received; its exit is not wired: the run ends"),
        ),
    };
    let moved = conn
        .prepare_cached(
            "UPDATE runs SET status = ?1, node = ?2, step_seq = step_seq + 1, attempt = 1,
                data = ?3, due_at = ?4, wait = NULL, updated_at = ?4
             WHERE id = ?5 AND step_seq = ?6 AND status = 'waiting'",
        )?
        .execute(params![
            status.as_str(),
            node,
            serde_json::to_string(&data)?,
            now_ms,
            run.id,
            run.step_seq
        ])?;
    if moved == 0 {
        return Ok(None);
    }
    conn.prepare_cached(
        "INSERT INTO steps (run_id, seq, plan, plan_version, node, applet, attempt,
            result, note, fuel_used, duration_us, data_changes, at, data_delta)
         VALUES (?1, ?2, ?3, ?4, ?5, '', 1, ?6, ?7, 0, 0, ?8, ?9, '=')",
    )?
    .execute(params![
        run.id,
        run.step_seq,
        run.plan,
        run.plan_version,
        wait.node
            .clone()
            .or_else(|| run.node.clone())
            .unwrap_or_default(),
        serde_json::json!({ "event": event }).to_string(),
        note,
        serde_json::to_string(&changes)?,
        now_ms
    ])?;
    conn.made_work();
    Ok(Some((run.id.clone(), run.step_seq, status)))
}

impl Store {
    /// Sends the commit notices of runs woken by a write, once it is on disk; their ids.
    pub(crate) fn announce(&self, woken: Vec<Woken>) -> Vec<String> {
        for (run_id, seq, status) in &woken {
            self.commits.send(run_id, *seq, *status);
        }
        woken.into_iter().map(|(id, ..)| id).collect()
    }
}
