//! This node's claims on the runs it is stepping, and the heartbeat that renews them.
//!
//! Every step the scheduler starts runs under a claim taken in the store
//! (`Store::claim_due_runs`); the claim is registered here until the step is over. Every
//! `lease / 3` the heartbeat renews all of them in one write. A claim the store did not
//! renew was taken over by another node (this one was paused or cut off past its lease):
//! its step is abandoned before its commit, and would be refused by the claim fence anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::Engine;

#[derive(Default)]
pub(crate) struct Claims {
    held: Mutex<HashMap<String, Held>>,
}

struct Held {
    seq: u64,
    lost: Arc<Notify>,
}

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a claim for the heartbeat; the guard unregisters it. The `Notify` is told
    /// if the claim is lost.
    pub(crate) fn hold(self: &Arc<Self>, run: &str, seq: u64) -> (ClaimGuard, Arc<Notify>) {
        let lost = Arc::new(Notify::new());
        self.lock().insert(
            run.to_owned(),
            Held {
                seq,
                lost: lost.clone(),
            },
        );
        (
            ClaimGuard {
                claims: self.clone(),
                run: run.to_owned(),
                seq,
            },
            lost,
        )
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        self.lock()
            .iter()
            .map(|(run, held)| (run.clone(), held.seq))
            .collect()
    }

    /// Tells the steps of the claims in `asked` that the store did not renew that they lost
    /// them (a step already over has unregistered and hears nothing).
    fn lost(&self, asked: &[(String, u64)], renewed: &[String]) -> usize {
        let held = self.lock();
        let mut lost = 0;
        for (run, seq) in asked {
            if renewed.iter().any(|r| r == run) {
                continue;
            }
            if let Some(h) = held.get(run)
                && h.seq == *seq
            {
                tracing::warn!(%run, claim = seq, "the run's claim was taken over: its step is abandoned");
                h.lost.notify_one();
                lost += 1;
            }
        }
        lost
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
        if held.get(&self.run).is_some_and(|h| h.seq == self.seq) {
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
        let asked = self.claims.snapshot();
        if asked.is_empty() {
            return;
        }
        let until = self
            .clock
            .now_ms()
            .saturating_add(self.limits.lease_ms.min(i64::MAX as u64) as i64);
        match self.store.renew_claims(&self.node, &asked, until).await {
            Ok(renewed) => {
                self.claims.lost(&asked, &renewed);
            }
            // Not renewed this time: the next beat tries again; if the lease runs out
            // meanwhile, another node may take the runs and these steps' commits are
            // refused by the claim fence.
            Err(e) => tracing::warn!("renewing this node's claims failed: {e}"),
        }
    }
}
