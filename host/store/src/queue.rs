//! The run queue as the scheduler and the operator see it: due runs taken fairly across
//! tenants, each tenant's backlog (for backpressure and metrics), and runs by state.
//!
//! The SQL is standard (a window function, `COUNT`, `GROUP BY`), so the same queries run on
//! PostgreSQL. Every query reads only due or unfinished runs through the partial index
//! `runs_due_by_tenant (tenant, due_at, id)`, never the finished ones.

use rusqlite::{OptionalExtension, params};

use crate::{RUN_COLUMNS, Result, RunRecord, Store, run_from_row};

/// The states a run can be in that are not finished: they are the queue.
const UNFINISHED: &str = "status IN ('ready', 'parked', 'waiting')";

/// The most due runs listed at once, whatever the number of tenants: a bound on one pick's
/// memory (the scheduler takes at most its free slots from them anyway).
const MAX_DUE_ROWS: usize = 100_000;

/// A due run as the scheduler first sees it: which run, whose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRun {
    pub id: String,
    pub tenant: String,
}

impl Store {
    /// Due runs, at most `per_tenant` of each tenant (each tenant's oldest due first),
    /// ordered by their turn within their tenant: every tenant's first due run, then every
    /// tenant's second, and so on. A tenant with ten thousand due runs and a tenant with one
    /// are both in the first turn. Only ids and tenants, read from the index (tenant,
    /// due_at, id): the scheduler picks from these, then reads the runs it took
    /// ([`Store::due_runs_by_id`]).
    pub fn due_runs_fair(&self, now_ms: i64, per_tenant: usize) -> Result<Vec<DueRun>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT id, tenant FROM (
                     SELECT id, tenant, due_at, ROW_NUMBER() OVER (
                         PARTITION BY tenant ORDER BY due_at, id) AS turn
                     FROM runs WHERE {UNFINISHED} AND due_at <= ?1
                 ) AS due
                 WHERE turn <= ?2
                 ORDER BY turn, due_at, id
                 LIMIT {MAX_DUE_ROWS}"
            ))?;
            let rows = stmt.query_map(params![now_ms, per_tenant as i64], |r| {
                Ok(DueRun {
                    id: r.get(0)?,
                    tenant: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// The runs of `ids` that are still due at `now_ms`, in the order of `ids` (a run that
    /// finished or moved on since it was listed is left out).
    pub fn due_runs_by_id(&self, ids: &[String], now_ms: i64) -> Result<Vec<RunRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1 AND {UNFINISHED} AND due_at <= ?2"
            ))?;
            let mut runs = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(run) = stmt
                    .query_row(params![id, now_ms], run_from_row)
                    .optional()?
                {
                    runs.push(run?);
                }
            }
            Ok(runs)
        })
    }

    /// How many of this tenant's runs are due at `now_ms` and waiting for a step (ready
    /// runs, pauses that ended, waits that timed out), counting at most `cap`: the count
    /// a backpressure check compares with a bound need not go past the bound.
    pub fn queued_runs(&self, tenant: &str, now_ms: i64, cap: u64) -> Result<u64> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT COUNT(*) FROM (
                         SELECT 1 FROM runs WHERE tenant = ?1 AND {UNFINISHED} AND due_at <= ?2
                         LIMIT ?3
                     ) AS queued"
                ))?
                .query_row(
                    params![tenant, now_ms, cap.min(i64::MAX as u64) as i64],
                    |r| r.get(0),
                )?)
        })
    }

    /// Each tenant's due runs at `now_ms` (tenants with none are left out): the queue depth
    /// per tenant.
    pub fn queue_depths(&self, now_ms: i64) -> Result<Vec<(String, u64)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT tenant, COUNT(*) FROM runs WHERE {UNFINISHED} AND due_at <= ?1
                 GROUP BY tenant ORDER BY tenant"
            ))?;
            let rows = stmt.query_map(params![now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// How many runs each tenant has in each state (`ready`, `parked`, `waiting`, `done`,
    /// `failed`, ...), as (tenant, state, count). Finished runs are counted too: this reads
    /// every run, so it is for a metrics scrape, not for the scheduler.
    pub fn runs_by_state(&self) -> Result<Vec<(String, String, u64)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT tenant, status, COUNT(*) FROM runs GROUP BY tenant, status
                 ORDER BY tenant, status",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}
