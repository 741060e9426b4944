//! The steps journal: a step's commit (its journal entry and the run's next position,
//! fenced by the run's step sequence and the node's claim), reading the journal back, and
//! the notice of each commit that a live tail waits on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::db::{Conn, Row, ToValue, Value, params, to_postgres};
use crate::leases::{CLAIM_AFTER_COMMIT, Claimed, KeepClaim};
use crate::runs::{RUN_COLUMNS, RunRecord, run_from_row};
use coda_types::Values;
use serde::{Deserialize, Serialize};

use crate::inputs::{self, StoredInput};
use crate::runs::RunStatus;
use crate::waits::EventWait;
use crate::{Result, Store, StoreError};

/// A commit to a run's journal, sent once it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCommitted {
    pub run_id: Arc<str>,
    /// The step's sequence number.
    pub seq: u64,
    /// The run's status after it.
    pub status: RunStatus,
}

/// The sending side of the commit notices, keyed by run: a commit wakes the watchers of
/// its own run and no one else, so it costs one map lookup however many runs are watched.
/// (A broadcast to every watcher woke each of 256 live tails on each of 1,500 commits a
/// second, to find the one notice it wanted.)
#[derive(Default)]
pub(crate) struct Commits(Arc<Watchers>);

/// Each watched run's watchers.
type Watchers = Mutex<HashMap<Arc<str>, Vec<Arc<WatchSlot>>>>;

/// One watcher's mailbox: the latest notice for its run, and the wake-up. A notice sent
/// while nobody waits is kept (`Notify` stores the permit), so none falls between a read
/// and the next wait.
#[derive(Default)]
struct WatchSlot {
    notify: Notify,
    latest: Mutex<Option<RunCommitted>>,
}

impl Commits {
    pub(crate) fn new() -> Commits {
        Commits::default()
    }

    pub(crate) fn send(&self, run_id: &str, seq: u64, status: RunStatus) {
        let watchers = lock(&self.0);
        let Some((watched, slots)) = watchers.get_key_value(run_id) else {
            return; // nobody watches this run: the common case
        };
        for slot in slots {
            let notice = RunCommitted {
                run_id: watched.clone(),
                seq,
                status,
            };
            let mut latest = lock(&slot.latest);
            // Notices of one run can reach here out of order from two writers' threads;
            // the later step is the one that says the run's status now.
            if latest.as_ref().is_none_or(|had| had.seq <= seq) {
                *latest = Some(notice);
            }
            drop(latest);
            slot.notify.notify_one();
        }
    }

