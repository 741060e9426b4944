//! Where a run goes after a step: pure functions of the run, the node and the report, so
//! every rule is testable without a database or an applet.

use std::sync::Arc;

use coda_plan::{Node, Plan};
use coda_store::{EventWait, RunRecord, RunStatus, RunUpdate};
use coda_types::{AppletInfo, InvocationReport, InvokeError, Outcome, Value, Values};

/// The rules of a run, each with its default.
#[derive(Debug, Clone, Copy)]
pub struct FlowLimits {
    /// Tries of a step whose applet failed with a retryable failure (1 = no retry).
    pub max_attempts: u32,
    /// First retry delay; doubles with each attempt.
    pub backoff_base_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// How often a run may route to another plan, so plans routing to each other end.
    pub max_route_depth: u32,
    /// Steps per run (Genesys caps a flow at 10,000 actions).
    pub max_steps: u64,
    /// Steps in flight at once, all tenants together: the global bound.
    pub batch: usize,
    /// Steps in flight at once for one tenant, unless its own limit says otherwise
    /// ([`crate::TenantLimits`]): a tenant's burst leaves room for the others.
    pub tenant_concurrency: usize,
    /// Due runs one tenant may have waiting before new ones are refused
    /// ([`crate::QueueFull`], the API's 429), unless its own limit says otherwise.
    pub tenant_queue: u64,
    /// When [`crate::Engine::serve`] is stopped: how long it waits for the steps in flight to
    /// commit. A step still running then is dropped uncommitted and runs again at the next
    /// start (its capability calls replayed from the effect journal).
    pub drain_ms: u64,
    /// How long a node's claim on a run lasts without renewal: the heartbeat renews the
    /// claims of the steps in flight every third of it, and a node that dies (or is paused)
    /// for longer has its runs taken over by the others.
    pub lease_ms: u64,
    /// How often one step of a run may be started alone in its host without committing
    /// before the run is parked: failed with the error kind `host-fault` and the reason,
    /// instead of being started again. A step ends without a commit when the host died in
    /// it every time (a poison pill that kills the process; errors and panics fail the step
    /// at once and need no count), but also when the host died for another reason while the
    /// step was in flight beside the culprit. So a step claimed again and again runs alone
    /// (`suspects.rs`), and only those starts count: a host that dies then died in it.
    /// Counted in the store, so restarts count too. A poison pill is parked after the two
    /// failures that make it a suspect and this many alone.
    pub max_step_starts: u32,
    /// Bytes a run's data sources and node state may hold together (names plus values,
    /// counted like the sandbox's per-invocation `data` limit). A run's data is stored
    /// whole and rewritten at every commit, inside the store's writer: without a cap, an
    /// applet adding 256 KiB of new names at each of 10,000 steps grows one run to gigabytes,
    /// every commit of it takes longer for everyone, and at SQLite's value size the commit
    /// (and the commit of its failure) is refused for good. A step whose changes would take
    /// the run past the cap fails with kind `data` (a limit), its changes discarded.
    pub max_run_data_bytes: u64,
    /// Steps of one run taken back to back under one claim (`continuation.rs`): a step
    /// whose commit leaves its run due now keeps the claim and its task runs the next step
    /// at once, without a pick or a claim's write, at most this many steps in a row...
    pub continue_steps: u32,
    /// ... and for at most this long (ms) from the first of them; then the claim is
    /// released with the commit and the run goes back to the queue, taking its turn
    /// among the tenants' runs like any other (1 step: no continuation).
    pub continue_ms: u64,
    /// How long a named event no wait has taken yet, or an interaction event held until its
    /// interaction starts, is kept (ms from its arrival): then it is pruned. A taken event is
    /// kept as long, as the record of who took it.
    pub event_keep_ms: u64,
    /// Untaken named events one interaction may keep (and, apart, held early events): past
    /// it a further event is refused, not stored.
    pub max_events_per_interaction: u64,
    /// Untaken named events one tenant may keep (and, apart, held early events), so that a
    /// tenant sending events nothing waits for cannot fill the database.
    pub max_events_per_tenant: u64,
}

impl FlowLimits {
    /// The store's bounds on kept events ([`coda_store::EventLimits`]).
    pub fn event_limits(&self) -> coda_store::EventLimits {
        coda_store::EventLimits {
            keep_ms: i64::try_from(self.event_keep_ms).unwrap_or(i64::MAX),
            per_interaction: self.max_events_per_interaction,
            per_tenant: self.max_events_per_tenant,
        }
    }
}

