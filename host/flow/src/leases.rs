//! This node's claims on the runs it is stepping, and the heartbeat that renews them.
//!
//! Every step the scheduler starts runs under a claim taken in the store
//! (`Store::claim_due_runs`); the claim is registered here until the step is over. Every
//! `lease / 3` the heartbeat renews all of them in one write. A claim the store did not
//! renew was taken over by another node (this one was paused or cut off past its lease):
//! its step is abandoned before its commit, and would be refused by the claim fence anyway.
//!
//! The fence guards the store, not the world outside it: a node paused (SIGSTOP, a long GC
//! of the VM) in the middle of a step wakes with an effectful call in hand, and would make
//! it before its heartbeat learns the run was taken over. So each claim also has a local
//! deadline on this process's monotonic clock: the instant the claim or its last successful
//! renewal was *sent*, plus the lease, less a margin for the clocks of the nodes and the
//! database not running alike ([`Lease::is_held`]). Past it the node cannot be sure the
//! claim is still its own: no effectful call starts under it (`effects.rs` asks), and the
//! heartbeat stops renewing it. A paused process's monotonic clock has moved on when it
//! wakes, so the check refuses at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::Engine;

pub(crate) struct Claims {
    held: Mutex<HashMap<String, Arc<Lease>>>,
    /// How long after a claim or renewal is sent this node still trusts it: the lease less
    /// a fifth, for clock skew between this node, the others and the database.
    trust: Duration,
}

/// One claim this node holds on a run, as the step running under it sees it.
pub(crate) struct Lease {
    seq: u64,
    /// The local deadline: past it, this node cannot be sure the claim is still its own.
    deadline: Mutex<Instant>,
    /// Set once the claim is known lost or given up; it never comes back.
    lost: AtomicBool,
    /// Told when `lost` is set, so the step is abandoned where it waits.
    told: Notify,
}

impl Lease {
    /// The claim's number (`claim_seq`), which fences the step's writes in the store.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether this node can be sure it still holds the claim: not lost, and its local
    /// deadline not passed. Past the deadline the claim is given up for good (the step is
    /// abandoned; the run is taken again by whoever claims it next, possibly this node).
    pub(crate) fn is_held(&self) -> bool {
        if self.was_lost() {
            return false;
        }
        if Instant::now() < *self.deadline() {
            return true;
        }
        self.give_up();
        false
    }

    /// Whether the claim was lost or given up.
    pub(crate) fn was_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Resolves once the claim is lost or given up (at once if it already was).
    pub(crate) async fn lost(&self) {
        if self.was_lost() {
            return;
        }
        self.told.notified().await;
    }

    fn give_up(&self) {
        if !self.lost.swap(true, Ordering::SeqCst) {
            // One waiter (the step); the permit is kept if it is not waiting yet.
            self.told.notify_one();
        }
    }

