//! `coda-flow`: runs interaction plans durably.
//!
//! The engine takes runs that are due from the store, runs each one's next step (one
//! applet invocation), decides where the run goes (an exit's target, a pause, a wait, another
//! plan, a retry, the error exit, or the end), and commits the step's journal entry and the
//! run's new position together before that run's next step can start.
//!
//! **Architecture Invariant:** this crate never sees wasmtime. Applets are reached through
//! the [`Applets`] trait, which coda-node implements with `coda-runtime`; everything that
//! crosses it is a `coda-types` value.
//!
//! **Architecture Invariant:** a run's progress lives in the store, never only in memory. A
//! host killed at any instant resumes every run at its first uncommitted step.

mod clock;
mod completed;
mod continuation;
mod control;
mod decide;
mod effects;
mod fair;
mod interactions;
mod leases;
mod metrics;
mod scrub;
mod suspects;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coda_plan::{AppletRef, Plan};
use coda_store::{NewRun, RunRecord, RunStatus, StartedRun, StepCommit, StepRecord, Store};
use coda_types::{AppletInfo, InvocationContext, InvocationReport, Values};

pub use clock::{Clock, VirtualClock, WallClock};
pub use coda_types::capabilities::{Capabilities, DenyAll};
pub use completed::{
    AgentView, CloneRequest, CustomerFields, DISPOSITION_PENDING, DetailsPatch,
    DispositionSubmission, NOT_EDITABLE, WorkError,
};
pub use control::CANCELLED_BY_API;
/// The idempotency key of a run's step: `{run}/{first sequence number of the step}`.
pub use decide::idempotency_key as step_key;
pub use decide::{FlowLimits, HOST_FAULT, call_key};
pub use effects::{JournaledCapabilities, ReplaySummary};
pub use fair::{DefaultLimits, QueueFull, TenantLimit, TenantLimits};
pub use interactions::{
    EXPRESSION_TRIES, EventAccepted, EventError, EventOutcome, HeldOutcome, InteractionEvent,
    InvocationData, SetPostFlow,
};
pub use metrics::{MetricsSnapshot, STEP_DURATION_BUCKETS};

/// What the engine needs from the applet host.
#[async_trait]
pub trait Applets: Send + Sync {
    /// What the applet says about itself, if this tenant has it.
    fn info(&self, tenant: &str, applet: &AppletRef) -> Option<AppletInfo>;
    /// Runs the applet once. `Err` when the applet cannot be run at all (not installed).
    async fn invoke(
        &self,
        tenant: &str,
        applet: &AppletRef,
        input: StepInput,
    ) -> std::result::Result<InvocationReport, String>;
    /// The installed built-in [`EXPRESSION_APPLET`], which evaluates a tenant's expression
    /// for the host (a post-flow action's invocation data) in the sandbox, like a step.
    /// `None` when it is not installed: expressions are then refused, never evaluated
    /// natively.
    fn expression_applet(&self) -> Option<AppletRef> {
        None
    }
}

/// The built-in applet that evaluates a tenant's CEL expressions for the host: Set Data
/// Source, the applet plans use for the same expressions, so they mean the same on both
/// sides.
pub const EXPRESSION_APPLET: &str = "set-data";

/// One step's invocation, as the engine prepares it.
#[derive(Clone)]
pub struct StepInput {
    pub context: InvocationContext,
    pub config: serde_json::Value,
    pub data: Values,
    pub state: Values,
    /// The step's time on the engine's clock (virtual or wall), in ms since the Unix epoch:
    /// the applet's wall clock starts there.
    pub now_ms: i64,
    /// What the applet may reach, already behind the effect journal.
    pub capabilities: Arc<dyn Capabilities>,
}

/// Where the engine gets each applet's capabilities: the grants of its tenant, decided in
/// one place by the implementation.
pub trait CapabilitySource: Send + Sync {
    fn for_applet(&self, tenant: &str, applet: &AppletRef) -> Arc<dyn Capabilities>;
}