impl Default for FlowLimits {
    fn default() -> Self {
        FlowLimits {
            max_attempts: 3,
            backoff_base_ms: 1_000,
            backoff_max_ms: 5 * 60_000,
            max_route_depth: 8,
            max_steps: 10_000,
            batch: 512,
            tenant_concurrency: 8,
            tenant_queue: 10_000,
            // Above a step's own deadline (15 s), so a step that ends at all commits.
            drain_ms: 30_000,
            lease_ms: 30_000,
            max_step_starts: 5,
            max_run_data_bytes: 4 << 20,
            // A flow's usual length runs in one go; a long loop goes back to the queue
            // every 16 steps or 100 ms, so a freed slot is soon another run's.
            continue_steps: 16,
            continue_ms: 100,
            event_keep_ms: 7 * 24 * 3_600_000,
            max_events_per_interaction: 100,
            max_events_per_tenant: 100_000,
        }
    }
}

/// The bytes a run's data and state would hold after a step's changes (names plus values),
/// for [`FlowLimits::max_run_data_bytes`].
pub(crate) fn run_data_bytes(run: &RunRecord, node_id: &str, report: &InvocationReport) -> u64 {
    let size = |values: &Values| -> u64 {
        values
            .iter()
            .map(|(name, value)| (name.len() + value.stored_len()) as u64)
            .sum()
    };
    let mut data = run.data.clone();
    data.extend(report.data_changes.clone());
    let mut state = run.state.clone();
    if !report.state_changes.is_empty() {
        state
            .entry(node_id.to_owned())
            .or_default()
            .extend(report.state_changes.clone());
    }
    size(&data)
        + state
            .iter()
            .map(|(node, values)| node.len() as u64 + size(values))
            .sum::<u64>()
}

pub(crate) struct Decision {
    pub update: RunUpdate,
    pub note: String,
    pub result: serde_json::Value,
}

fn position(run: &RunRecord) -> RunUpdate {
    RunUpdate {
        status: run.status,
        plan: run.plan.clone(),
        plan_version: run.plan_version,
        node: run.node.clone(),
        attempt: run.attempt,
        data: run.data.clone(),
        state: run.state.clone(),
        due_at_ms: run.due_at_ms,
        wait: None,
        route_depth: run.route_depth,
    }
}

/// The idempotency key of a step: the same for every attempt of it and for its re-execution
/// after a crash. Retries of a node are consecutive steps (attempt n is the step n - 1 after
/// the first), so the first attempt's sequence number names the step.
pub fn idempotency_key(run: &str, seq: u64, attempt: u32) -> String {
    let first = seq.saturating_sub(u64::from(attempt.saturating_sub(1)));
    format!("{run}/{first}")
}

/// The idempotency key a downstream sees for one capability call of a step (an HTTP
/// request's `Idempotency-Key`, an email's): the step's key ([`idempotency_key`]) and the
/// call's position in the step, so it is stable across re-executions and retries of the
/// step. The API shows each journaled effect's key through this same function.
pub fn call_key(step_key: &str, call_seq: u32) -> String {
    format!("{step_key}/{call_seq}")
}

pub(crate) fn finish(run: &RunRecord, status: RunStatus) -> RunUpdate {
    RunUpdate {
        status,
        node: None,
        due_at_ms: None,
        ..position(run)
    }
}

/// Moves the run to `target` (ready at once), or ends it when the exit is unwired.
fn go_to(update: &mut RunUpdate, target: Option<&String>, now: i64) {
    update.attempt = 1;
    update.wait = None;
    match target {
        Some(node) => {
            update.status = RunStatus::Ready;
            update.node = Some(node.clone());
            update.due_at_ms = Some(now);
        }
        None => {
            update.status = RunStatus::Done;
            update.node = None;
            update.due_at_ms = None;
        }
    }
}

fn describe_target(exit: &str, target: Option<&String>) -> String {
    match target {
        Some(node) => format!("exit {exit} → {node}"),
        None => format!("exit {exit} is not wired: the run ends"),
    }
}

pub(crate) fn resume_after_timeout(run: &RunRecord, event: &str) -> (RunUpdate, String) {
    let mut update = position(run);
    let now = run.due_at_ms.unwrap_or(run.updated_at_ms);
    go_to(&mut update, run.node.as_ref(), now);
    let note = match &run.node {
        Some(node) => format!("no `{event}` event before the timeout → {node}"),
        None => format!(
            "no `{event}` event before the timeout; the timeout exit is not wired: the run ends"
        ),
    };
    (update, note)
}

