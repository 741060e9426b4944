//! Fair scheduling across tenants, and backpressure.
//!
//! The scheduler claims due runs (`Store::claim_due_runs`, one write): each tenant's oldest
//! few, served in turns (one step per tenant per round, starting after the tenant this node
//! served last), each tenant up to its concurrency counted across every node sharing the
//! database (its runs with a live claim), until the global bound
//! ([`crate::FlowLimits::batch`]) is reached. A tenant with ten thousand due runs and a
//! tenant with one are served alike: the second's run starts at the next pick, not after
//! the first's backlog.
//!
//! Steps in flight are also counted per tenant in memory (for metrics and Retry-After), by
//! a guard that each spawned step holds ([`InFlight`]): a step that finishes, panics or is
//! dropped at a stop gives its slot back.
//!
//! Backpressure: a tenant whose due runs reach its queue bound ([`crate::FlowLimits::tenant_queue`]
//! or its own) is refused new runs ([`QueueFull`], the API's 429) until the backlog drains;
//! the check happens before anything is written, so a refused event changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coda_store::{Claimed, TenantSlots};

use crate::{Engine, Result};

/// While steps finish quickly, the queue is read at most this often (a pick after every
/// step would read it thousands of times a second); a started run or a delivered event
/// still wakes the scheduler at once, subject to this gap.
pub(crate) const PICK_GAP: Duration = Duration::from_millis(5);

/// The Retry-After when a tenant's drain rate is not known yet (no step finished lately).
const DEFAULT_RETRY_AFTER_SECS: u64 = 5;
/// Retry-After is never longer than this: the drain rate is an estimate.
const MAX_RETRY_AFTER_SECS: u64 = 60;
/// A drain rate older than this is not trusted.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// A tenant's own bounds, where its operator set them; `None` takes the engine's default
/// ([`crate::FlowLimits::tenant_concurrency`], [`crate::FlowLimits::tenant_queue`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimit {
    /// Steps of this tenant's runs in flight at once.
    pub concurrency: Option<usize>,
    /// Due runs this tenant may have waiting before new runs are refused.
    pub queue: Option<u64>,
}

/// Where the scheduler finds each tenant's bounds (the operator's ceiling for the tenant).
/// Asked on the scheduler's path for every tenant with due work at every pick, and at
/// every event that would start a run: an implementation reading a database should cache.
pub trait TenantLimits: Send + Sync {
    fn limits(&self, tenant: &str) -> TenantLimit;
}

impl<F: Fn(&str) -> TenantLimit + Send + Sync> TenantLimits for F {
    fn limits(&self, tenant: &str) -> TenantLimit {
        self(tenant)
    }
}

/// No tenant has bounds of its own: every one gets the engine's defaults.
pub struct DefaultLimits;

impl TenantLimits for DefaultLimits {
    fn limits(&self, _tenant: &str) -> TenantLimit {
        TenantLimit::default()
    }
}

/// A run refused because its tenant's queue is full. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant `{tenant}` has {queued} runs waiting to run, at its queue limit of {limit}; retry in {retry_after_secs} s"
)]
pub struct QueueFull {
    pub tenant: String,
    /// Due runs counted (at most the limit: the count stops there).
    pub queued: u64,
    pub limit: u64,
    /// When a retry may succeed, from the tenant's recent drain rate.
    pub retry_after_secs: u64,
}

#[derive(Default)]
pub(crate) struct Fair {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    in_flight: HashMap<String, usize>,
    /// The tenant served last: the next round starts after it.
    last_served: Option<String>,
    /// Steps finished per tenant lately: the drain rate behind Retry-After.
    rates: HashMap<String, Rate>,
}

struct Rate {
    window_start: Instant,
    count: u64,
    /// Steps per second over the last full window.
    per_sec: f64,
    measured_at: Option<Instant>,
}

impl Fair {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Steps in flight per tenant, for metrics.
    pub(crate) fn in_flight(&self) -> Vec<(String, usize)> {
        let mut all: Vec<_> = self
            .lock()
            .in_flight
            .iter()
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        all.sort();
        all
    }

    fn finished(&self, tenant: &str) {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(n) = state.in_flight.get_mut(tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.in_flight.remove(tenant);
            }
        }
        let rate = state.rates.entry(tenant.to_owned()).or_insert(Rate {
            window_start: now,
            count: 0,
            per_sec: 0.0,
            measured_at: None,
        });
        rate.count += 1;
        let elapsed = now.duration_since(rate.window_start);
        if elapsed >= RATE_WINDOW {
            rate.per_sec = rate.count as f64 / elapsed.as_secs_f64();
            rate.measured_at = Some(now);
            rate.count = 0;
            rate.window_start = now;
        }
    }

    /// Seconds until `excess` more of the tenant's runs have drained, at its recent rate.
    fn retry_after(&self, tenant: &str, excess: u64) -> u64 {
        let state = self.lock();
        let Some(rate) = state.rates.get(tenant) else {
            return DEFAULT_RETRY_AFTER_SECS;
        };
        let per_sec = match rate.measured_at {
            Some(at) if at.elapsed() <= 2 * RATE_WINDOW && rate.per_sec > 0.0 => rate.per_sec,
            // The current window, if it says anything yet.
            _ => {
                let elapsed = rate.window_start.elapsed().as_secs_f64();
                if rate.count == 0 || elapsed <= 0.0 {
                    return DEFAULT_RETRY_AFTER_SECS;
                }
                rate.count as f64 / elapsed
            }
        };
        ((excess as f64 / per_sec).ceil() as u64).clamp(1, MAX_RETRY_AFTER_SECS)
    }

    /// The tenants in name order, rotated to start after the one served last.
    fn rotated(&self, mut tenants: Vec<String>) -> Vec<String> {
        tenants.sort();
        if let Some(last) = &self.lock().last_served {
            let first = tenants.partition_point(|t| t <= last);
            tenants.rotate_left(first);
        }
        tenants
    }

    /// A slot of `tenant`'s, held by a step from its claim until it is over.
    fn hold(self: &Arc<Self>, tenant: &str) -> InFlight {
        let mut state = self.lock();
        *state.in_flight.entry(tenant.to_owned()).or_insert(0) += 1;
        state.last_served = Some(tenant.to_owned());
        InFlight {
            fair: self.clone(),
            tenant: tenant.to_owned(),
        }
    }
}

