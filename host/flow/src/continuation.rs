//! Claim continuation: a run's steps back to back under one claim.
//!
//! A step's commit that leaves its run due now (`ready`, due by the scheduler's clock)
//! keeps the claim in the same write (`Store::commit_claimed_step_and_continue`: the claim's
//! number stays, its lease is renewed, the next step's start is counted in `step_claims`
//! as a claim counts it), and the task that ran the step runs the next one at once. The
//! run does not go back to the queue between its steps: no pick gap, no claim's write, so a
//! five-step run costs one claim and five commits instead of five of each.
//!
//! Everything else about a claim holds as it is: the commit is fenced by the step sequence
//! and the claim's number (a cancel moves the sequence on, so the continuing step's commit
//! is refused and the run stops there), the heartbeat renews the claim (`leases.rs`; the
//! continuation also renews the local deadline from when its commit was sent), a host that
//! dies in a continued step has counted its start (`FlowLimits::max_step_starts` parks it
//! across restarts), and a stopping scheduler starts no continued step: it releases the
//! claim instead.
//!
//! Fairness: the task keeps its tenant's slot (`fair.rs`) while it continues, so a tenant
//! never has more steps in flight than its concurrency. The turns across tenants are taken
//! at each pick, and a continuation is bounded ([`crate::FlowLimits::continue_steps`],
//! [`crate::FlowLimits::continue_ms`]): past the bound the commit releases the claim, the
//! slot is given back and the run is queued again behind the other tenants' runs, so a
//! tenant's long run holds a slot no longer than that before the others get their turn.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coda_store::{Claimed, KeepClaim, RunStatus, StepCommit};

use crate::leases::Lease;
use crate::{Engine, Result};

/// What one claimed step came to.
pub(crate) struct Stepped {
    /// Whether its commit was applied.
    pub(crate) committed: bool,
    /// The run's next step, under the claim the commit kept; none when the claim was
    /// released (or lost).
    pub(crate) next: Option<Claimed>,
}

impl Stepped {
    /// A step after which the claim is not this task's any more.
    pub(crate) fn ended(committed: bool) -> Self {
        Stepped {
            committed,
            next: None,
        }
    }
}

impl Engine {
    /// Runs a claimed run's step, and its next ones while each commit keeps the claim,
    /// within the continuation's bound. Returns the number of steps committed.
    pub(crate) async fn step_and_continue(
        self: &Arc<Self>,
        first: Claimed,
        lease: Arc<Lease>,
    ) -> Result<u64> {
        let began = Instant::now();
        let bound = Duration::from_millis(self.limits.continue_ms);
        let mut claimed = first;
        let mut committed = 0;
        // Steps taken under this claim, the one about to run included.
        let mut taken = 1;
        loop {
            let may_continue = taken < self.limits.continue_steps && began.elapsed() < bound;
            let stepped = self
                .step_contained(claimed, lease.clone(), may_continue)
                .await?;
            committed += u64::from(stepped.committed);
            let Some(next) = stepped.next else {
                return Ok(committed);
            };
            if self.draining() {
                // Stopping: no step starts. The run stays due in the store; give its claim
                // back so that no node waits for the lease.
                let claim = [(next.run.id.clone(), next.claim_seq)];
                if let Err(e) = self.store.release_claims(&self.node, &claim).await {
                    tracing::warn!("releasing a claim failed: {e}");
                }
                return Ok(committed);
            }
            self.metrics.continued();
            taken += 1;
            claimed = next;
        }
    }

    /// How the commit keeps its claim for the run's next step, when it may: the commit
    /// leaves the run due now, the scheduler is not stopping, and this node can still be
    /// sure of the claim.
    pub(crate) fn keep_claim(&self, commit: &StepCommit, lease: &Lease) -> Option<KeepClaim> {
        let now = self.clock.now_ms();
        let due_now = commit.next.status == RunStatus::Ready
            && commit.next.due_at_ms.is_some_and(|due| due <= now);
        (due_now && !self.draining() && lease.is_held()).then(|| KeepClaim {
            node: self.node.clone(),
            now_ms: now,
            until_ms: now.saturating_add(self.limits.lease_ms.min(i64::MAX as u64) as i64),
        })
    }
}
