//! Runs: what a run is and where it stands, starting one (once per trigger), reading one or
//! a filtered page of them, and cancelling and retrying one.
//!
//! Cancel and retry are writes like a step commit: each is journaled as a step of its own
//! and moves the run's step sequence on, so a step that was in flight when it happened
//! finds its fence gone and commits nothing.

use crate::db::Conn;
use crate::db::{OptionalExtension, params};
use coda_types::Values;
use serde::{Deserialize, Serialize};

use crate::paging::{ListOrder, PageQuery};
use crate::waits::EventWait;
use crate::{Result, Store, StoreError};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Has a node to run as soon as it is due.
    Ready,
    /// Paused until `due_at`.
    Parked,
    /// Waiting for an event until `due_at` (the timeout).
    Waiting,
    /// Ended through an exit (or an unwired one).
    Done,
    /// Ended through an error with no error exit wired.
    Failed,
    /// Stopped through the API before it finished.
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ready => "ready",
            RunStatus::Parked => "parked",
            RunStatus::Waiting => "waiting",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "ready" => RunStatus::Ready,
            "parked" => RunStatus::Parked,
            "waiting" => RunStatus::Waiting,
            "done" => RunStatus::Done,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            other => {
                return Err(StoreError::Json(serde::de::Error::custom(format!(
                    "unknown run status {other:?}"
                ))));
            }
        })
    }
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Done | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub tenant: String,
    pub plan: String,
    pub plan_version: u32,
    pub interaction: Option<String>,
    /// Unique per tenant: the same trigger (interaction + event) starts one run, not two.
    pub trigger_key: Option<String>,
    pub start_node: String,
    pub data: Values,
    pub now_ms: i64,
}

/// The result of [`Store::start_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedRun {
    pub id: String,
    /// False when the trigger had already started this run.
    pub created: bool,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub tenant: String,
    pub plan: String,
    pub plan_version: u32,
    pub interaction: Option<String>,
    pub status: RunStatus,
    /// The node to run next; none once finished.
    pub node: Option<String>,
    /// Steps committed so far.
    pub step_seq: u64,
    /// The attempt the next step will be (1 unless retrying).
    pub attempt: u32,
    pub data: Values,
    /// Node state, by node id.
    pub state: std::collections::BTreeMap<String, Values>,
    pub due_at_ms: Option<i64>,
    pub wait: Option<EventWait>,
    /// How many times the run has routed to another plan.
    pub route_depth: u32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What `GET /v1/runs` filters on; every field left out matches every run.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// The plan the run is in now (a route moves it to another).
    pub plan: Option<String>,
    pub status: Option<RunStatus>,
    pub interaction: Option<String>,
    /// Created at or after (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Created before.
    pub until_ms: Option<i64>,
}

/// What cancelling or retrying a run came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// Done: the run as it is now.
    Applied(Box<RunRecord>),
    /// The tenant has no such run (another tenant's included).
    NotFound,
    /// The run's status does not allow it; `why` says so in words.
    Refused { status: RunStatus, why: String },
}

impl Store {
    /// Creates a run, or finds the one its trigger already created: a unique insert, never
    /// check-then-insert, so a trigger delivered twice (even at once) starts one run.
    pub async fn start_run(&self, new: NewRun) -> Result<StartedRun> {
        self.writer.write(move |tx| insert_run(tx, &new)).await
    }

