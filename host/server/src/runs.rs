//! Runs as a tenant manages them: a filtered list, cancel, retry from the failed step, and a
//! live tail of a run's journal as server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json as Reply;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use coda_store::{Control, RunFilter, RunRecord, RunStatus, StepRecord};
use coda_types::time;
use coda_types::values_json;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{PathArgs, QueryArgs, time_window};
use crate::paging::{list_order, page_limit};
use crate::{ApiError, AppState, Tenant};

/// The default and the largest page of `GET /v1/runs`.
const DEFAULT_RUNS_PAGE: usize = 100;
const MAX_RUNS_PAGE: usize = 1000;

/// How often a tail looks at the store when no commit notice came. Notices come from this
/// process's own commits; this catches those made by another process on the same database
/// (`coda resume`, a second host), at the cost of one indexed read per open tail.
const TAIL_POLL: Duration = Duration::from_secs(5);

/// The most steps a tail reads from the store at once: a long journal is sent a page at a
/// time, so that each open tail holds at most this many steps, however long the run.
const TAIL_PAGE: usize = 8;

/// The most live tails open at once, over all tenants: each holds a connection, a task and
/// a store read every [`TAIL_POLL`].
pub const DEFAULT_MAX_TAILS: usize = 1024;

/// The most live tails one tenant may have open at once: one tenant cannot take them all.
/// A quarter of them, so that a contact center following each of a few hundred runs at once
/// fits (an open tail costs its connection and a read every [`TAIL_POLL`]; a commit wakes
/// only its own run's tails).
pub const DEFAULT_MAX_TAILS_PER_TENANT: usize = 256;

/// What `Retry-After` says when a tail is refused for the caps.
const TAILS_RETRY_AFTER_SECS: u64 = 5;

/// The live tails open now, counted in all and per tenant against their caps.
pub(crate) struct TailSlots {
    max_total: usize,
    max_per_tenant: usize,
    open: std::sync::Mutex<OpenTails>,
}

#[derive(Default)]
struct OpenTails {
    total: usize,
    /// Only tenants with a tail open: an entry goes with its tenant's last tail.
    by_tenant: std::collections::HashMap<String, usize>,
}

/// One open tail's place; given back when the tail (its response) is dropped.
pub(crate) struct TailSlot {
    slots: std::sync::Arc<TailSlots>,
    tenant: String,
}

impl TailSlots {
    pub(crate) fn new(max_total: usize, max_per_tenant: usize) -> TailSlots {
        TailSlots {
            max_total,
            max_per_tenant,
            open: std::sync::Mutex::new(OpenTails::default()),
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, OpenTails> {
        // The counts stay right even if a thread panicked holding the lock: each update
        // is one step.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one more tail of `tenant`, or the 429 that says which cap is reached.
    pub(crate) fn take(self: &std::sync::Arc<Self>, tenant: &str) -> Result<TailSlot, ApiError> {
        let mut open = self.open();
        let refuse = |message: String| ApiError {
            retry_after_secs: Some(TAILS_RETRY_AFTER_SECS),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too-many-tails", message)
        };
        let mine = open.by_tenant.get(tenant).copied().unwrap_or(0);
        if mine >= self.max_per_tenant {
            return Err(refuse(format!(
                "this tenant has {mine} live tails open, the most it may (close one first)"
            )));
        }
        if open.total >= self.max_total {
            return Err(refuse(format!(
                "the server has {} live tails open, the most it serves",
                open.total
            )));
        }
        open.total += 1;
        *open.by_tenant.entry(tenant.to_owned()).or_default() += 1;
        Ok(TailSlot {
            slots: self.clone(),
            tenant: tenant.to_owned(),
        })
    }
}

impl Drop for TailSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open();
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.by_tenant.get_mut(&self.tenant) {
            *mine -= 1;
            if *mine == 0 {
                open.by_tenant.remove(&self.tenant);
            }
        }
    }
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(cancel))
        .routes(routes!(retry))
        .routes(routes!(tail))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    /// The last run id of the previous page.
    after: Option<String>,
    limit: Option<usize>,
    order: Option<String>,
    plan: Option<String>,
    status: Option<String>,
    interaction: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

fn bad_query(message: String) -> ApiError {
    ApiError::bad_request("invalid-query", message)
}

/// A filter value that may not be empty (an empty one matches nothing and is a mistake).
fn non_empty(param: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() => Err(bad_query(format!("`{param}` is empty"))),
        v => Ok(v),
    }
}