    fn watch(&self, run_id: &str) -> RunWatch {
        let run_id: Arc<str> = run_id.into();
        let slot = Arc::new(WatchSlot::default());
        lock(&self.0)
            .entry(run_id.clone())
            .or_default()
            .push(slot.clone());
        RunWatch {
            run_id,
            slot,
            watchers: self.0.clone(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps hold no invariant a panic could break half-way.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A watch on one run's journal commits made through this store, from its making until it
/// is dropped. Commits made by other nodes are not seen: a watcher polls for those.
pub struct RunWatch {
    run_id: Arc<str>,
    slot: Arc<WatchSlot>,
    watchers: Arc<Watchers>,
}

impl RunWatch {
    /// Waits for the next commit of the run (or returns the one that came since the last
    /// call): the latest notice, when several came at once.
    pub async fn changed(&self) -> RunCommitted {
        loop {
            if let Some(notice) = lock(&self.slot.latest).take() {
                return notice;
            }
            self.slot.notify.notified().await;
        }
    }
}

impl Drop for RunWatch {
    fn drop(&mut self) {
        let mut watchers = lock(&self.watchers);
        if let Some(slots) = watchers.get_mut(&self.run_id) {
            slots.retain(|slot| !Arc::ptr_eq(slot, &self.slot));
            if slots.is_empty() {
                watchers.remove(&self.run_id);
            }
        }
    }
}

/// One journaled step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub seq: u64,
    pub plan: String,
    pub plan_version: u32,
    pub node: String,
    /// `name@version`; empty for a step the host took itself (a wait's timeout, a stop).
    pub applet: String,
    pub attempt: u32,
    /// The outcome (`{"exit": ..}`, `{"pause": ..}`, ...) or `{"error": {"kind", ...}}`.
    pub result: serde_json::Value,
    /// Where the run went and why, in words: "exit next → route", "retry in 400 ms", ...
    pub note: String,
    pub fuel_used: u64,
    pub duration_us: u64,
    pub data_changes: Values,
    pub at_ms: i64,
    /// What the applet logged during the step (bounded by the invocation's log limit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<coda_types::LogLine>,
}

/// A step's commit: its journal entry and the run's next position, applied together.
#[derive(Debug, Clone)]
pub struct StepCommit {
    pub run_id: String,
    /// The run's `step_seq` when the step began: the fence.
    pub expected_seq: u64,
    pub step: StepRecord,
    pub next: RunUpdate,
    /// What the step's applet was given; none for a step the host took itself.
    pub input: Option<StepInput>,
}

/// What an applet step was given: the run's data sources and its node's state, as they
/// were when the step began. Journaled with the step, so that it can be run again offline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepInput {
    pub data: Values,
    pub state: Values,
}

/// The run's position after a step.
#[derive(Debug, Clone)]
pub struct RunUpdate {
    pub status: RunStatus,
    pub plan: String,
    pub plan_version: u32,
    pub node: Option<String>,
    pub attempt: u32,
    pub data: Values,
    pub state: std::collections::BTreeMap<String, Values>,
    pub due_at_ms: Option<i64>,
    pub wait: Option<EventWait>,
    pub route_depth: u32,
}

impl Store {
    /// Watches the journal commits of run `run_id` made through this store from now on.
    pub fn watch_run(&self, run_id: &str) -> RunWatch {
        self.commits.watch(run_id)
    }

    /// Commits a step and the run's next position together, fenced by the step sequence and
    /// by the claim `claim` (`leases.rs`): the commit applies only while that claim is the
    /// run's latest, and releases it in the same write, or with `keep` keeps it for the
    /// run's next step when that is due now (`leases.rs`, [`CLAIM_AFTER_COMMIT`]). Returns
    /// the run under the kept claim, if it was kept.
    ///
    /// One write of [`commit_run`] and [`JOURNAL_STEP`], over one list of parameters: on
    /// SQLite two statements; on PostgreSQL one call of the function made of the same two
    /// ([`commit_function`]), one round trip, pipelined with the other writes of its batch.
    pub(crate) async fn commit_fenced(
        &self,
        commit: StepCommit,
        claim: u64,
        keep: Option<KeepClaim>,
    ) -> Result<Option<Claimed>> {
        let step = &commit.step;
        let next = &commit.next;
        let result = serde_json::to_string(&step.result)?;
        let changes = serde_json::to_string(&step.data_changes)?;
        let data = serde_json::to_string(&next.data)?;
        let state = serde_json::to_string(&next.state)?;
        let wait = next.wait.as_ref().map(serde_json::to_string).transpose()?;
        // What the step was given (inputs.rs): the data in full at the run's first step
        // only, and how this commit changes it. A step the host took carries no input: its
        // change is reckoned from the run's data as stored, in the write.
        let given = match &commit.input {
            Some(given) => {
                let stored = StoredInput {
                    data: (step.seq == 0).then(|| given.data.clone()),
                    state: given.state.clone(),
                };
                Some((
                    serde_json::to_string(&stored)?,
                    inputs::delta_column(&given.data, &next.data, &step.data_changes)?,
                ))
            }
            None => None,
        };
        let logs = (!step.logs.is_empty())
            .then(|| serde_json::to_string(&step.logs))
            .transpose()?;
        let (input, delta) = match &given {
            Some((input, delta)) => (Some(input.clone()), delta.clone().to_value()),
            None => (None, Value::Null),
        };
        let values: Vec<Value> = params![
            next.status.as_str(),
            next.plan,
            next.plan_version,
            next.node,
            next.attempt,
            data,
            state,
            next.due_at_ms,
            wait,
            next.route_depth,
            step.at_ms,
            commit.run_id,
            commit.expected_seq,
            claim,
            step.seq,
            step.plan,
            step.plan_version,
            step.node,
            step.applet,
            step.attempt,
            result,
            step.note,
            step.fuel_used,
            step.duration_us,
            changes,
            step.at_ms,
            input,
            logs,
            delta,
            keep.as_ref().map(|k| k.node.clone()),
            keep.as_ref().map(|k| k.until_ms),
            keep.as_ref().map(|k| k.now_ms)
        ]
        .to_vec();
        let (run_id, seq, status, expected) = (
            commit.run_id.clone(),
            step.seq,
            next.status,
            commit.expected_seq,
        );
        // A run left due (not finished, not continued here) may be another node's to take.
        let continues = keep.as_ref().is_some_and(|k| {
            next.status == RunStatus::Ready && next.due_at_ms.is_some_and(|due| due <= k.now_ms)
        });
        let makes_work = !next.status.is_finished() && !continues;
        // A commit that parks its run on a wait takes an event stored for it before
        // (`events.rs`) in the same write; only such a commit pays that lookup.
        let parks = next.status == RunStatus::Waiting && next.wait.is_some();
        let mut taken = None;
        let kept = if self.is_postgres() && given.is_some() && !parks {
            let rows = self
                .writer
                .write_one(commit_call().to_owned(), values, makes_work)
                .await?;
            committed(rows.first(), claim, &run_id, expected)?
        } else {
            let at_ms = commit.step.at_ms;
            // A host step's input is reckoned in the write from the run's data: copied once
            // for it, and only for it (an applet's step brings its input), since the data
            // may be megabytes and this is every SQLite commit's path.
            let host_inputs = given.is_none().then(|| {
                std::sync::Arc::new((commit.next.data.clone(), commit.step.data_changes.clone()))
            });
            let mut tries = 0;
            let mut attempt = values;
            // A parking commit takes its interaction's lock (`events.rs`): chosen as a
            // deadlock's victim on PostgreSQL, nothing of it was written, and it is sent
            // again. Only its parameters are kept for that: other commits are not copied.
            loop {
                let spare = parks.then(|| attempt.clone());
                let mut values = attempt;
                let host_inputs = host_inputs.clone();
                let written = self
                    .writer
                    .write(move |tx| {
                        if let Some(inputs) = &host_inputs {
                            let (next_data, step_data_changes) = inputs.as_ref();
                            host_step_input(tx, &mut values, seq, next_data, step_data_changes)?;
                        }
                        if makes_work {
                            tx.made_work();
                        }
                        let (kept, run) = apply_commit(tx, &values, claim, expected)?;
                        let taken = match parks {
                            true => crate::events::take_on_park(tx, &run, at_ms)?,
                            false => None,
                        };
                        Ok((kept, taken))
                    })
                    .await;
                match (written, spare) {
                    (Err(e), Some(spare))
                        if e.is_deadlock() && tries + 1 < crate::DEADLOCK_TRIES =>
                    {
                        tries += 1;
                        attempt = spare;
                    }
                    (done, _) => {
                        let (kept, woken) = done?;
                        taken = woken;
                        break kept;
                    }
                }
            }
        };
        self.commits.send(&run_id, seq, status);
        if let Some(woken) = taken {
            self.announce(vec![woken]);
        }
        Ok(kept)
    }

    /// The run's journal, in order; empty for another tenant's run.
    pub fn journal(&self, tenant: &str, run_id: &str) -> Result<Vec<StepRecord>> {
        self.journal_from(tenant, run_id, 0)
    }

    /// The run's journal from step `from_seq` on.
    pub fn journal_from(
        &self,
        tenant: &str,
        run_id: &str,
        from_seq: u64,
    ) -> Result<Vec<StepRecord>> {
        self.journal_page(tenant, run_id, from_seq, usize::MAX)
    }

    /// At most `limit` steps of the run's journal from step `from_seq` on: a live tail reads
    /// only what is new, a page at a time, so that a long journal is never held whole for
    /// each of its watchers.
    pub fn journal_page(
        &self,
        tenant: &str,
        run_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StepRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT s.seq, s.plan, s.plan_version, s.node, s.applet, s.attempt, s.result,
                        s.note, s.fuel_used, s.duration_us, s.data_changes, s.at, s.logs
                 FROM steps s JOIN runs r ON r.id = s.run_id
                 WHERE r.tenant = ?1 AND s.run_id = ?2 AND s.seq >= ?3 ORDER BY s.seq LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![tenant, run_id, from_seq, limit], |r| {
                let result: String = r.get(6)?;
                let changes: String = r.get(10)?;
                Ok((
                    StepRecord {
                        seq: r.get(0)?,
                        plan: r.get(1)?,
                        plan_version: r.get(2)?,
                        node: r.get(3)?,
                        applet: r.get(4)?,
                        attempt: r.get(5)?,
                        result: serde_json::Value::Null,
                        note: r.get(7)?,
                        fuel_used: r.get(8)?,
                        duration_us: r.get(9)?,
                        data_changes: Values::new(),
                        at_ms: r.get(11)?,
                        logs: Vec::new(),
                    },
                    result,
                    changes,
                    r.get::<Option<String>>(12)?,
                ))
            })?;
            rows.map(|row| {
                let (mut step, result, changes, logs) = row?;
                step.result = serde_json::from_str(&result)?;
                step.data_changes = serde_json::from_str(&changes)?;
                if let Some(logs) = logs {
                    step.logs = serde_json::from_str(&logs)?;
                }
                Ok(step)
            })
            .collect()
        })
    }
}