    /// A page of this tenant's runs, oldest first: those after `after` (a run id), at most
    /// `limit`.
    pub fn runs(&self, tenant: &str, after: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![tenant, after.unwrap_or(""), limit as i64],
                run_from_row,
            )?;
            rows.map(|r| r?).collect()
        })
    }

    /// A run of this tenant; another tenant's run is `None`, exactly as a missing one.
    pub fn run(&self, tenant: &str, id: &str) -> Result<Option<RunRecord>> {
        self.read(|conn| {
            conn.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE tenant = ?1 AND id = ?2"),
                params![tenant, id],
                run_from_row,
            )
            .optional()?
            .transpose()
        })
    }

    /// A page of this tenant's runs matching `filter`, in creation order (`order`: oldest
    /// or newest first; runs created in the same millisecond by id), after the run `after`,
    /// at most `limit`. An `after` that names no run of this tenant ends the list: an empty
    /// page.
    pub fn find_runs(
        &self,
        tenant: &str,
        filter: &RunFilter,
        order: ListOrder,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>> {
        let mut query = PageQuery::new(RUN_COLUMNS, "runs", tenant);
        if let Some(plan) = &filter.plan {
            query.condition("plan", "=", plan.clone().into());
        }
        if let Some(status) = filter.status {
            query.condition("status", "=", status.as_str().to_owned().into());
        }
        if let Some(interaction) = &filter.interaction {
            query.condition("interaction", "=", interaction.clone().into());
        }
        if let Some(since) = filter.since_ms {
            query.condition("created_at", ">=", since.into());
        }
        if let Some(until) = filter.until_ms {
            query.condition("created_at", "<", until.into());
        }
        self.read(|conn| {
            if let Some(after) = after {
                let created_at: Option<i64> = conn
                    .prepare_cached("SELECT created_at FROM runs WHERE tenant = ?1 AND id = ?2")?
                    .query_row(params![tenant, after], |r| r.get(0))
                    .optional()?;
                let Some(created_at) = created_at else {
                    return Ok(Vec::new());
                };
                query.after(order, created_at, after);
            }
            let (sql, args) = query.finish(order, limit);
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(&args, run_from_row)?;
            rows.map(|r| r?).collect()
        })
    }

    /// Cancels a run that has not finished: it ends `cancelled` at once, with a journal
    /// step saying `note`. Its step sequence moves on, so a step of it in flight now (on
    /// this host or another) commits nothing when it ends: the run stays cancelled.
    pub async fn cancel_run(
        &self,
        tenant: &str,
        run_id: &str,
        note: &str,
        now_ms: i64,
    ) -> Result<Control> {
        let (tenant, run_id, note) = (tenant.to_owned(), run_id.to_owned(), note.to_owned());
        let control = self
            .writer
            .write(move |tx| {
                let Some(run) = run_in(tx, &tenant, &run_id)? else {
                    return Ok(Control::NotFound);
                };
                if run.status.is_finished() {
                    return Ok(Control::Refused {
                        status: run.status,
                        why: format!(
                            "run `{run_id}` is {} already: only a run not finished can be cancelled",
                            run.status.as_str()
                        ),
                    });
                }
                let node = run
                    .wait
                    .as_ref()
                    .and_then(|w| w.node.clone())
                    .or_else(|| run.node.clone())
                    .unwrap_or_default();
                let was = match &run.node {
                    Some(next) => format!("{} before node {next}", run.status.as_str()),
                    None => run.status.as_str().to_owned(),
                };
                tx.prepare_cached(
                    "UPDATE runs SET status = 'cancelled', node = NULL, step_seq = step_seq + 1,
                        attempt = 1, due_at = NULL, wait = NULL, updated_at = ?1
                     WHERE id = ?2 AND step_seq = ?3",
                )?
                .execute(params![now_ms, run.id, run.step_seq])?;
                insert_host_step(
                    tx,
                    &run,
                    &node,
                    run.attempt,
                    serde_json::json!({ "cancelled": true }),
                    &format!("{note} (it was {was})"),
                    now_ms,
                )?;
                Ok(Control::Applied(Box::new(reread(tx, &run.id)?)))
            })
            .await?;
        if let Control::Applied(run) = &control {
            self.commits
                .send(&run.id, run.step_seq.saturating_sub(1), run.status);
        }
        Ok(control)
    }

    /// Retries a failed run from the node whose step failed: the run is ready there again at
    /// once, with a journal step saying so. The retry is a further attempt of that step, so
    /// it keeps the step's idempotency key (the key is the first attempt's sequence number,
    /// and the retry's journal entry counts as one attempt so that attempts stay
    /// consecutive): a call the failed attempt completed at a downstream that honours keys
    /// is not made twice.
    pub async fn retry_run(&self, tenant: &str, run_id: &str, now_ms: i64) -> Result<Control> {
        let (tenant, run_id) = (tenant.to_owned(), run_id.to_owned());
        let control = self
            .writer
            .write(move |tx| {
                let Some(run) = run_in(tx, &tenant, &run_id)? else {
                    return Ok(Control::NotFound);
                };
                if run.status != RunStatus::Failed {
                    return Ok(Control::Refused {
                        status: run.status,
                        why: format!(
                            "run `{run_id}` is {}: only a failed run can be retried",
                            run.status.as_str()
                        ),
                    });
                }
                // The failed step is the last one journaled: the failure is its commit.
                let last: Option<(String, u32, String, u32, String)> = tx
                    .prepare_cached(
                        "SELECT node, attempt, plan, plan_version, result FROM steps
                         WHERE run_id = ?1 ORDER BY seq DESC LIMIT 1",
                    )?
                    .query_row(params![run.id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()?;
                // A run stopped at the step limit would only be stopped again.
                if let Some((.., result)) = &last
                    && serde_json::from_str::<serde_json::Value>(result)
                        .is_ok_and(|r| r["error"]["kind"] == "max-steps")
                {
                    return Ok(Control::Refused {
                        status: run.status,
                        why: format!(
                            "run `{run_id}` was stopped at the step limit: a retry would stop again"
                        ),
                    });
                }
                let Some((node, attempt, plan, plan_version, _)) =
                    last.filter(|(node, ..)| !node.is_empty())
                else {
                    return Ok(Control::Refused {
                        status: run.status,
                        why: format!("run `{run_id}` has no failed step to retry"),
                    });
                };
                let retry_attempt = attempt.saturating_add(2);
                tx.prepare_cached(
                    "UPDATE runs SET status = 'ready', plan = ?1, plan_version = ?2, node = ?3,
                        step_seq = step_seq + 1, attempt = ?4, due_at = ?5, wait = NULL,
                        updated_at = ?5
                     WHERE id = ?6 AND step_seq = ?7",
                )?
                .execute(params![
                    plan,
                    plan_version,
                    node,
                    retry_attempt,
                    now_ms,
                    run.id,
                    run.step_seq
                ])?;
                tx.made_work();
                let at = RunRecord {
                    plan,
                    plan_version,
                    ..run.clone()
                };
                insert_host_step(
                    tx,
                    &at,
                    &node,
                    attempt.saturating_add(1),
                    serde_json::json!({ "retry": true }),
                    &format!(
                        "retried by API: node {node} runs again (attempt {retry_attempt}, after attempt {attempt} failed)"
                    ),
                    now_ms,
                )?;
                Ok(Control::Applied(Box::new(reread(tx, &run.id)?)))
            })
            .await?;
        if let Control::Applied(run) = &control {
            self.commits
                .send(&run.id, run.step_seq.saturating_sub(1), run.status);
        }
        Ok(control)
    }
}

pub(crate) const RUN_COLUMNS: &str =
    "id, tenant, plan, plan_version, interaction, status, node, step_seq,
    attempt, data, state, due_at, wait, route_depth, created_at, updated_at";

pub(crate) fn run_from_row(r: &crate::db::Row) -> crate::Result<Result<RunRecord>> {
    let status: String = r.get(5)?;
    let data: String = r.get(9)?;
    let state: String = r.get(10)?;
    let wait: Option<String> = r.get(12)?;
    let record = (|| -> Result<RunRecord> {
        Ok(RunRecord {
            id: r.get(0)?,
            tenant: r.get(1)?,
            plan: r.get(2)?,
            plan_version: r.get(3)?,
            interaction: r.get(4)?,
            status: RunStatus::parse(&status)?,
            node: r.get(6)?,
            step_seq: r.get(7)?,
            attempt: r.get(8)?,
            data: serde_json::from_str(&data)?,
            state: serde_json::from_str(&state)?,
            due_at_ms: r.get(11)?,
            wait: wait.as_deref().map(serde_json::from_str).transpose()?,
            route_depth: r.get(13)?,
            created_at_ms: r.get(14)?,
            updated_at_ms: r.get(15)?,
        })
    })();
    Ok(record)
}

fn run_in(conn: &Conn<'_>, tenant: &str, id: &str) -> Result<Option<RunRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE tenant = ?1 AND id = ?2"
    ))?
    .query_row(params![tenant, id], run_from_row)
    .optional()?
    .transpose()
}