/// The retry delay before `attempt + 1`: exponential from the base, capped, and never
/// sooner than the applet asked.
pub(crate) fn backoff_ms(limits: &FlowLimits, attempt: u32, retry_after: Option<u64>) -> u64 {
    let exponential = coda_types::time::backoff_ms(
        limits.backoff_base_ms,
        attempt.saturating_sub(1),
        limits.backoff_max_ms,
    );
    exponential.max(retry_after.unwrap_or(0))
}

fn error_json(error: &InvokeError) -> serde_json::Value {
    serde_json::json!({ "error": error.to_json() })
}

/// Takes the node's error exit with `kind` and `message`, recording them in the `LastError`
/// data source so the error branch can route on them; without an error exit the run fails.
fn error_exit(
    run: &RunRecord,
    node_id: &str,
    node: &Node,
    kind: &str,
    message: &str,
    now: i64,
    result: serde_json::Value,
) -> Decision {
    let mut update = position(run);
    let last_error = serde_json::json!({ "node": node_id, "kind": kind, "message": message });
    update
        .data
        .insert("LastError".into(), Value::Json(last_error.to_string()));
    let note = match &node.error {
        Some(target) => {
            go_to(&mut update, Some(target), now);
            format!("{kind}: {message} → error exit {target}")
        }
        None => {
            update.status = RunStatus::Failed;
            update.node = None;
            update.due_at_ms = None;
            update.attempt = 1;
            format!("{kind}: {message}; no error exit is wired: the run fails")
        }
    };
    Decision {
        update,
        note,
        result,
    }
}

/// The error kind of a step that failed in the host rather than in its applet (the store,
/// a capability's host side, a panic), and of a run parked because its step kept failing so.
pub const HOST_FAULT: &str = "host-fault";

/// A step that failed in the host while it was prepared, run or committed: the step fails
/// through its error exit like any other failure, so one step's fault never stops others.
pub(crate) fn host_fault(
    run: &RunRecord,
    node_id: &str,
    node: &Node,
    why: &str,
    now: i64,
) -> Decision {
    let result = serde_json::json!({ "error": { "kind": HOST_FAULT, "message": why } });
    error_exit(run, node_id, node, HOST_FAULT, why, now, result)
}

/// A run the host cannot step any further: failed where it stands with `why` in
/// `LastError` (kind `host-fault`), no error exit taken, so nothing more of it runs until
/// it is retried (`POST /v1/runs/{id}/retry`) once the cause is fixed.
pub(crate) fn park(run: &RunRecord, node_id: &str, why: &str) -> Decision {
    let mut update = finish(run, RunStatus::Failed);
    let last_error = serde_json::json!({ "node": node_id, "kind": HOST_FAULT, "message": why });
    update
        .data
        .insert("LastError".into(), Value::Json(last_error.to_string()));
    Decision {
        update,
        note: format!(
            "{HOST_FAULT}: {why}; the run is parked as failed: retry it once the cause is fixed"
        ),
        result: serde_json::json!({ "error": { "kind": HOST_FAULT, "message": why } }),
    }
}

pub(crate) fn unavailable(
    run: &RunRecord,
    node_id: &str,
    node: &Node,
    why: &str,
    now: i64,
) -> Decision {
    let result = serde_json::json!({ "error": { "kind": "unavailable", "message": why } });
    error_exit(run, node_id, node, "unavailable", why, now, result)
}