    fn deadline(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Claims {
    pub(crate) fn new(lease_ms: u64) -> Self {
        let lease = Duration::from_millis(lease_ms);
        Claims {
            held: Mutex::default(),
            trust: lease - lease / 5,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Lease>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a claim for the heartbeat; the guard unregisters it. `sent` is when the
    /// claim's write was sent (taken before it): its local deadline counts from there.
    pub(crate) fn hold(
        self: &Arc<Self>,
        run: &str,
        seq: u64,
        sent: Instant,
    ) -> (ClaimGuard, Arc<Lease>) {
        let lease = Arc::new(Lease {
            seq,
            deadline: Mutex::new(sent + self.trust),
            lost: AtomicBool::new(false),
            told: Notify::new(),
        });
        self.lock().insert(run.to_owned(), lease.clone());
        (
            ClaimGuard {
                claims: self.clone(),
                run: run.to_owned(),
                seq,
            },
            lease,
        )
    }

    /// A commit kept `lease`'s claim for the run's next step, renewing it in the store (the
    /// commit was sent at `sent`): its local deadline moves as a renewal's does.
    pub(crate) fn kept(&self, lease: &Lease, sent: Instant) {
        let mut deadline = lease.deadline();
        *deadline = (*deadline).max(sent + self.trust);
    }

    /// The claims to renew now. A claim whose local deadline has passed is not renewed
    /// (this node woke from a pause, or its renewals failed too long): it is given up, and
    /// its step abandoned, even if the store would still renew it.
    fn to_renew(&self) -> Vec<(String, u64)> {
        self.lock()
            .iter()
            .filter(|(_, lease)| lease.is_held())
            .map(|(run, lease)| (run.clone(), lease.seq))
            .collect()
    }

    /// Moves the local deadline of the claims the store renewed (the renewal was sent at
    /// `sent`), and gives up those it did not: another node took them over, or they were
    /// released. A step already over has unregistered and hears nothing.
    fn renewed(&self, asked: &[(String, u64)], renewed: &[String], sent: Instant) {
        let held = self.lock();
        for (run, seq) in asked {
            let Some(lease) = held.get(run).filter(|l| l.seq == *seq) else {
                continue;
            };
            if renewed.iter().any(|r| r == run) {
                let mut deadline = lease.deadline();
                *deadline = (*deadline).max(sent + self.trust);
                continue;
            }
            tracing::warn!(%run, claim = seq, "the run's claim was taken over: its step is abandoned");
            lease.give_up();
        }
    }
}

/// A step's registration with the heartbeat, removed when the step is over.
pub(crate) struct ClaimGuard {
    claims: Arc<Claims>,
    run: String,
    seq: u64,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let mut held = self.claims.lock();
        if held.get(&self.run).is_some_and(|l| l.seq == self.seq) {
            held.remove(&self.run);
        }
    }
}

/// Aborts the task when dropped: the heartbeat lives as long as the scheduler's pass.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Engine {
    /// This node's id in the claims it takes (`with_node_id`; by default a fresh UUID).
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Sets this node's id. Ids must be unique among the nodes that are up; a node
    /// restarted under its old id takes its old claims back at once (its first pass
    /// releases them) instead of waiting for their lease to run out.
    pub fn with_node_id(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }

    /// Renews this node's claims every `lease / 3`, until the returned guard drops.
    pub(crate) fn start_heartbeat(self: &Arc<Self>) -> AbortOnDrop {
        let engine = self.clone();
        let every = std::time::Duration::from_millis((self.limits.lease_ms / 3).max(1));
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                engine.renew_claims().await;
            }
        }))
    }

    async fn renew_claims(&self) {
        let asked = self.claims.to_renew();
        if asked.is_empty() {
            return;
        }
        // Taken before the write is sent: the store's new lease starts no earlier.
        let sent = Instant::now();
        let until = self
            .clock
            .now_ms()
            .saturating_add(self.limits.lease_ms.min(i64::MAX as u64) as i64);
        match self.store.renew_claims(&self.node, &asked, until).await {
            Ok(renewed) => {
                self.claims.renewed(&asked, &renewed, sent);
            }
            // Not renewed this time: the next beat tries again; if the lease runs out
            // meanwhile, another node may take the runs: these steps make no further
            // effectful call (their local deadline passes first) and their commits are
            // refused by the claim fence.
            Err(e) => tracing::warn!("renewing this node's claims failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, seq: u64) -> (String, u64) {
        (name.to_owned(), seq)
    }

    #[tokio::test]
    async fn a_claim_is_trusted_for_the_lease_less_a_fifth_from_when_it_was_sent() {
        let claims = Arc::new(Claims::new(1_000));
        let now = Instant::now();
        let (_fresh, fresh) = claims.hold("fresh", 1, now);
        // Sent 801 ms ago: the store may still hold it for this node for 199 ms, but the
        // other nodes' clocks may say otherwise.
        let (_stale, stale) = claims.hold("stale", 7, now - Duration::from_millis(801));
        assert!(fresh.is_held());
        assert_eq!(*fresh.deadline(), now + Duration::from_millis(800));
        assert!(!stale.is_held());
        assert!(stale.was_lost());
        // Given up for good, and the step waiting on it is told.
        stale.lost().await;
        assert!(!stale.is_held());
        // The heartbeat renews only what this node can be sure it holds.
        assert_eq!(claims.to_renew(), vec![run("fresh", 1)]);
    }

    #[tokio::test]
    async fn a_renewal_moves_the_deadline_and_a_claim_not_renewed_is_given_up() {
        let claims = Arc::new(Claims::new(1_000));
        let then = Instant::now() - Duration::from_millis(500);
        let (_a, a) = claims.hold("a", 1, then);
        let (_b, b) = claims.hold("b", 2, then);
        let (_c, c) = claims.hold("c", 3, then);
        let sent = Instant::now();
        // `c` was claimed anew under another number (this node's claim 3 is gone).
        claims.renewed(
            &[run("a", 1), run("b", 2), run("c", 9)],
            &["a".to_owned(), "c".to_owned()],
            sent,
        );
        assert_eq!(*a.deadline(), sent + Duration::from_millis(800));
        assert!(a.is_held());
        assert!(!b.is_held(), "not renewed: taken over or released");
        b.lost().await;
        assert_eq!(*c.deadline(), then + Duration::from_millis(800));
        assert!(
            c.is_held(),
            "a renewal of another claim number says nothing of this one"
        );
        // An older renewal answered late does not move a deadline back.
        claims.renewed(&[run("a", 1)], &["a".to_owned()], then);
        assert_eq!(*a.deadline(), sent + Duration::from_millis(800));
    }

    #[test]
    fn a_finished_steps_claim_is_no_longer_renewed() {
        let claims = Arc::new(Claims::new(1_000));
        let (guard, _lease) = claims.hold("a", 1, Instant::now());
        drop(guard);
        assert!(claims.to_renew().is_empty());
    }
}
