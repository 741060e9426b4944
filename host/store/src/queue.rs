//! The run queue as the scheduler and the operator see it: due runs taken fairly across
//! tenants, each tenant's backlog (for backpressure and metrics), and runs by state.
//!
//! The SQL is standard (a recursive common table expression, `COUNT`, `GROUP BY`), so the
//! same queries run on PostgreSQL. The scheduler's queries read only unfinished runs, through
//! the partial index `runs_due_by_tenant (tenant, due_at, id)`, never the finished ones.

use crate::db::{OptionalExtension, params};

use crate::{RUN_COLUMNS, Result, RunRecord, Store, run_from_row};

/// The states a run can be in that are not finished: they are the queue.
const UNFINISHED: &str = "status IN ('ready', 'parked', 'waiting')";

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
    /// are both in the first turn. Only ids and tenants: the scheduler picks from these,
    /// then reads the runs it took ([`Store::due_runs_by_id`]).
    ///
    /// Two index seeks per tenant with unfinished runs, whatever their backlogs or parked
    /// runs: the tenants are found by a loose index scan (a recursive query stepping from
    /// one tenant to the next in `runs_due_by_tenant`), then each tenant's oldest due runs
    /// by a range of the same index. A window function over all due runs would read every
    /// one of them at every pick, and, without statistics, every parked run too.
    pub fn due_runs_fair(&self, now_ms: i64, per_tenant: usize) -> Result<Vec<DueRun>> {
        self.read(|conn| {
            let mut tenants = conn.prepare_cached(&format!(
                "WITH RECURSIVE queued (tenant) AS (
                     SELECT MIN(tenant) FROM runs WHERE {UNFINISHED}
                     UNION ALL
                     SELECT (SELECT MIN(tenant) FROM runs
                             WHERE {UNFINISHED} AND tenant > queued.tenant)
                     FROM queued WHERE queued.tenant IS NOT NULL
                 )
                 SELECT tenant FROM queued WHERE tenant IS NOT NULL"
            ))?;
            let tenants: Vec<String> = tenants
                .query_map(&[], |r| r.get(0))?
                .collect::<crate::Result<_>>()?;
            let mut oldest = conn.prepare_cached(&format!(
                "SELECT id FROM runs WHERE tenant = ?1 AND {UNFINISHED} AND due_at <= ?2
                 ORDER BY due_at, id LIMIT ?3"
            ))?;
            let mut queues = Vec::with_capacity(tenants.len());
            for tenant in tenants {
                let ids: Vec<String> = oldest
                    .query_map(params![tenant, now_ms, per_tenant as i64], |r| r.get(0))?
                    .collect::<crate::Result<_>>()?;
                if !ids.is_empty() {
                    queues.push((tenant, ids));
                }
            }
            // Turn by turn: each tenant's first, then each tenant's second, ...
            let mut due = Vec::new();
            for turn in 0..per_tenant {
                let before = due.len();
                for (tenant, ids) in &queues {
                    if let Some(id) = ids.get(turn) {
                        due.push(DueRun {
                            id: id.clone(),
                            tenant: tenant.clone(),
                        });
                    }
                }
                if due.len() == before {
                    break;
                }
            }
            Ok(due)
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
            conn.prepare_cached(&format!(
                "SELECT COUNT(*) FROM (
                         SELECT 1 FROM runs WHERE tenant = ?1 AND {UNFINISHED} AND due_at <= ?2
                         LIMIT ?3
                     ) AS queued"
            ))?
            .query_row(
                params![tenant, now_ms, cap.min(i64::MAX as u64) as i64],
                |r| r.get(0),
            )
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
            rows.collect::<crate::Result<_>>()
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
            let rows = stmt.query_map(&[], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<crate::Result<_>>()
        })
    }
}