/// Grants nothing to anyone.
impl CapabilitySource for DenyAll {
    fn for_applet(&self, _tenant: &str, _applet: &AppletRef) -> Arc<dyn Capabilities> {
        Arc::new(DenyAll)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Store(#[from] coda_store::StoreError),
    #[error("plan `{plan}` {} not found", .version.map(|v| format!("version {v}")).unwrap_or_else(|| "(any version)".into()))]
    PlanNotFound { plan: String, version: Option<u32> },
    #[error("stored plan `{plan}` version {version} does not parse: {why}")]
    BadStoredPlan {
        plan: String,
        version: u32,
        why: String,
    },
}

pub type Result<T> = std::result::Result<T, FlowError>;

/// How often an idle scheduler looks again while due runs wait on other nodes' claims.
const BLOCKED_POLL_MS: i64 = 50;

/// How often `Engine::serve` deletes expired key-value keys and events, and applies the
/// held events of started interactions (`Engine::tend_events`).
const KV_PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// A run to start.
#[derive(Debug, Clone)]
pub struct Start {
    pub tenant: String,
    pub plan: String,
    /// Pinned version, or the latest.
    pub version: Option<u32>,
    pub interaction: Option<String>,
    /// The same key starts one run, however often it is delivered.
    pub trigger_key: Option<String>,
    pub data: Values,
}

pub struct Engine {
    store: Arc<Store>,
    applets: Arc<dyn Applets>,
    clock: Arc<dyn Clock>,
    limits: FlowLimits,
    capabilities: Arc<dyn CapabilitySource>,
    plans: Mutex<HashMap<(String, String, u32), Arc<Plan>>>,
    /// Signalled when a run becomes due now (started, or woken by an event), so an idle
    /// scheduler picks it up at once instead of at its next poll.
    wake: tokio::sync::Notify,
    /// Set while [`Engine::serve`] stops: the scheduler takes no new steps and returns once
    /// the steps in flight have committed.
    draining: std::sync::atomic::AtomicBool,
    /// Each tenant's concurrency and queue bound, where its operator set them.
    tenant_limits: Arc<dyn TenantLimits>,
    /// Steps in flight per tenant, and whose turn it is.
    fair: Arc<fair::Fair>,
    metrics: metrics::FlowMetrics,
    /// This node's id in the claims it takes on runs (`leases.rs`).
    node: String,
    /// The claims of the steps in flight, renewed by the heartbeat.
    claims: Arc<leases::Claims>,
    /// Set once this node's first pass has released the claims an earlier process under
    /// the same id left behind.
    claims_reset: std::sync::atomic::AtomicBool,
    /// Steps claimed often run alone (`suspects.rs`).
    suspects: suspects::Gate,
}

impl Engine {
    pub fn new(
        store: Arc<Store>,
        applets: Arc<dyn Applets>,
        clock: Arc<dyn Clock>,
        limits: FlowLimits,
    ) -> Self {
        Engine {
            store,
            applets,
            clock,
            limits,
            capabilities: Arc::new(DenyAll),
            plans: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            tenant_limits: Arc::new(DefaultLimits),
            fair: Arc::default(),
            metrics: metrics::FlowMetrics::default(),
            node: uuid::Uuid::now_v7().to_string(),
            claims: Arc::new(leases::Claims::new(limits.lease_ms)),
            claims_reset: std::sync::atomic::AtomicBool::new(false),
            suspects: suspects::Gate::default(),
        }
    }

    /// What the engine has counted since it started (steps, their durations, fuel, errors
    /// and limit hits).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Gives applets the capabilities `source` grants (by default none).
    pub fn with_capabilities(mut self, source: Arc<dyn CapabilitySource>) -> Self {
        self.capabilities = source;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A plan version, parsed once and shared; versions are immutable, so this never goes
    /// stale.
    pub(crate) fn plan(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<(u32, Arc<Plan>)> {
        // The latest version is asked for by number first: every event resolves its live
        // plan this way, and reading and parsing the whole body each time was most of it.
        let version = match version {
            Some(v) => Some(v),
            None => self.store.latest_plan_version(tenant, name)?,
        };
        if let Some(v) = version
            && let Some(plan) = self.cached_plan(tenant, name, v)
        {
            return Ok((v, plan));
        }
        let Some((v, body)) = self.store.plan(tenant, name, version)? else {
            return Err(FlowError::PlanNotFound {
                plan: name.into(),
                version,
            });
        };
        if let Some(plan) = self.cached_plan(tenant, name, v) {
            return Ok((v, plan));
        }
        let plan: Plan = serde_json::from_value(body).map_err(|e| FlowError::BadStoredPlan {
            plan: name.into(),
            version: v,
            why: e.to_string(),
        })?;
        let plan = Arc::new(plan);
        self.plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((tenant.into(), name.into(), v), plan.clone());
        Ok((v, plan))
    }

    fn cached_plan(&self, tenant: &str, name: &str, version: u32) -> Option<Arc<Plan>> {
        self.plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(tenant.to_owned(), name.to_owned(), version))
            .cloned()
    }

    /// Whether the caller or customer of this interaction is still connected. An
    /// interaction the store does not know is taken as gone: nobody is there to talk to.
    fn contact_present(&self, tenant: &str, interaction: &str) -> Result<bool> {
        Ok(self
            .store
            .interaction(tenant, interaction)?
            .is_some_and(|i| {
                i.status == coda_store::InteractionStatus::Active
                    && i.present.contains(&coda_store::Party::Caller)
            }))
    }

    /// Wakes an idle scheduler ([`Engine::run_until`], [`Engine::serve`]).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Steps runs as they become due until `stop` resolves: the scheduler of a long-running
    /// host. A started run or a delivered event wakes it at once; otherwise it sleeps until
    /// the next due time, and looks at the store at least every `lease / 2` (runs started
    /// by other nodes sharing the database, claims of a node that died running out).
    /// Returns the number of steps committed.
    ///
    /// Once `stop` resolves no step starts, and the steps in flight are given
    /// [`FlowLimits::drain_ms`] to commit; a step still running then is dropped before its
    /// commit, so its run stays where it was in the store and the next start runs it again.
    pub async fn serve(
        self: &Arc<Self>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<u64> {
        tokio::pin!(stop);
        let mut steps = 0;
        // While the database is unavailable (a PostgreSQL restart, a SQLite file locked by
        // another process) or failing, passes fail: the scheduler waits longer after each, up
        // to `MAX_BACKOFF`, and says so once per episode, instead of spinning or exiting.
        const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
        const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);
        let mut backoff = None::<std::time::Duration>;
        let mut pruned_at = None::<std::time::Instant>;
        // Another node's new work (on PostgreSQL, its commit's notice) wakes this scheduler
        // as a local start does, rather than at the next poll. Stopped with `serve`.
        let mut forward = tokio::task::JoinSet::new();
        let engine = self.clone();
        forward.spawn(async move {
            loop {
                engine.store.work_elsewhere().await;
                engine.wake();
            }
        });
        loop {
            if pruned_at.is_none_or(|at| at.elapsed() >= KV_PRUNE_EVERY) {
                pruned_at = Some(std::time::Instant::now());
                self.prune_kv().await;
                self.tend_events().await;
            }
            let pass = self.run_until(None);
            tokio::pin!(pass);
            let failed = tokio::select! {
                biased;
                _ = &mut stop => return self.drain(pass, steps).await,
                done = &mut pass => match done {
                    Ok(done) => {
                        steps += done;
                        if backoff.take().is_some() {
                            tracing::info!("the scheduler is stepping runs again");
                        }
                        false
                    }
                    // A pass stops only on what is not one step's: the store unavailable (a
                    // PostgreSQL restart, a SQLite file locked by another process) or failing
                    // for every run. The scheduler never exits on it: it waits and tries
                    // again, and the API goes on answering meanwhile.
                    Err(e) => {
                        let wait = match backoff {
                            None => {
                                if matches!(&e, FlowError::Store(s) if s.is_unavailable()) {
                                    tracing::warn!("the database is unavailable ({e}); the scheduler backs off until it answers");
                                } else {
                                    tracing::error!("the scheduler's pass failed ({e}); it backs off and tries again");
                                }
                                FIRST_BACKOFF
                            }
                            Some(wait) => (wait * 2).min(MAX_BACKOFF),
                        };
                        backoff = Some(wait);
                        true
                    }
                },
            };
            // Woken by a started run or a delivered event (here or, on PostgreSQL, on
            // another node), or at least every half lease: another node's runs whose claims
            // ran out (it died) are due here too.
            let poll = std::time::Duration::from_millis((self.limits.lease_ms / 2).max(1));
            let pause = async {
                match backoff.filter(|_| failed) {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => {
                        tokio::select! {
                            _ = self.wake.notified() => {}
                            _ = tokio::time::sleep(poll) => {}
                        }
                    }
                }
            };
            tokio::select! {
                biased;
                _ = &mut stop => return Ok(steps),
                _ = pause => {}
            }
        }
    }

    /// Deletes the key-value stores' expired keys, a batch at a time: they already read as
    /// absent, this gives their room back. A failure is logged; the next pass tries again.
    async fn prune_kv(&self) {
        let now = self.clock.now_ms();
        loop {
            match self.store.prune_kv(now, coda_store::KV_PRUNE_BATCH).await {
                Ok(n) if n == u64::from(coda_store::KV_PRUNE_BATCH) => continue,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!("pruning expired kv keys failed ({e}); trying again later");
                    return;
                }
            }
        }
    }

    /// Lets a pass of the scheduler finish the steps it has in flight, starting none.
    async fn drain(
        &self,
        pass: std::pin::Pin<&mut impl std::future::Future<Output = Result<u64>>>,
        steps: u64,
    ) -> Result<u64> {
        use std::sync::atomic::Ordering;
        self.draining.store(true, Ordering::SeqCst);
        // An idle pass is asleep until its next due time: wake it to see that it may stop.
        self.wake();
        let bound = std::time::Duration::from_millis(self.limits.drain_ms);
        let drained = tokio::time::timeout(bound, pass).await;
        self.draining.store(false, Ordering::SeqCst);
        match drained {
            Ok(Ok(done)) => Ok(steps + done),
            Ok(Err(e)) => {
                // The store failed while the last steps committed: those runs stay where
                // they were and run again at the next start.
                tracing::warn!("the scheduler's last pass failed while stopping ({e})");
                Ok(steps)
            }
            Err(_elapsed) => {
                tracing::warn!(
                    "steps still running {} ms after the stop were dropped uncommitted; they run again at the next start",
                    self.limits.drain_ms
                );
                Ok(steps)
            }
        }
    }

    fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts a run at the plan's start node; it is on disk when this returns.
    pub async fn start(&self, start: Start) -> Result<StartedRun> {
        let started = self.start_quietly(start).await?;
        self.wake();
        Ok(started)
    }

    async fn start_quietly(&self, start: Start) -> Result<StartedRun> {
        let (version, plan) = self.plan(&start.tenant, &start.plan, start.version)?;
        Ok(self
            .store
            .start_run(NewRun {
                tenant: start.tenant,
                plan: start.plan,
                plan_version: version,
                interaction: start.interaction,
                trigger_key: start.trigger_key,
                start_node: plan.start.clone(),
                data: start.data,
                now_ms: self.clock.now_ms(),
            })
            .await?)
    }

    /// Runs every due step, and with a virtual clock every step that becomes due later,
    /// until no run is left to step. Returns the number of steps committed.
    ///
    /// Up to `batch` steps run at once, and the set is topped up as steps finish rather than
    /// batch by batch, so that the store's writer always has commits to group. A run is
    /// never stepped twice at once: each step runs under a claim on its run
    /// (`Store::claim_due_runs`, written in the same group commits as the steps), and a
    /// claimed run is not claimed again until its step commits or its lease runs out.
    pub async fn run_until_idle(self: &Arc<Self>) -> Result<u64> {
        self.run_until(None).await
    }

    /// [`Engine::run_until_idle`], stopping at `until_ms` on the engine's clock: steps due
    /// later are left for later (a virtual clock is advanced to `until_ms`, no further; a
    /// wall clock is waited on until then). For delivering events at set times.
    ///
    /// Due runs are taken fairly across tenants (`fair.rs`): in turns, at most a tenant's
    /// concurrency of its steps in flight, at most `batch` in all.
    pub async fn run_until(self: &Arc<Self>, until_ms: Option<i64>) -> Result<u64> {
        let batch = self.limits.batch.max(1);
        let mut steps = 0;
        if !self
            .claims_reset
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.store.release_node_claims(&self.node).await?;
        }
        let _heartbeat = self.start_heartbeat();
        // Whether the last pick claimed nothing: due runs then wait on other nodes' claims.
        let mut claimed_none = false;
        let mut set = tokio::task::JoinSet::new();
        // Whether something happened (a step finished, a run was started or woken) that may
        // have made a run takeable, and when the queue was last read.
        let mut want_pick = true;
        let mut last_pick: Option<std::time::Instant> = None;
        loop {
            let gap_left = last_pick.map_or(std::time::Duration::ZERO, |at| {
                fair::PICK_GAP.saturating_sub(at.elapsed())
            });
            let may_pick = want_pick && set.len() < batch && !self.draining();
            if may_pick && (gap_left.is_zero() || set.is_empty()) {
                want_pick = false;
                let asked = std::time::Instant::now();
                last_pick = Some(asked);
                // `asked` is before the claims' write is sent: their local deadlines count
                // from it (`leases.rs`).
                let claimed = self.claim_due(batch - set.len()).await?;
                claimed_none = claimed.is_empty();
                for (claimed, slot) in claimed {
                    let (claim, lease) =
                        self.claims.hold(&claimed.run.id, claimed.claim_seq, asked);
                    let engine = self.clone();
                    set.spawn(async move {
                        // The tenant's slot and the claim's heartbeat are held until the
                        // step, and the steps continued under its claim, are over, however
                        // they end.
                        let _slot = slot;
                        let _claim = claim;
                        engine.step_and_continue(claimed, lease).await
                    });
                }
            }
            if set.is_empty() {
                if self.draining() {
                    return Ok(steps);
                }
                want_pick = true;
                // Nothing in flight and nothing claimable now. Due runs held by other nodes'
                // claims become claimable when those claims are released or run out.
                let now = self.clock.now_ms();
                let (due, expiry) = self.store.next_claimable(now)?;
                let expiry = expiry.map(|e| e.saturating_add(1));
                let blocked = claimed_none && due.is_some_and(|d| d <= now);
                let next = match (due, expiry) {
                    // Due work held back by other nodes' claims (its tenant's concurrency):
                    // claimable at the latest when the first of them runs out.
                    (_, Some(e)) if blocked => Some(e),
                    (Some(d), Some(e)) => Some(d.min(e)),
                    (d, e) => d.or(e),
                };
                if let Some(until) = until_ms
                    && next.is_none_or(|next| next > until)
                {
                    if !self.clock.advance_to(until) {
                        let wait = until - self.clock.now_ms();
                        if wait > 0 {
                            self.idle(wait).await;
                        }
                    }
                    return Ok(steps);
                }
                match next {
                    Some(next) if self.clock.advance_to(next) => continue,
                    Some(next) => {
                        // Blocked, the wall clock looks again shortly: another node's commit
                        // may free a slot long before its claim would run out.
                        let most = if blocked { BLOCKED_POLL_MS } else { 1000 };
                        self.idle((next - self.clock.now_ms()).clamp(1, most)).await;
                        continue;
                    }
                    None => return Ok(steps),
                }
            }
            let gated = want_pick && set.len() < batch && !self.draining();
            let done = tokio::select! {
                done = set.join_next() => done,
                // A run started or woken: another tenant's may be waiting for a slot.
                _ = self.wake.notified() => {
                    want_pick = true;
                    continue;
                }
                // A step finished inside the gap: read the queue once the gap is over.
                _ = tokio::time::sleep(gap_left), if gated => continue,
            };
            want_pick = true;
            match done {
                // A step's own errors and panics were contained by `step_contained`: what
                // comes back here is the store's (unavailable), which stops this pass.
                Some(Ok(committed)) => steps += committed?,
                Some(Err(ended)) => {
                    tracing::error!("a step's task ended without a result: {ended}");
                }
                None => {}
            }
        }
    }

    /// Waits `ms`, or less if a run becomes due meanwhile.
    async fn idle(&self, ms: i64) {
        let wait = std::time::Duration::from_millis(ms.max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.wake.notified() => {}
        }
    }

    /// Runs one claimed step so that nothing it does stops the scheduler: an error of the
    /// step's own (the store refusing its reads or commit, a capability's host side, the
    /// applet host) or a panic fails that step through its error exit (kind `host-fault`),
    /// and the service goes on with every other run. Only the store being unavailable
    /// comes back as an error: that is everyone's, and the scheduler backs off.
    ///
    /// A step claimed often without a commit (its host died or failed in it, or beside
    /// it) runs alone in this host, its start recorded first (`suspects.rs`). Started
    /// alone more than [`FlowLimits::max_step_starts`] times without a commit, it is not
    /// started again: its run is parked as failed with the reason. The counts are the
    /// store's, so restarts cannot loop on it.
    ///
    /// With `may_continue`, the step's commit keeps the claim when the run's next step is
    /// due now, and that step comes back to be run (`continuation.rs`).
    async fn step_contained(
        &self,
        claimed: coda_store::Claimed,
        lease: Arc<leases::Lease>,
        may_continue: bool,
    ) -> Result<continuation::Stepped> {
        use futures_util::FutureExt;
        let coda_store::Claimed {
            run,
            claim_seq,
            step_claims,
        } = claimed;
        let turn = self.suspects.enter(step_claims).await;
        if turn.alone() {
            let starts = match self.store.start_alone(&run.id, claim_seq).await {
                Ok(Some(starts)) => starts,
                // Another node holds the run now: its step is theirs.
                Ok(None) => return Ok(continuation::Stepped::ended(false)),
                Err(e) if e.is_unavailable() => return Err(e.into()),
                Err(e) => {
                    tracing::error!(run = %run.id, "the step's start alone could not be recorded ({e}); it is tried again after its lease");
                    return Ok(continuation::Stepped::ended(false));
                }
            };
            if starts > self.limits.max_step_starts {
                let why = format!(
                    "the step was started {} times alone and never finished: the host failed or stopped in it each time",
                    starts - 1
                );
                tracing::error!(run = %run.id, node = run.node.as_deref().unwrap_or(""), "{why}; the run is parked");
                let decision = decide::park(&run, run.node.as_deref().unwrap_or(""), &why);
                let commit = self.host_commit(&run, decision);
                return self
                    .commit_fault(commit, claim_seq, &run.id)
                    .await
                    .map(continuation::Stepped::ended);
            }
        }
        // The step's scrubber outlives the step: the text of a fault in it (a store error,
        // a panic's message) may hold a secret value the step read, and is scrubbed too.
        let scrubber = coda_types::scrub::Scrubber::default();
        let stepped = std::panic::AssertUnwindSafe(self.step_claimed(
            run.clone(),
            lease,
            scrubber.clone(),
            may_continue,
        ))
        .catch_unwind()
        .await;
        let why = match stepped {
            Ok(Ok(stepped)) => return Ok(stepped),
            Ok(Err(FlowError::Store(e))) if e.is_unavailable() => return Err(e.into()),
            Ok(Err(e)) => format!("the host failed in this step: {e}"),
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                format!("the host failed in this step (a panic: {text})")
            }
        };
        let why = scrubber.scrub(&why).into_owned();
        tracing::error!(run = %run.id, node = run.node.as_deref().unwrap_or(""), "{why}; the step fails");
        let commit = scrub::commit(self.fault_commit(&run, &why), &scrubber);
        // A fault's commit releases the claim: the run goes back to the queue.
        self.commit_fault(commit, claim_seq, &run.id)
            .await
            .map(continuation::Stepped::ended)
    }

