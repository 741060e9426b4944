//! The run queue as the operator sees it: each tenant's backlog (for backpressure and
//! metrics), and runs by state. The scheduler takes due runs through claims (`leases.rs`).
//!
//! The SQL is standard (a recursive common table expression, `COUNT`, `GROUP BY`), so the
//! same queries run on PostgreSQL. The scheduler's queries read only unfinished runs, through
//! the partial index `runs_due_by_tenant (tenant, due_at, id)`, never the finished ones.

use crate::db::params;

use crate::{Result, Store};

/// The states a run can be in that are not finished: they are the queue.
pub(crate) const UNFINISHED: &str = "status IN ('ready', 'parked', 'waiting')";

impl Store {
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

    /// How many runs are not finished.
    pub fn unfinished_runs(&self) -> Result<u64> {
        self.read(|conn| {
            conn.query_row(
                &format!("SELECT COUNT(*) FROM runs WHERE {UNFINISHED}"),
                &[],
                |r| r.get(0),
            )
        })
    }
}