const STATUSES: &str = "ready, parked, waiting, done, failed, cancelled";

fn status_param(value: Option<&str>) -> Result<Option<RunStatus>, ApiError> {
    value
        .map(|v| {
            RunStatus::parse(v)
                .map_err(|_| bad_query(format!("`status` must be one of {STATUSES}, not `{v}`")))
        })
        .transpose()
}

#[utoipa::path(get, path = "/v1/runs", params(("plan" = Option<String>, Query, min_length = 1, description = "the plan the run is in now"), ("status" = Option<String>, Query, pattern = r"^(?:ready|parked|waiting|done|failed|cancelled)$", description = "ready, parked, waiting, done, failed or cancelled"), ("interaction" = Option<String>, Query, min_length = 1, description = "the interaction that started it"), ("since" = Option<String>, Query, pattern = r"^(?:[0-9]{1,13}|[1-9][0-9]{0,3}[smhdw]|(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,3})?Z)?)$", description = "RFC 3339, a date, ms since the epoch, or a duration ago (7d)"), ("until" = Option<String>, Query, pattern = r"^(?:[0-9]{1,13}|[1-9][0-9]{0,3}[smhdw]|(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,3})?Z)?)$", description = "RFC 3339, a date, ms since the epoch, or a duration ago (7d)"), ("order" = Option<String>, Query, pattern = r"^(?:oldest|newest)$", description = "`oldest` (the default) or `newest` first, by creation time"), ("after" = Option<String>, Query, description = "the last run id of the previous page (`next` of the previous page), in the same order"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "the most runs on the page (default 100)")), responses((status = 200, description = "A page of runs", body = RunPage)), security(("tenant" = [])))]
async fn list_runs(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    QueryArgs(query): QueryArgs<RunsQuery>,
) -> Result<Reply<RunPage>, ApiError> {
    let limit = page_limit(query.limit, DEFAULT_RUNS_PAGE, MAX_RUNS_PAGE)?;
    let order = list_order(query.order.as_deref())?;
    let (since_ms, until_ms) = time_window(
        query.since.as_deref(),
        query.until.as_deref(),
        time::now_ms(),
    )?;
    let filter = RunFilter {
        plan: non_empty("plan", query.plan)?,
        status: status_param(query.status.as_deref())?,
        interaction: non_empty("interaction", query.interaction)?,
        since_ms,
        until_ms,
    };
    let runs = state
        .store()
        .find_runs(&tenant, &filter, order, query.after.as_deref(), limit)?;
    // A full page may have a next one; the client passes this as `after`.
    let next = (runs.len() == limit).then(|| runs.last().map(|r| r.id.clone()));
    Ok(Reply(RunPage {
        runs: runs.iter().map(run_json).collect(),
        next: next.flatten(),
    }))
}

