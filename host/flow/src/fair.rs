//! Fair scheduling across tenants, and backpressure.
//!
//! The scheduler reads due runs with a window function that takes each tenant's oldest few
//! (`Store::due_runs_fair`), then serves tenants in turns: one step per tenant per round,
//! starting after the tenant served last, skipping a tenant that has its concurrency's worth
//! of steps in flight, until the global bound ([`crate::FlowLimits::batch`]) is reached. A tenant
//! with ten thousand due runs and a tenant with one are served alike: the second's run
//! starts at the next pick, not after the first's backlog.
//!
//! Steps in flight are counted per tenant in memory, by a guard that each spawned step
//! holds ([`InFlight`]): a step that finishes, panics or is dropped at a stop gives its slot
//! back.
//!
//! Backpressure: a tenant whose due runs reach its queue bound ([`crate::FlowLimits::tenant_queue`]
//! or its own) is refused new runs ([`QueueFull`], the API's 429) until the backlog drains;
//! the check happens before anything is written, so a refused event changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coda_store::{DueRun, RunRecord};

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

    /// The most steps in flight of any one tenant.
    fn busiest(&self) -> usize {
        self.lock().in_flight.values().copied().max().unwrap_or(0)
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

    /// Takes up to `free` of `due` in turns across tenants, one per tenant per round,
    /// starting after the tenant served last; a tenant at its concurrency is skipped.
    fn take(
        self: &Arc<Self>,
        due: Vec<DueRun>,
        free: usize,
        running: &HashSet<String>,
        concurrency: impl Fn(&str) -> usize,
    ) -> Vec<(DueRun, InFlight)> {
        let mut queues: BTreeMap<String, VecDeque<DueRun>> = BTreeMap::new();
        for run in due {
            if !running.contains(&run.id) {
                queues.entry(run.tenant.clone()).or_default().push_back(run);
            }
        }
        // Asked before the lock: the tenant-limits hook is someone else's code.
        let limits: HashMap<String, usize> = queues
            .keys()
            .map(|t| (t.clone(), concurrency(t).max(1)))
            .collect();
        let mut state = self.lock();
        // Tenants in name order, rotated to start after the one served last.
        let mut order: Vec<String> = queues.keys().cloned().collect();
        if let Some(last) = &state.last_served {
            let first = order.partition_point(|t| t <= last);
            order.rotate_left(first);
        }
        let mut taken = Vec::new();
        while taken.len() < free {
            let mut progressed = false;
            for tenant in &order {
                if taken.len() >= free {
                    break;
                }
                let busy = state.in_flight.get(tenant).copied().unwrap_or(0);
                if busy >= limits[tenant] {
                    continue;
                }
                let Some(run) = queues.get_mut(tenant).and_then(VecDeque::pop_front) else {
                    continue;
                };
                *state.in_flight.entry(tenant.clone()).or_insert(0) += 1;
                state.last_served = Some(tenant.clone());
                taken.push((
                    run,
                    InFlight {
                        fair: self.clone(),
                        tenant: tenant.clone(),
                    },
                ));
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        taken
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

    fn tenant_concurrency(&self, tenant: &str) -> usize {
        self.tenant_limits
            .limits(tenant)
            .concurrency
            .unwrap_or(self.limits.tenant_concurrency)
            .clamp(1, self.limits.batch.max(1))
    }

    fn tenant_queue(&self, tenant: &str) -> u64 {
        self.tenant_limits
            .limits(tenant)
            .queue
            .unwrap_or(self.limits.tenant_queue)
    }

    /// Due runs to step now, at most `free`, fairly across tenants, none of `running`;
    /// each comes with its slot in its tenant's concurrency.
    pub(crate) fn pick_due(
        &self,
        free: usize,
        running: &HashSet<String>,
    ) -> Result<Vec<(RunRecord, InFlight)>> {
        if free == 0 {
            return Ok(Vec::new());
        }
        // A tenant's in-flight runs are still due in the store (until their commit), among
        // its oldest: list enough of each tenant's to see past them. A tenant whose own
        // concurrency is higher than the busiest's reaches it over a few picks.
        let batch = self.limits.batch.max(1);
        let per_tenant = (self.limits.tenant_concurrency.max(self.fair.busiest()))
            .clamp(1, batch)
            .saturating_mul(2);
        let now = self.clock.now_ms();
        let due = self.store.due_runs_fair(now, per_tenant)?;
        let taken = self
            .fair
            .take(due, free, running, |t| self.tenant_concurrency(t));
        let ids: Vec<String> = taken.iter().map(|(due, _)| due.id.clone()).collect();
        let mut taken: HashMap<String, InFlight> = taken
            .into_iter()
            .map(|(due, slot)| (due.id, slot))
            .collect();
        // A run that finished meanwhile is not returned; its slot is given back as the
        // rest of `taken` drops.
        let runs = self.store.due_runs_by_id(&ids, now)?;
        Ok(runs
            .into_iter()
            .filter_map(|run| taken.remove(&run.id).map(|slot| (run, slot)))
            .collect())
    }

    /// Whether `tenant` may start another run now: `Err(QueueFull)` when its due runs have
    /// reached its queue bound. Call it before writing anything the run depends on, so a
    /// refusal leaves nothing half-done. The bound is soft by the requests checked at the
    /// same moment: each sees the same count.
    pub fn admit(&self, tenant: &str) -> Result<std::result::Result<(), QueueFull>> {
        let limit = self.tenant_queue(tenant);
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

    fn run(tenant: &str, n: usize) -> DueRun {
        DueRun {
            id: format!("{tenant}-{n}"),
            tenant: tenant.into(),
        }
    }

    /// Turn order, as the store answers: every tenant's first, then every second, ...
    fn due(backlogs: &[(&str, usize)]) -> Vec<DueRun> {
        let most = backlogs.iter().map(|(_, n)| *n).max().unwrap_or(0);
        (0..most)
            .flat_map(|n| {
                backlogs
                    .iter()
                    .filter(move |(_, len)| n < *len)
                    .map(move |(t, _)| run(t, n))
            })
            .collect()
    }

    fn tenants(taken: &[(DueRun, InFlight)]) -> Vec<&str> {
        taken.iter().map(|(r, _)| r.tenant.as_str()).collect()
    }

    #[test]
    fn tenants_are_served_in_turns_starting_after_the_last_served() {
        let fair = Arc::new(Fair::default());
        let backlog = [("a", 10), ("b", 1), ("c", 3)];
        let none = HashSet::new();
        let first = fair.take(due(&backlog), 4, &none, |_| 8);
        assert_eq!(tenants(&first), ["a", "b", "c", "a"]);
        // The next pick starts after `a`, the tenant served last.
        let running: HashSet<String> = first.iter().map(|(r, _)| r.id.clone()).collect();
        let second = fair.take(due(&backlog), 3, &running, |_| 8);
        assert_eq!(tenants(&second), ["c", "a", "c"]);
        assert_eq!(
            fair.in_flight(),
            [
                ("a".to_string(), 3),
                ("b".to_string(), 1),
                ("c".to_string(), 3)
            ]
        );
        // Slots come back when the guards drop.
        drop(first);
        drop(second);
        assert!(fair.in_flight().is_empty());
    }

    #[test]
    fn a_tenant_at_its_concurrency_is_skipped() {
        let fair = Arc::new(Fair::default());
        let none = HashSet::new();
        let taken = fair.take(due(&[("a", 100), ("b", 100)]), 10, &none, |t| {
            if t == "a" { 2 } else { 5 }
        });
        assert_eq!(tenants(&taken), ["a", "b", "a", "b", "b", "b", "b"]);
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