/// A step the host took carries no input: its data delta is reckoned from the run's data
/// as stored, in the write, and at the run's first step that data is its input.
fn host_step_input(
    tx: &Conn<'_>,
    values: &mut [Value],
    seq: u64,
    next_data: &Values,
    step_data_changes: &Values,
) -> Result<()> {
    let before = inputs::current_data(tx, &run_id_of(values))?.unwrap_or_default();
    values[DELTA] = inputs::delta_column(&before, next_data, step_data_changes)?.to_value();
    values[INPUT] = (seq == 0)
        .then(|| {
            serde_json::to_string(&StoredInput {
                data: Some(before),
                state: Values::new(),
            })
        })
        .transpose()?
        .to_value();
    Ok(())
}

/// The run's next position, fenced by its step sequence (`?13`) and the claim (`?14`), the
/// claim kept or released ([`CLAIM_AFTER_COMMIT`]), the row returned. Parameters: see
/// [`Store::commit_fenced`]'s list.
fn commit_run() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "UPDATE runs SET status = ?1, plan = ?2, plan_version = ?3, node = ?4,
                step_seq = step_seq + 1, attempt = ?5, data = ?6, state = ?7, due_at = ?8,
                wait = ?9, route_depth = ?10, updated_at = ?11, {CLAIM_AFTER_COMMIT}
             WHERE id = ?12 AND step_seq = ?13 AND claim_seq = ?14"
        )
    })
}