/// Cancels a run that has not finished (ready, parked or waiting; a step in flight then
/// commits nothing). A finished run: 409 naming its status.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", params(("id" = String, Path, description = "the run's id")), responses((status = 200, description = "Cancelled", body = Run)), security(("tenant" = [])))]
async fn cancel(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<Reply<Run>, ApiError> {
    let control = state
        .engine()
        .cancel(&tenant, &id)
        .await
        .map_err(ApiError::from)?;
    control_answer(control, &id, "run-finished")
}

/// Retries a failed run from its failed node, as a new attempt. A run that is not failed:
/// 409 naming its status.
#[utoipa::path(post, path = "/v1/runs/{id}/retry", params(("id" = String, Path, description = "the run's id")), responses((status = 200, description = "Retried from the failed step", body = Run)), security(("tenant" = [])))]
async fn retry(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<Reply<Run>, ApiError> {
    let control = state
        .engine()
        .retry(&tenant, &id)
        .await
        .map_err(ApiError::from)?;
    control_answer(control, &id, "run-not-failed")
}

fn control_answer(
    control: Control,
    id: &str,
    refused: &'static str,
) -> Result<Reply<Run>, ApiError> {
    match control {
        Control::Applied(run) => Ok(Reply(run_json(&run))),
        Control::NotFound => Err(unknown_run(id)),
        Control::Refused { why, .. } => Err(ApiError::new(StatusCode::CONFLICT, refused, why)),
    }
}

/// A run's journal as server-sent events: the steps so far (after `Last-Event-ID`, when a
/// reconnecting client sends one), then each step as it commits (event `step`, id its
/// sequence number, data the step as in `GET /v1/runs/{id}`), and `end` with the run's
/// final status once it finishes; then the stream closes.
#[utoipa::path(get, path = "/v1/runs/{id}/tail", params(("id" = String, Path, description = "the run's id")), responses((status = 200, description = "The run's journal as it grows", body = String, content_type = "text/event-stream")), security(("tenant" = [])))]
async fn tail(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
    headers: HeaderMap,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let slot = state.inner.tails.take(&tenant)?;
    // Subscribed before the first read, so that no commit falls between the two.
    let commits = state.engine().watch_run(&id);
    if state.store().run(&tenant, &id)?.is_none() {
        return Err(unknown_run(&id));
    }
    let next_seq = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |seen| seen.saturating_add(1));
    let tail = Tail {
        state,
        tenant,
        id,
        next_seq,
        commits,
        queue: VecDeque::new(),
        noticed: None,
        read: false,
        more: false,
        done: false,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(tail, |mut tail| async move {
        let event = tail.next().await?;
        Some((Ok(event), tail))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A tail's state between events. Dropped with the response when the client goes: a
/// watch on the run's commits, a page of steps at most, and its place among the open tails.
struct Tail {
    state: AppState,
    tenant: String,
    id: String,
    /// The first step not yet sent.
    next_seq: u64,
    commits: coda_store::RunWatch,
    queue: VecDeque<Event>,
    /// The run's status as the last notice for it said, until the next read takes it: the
    /// notice is sent once its commit is on disk, so the journal read after it holds that
    /// step, and the run itself need not be read again.
    noticed: Option<RunStatus>,
    /// Whether the journal has been read once (the replay).
    read: bool,
    /// Whether the last read filled a page: there may be more to read without waiting.
    more: bool,
    done: bool,
    _slot: TailSlot,
}

impl Tail {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            if self.read && !self.more {
                self.changed().await;
            }
            self.read = true;
            self.catch_up();
        }
    }

    /// Waits until this run may have a new commit: a notice for it from this node, or the
    /// poll interval (another node's commit, which no notice here announces).
    async fn changed(&mut self) {
        if let Ok(commit) = tokio::time::timeout(TAIL_POLL, self.commits.changed()).await {
            self.noticed = Some(commit.status);
        }
    }

    /// Queues the steps committed since the last read, and `end` if the run has finished.
    fn catch_up(&mut self) {
        let store = self.state.store();
        // The run's status first, its journal second: a run seen finished has all its
        // steps committed, so the journal read after it holds them all. A notice for the
        // run says its status after the commit it announces: no need to read it again.
        let status = match self.noticed.take() {
            Some(status) => Some(status),
            None => match store.run(&self.tenant, &self.id) {
                Ok(run) => run.map(|r| r.status),
                Err(e) => return self.fail(e),
            },
        };
        let steps = match store.journal_page(&self.tenant, &self.id, self.next_seq, TAIL_PAGE) {
            Ok(steps) => steps,
            Err(e) => return self.fail(e),
        };
        // A full page: more may follow, and the run is not known finished until they are read.
        self.more = steps.len() == TAIL_PAGE;
        for step in steps {
            self.next_seq = step.seq + 1;
            let event = Event::default()
                .event("step")
                .id(step.seq.to_string())
                .json_data(step_json(&step));
            match event {
                Ok(event) => self.queue.push_back(event),
                Err(e) => return self.fail(e),
            }
        }
        if self.more {
            return;
        }
        let finished = status.is_none_or(RunStatus::is_finished);
        if finished {
            let data = json!({ "run": self.id, "status": status, "steps": self.next_seq });
            self.queue
                .push_back(Event::default().event("end").data(data.to_string()));
            self.done = true;
        }
    }

    /// The host failed mid-tail: say so in the stream (the status line is long gone) and
    /// end it; the cause is logged, not sent.
    fn fail(&mut self, why: impl std::fmt::Display) {
        tracing::error!(run = %self.id, "a live tail failed: {why}");
        let data = json!({ "kind": "internal", "message": "the server could not read the run" });
        self.queue
            .push_back(Event::default().event("error").data(data.to_string()));
        self.done = true;
    }
}

/// A run as lists and controls show it (without its data and journal).
#[derive(Serialize, ToSchema)]
pub struct Run {
    id: String,
    /// The plan it is in now (a route moves it to another).
    plan: String,
    plan_version: u32,
    interaction: Option<String>,
    #[schema(value_type = RunStatusName)]
    status: RunStatus,
    /// The node to run next; none once finished.
    node: Option<String>,
    /// The attempt the next step will be (1 unless retrying).
    attempt: u32,
    /// When a parked or waiting run goes on (ms since the epoch).
    due_at_ms: Option<i64>,
    /// What a waiting run waits for.
    #[schema(value_type = Option<Wait>)]
    wait: Option<coda_store::EventWait>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

/// A run's status.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // only its schema is used: `RunStatus` serializes itself
pub enum RunStatusName {
    Ready,
    Parked,
    Waiting,
    Done,
    Failed,
    Cancelled,
}

/// What a waiting run waits for.
#[derive(ToSchema)]
#[allow(dead_code)] // only its schema is used: `EventWait` serializes itself
pub struct Wait {
    /// The named event (`POST /v1/interactions/{id}/events/{event}`).
    event: String,
    /// The node the event leads to; none: the run ends.
    on_event: Option<String>,
    /// The node that waits.
    node: Option<String>,
}

/// A page of runs, in the order asked for (oldest first unless `order=newest`).
#[derive(Serialize, ToSchema)]
pub struct RunPage {
    runs: Vec<Run>,
    /// Pass as `after` for the next page; none on the last.
    next: Option<String>,
}

/// A run with its data, its journal and its capability calls.
#[derive(Serialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    run: Run,
    /// The run's data sources: any JSON values, by name.
    data: serde_json::Map<String, Json>,
    journal: Vec<Step>,
    effects: Vec<Effect>,
}

/// One step of a run's journal (in a run, and in its live tail).
#[derive(Serialize, ToSchema)]
pub struct Step {
    seq: u64,
    plan: String,
    plan_version: u32,
    node: String,
    /// `name@version`; empty for a step the host took itself (a wait's timeout, a stop).
    applet: String,
    attempt: u32,
    /// The outcome (`{"exit": ..}`, `{"pause": ..}`, ...) or `{"error": {"kind", ...}}`.
    result: Json,
    /// Where the run went and why, in words.
    note: String,
    fuel_used: u64,
    duration_us: u64,
    /// The data the step set, by name.
    data_changes: serde_json::Map<String, Json>,
    at_ms: i64,
    /// What the applet logged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logs: Vec<LogLine>,
}

/// One line an applet logged.
#[derive(Serialize, ToSchema)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    #[schema(value_type = String)]
    level: coda_types::LogLevel,
    message: String,
}

/// One capability call of a step, journaled once.
#[derive(Serialize, ToSchema)]
pub struct Effect {
    step_seq: u64,
    /// The call's position in the step, from 0.
    call_seq: u32,
    /// `http`, `email`, `sql-query`, `sql-execute`, `interactions`, `kv`.
    kind: String,
    /// SHA-256 of the request: a replay matches the same call.
    digest: String,
    /// The step's idempotency key, as the applet's context gave it (`cx.idempotency_key()`):
    /// the same on every attempt of the step. An applet that sets its own `Idempotency-Key`
    /// from it (the built-in `data-connector` does) sends this one.
    step_key: String,
    /// The key the host gives this call itself (coda-flow `call_key`: the step's key and the
    /// call's position): sent as the `Idempotency-Key` header of an HTTP request that sets
    /// none, and what an email's Message-ID is made from.
    call_key: String,
    /// The call's result as the applet got it.
    result: Json,
    at_ms: i64,
}

pub(crate) fn run_json(run: &RunRecord) -> Run {
    Run {
        id: run.id.clone(),
        plan: run.plan.clone(),
        plan_version: run.plan_version,
        interaction: run.interaction.clone(),
        status: run.status,
        node: run.node.clone(),
        attempt: run.attempt,
        due_at_ms: run.due_at_ms,
        wait: run.wait.clone(),
        created_at_ms: run.created_at_ms,
        updated_at_ms: run.updated_at_ms,
    }
}

/// Values as a JSON object.
fn values_map(values: &coda_types::Values) -> serde_json::Map<String, Json> {
    match values_json(values) {
        Json::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

#[utoipa::path(get, path = "/v1/runs/{id}", params(("id" = String, Path, description = "the run's id")), responses((status = 200, description = "The run with its journal", body = RunDetail)), security(("tenant" = [])))]
async fn get_run(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<Reply<RunDetail>, ApiError> {
    let store = state.store();
    let Some(run) = store.run(&tenant, &id)? else {
        return Err(unknown_run(&id));
    };
    let journal = store.journal(&tenant, &id)?;
    // `effects` takes no tenant: the run was found under this tenant just above.
    let effects = store.effects(&id, None)?;
    // A step's key names it by its first attempt: the attempt is the journal's for a
    // committed step, the run's own for the step in flight (its calls are journaled before
    // the step commits).
    let attempt_at = |seq: u64| {
        journal
            .iter()
            .find(|step| step.seq == seq)
            .map_or(run.attempt, |step| step.attempt)
    };
    let step_key_of = |e: &coda_store::EffectRecord| {
        coda_flow::step_key(&run.id, e.step_seq, attempt_at(e.step_seq))
    };
    Ok(Reply(RunDetail {
        run: run_json(&run),
        data: values_map(&run.data),
        journal: journal.iter().map(step_json).collect(),
        effects: effects
            .into_iter()
            .map(|e| Effect {
                call_key: coda_flow::call_key(&step_key_of(&e), e.call_seq),
                step_key: step_key_of(&e),
                step_seq: e.step_seq,
                call_seq: e.call_seq,
                kind: e.kind,
                digest: e.digest,
                result: e.result,
                at_ms: e.at_ms,
            })
            .collect(),
    }))
}

pub(crate) fn unknown_run(id: &str) -> ApiError {
    ApiError::not_found("unknown-run", format!("run `{id}` not found"))
}

/// A journal step as the API shows it (in a run, and in its live tail).
pub(crate) fn step_json(step: &StepRecord) -> Step {
    Step {
        seq: step.seq,
        plan: step.plan.clone(),
        plan_version: step.plan_version,
        node: step.node.clone(),
        applet: step.applet.clone(),
        attempt: step.attempt,
        result: step.result.clone(),
        note: step.note.clone(),
        fuel_used: step.fuel_used,
        duration_us: step.duration_us,
        data_changes: values_map(&step.data_changes),
        at_ms: step.at_ms,
        logs: step
            .logs
            .iter()
            .map(|l| LogLine {
                level: l.level,
                message: l.message.clone(),
            })
            .collect(),
    }
}