fn reread(conn: &Conn<'_>, id: &str) -> Result<RunRecord> {
    conn.prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?
        .query_row(params![id], run_from_row)?
}

/// Journals a step the host took itself (no applet ran) at the run's current sequence.
fn insert_host_step(
    conn: &Conn<'_>,
    run: &RunRecord,
    node: &str,
    attempt: u32,
    result: serde_json::Value,
    note: &str,
    now_ms: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO steps (run_id, seq, plan, plan_version, node, applet, attempt,
            result, note, fuel_used, duration_us, data_changes, at, data_delta)
         VALUES (?1, ?2, ?3, ?4, ?5, '', ?6, ?7, ?8, 0, 0, '{}', ?9, '=')",
    )?
    .execute(params![
        run.id,
        run.step_seq,
        run.plan,
        run.plan_version,
        node,
        attempt,
        result.to_string(),
        note,
        now_ms
    ])?;
    Ok(())
}

/// Inserts a new run, or finds the one its trigger already created (see
/// [`Store::start_run`]); within a write, so that other changes can be stored with it.
pub(crate) fn insert_run(tx: &Conn<'_>, new: &NewRun) -> Result<StartedRun> {
    let id = uuid::Uuid::now_v7().to_string();
    let data = serde_json::to_string(&new.data)?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO runs (id, tenant, plan, plan_version, interaction, trigger_key,
                status, node, step_seq, attempt, data, state, due_at, route_depth,
                created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'ready', ?7, 0, 1, ?8, '{}', ?9, 0, ?9, ?9)
             ON CONFLICT (tenant, trigger_key) DO NOTHING",
        )?
        .execute(params![
            id,
            new.tenant,
            new.plan,
            new.plan_version,
            new.interaction,
            new.trigger_key,
            new.start_node,
            data,
            new.now_ms
        ])?;
    if inserted == 1 {
        tx.made_work();
        return Ok(StartedRun { id, created: true });
    }
    let existing: String = tx.query_row(
        "SELECT id FROM runs WHERE tenant = ?1 AND trigger_key = ?2",
        params![new.tenant, new.trigger_key],
        |r| r.get(0),
    )?;
    Ok(StartedRun {
        id: existing,
        created: false,
    })
}
