//! Runs and plans as the API manages them: filtered pages of runs, a plan's versions,
//! cancelling and retrying a run, and the notice of each journal commit that a live tail
//! waits on.
//!
//! Cancel and retry are writes like a step commit: each is journaled as a step of its own
//! and moves the run's step sequence on, so a step that was in flight when it happened
//! finds its fence gone and commits nothing.

use std::sync::Arc;

use crate::db::Conn;
use crate::db::{OptionalExtension, params};
use sha2::Digest;

use crate::{RUN_COLUMNS, Result, RunRecord, RunStatus, Store, run_from_row};

/// How many commit notices a slow subscriber may fall behind before it is told it lagged
/// (it then reads the journal again rather than trusting what it missed).
const COMMITS_CAPACITY: usize = 1024;

/// A commit to a run's journal, sent once it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCommitted {
    pub run_id: Arc<str>,
    /// The step's sequence number.
    pub seq: u64,
    /// The run's status after it.
    pub status: RunStatus,
}

/// The sending side of the commit notices: a broadcast, so that a commit costs one send
/// whether nobody or many are watching, and a watcher that goes away costs nothing.
pub(crate) struct Commits(tokio::sync::broadcast::Sender<RunCommitted>);

impl Commits {
    pub(crate) fn new() -> Commits {
        Commits(tokio::sync::broadcast::channel(COMMITS_CAPACITY).0)
    }

    pub(crate) fn send(&self, run_id: &str, seq: u64, status: RunStatus) {
        // No receiver is the common case, not an error.
        let _ = self.0.send(RunCommitted {
            run_id: run_id.into(),
            seq,
            status,
        });
    }
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

/// One stored version of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanVersionInfo {
    pub version: u32,
    pub created_at_ms: i64,
    /// `sha256:` and the hex SHA-256 of the stored body, so two versions (or a local file
    /// and a version) can be compared without fetching them.
    pub digest: String,
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
    /// Receives a notice of every journal commit made through this store from now on.
    pub fn subscribe_commits(&self) -> tokio::sync::broadcast::Receiver<RunCommitted> {
        self.commits.0.subscribe()
    }

    /// A page of this tenant's runs matching `filter`, in id order (ids are time-ordered:
    /// oldest first), after the run id `after`, at most `limit`.
    pub fn find_runs(
        &self,
        tenant: &str,
        filter: &RunFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>> {
        // Only the conditions asked for are in the query, so SQLite can pick the index that
        // fits; the values are always bound, never formatted in.
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE tenant = ?1 AND id > ?2");
        let mut args: Vec<crate::db::Value> = vec![
            tenant.to_owned().into(),
            after.unwrap_or("").to_owned().into(),
        ];
        let mut condition = |column: &str, op: &str, value: crate::db::Value| {
            args.push(value);
            sql.push_str(&format!(" AND {column} {op} ?{}", args.len()));
        };
        if let Some(plan) = &filter.plan {
            condition("plan", "=", plan.clone().into());
        }
        if let Some(status) = filter.status {
            condition("status", "=", status.as_str().to_owned().into());
        }
        if let Some(interaction) = &filter.interaction {
            condition("interaction", "=", interaction.clone().into());
        }
        if let Some(since) = filter.since_ms {
            condition("created_at", ">=", since.into());
        }
        if let Some(until) = filter.until_ms {
            condition("created_at", "<", until.into());
        }
        args.push((limit.min(i64::MAX as usize) as i64).into());
        sql.push_str(&format!(" ORDER BY id LIMIT ?{}", args.len()));
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(&args, run_from_row)?;
            rows.map(|r| r?).collect()
        })
    }

    /// Every version of one of the tenant's plans, oldest first; empty when it has none.
    pub fn plan_versions(&self, tenant: &str, name: &str) -> Result<Vec<PlanVersionInfo>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT version, created_at, body FROM plans
                 WHERE tenant = ?1 AND name = ?2 ORDER BY version",
            )?;
            let rows = stmt.query_map(params![tenant, name], |r| {
                let body: String = r.get(2)?;
                Ok(PlanVersionInfo {
                    version: r.get(0)?,
                    created_at_ms: r.get(1)?,
                    digest: format!("sha256:{}", hex::encode(sha2::Sha256::digest(body))),
                })
            })?;
            rows.collect::<crate::Result<_>>()
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
            result, note, fuel_used, duration_us, data_changes, at)
         VALUES (?1, ?2, ?3, ?4, ?5, '', ?6, ?7, ?8, 0, 0, '{}', ?9)",
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
