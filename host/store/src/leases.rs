//! Leases: how several nodes sharing one database share the runs.
//!
//! A node takes due runs by *claiming* them ([`Store::claim_due_runs`]): in one write, it
//! picks each tenant's oldest due runs whose claim is free or expired, as many as the
//! tenant's concurrency leaves room for (counting the live claims of every node), in turns
//! across tenants, and sets itself as their owner until `now + lease`, bumping each run's
//! `claim_seq`. While it runs their steps it renews the claims ([`Store::renew_claims`],
//! the heartbeat); a node that dies stops renewing, and once the lease runs out another
//! node claims the run again.
//!
//! **Architecture Invariant:** a step commits only under the claim it ran with. A commit
//! made under a claim ([`Store::commit_claimed_step`]) is fenced by the run's step sequence
//! *and* its `claim_seq`, and releases the claim in the same write, or keeps it for the
//! run's next step when that is due now ([`Store::commit_claimed_step_and_continue`], the
//! same claim number, its lease renewed, the next step's start counted); the effect journal's
//! writes are fenced the same way ([`Store::record_claimed_effect`]). A node paused past its
//! lease (SIGSTOP) that wakes up finds its claim number gone and commits nothing, whether
//! or not the node that took over has committed yet. A cancel from the API still wins: it
//! moves the step sequence on, and the owner's commit fails on that fence.
//!
//! Claiming is two index seeks per tenant, whatever its backlog or parked runs: the
//! tenants are found by a loose index scan (a recursive query stepping from one tenant to
//! the next in `runs_due_by_tenant`; a window function over all due runs would read every
//! one of them at every pick, and, without statistics, every parked run too), then a range of
//! `runs_claimed` (only runs in flight are in it: a commit releases its claim) counts the
//! tenant's live claims, and a range of `runs_due_by_tenant` finds its oldest due runs.
//! On SQLite the single writer serializes claims, so two claims never race.

use crate::db::{OptionalExtension, params};

use crate::queue::UNFINISHED;
use crate::runs::{RUN_COLUMNS, RunRecord, run_from_row};
use crate::{Result, Store};

/// A run claimed by this node: run its next step, and commit it under `claim_seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub run: RunRecord,
    /// The claim's number: the fence of the step's commit and of its effect journal writes.
    pub claim_seq: u64,
    /// How many times the run's current step has been claimed, this claim included: more
    /// than once when an earlier claim ended without a commit (the host crashed or failed
    /// in the step, a stop dropped it, a lease ran out). The engine runs a step claimed
    /// often alone, and parks it when it keeps failing alone ([`Store::start_alone`]).
    pub step_claims: u32,
}

/// How a step's commit keeps its claim for the run's next step
/// ([`Store::commit_claimed_step_and_continue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepClaim {
    /// The node holding the claim.
    pub node: String,
    /// The scheduler's time: the next step is taken only if it is due by then.
    pub now_ms: i64,
    /// The kept claim's new lease: `now_ms` plus the lease.
    pub until_ms: i64,
}

/// A tenant with due work, and how many of its runs may be in flight at once across all
/// nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSlots {
    pub tenant: String,
    pub concurrency: usize,
}

/// A run's claim as stored: who holds it until when (none: free), and the number of the
/// latest claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimState {
    pub owner: Option<String>,
    pub until_ms: Option<i64>,
    pub seq: u64,
}