#[allow(clippy::too_many_arguments)]
// tidy: long — one match over every outcome an applet can give, each arm short; split, the arms would pass the same eight arguments on
pub(crate) fn after_invocation(
    run: &RunRecord,
    node_id: &str,
    node: &Node,
    info: Option<&AppletInfo>,
    report: &InvocationReport,
    route_target: Option<crate::Result<(String, u32, Arc<Plan>)>>,
    now: i64,
    limits: &FlowLimits,
) -> Decision {
    let outcome = match &report.result {
        Ok(outcome) => outcome,
        Err(error) => {
            let result = error_json(error);
            if let InvokeError::Failure(failure) = error
                && failure.retryable
                && run.attempt < limits.max_attempts
            {
                let delay = backoff_ms(limits, run.attempt, failure.retry_after_millis);
                let mut update = position(run);
                update.status = RunStatus::Ready;
                update.attempt = run.attempt + 1;
                update.due_at_ms = Some(now + delay as i64);
                let note = format!(
                    "retryable failure ({}): retry {} of {} in {delay} ms",
                    failure.code,
                    run.attempt + 1,
                    limits.max_attempts
                );
                return Decision {
                    update,
                    note,
                    result,
                };
            }
            // A retryable failure that used up its attempts is dead-lettered: the reason
            // names the last cause and how often it was tried.
            let message = match error {
                InvokeError::Failure(failure) if failure.retryable && run.attempt > 1 => {
                    format!("{error}; gave up after {} attempts", run.attempt)
                }
                _ => error.to_string(),
            };
            return error_exit(run, node_id, node, error.kind(), &message, now, result);
        }
    };
    let result = serde_json::to_value(outcome).unwrap_or(serde_json::Value::Null);
    let declared = |exit: &str| info.is_none_or(|i| i.declares_exit(exit));
    let mut update = position(run);
    update.data.extend(report.data_changes.clone());
    if !report.state_changes.is_empty() {
        update
            .state
            .entry(node_id.to_owned())
            .or_default()
            .extend(report.state_changes.clone());
    }
    let undeclared = |exit: &str| {
        error_exit(
            run,
            node_id,
            node,
            "undeclared-exit",
            &format!("the applet took exit `{exit}`, which it does not declare"),
            now,
            result.clone(),
        )
    };
    match outcome {
        Outcome::Exit(exit) => {
            if !declared(exit) {
                return undeclared(exit);
            }
            let target = node.exits.get(exit);
            go_to(&mut update, target, now);
            Decision {
                update,
                note: describe_target(exit, target),
                result,
            }
        }
        Outcome::Pause { millis, exit } => {
            if !declared(exit) {
                return undeclared(exit);
            }
            let target = node.exits.get(exit);
            update.status = RunStatus::Parked;
            update.node = target.cloned();
            update.attempt = 1;
            update.due_at_ms = Some(now.saturating_add(*millis as i64));
            let note = format!("pause {millis} ms, then {}", describe_target(exit, target));
            Decision {
                update,
                note,
                result,
            }
        }
        Outcome::Wait {
            event,
            timeout_millis,
            on_event,
            on_timeout,
        } => {
            for exit in [on_event, on_timeout] {
                if !declared(exit) {
                    return undeclared(exit);
                }
            }
            update.status = RunStatus::Waiting;
            update.node = node.exits.get(on_timeout).cloned();
            update.attempt = 1;
            update.due_at_ms = Some(now.saturating_add(*timeout_millis as i64));
            update.wait = Some(EventWait {
                event: event.clone(),
                on_event: node.exits.get(on_event).cloned(),
                node: Some(node_id.to_owned()),
            });
            let note = format!("wait up to {timeout_millis} ms for `{event}`");
            Decision {
                update,
                note,
                result,
            }
        }
        Outcome::Route { plan, .. } => {
            if run.route_depth >= limits.max_route_depth {
                let message = format!(
                    "routing to `{plan}` would exceed the route depth limit of {}",
                    limits.max_route_depth
                );
                return error_exit(run, node_id, node, "route-depth", &message, now, result);
            }
            match route_target {
                Some(Ok((name, version, target))) => {
                    update.plan = name.clone();
                    update.plan_version = version;
                    update.state.clear();
                    update.route_depth = run.route_depth + 1;
                    go_to(&mut update, Some(&target.start), now);
                    Decision {
                        update,
                        note: format!("route to plan {name}@{version}"),
                        result,
                    }
                }
                Some(Err(e)) => {
                    error_exit(run, node_id, node, "route", &e.to_string(), now, result)
                }
                None => error_exit(run, node_id, node, "route", "no route target", now, result),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_of_a_step_share_its_key() {
        // Steps 0 and 1 went elsewhere; step 2 is the first attempt at this node.
        assert_eq!(idempotency_key("r", 2, 1), "r/2");
        assert_eq!(idempotency_key("r", 3, 2), "r/2");
        assert_eq!(idempotency_key("r", 4, 3), "r/2");
        // The next node's first attempt is a new step.
        assert_eq!(idempotency_key("r", 5, 1), "r/5");
    }

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let limits = FlowLimits {
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            ..FlowLimits::default()
        };
        assert_eq!(backoff_ms(&limits, 1, None), 100);
        assert_eq!(backoff_ms(&limits, 2, None), 200);
        assert_eq!(backoff_ms(&limits, 3, None), 400);
        assert_eq!(backoff_ms(&limits, 9, None), 1_000);
        assert_eq!(backoff_ms(&limits, 60, None), 1_000);
        assert_eq!(backoff_ms(&limits, 1, Some(5_000)), 5_000);
    }
}