/// The step's journal entry.
const JOURNAL_STEP: &str = "INSERT INTO steps (run_id, seq, plan, plan_version, node, applet,
        attempt, result, note, fuel_used, duration_us, data_changes, at, input, logs, data_delta)
     VALUES (?12, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)";

/// Where the commit's parameters hold the run's id, the step's input and its data delta.
const RUN_ID: usize = 11;
const INPUT: usize = 26;
const DELTA: usize = 28;
/// How many parameters the commit takes; the first [`JOURNAL_STEP`] uses.
const COMMIT_PARAMS: usize = 32;
const STEP_PARAMS: usize = 29;

fn run_id_of(values: &[Value]) -> String {
    match values.get(RUN_ID) {
        Some(Value::Text(id)) => id.clone(),
        _ => String::new(),
    }
}

/// The commit's parameter types on PostgreSQL, in order (`?1` to `?32`).
const COMMIT_TYPES: [&str; COMMIT_PARAMS] = [
    "text", "text", "bigint", "text", "bigint", "text", "text", "bigint", "text", "bigint",
    "bigint", "text", "bigint", "bigint", "bigint", "text", "bigint", "text", "text", "bigint",
    "text", "text", "bigint", "bigint", "text", "bigint", "text", "text", "text", "text", "bigint",
    "bigint",
];