    /// Commits a step the host decided on after a fault. If even that fails (other than
    /// the store being unavailable), the run is left where it was, still claimed: the claim
    /// runs out after the lease and the next claim counts another start.
    async fn commit_fault(&self, commit: StepCommit, claim_seq: u64, run: &str) -> Result<bool> {
        match self.store.commit_claimed_step(commit, claim_seq).await {
            Ok(()) => Ok(true),
            Err(coda_store::StoreError::Conflict { .. }) => Ok(false),
            Err(e) if e.is_unavailable() => Err(e.into()),
            Err(e) => {
                tracing::error!(%run, "the step's failure could not be committed either ({e}); the run is tried again after its lease, and parked after {} starts alone", self.limits.max_step_starts);
                Ok(false)
            }
        }
    }

    /// The commit of a step that failed in the host: through the node's error exit when the
    /// run stands at an applet node of a plan that loads, else the run is parked.
    fn fault_commit(&self, run: &RunRecord, why: &str) -> StepCommit {
        let node_id = run.node.clone().unwrap_or_default();
        let decision = match self.plan(&run.tenant, &run.plan, Some(run.plan_version)) {
            Ok((_, plan)) if run.status == RunStatus::Ready => match plan.nodes.get(&node_id) {
                Some(node) => decide::host_fault(run, &node_id, node, why, self.clock.now_ms()),
                None => decide::park(run, &node_id, why),
            },
            Ok(_) => decide::park(run, &node_id, why),
            Err(e) => decide::park(run, &node_id, &format!("{why}; {e}")),
        };
        self.host_commit(run, decision)
    }