/// A step's slot in its tenant's concurrency, given back when dropped.
pub(crate) struct InFlight {
    fair: Arc<Fair>,
    tenant: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.fair.finished(&self.tenant);
    }
}

impl Engine {
    /// Sets where each tenant's concurrency and queue bound come from (by default every
    /// tenant gets [`crate::FlowLimits::tenant_concurrency`] and [`crate::FlowLimits::tenant_queue`]).
    pub fn with_tenant_limits(mut self, limits: Arc<dyn TenantLimits>) -> Self {
        self.tenant_limits = limits;
        self
    }

    /// A tenant's steps in flight at once across every node. Not clamped to this node's
    /// `batch`: one node's share is bounded by its batch when it claims, and clamping the
    /// tenant's total to one node's batch let the first node to claim hold all of it, with
    /// the claims its continuations keep, while the others found no room.
    fn tenant_concurrency(&self, tenant: &str) -> usize {
        self.tenant_limits
            .limits(tenant)
            .concurrency
            .unwrap_or(self.limits.tenant_concurrency)
            .max(1)
    }

    fn tenant_queue(&self, tenant: &str) -> u64 {
        self.tenant_limits
            .limits(tenant)
            .queue
            .unwrap_or(self.limits.tenant_queue)
    }

    /// Claims due runs to step now, at most `free`, fairly across tenants: in turns
    /// starting after the tenant this node served last, each tenant up to its concurrency
    /// counted across every node sharing the database (`Store::claim_due_runs`). Each comes
    /// with its claim's number and its slot in its tenant's concurrency here.
    pub(crate) async fn claim_due(&self, free: usize) -> Result<Vec<(Claimed, InFlight)>> {
        if free == 0 {
            return Ok(Vec::new());
        }
        let tenants = self.fair.rotated(self.store.queued_tenants()?);
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        // Asked outside the store's write: the tenant-limits hook is someone else's code.
        let slots = tenants
            .into_iter()
            .map(|tenant| TenantSlots {
                concurrency: self.tenant_concurrency(&tenant),
                tenant,
            })
            .collect();
        self.metrics.picked();
        let claimed = self
            .store
            .claim_due_runs(
                &self.node,
                self.clock.now_ms(),
                self.limits.lease_ms,
                self.limits.batch.max(1),
                free,
                slots,
            )
            .await?;
        Ok(claimed
            .into_iter()
            .map(|c| {
                let slot = self.fair.hold(&c.run.tenant);
                (c, slot)
            })
            .collect())
    }

    /// Whether `tenant` may start another run now: `Err(QueueFull)` when its due runs have
    /// reached its queue bound. Call it before writing anything the run depends on, so a
    /// refusal leaves nothing half-done. The bound is soft by the requests checked at the
    /// same moment: each sees the same count.
    pub fn admit(&self, tenant: &str) -> Result<std::result::Result<(), QueueFull>> {
        let limit = self.tenant_queue(tenant);
        if limit == u64::MAX {
            // No bound (a local run's): nothing to count, and counting a backlog of a
            // million runs at every event would make starting them quadratic.
            return Ok(Ok(()));
        }
        let queued = self.store.queued_runs(tenant, self.clock.now_ms(), limit)?;
        if queued < limit {
            return Ok(Ok(()));
        }
        Ok(Err(QueueFull {
            tenant: tenant.to_owned(),
            queued,
            limit,
            retry_after_secs: self.fair.retry_after(tenant, queued + 1 - limit),
        }))
    }

    /// Steps in flight per tenant right now.
    pub fn steps_in_flight(&self) -> Vec<(String, usize)> {
        self.fair.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_served_in_turns_starting_after_the_last_served() {
        let fair = Arc::new(Fair::default());
        let all = || vec!["c".to_string(), "a".into(), "b".into()];
        assert_eq!(fair.rotated(all()), ["a", "b", "c"]);
        let slot = fair.hold("a");
        assert_eq!(fair.rotated(all()), ["b", "c", "a"]);
        let more = [fair.hold("c"), fair.hold("c")];
        assert_eq!(fair.rotated(all()), ["a", "b", "c"]);
        assert_eq!(
            fair.in_flight(),
            [("a".to_string(), 1), ("c".to_string(), 2)]
        );
        // Slots come back when the guards drop.
        drop(slot);
        drop(more);
        assert!(fair.in_flight().is_empty());
    }

    #[test]
    fn retry_after_follows_the_drain_rate() {
        let fair = Fair::default();
        assert_eq!(fair.retry_after("a", 100), DEFAULT_RETRY_AFTER_SECS);
        {
            let mut state = fair.lock();
            state.rates.insert(
                "a".into(),
                Rate {
                    window_start: Instant::now(),
                    count: 0,
                    per_sec: 50.0,
                    measured_at: Some(Instant::now()),
                },
            );
        }
        assert_eq!(fair.retry_after("a", 100), 2);
        assert_eq!(fair.retry_after("a", 1), 1);
        assert_eq!(fair.retry_after("a", 1_000_000), MAX_RETRY_AFTER_SECS);
    }
}