impl Store {
    /// The tenants that have unfinished runs, in name order: a loose index scan of
    /// `runs_due_by_tenant`, one seek per tenant. The scheduler asks each one's concurrency
    /// before claiming.
    pub fn queued_tenants(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&queued_tenants_sql(conn.is_postgres()))?;
            let tenants = stmt
                .query_map(&[], |r| r.get(0))?
                .collect::<crate::Result<_>>()?;
            Ok(tenants)
        })
    }

    /// Claims due runs for `node` until `now_ms + lease_ms`, in one write: at most
    /// `per_tenant` of each tenant's and `limit` in all, taken in turns across `tenants`
    /// in the order given (the caller rotates it, starting after the tenant it served
    /// last), each tenant up to its concurrency counted across nodes (its runs with a live
    /// claim). A run is claimable when it is due, unfinished, and its claim is free or
    /// expired (`claim_until < now_ms`). Each claim bumps the run's `claim_seq`.
    pub async fn claim_due_runs(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: u64,
        per_tenant: usize,
        limit: usize,
        tenants: Vec<TenantSlots>,
    ) -> Result<Vec<Claimed>> {
        if limit == 0 || tenants.is_empty() {
            return Ok(Vec::new());
        }
        let node = node.to_owned();
        let until = now_ms.saturating_add(lease_ms.min(i64::MAX as u64) as i64);
        self.writer
            .write(move |tx| {
                let pg = tx.is_postgres();
                // PostgreSQL: nodes claim at once, each in its own transaction. A tenant's
                // advisory lock (held to the commit) keeps two nodes from both counting a
                // free slot and taking it; `SKIP LOCKED` keeps them off each other's rows,
                // with the limit inside the locking select, so it holds.
                let mut live = tx.prepare_cached(&format!(
                    "SELECT COUNT(*) FROM runs WHERE tenant = ?1 AND claim_owner IS NOT NULL
                     AND claim_until >= ?2 AND {UNFINISHED}"
                ))?;
                let mut oldest = tx.prepare_cached(&format!(
                    "SELECT id FROM runs WHERE tenant = ?1 AND {UNFINISHED} AND due_at <= ?2
                     AND (claim_until IS NULL OR claim_until < ?2)
                     ORDER BY due_at, id LIMIT ?3{}",
                    if pg { " FOR UPDATE SKIP LOCKED" } else { "" }
                ))?;
                // The tenant's lock is tried, not waited for: a node that finds another
                // claiming for the tenant skips it this round (its batches lock tenants in
                // different orders, and waiting could deadlock two nodes' transactions).
                let mut tenant_lock = if pg {
                    Some(tx.prepare_cached(
                        "SELECT pg_try_advisory_xact_lock(7270617, hashtext(?1))",
                    )?)
                } else {
                    None
                };
                let mut queues = Vec::with_capacity(tenants.len());
                for slots in &tenants {
                    if let Some(lock) = tenant_lock.as_mut() {
                        let taken: bool = lock.query_row(params![slots.tenant], |r| r.get(0))?;
                        if !taken {
                            continue;
                        }
                    }
                    let held: u64 = live.query_row(params![slots.tenant, now_ms], |r| r.get(0))?;
                    let room = slots
                        .concurrency
                        .saturating_sub(held as usize)
                        .min(per_tenant)
                        .min(limit);
                    if room == 0 {
                        continue;
                    }
                    let ids: Vec<String> = oldest
                        .query_map(params![slots.tenant, now_ms, room as i64], |r| r.get(0))?
                        .collect::<crate::Result<_>>()?;
                    if !ids.is_empty() {
                        queues.push(ids.into_iter());
                    }
                }
                // Turn by turn: each tenant's first, then each tenant's second, ...
                let mut order = Vec::new();
                while order.len() < limit {
                    let before = order.len();
                    for ids in &mut queues {
                        if order.len() >= limit {
                            break;
                        }
                        if let Some(id) = ids.next() {
                            order.push(id);
                        }
                    }
                    if order.len() == before {
                        break;
                    }
                }
                // Only a claim still free or expired is taken: a row another node claimed
                // meanwhile is left alone. The step's claims are counted in the same write,
                // so a crash at any point of the step has counted it.
                // The run comes back with its claim: one statement a run.
                let mut claim = tx.prepare_cached(&format!(
                    "UPDATE runs SET claim_owner = ?1, claim_until = ?2, claim_seq = claim_seq + 1,
                        step_claims = CASE WHEN claim_step = step_seq THEN step_claims + 1 ELSE 1 END,
                        claim_step = step_seq
                     WHERE id = ?3 AND (claim_until IS NULL OR claim_until < ?4)
                     RETURNING {RUN_COLUMNS}, claim_seq, step_claims"
                ))?;
                let mut claimed = Vec::with_capacity(order.len());
                for id in order {
                    let Some((run, claim_seq, step_claims)) = claim
                        .query_row(params![node, until, id, now_ms], |r| {
                            Ok((run_from_row(r)?, r.get::<u64>(16)?, r.get::<u32>(17)?))
                        })
                        .optional()?
                    else {
                        continue;
                    };
                    claimed.push(Claimed {
                        run: run?,
                        claim_seq,
                        step_claims,
                    });
                }
                Ok(claimed)
            })
            .await
    }

    /// Records that the run's current step, claimed under `claim_seq`, starts alone in its
    /// host (no other step beside it: coda-flow's suspects), before it runs, so a host that
    /// dies in it has counted the start. Returns how many times this step has started
    /// alone, this start included; none when the claim was lost (another node holds the
    /// run), and the step must not run.
    pub async fn start_alone(&self, run_id: &str, claim_seq: u64) -> Result<Option<u32>> {
        let run_id = run_id.to_owned();
        self.writer
            .write(move |tx| {
                tx.prepare_cached(
                        "UPDATE runs SET
                            solo_starts = CASE WHEN solo_step = step_seq THEN solo_starts + 1 ELSE 1 END,
                            solo_step = step_seq
                         WHERE id = ?1 AND claim_seq = ?2 AND claim_owner IS NOT NULL
                         RETURNING solo_starts",
                    )?
                    .query_row(params![run_id, claim_seq], |r| r.get::<u32>(0))
                    .optional()
            })
            .await
    }

    /// The heartbeat: extends `node`'s claims on these runs (each with the claim's number)
    /// to `until_ms`, in one statement. Returns the runs whose claim was renewed; a run left
    /// out was claimed by another node (its lease had run out) or released, and its step
    /// must not commit.
    pub async fn renew_claims(
        &self,
        node: &str,
        claims: &[(String, u64)],
        until_ms: i64,
    ) -> Result<Vec<String>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let node = node.to_owned();
        let claims = serde_json::to_string(claims)?;
        self.writer
            .write(move |tx| {
                let mine = if tx.is_postgres() {
                    "SELECT e ->> 0 AS id, (e ->> 1)::BIGINT AS seq
                     FROM jsonb_array_elements(CAST(?3 AS TEXT)::jsonb) AS e"
                } else {
                    "SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS seq
                     FROM json_each(?3)"
                };
                let mut stmt = tx.prepare_cached(&format!(
                    "UPDATE runs SET claim_until = ?1
                     FROM ({mine}) AS mine
                     WHERE runs.id = mine.id AND runs.claim_seq = mine.seq
                       AND runs.claim_owner = ?2
                     RETURNING runs.id"
                ))?;
                let renewed = stmt
                    .query_map(params![until_ms, node, claims], |r| r.get(0))?
                    .collect::<crate::Result<_>>()?;
                Ok(renewed)
            })
            .await
    }

    /// Gives up `node`'s claims on these runs (each with the claim's number), so another
    /// node need not wait for the lease to run out: a step that did not commit (its run
    /// moved on) releases its claim this way. A claim since taken by another is left alone.
    pub async fn release_claims(&self, node: &str, claims: &[(String, u64)]) -> Result<()> {
        if claims.is_empty() {
            return Ok(());
        }
        let node = node.to_owned();
        let claims = claims.to_vec();
        self.writer
            .write(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "UPDATE runs SET claim_owner = NULL, claim_until = NULL
                     WHERE id = ?1 AND claim_seq = ?2 AND claim_owner = ?3",
                )?;
                for (id, seq) in &claims {
                    stmt.execute(params![id, seq, node])?;
                }
                tx.made_work();
                Ok(())
            })
            .await
    }

    /// Gives up every claim `node` holds: a node restarted under the same id takes its runs
    /// back at once rather than after its old lease. Node ids must be unique among the
    /// nodes that are up. Returns how many claims were released.
    pub async fn release_node_claims(&self, node: &str) -> Result<usize> {
        let node = node.to_owned();
        self.writer
            .write(move |tx| {
                let released = tx
                    .prepare_cached(
                        "UPDATE runs SET claim_owner = NULL, claim_until = NULL
                         WHERE claim_owner = ?1",
                    )?
                    .execute(params![node])? as usize;
                if released > 0 {
                    tx.made_work();
                }
                Ok(released)
            })
            .await
    }

    /// When a run may next be claimable, as two times: the earliest due time of an
    /// unfinished run whose claim is free or expired, and the earliest time a live claim on
    /// an unfinished run runs out (its node may have died). Either is none when there is
    /// no such run.
    pub fn next_claimable(&self, now_ms: i64) -> Result<(Option<i64>, Option<i64>)> {
        self.read(|conn| {
            let due: Option<i64> = conn
                .prepare_cached(&format!(
                    "SELECT due_at FROM runs WHERE {UNFINISHED} AND due_at IS NOT NULL
                     AND (claim_until IS NULL OR claim_until < ?1)
                     ORDER BY due_at LIMIT 1"
                ))?
                .query_row(params![now_ms], |r| r.get(0))
                .optional()?;
            let expiry: Option<i64> = conn
                .prepare_cached(&format!(
                    "SELECT MIN(claim_until) FROM runs WHERE claim_owner IS NOT NULL
                     AND claim_until >= ?1 AND {UNFINISHED}"
                ))?
                .query_row(params![now_ms], |r| r.get(0))?;
            Ok((due, expiry))
        })
    }

    /// A run's claim as stored (for tests and operators).
    pub fn claim_of(&self, run_id: &str) -> Result<Option<ClaimState>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT claim_owner, claim_until, claim_seq FROM runs WHERE id = ?1",
            )?
            .query_row(params![run_id], |r| {
                Ok(ClaimState {
                    owner: r.get(0)?,
                    until_ms: r.get(1)?,
                    seq: r.get(2)?,
                })
            })
            .optional()
        })
    }

    /// Commits a step run under a claim: fenced by the step sequence and the claim's
    /// number, and releasing the claim in the same write. A claim taken over by another
    /// node (or a run moved on) is [`crate::StoreError::Conflict`], and nothing is written.
    pub async fn commit_claimed_step(
        &self,
        commit: crate::journal::StepCommit,
        claim_seq: u64,
    ) -> Result<()> {
        self.commit_fenced(commit, claim_seq, None)
            .await
            .map(|_| ())
    }

    /// [`Store::commit_claimed_step`], keeping the claim for the run's next step when the
    /// commit leaves the run due now (`ready`, `due_at <= keep.now_ms`): the claim's owner
    /// stays `keep.node`, its lease runs to `keep.until_ms`, its number (the fence) stays
    /// `claim_seq`, and the next step's start is counted as a claim counts it
    /// (`step_claims`), all in the commit's own write (`CLAIM_AFTER_COMMIT`). Returns the run as
    /// committed, under the kept claim, or `None` when the run is not due now (finished,
    /// waiting, paused, retrying later): the claim was then released as by
    /// [`Store::commit_claimed_step`].
    ///
    /// A continuation is a claim like any other: the heartbeat renews it, another node
    /// takes the run only once its lease runs out, a cancel moves the step sequence on so
    /// the next commit under it is refused, and a host that dies in the next step has
    /// counted that step's start.
    pub async fn commit_claimed_step_and_continue(
        &self,
        commit: crate::journal::StepCommit,
        claim_seq: u64,
        keep: KeepClaim,
    ) -> Result<Option<Claimed>> {
        self.commit_fenced(commit, claim_seq, Some(keep)).await
    }

    /// Journals a capability call's result made under a claim: fenced like
    /// [`Store::commit_claimed_step`] (without releasing the claim).
    pub async fn record_claimed_effect(
        &self,
        run_id: &str,
        effect: crate::effects::EffectRecord,
        claim_seq: u64,
    ) -> Result<()> {
        self.record_effect_fenced(run_id, effect, Some(claim_seq))
            .await
    }
}