/// PostgreSQL's step commit: one function made of [`commit_run`] and [`JOURNAL_STEP`] as
/// written for SQLite (PL/pgSQL reads `$N` as the function's Nth
/// parameter), so that a step's commit is one statement, one round trip. It returns the
/// run's row once committed (its claim kept, or released: `claim_owner` says which), and
/// no row when the fence refused the commit. Its name carries a digest of its text, so a
/// node of another version sharing the database keeps its own; it is (re)made when a store
/// opens ([`crate::schema::migrate_postgres`]). Returns the name and the `CREATE`.
pub(crate) fn commit_function() -> &'static (String, String) {
    static FUNCTION: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    FUNCTION.get_or_init(|| {
        let body = format!(
            "DECLARE row runs;
             BEGIN
                 {} RETURNING runs.* INTO row;
                 IF NOT FOUND THEN RETURN; END IF;
                 {};
                 RETURN NEXT row;
             END",
            to_postgres(commit_run()),
            to_postgres(JOURNAL_STEP),
        );
        use sha2::{Digest, Sha256};
        let digest = hex::encode(&Sha256::digest(body.as_bytes())[..6]);
        let name = format!("coda_commit_step_{digest}");
        let create = format!(
            "CREATE OR REPLACE FUNCTION {name}({}) RETURNS SETOF runs LANGUAGE plpgsql AS $fn$ {body} $fn$",
            COMMIT_TYPES.join(", ")
        );
        (name, create)
    })
}

/// The call of [`commit_function`], with the run's columns, its step claims and its
/// claim's owner.
fn commit_call() -> &'static str {
    static CALL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CALL.get_or_init(|| {
        let placeholders: Vec<String> = (1..=COMMIT_PARAMS).map(|i| format!("?{i}")).collect();
        format!(
            "SELECT {RUN_COLUMNS}, step_claims, claim_owner FROM {}({})",
            commit_function().0,
            placeholders.join(", ")
        )
    })
}

/// A commit inside a write: on PostgreSQL the function's call, on SQLite its two
/// statements. Also answers the run as committed (what a parking commit's event lookup
/// reads, `events.rs`).
fn apply_commit(
    tx: &Conn<'_>,
    values: &[Value],
    claim: u64,
    expected: u64,
) -> Result<(Option<Claimed>, RunRecord)> {
    let run_id = run_id_of(values);
    let as_committed = |row: Option<&Row>| -> Result<(Option<Claimed>, RunRecord)> {
        let kept = committed(row, claim, &run_id, expected)?;
        let run = match row {
            Some(row) => run_from_row(row)??,
            None => return Err(StoreError::NoRow),
        };
        Ok((kept, run))
    };
    if tx.is_postgres() {
        let rows = tx.query(commit_call(), values)?;
        return as_committed(rows.first());
    }
    static RETURNING: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = RETURNING.get_or_init(|| {
        format!(
            "{} RETURNING {RUN_COLUMNS}, step_claims, claim_owner",
            commit_run()
        )
    });
    let rows = tx.query(sql, values)?;
    if rows.is_empty() {
        return as_committed(None);
    }
    tx.prepare_cached(JOURNAL_STEP)?
        .execute(&values[..STEP_PARAMS])?;
    as_committed(rows.first())
}

/// What the function's answer says: no row, the fence refused the commit; a row with no
/// claim owner, committed and released; else committed under the kept claim.
fn committed(
    row: Option<&Row>,
    claim: u64,
    run_id: &str,
    expected: u64,
) -> Result<Option<Claimed>> {
    let Some(row) = row else {
        return Err(StoreError::Conflict {
            run: run_id.to_owned(),
            expected,
        });
    };
    if row.get::<Option<String>>(17)?.is_none() {
        return Ok(None);
    }
    claimed_from(row, claim).map(Some)
}

/// A run row followed by its `step_claims`, as a claim kept by `claim`.
fn claimed_from(r: &Row, claim: u64) -> Result<Claimed> {
    Ok(Claimed {
        run: run_from_row(r)??,
        claim_seq: claim,
        step_claims: r.get(16)?,
    })
}