    /// A step the host journals itself (no applet ran to the end), at the run's node.
    fn host_commit(&self, run: &RunRecord, decision: decide::Decision) -> StepCommit {
        StepCommit {
            run_id: run.id.clone(),
            expected_seq: run.step_seq,
            step: StepRecord {
                seq: run.step_seq,
                plan: run.plan.clone(),
                plan_version: run.plan_version,
                node: run.node.clone().unwrap_or_default(),
                applet: String::new(),
                attempt: run.attempt,
                result: decision.result,
                note: decision.note,
                fuel_used: 0,
                duration_us: 0,
                data_changes: Default::default(),
                at_ms: self.clock.now_ms(),
                logs: Vec::new(),
            },
            next: decision.update,
            input: None,
        }
    }

    /// Runs one step of a run claimed under `lease` and commits it under that claim
    /// (releasing it, or with `may_continue` keeping it when the run's next step is due
    /// now: `continuation.rs`). Not committed when the claim was lost (the heartbeat found
    /// it taken over, this node's local deadline for it passed before an effectful call, or
    /// the commit was refused by the claim fence) or the run moved on: nothing is then
    /// committed, and nothing is counted, since the run is another node's now.
    async fn step_claimed(
        &self,
        run: RunRecord,
        lease: Arc<leases::Lease>,
        scrubber: coda_types::scrub::Scrubber,
        may_continue: bool,
    ) -> Result<continuation::Stepped> {
        let id = run.id.clone();
        let claim_seq = lease.seq();
        let commit = tokio::select! {
            commit = self.next_commit(&run, Some(&lease), scrubber) => commit,
            _ = lease.lost() => return Ok(continuation::Stepped::ended(false)),
        };
        // Given up inside the step (an effectful call was refused): whatever the step came
        // to, it is not this node's to commit, not even as a failure.
        if lease.was_lost() {
            tracing::warn!(run = %id, claim = claim_seq, "the run's claim was given up during its step: the step is abandoned");
            return Ok(continuation::Stepped::ended(false));
        }
        let commit = commit?;
        let sample = metrics::StepSample::of(&commit.step);
        let keep = may_continue
            .then(|| self.keep_claim(&commit, &lease))
            .flatten();
        // Taken before the write is sent: a kept claim's local deadline counts from it.
        let sent = std::time::Instant::now();
        let committed = match keep {
            Some(keep) => {
                self.store
                    .commit_claimed_step_and_continue(commit, claim_seq, keep)
                    .await
            }
            None => self
                .store
                .commit_claimed_step(commit, claim_seq)
                .await
                .map(|()| None),
        };
        match committed {
            Ok(next) => {
                self.metrics.record(sample);
                if next.is_some() {
                    self.claims.kept(&lease, sent);
                }
                Ok(continuation::Stepped {
                    committed: true,
                    next,
                })
            }
            Err(coda_store::StoreError::Conflict { run, expected }) => {
                // Another node took the run over, or the run was cancelled while the step
                // ran: release the claim if it is still ours, so the run need not wait for
                // the lease.
                tracing::warn!(%run, expected, claim = claim_seq, "the run moved on or its claim was taken over: the step was not committed");
                if let Err(e) = self
                    .store
                    .release_claims(&self.node, &[(id, claim_seq)])
                    .await
                {
                    tracing::warn!("releasing a claim failed: {e}");
                }
                Ok(continuation::Stepped::ended(false))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The commit of the run's next step. `scrubber` collects the secret values the step
    /// comes to hold (the caller keeps a clone, to scrub what a fault in the step says).
    // tidy: long — a step read top to bottom (timeout, end, stop, invoke, decide) whose closures share the run and its journal entry
    async fn next_commit(
        &self,
        run: &RunRecord,
        lease: Option<&Arc<leases::Lease>>,
        scrubber: coda_types::scrub::Scrubber,
    ) -> Result<StepCommit> {
        let now = self.clock.now_ms();
        let (_, plan) = self.plan(&run.tenant, &run.plan, Some(run.plan_version))?;
        let seq = run.step_seq;
        let journal = |node: &str,
                       applet: String,
                       result,
                       note: String,
                       report: Option<&InvocationReport>| StepRecord {
            seq,
            plan: run.plan.clone(),
            plan_version: run.plan_version,
            node: node.to_owned(),
            applet,
            attempt: run.attempt,
            result,
            note,
            fuel_used: report.map_or(0, |r| r.fuel_used),
            duration_us: report.map_or(0, |r| r.elapsed.as_micros() as u64),
            data_changes: report.map(|r| r.data_changes.clone()).unwrap_or_default(),
            at_ms: now,
            logs: report.map(|r| r.logs.clone()).unwrap_or_default(),
        };

        // A step the host takes itself (a timeout, the end, a stop): journaled like any other.
        let without_applet = |node: &str, result, note, next| StepCommit {
            run_id: run.id.clone(),
            expected_seq: seq,
            step: journal(node, String::new(), result, note, None),
            next,
            input: None,
        };

        // A wait whose timeout came: the run goes on at the timeout's target, journaled.
        if run.status == RunStatus::Waiting {
            let event = run
                .wait
                .as_ref()
                .map(|w| w.event.clone())
                .unwrap_or_default();
            let waiting_node = run
                .wait
                .as_ref()
                .and_then(|w| w.node.as_deref())
                .or(run.node.as_deref())
                .unwrap_or("");
            let (update, note) = decide::resume_after_timeout(run, &event);
            return Ok(without_applet(
                waiting_node,
                serde_json::json!({ "timeout": event }),
                note,
                update,
            ));
        }

        let Some(node_id) = run.node.clone() else {
            // A run parked on its way to the end (a pause whose exit is unwired).
            let update = decide::finish(run, RunStatus::Done);
            let result = serde_json::json!({ "end": true });
            return Ok(without_applet("", result, "the run ends".into(), update));
        };
        if seq >= self.limits.max_steps {
            let update = decide::finish(run, RunStatus::Failed);
            let note = format!(
                "the run reached {} steps and was stopped",
                self.limits.max_steps
            );
            let result = serde_json::json!({ "error": { "kind": "max-steps" } });
            return Ok(without_applet(&node_id, result, note, update));
        }
        let Some(node) = plan.nodes.get(&node_id) else {
            // Validation makes this impossible for published plans; a hand-edited database
            // fails the run with the reason instead of looping.
            let update = decide::finish(run, RunStatus::Failed);
            let note = format!(
                "node `{node_id}` is not in plan {}@{}",
                run.plan, run.plan_version
            );
            return Ok(without_applet(
                &node_id,
                serde_json::json!({ "error": { "kind": "plan" } }),
                note,
                update,
            ));
        };

        // Collects the secret values the step comes to hold; the commit is scrubbed of them.
        let context = InvocationContext {
            tenant: run.tenant.clone(),
            interaction: run.interaction.clone(),
            run: run.id.clone(),
            plan: run.plan.clone(),
            node: node_id.clone(),
            idempotency_key: decide::idempotency_key(&run.id, seq, run.attempt),
            attempt: run.attempt,
            scrubber: scrubber.clone(),
        };
        let capabilities = Arc::new(
            JournaledCapabilities::new(
                self.capabilities.for_applet(&run.tenant, &node.applet),
                self.store.clone(),
                &run.id,
                seq,
                now,
            )?
            .under_lease(lease.cloned()),
        );
        let input = StepInput {
            context,
            config: node.config.clone(),
            data: run.data.clone(),
            state: run.state.get(&node_id).cloned().unwrap_or_default(),
            now_ms: now,
            capabilities: capabilities.clone(),
        };
        let info = self.applets.info(&run.tenant, &node.applet);
        // The "call finished" path: a live plan may go on after the agent leaves, but a step
        // that needs a live party cannot run once the contact has gone. The run ends there,
        // and the journal says why.
        if info.as_ref().is_some_and(|i| i.needs_live_party)
            && let Some(interaction) = &run.interaction
            && !self.contact_present(&run.tenant, interaction)?
        {
            let note = format!(
                "{} needs a live party and the contact has disconnected: the run ends",
                node.applet
            );
            let result = serde_json::json!({ "end": "contact-disconnected" });
            let update = decide::finish(run, RunStatus::Done);
            return Ok(without_applet(&node_id, result, note, update));
        }
        let mut report = self.applets.invoke(&run.tenant, &node.applet, input).await;
        // The run's data is bounded as a whole, not only per step
        // (`FlowLimits::max_run_data_bytes`): past the cap the step fails as a limit, its
        // changes are neither stored nor journaled.
        if let Ok(report) = &mut report
            && report.result.is_ok()
        {
            let used = decide::run_data_bytes(run, &node_id, report);
            if used > self.limits.max_run_data_bytes {
                report.result = Err(coda_types::InvokeError::LimitExceeded(
                    coda_types::LimitExceeded {
                        kind: coda_types::LimitKind::Data,
                        limit: self.limits.max_run_data_bytes,
                        used: Some(used),
                    },
                ));
                report.data_changes.clear();
                report.state_changes.clear();
            }
        }
        let decision = match &report {
            Ok(report) => {
                let route_target = match &report.result {
                    Ok(coda_types::Outcome::Route {
                        plan: target,
                        version,
                    }) => Some(
                        self.plan(&run.tenant, target, *version)
                            .map(|(v, p)| (target.clone(), v, p)),
                    ),
                    _ => None,
                };
                decide::after_invocation(
                    run,
                    &node_id,
                    node,
                    info.as_ref(),
                    report,
                    route_target,
                    now,
                    &self.limits,
                )
            }
            Err(why) => decide::unavailable(run, &node_id, node, why, now),
        };
        let result = decision.result;
        let note = match capabilities.summary().note() {
            Some(replay) if decision.note.is_empty() => replay,
            Some(replay) => format!("{}; {replay}", decision.note),
            None => decision.note,
        };
        let step = journal(
            &node_id,
            node.applet.to_string(),
            result,
            note,
            report.as_ref().ok(),
        );
        Ok(scrub::commit(
            StepCommit {
                run_id: run.id.clone(),
                expected_seq: seq,
                step,
                next: decision.update,
                input: Some(coda_store::StepInput {
                    data: run.data.clone(),
                    state: run.state.get(&node_id).cloned().unwrap_or_default(),
                }),
            },
            &scrubber,
        ))
    }
}