/// The claim as a step's commit leaves it (part of the commit's one `UPDATE`, `journal.rs`,
/// whose parameters it shares): kept for the run's next step when the commit asks to
/// (`?30`, the node) and leaves the run ready and due by `?32` (now): the lease then runs to
/// `?31`, and the next step's start is counted as a claim counts it (the columns on the
/// right are the row's before the commit, whose step sequence it moves on by one). Else
/// released. The fence (`claim_seq`) is the commit's own.
pub(crate) const CLAIM_AFTER_COMMIT: &str = "
        claim_owner = CASE WHEN ?30 IS NOT NULL AND ?1 = 'ready' AND ?8 <= ?32 THEN ?30 END,
        claim_until = CASE WHEN ?30 IS NOT NULL AND ?1 = 'ready' AND ?8 <= ?32 THEN ?31 END,
        step_claims = CASE WHEN ?30 IS NOT NULL AND ?1 = 'ready' AND ?8 <= ?32 THEN
            CASE WHEN claim_step = step_seq + 1 THEN step_claims + 1 ELSE 1 END
            ELSE step_claims END,
        claim_step = CASE WHEN ?30 IS NOT NULL AND ?1 = 'ready' AND ?8 <= ?32 THEN step_seq + 1
            ELSE claim_step END";

/// The loose index scan behind [`Store::queued_tenants`]. SQLite's planner, left to itself,
/// takes `runs_status_created` (tenant, status, …) for `MIN(tenant)` and walks every finished
/// run of the first tenant before its first unfinished one: a pick then cost O(finished
/// runs), and 100,000 runs slowed the service threefold. The partial index holds unfinished
/// runs only. PostgreSQL has no such hint, and plans the partial index by its size.
fn queued_tenants_sql(postgres: bool) -> String {
    let runs = if postgres {
        "runs"
    } else {
        "runs INDEXED BY runs_due_by_tenant"
    };
    format!(
        "WITH RECURSIVE queued (tenant) AS (
             SELECT MIN(tenant) FROM {runs} WHERE {UNFINISHED}
             UNION ALL
             SELECT (SELECT MIN(tenant) FROM {runs}
                     WHERE {UNFINISHED} AND tenant > queued.tenant)
             FROM queued WHERE queued.tenant IS NOT NULL
         )
         SELECT tenant FROM queued WHERE tenant IS NOT NULL"
    )
}

#[cfg(test)]
mod tests {
    /// Every read of `runs` in the scheduler's tenant scan goes through the partial index of
    /// unfinished runs, so its cost does not grow with the finished ones.
    #[test]
    fn the_queued_tenants_scan_reads_only_unfinished_runs() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::schema::migrate_sqlite(&mut conn).unwrap();
        let sql = format!("EXPLAIN QUERY PLAN {}", super::queued_tenants_sql(false));
        let mut stmt = conn.prepare(&sql).unwrap();
        let steps: Vec<String> = stmt
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let reads: Vec<&String> = steps.iter().filter(|s| s.contains(" runs ")).collect();
        assert_eq!(reads.len(), 2, "{steps:?}");
        assert!(
            reads.iter().all(|s| s.contains("runs_due_by_tenant")),
            "{steps:?}"
        );
    }
}
