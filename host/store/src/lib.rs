//! `coda-store`: what must survive a crash — plan versions, runs, and each run's journal —
//! in an embedded SQLite database.
//!
//! Writes go through one writer thread that owns the only write connection and commits in
//! groups: it takes every write that is waiting, applies each in its own savepoint, commits
//! them in one transaction (one fsync), and only then answers each caller. A caller's write
//! is on disk when its future resolves, so "a step is committed before the next one starts"
//! holds, while the fsync is shared by every run that stepped in the meantime.
//!
//! **Architecture Invariant:** a step commit is fenced by the run's step sequence number:
//! it applies only if the run is still at the sequence the step started from, so a step can
//! never be committed twice or over a newer one.

mod applets;
mod audit;
mod db;
mod grants;
mod interactions;
mod kv;
mod leases;
mod post_contact;
mod queue;
mod runs;
mod schema;
mod tenants;
mod usage;
mod writer;

pub use applets::{AppletRecord, NewApplet, PutApplet};
pub use audit::{AuditEntry, FieldChange, InteractionChange};
pub use interactions::{
    Channel, Customer, CustomerPatch, FollowUpOf, FollowUpRefused, InteractionDetails,
    InteractionRecord, InteractionStatus, NewFollowUp, Party, PostContactWork, PostFlowAction,
    PostFlowTarget, SubmittedDisposition,
};
pub use post_contact::{AgentState, DispositionOption, PostContact};

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use coda_types::Values;
use db::{Conn, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub use grants::{GrantRecord, SecretInfo, SecretWrite, SecretsKey};
pub use kv::{EffectSlot, KV_PRUNE_BATCH, KvResult};
pub use leases::{ClaimState, Claimed, TenantSlots};
pub use queue::DueRun;
pub use runs::{Control, PlanVersionInfo, RunCommitted, RunFilter};
pub use tenants::{NewToken, PlanVersion};
pub use usage::{EffectCount, Usage};
pub use writer::WriteStats;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A query expected a row and found none.
    #[error("no such row")]
    NoRow,
    /// A column that does not read as the type asked for.
    #[error("stored value does not read: {0}")]
    Column(String),
    #[error("stored JSON does not parse: {0}")]
    Json(#[from] serde_json::Error),
    /// The run moved on since the step began (another commit won): nothing was written.
    #[error("run {run} is no longer at step {expected}: the step was not committed")]
    Conflict { run: String, expected: u64 },
    #[error("the store's writer has stopped")]
    WriterGone,
    /// The transaction holding this write failed (disk full, I/O error): nothing of it is
    /// stored.
    #[error("the write was not committed: {0}")]
    NotCommitted(String),
    /// A secret that could not be sealed or opened (the message names it, never its value).
    #[error("secret: {0}")]
    Secret(String),
    #[error("cannot open the database at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A database URL that names no backend the store has, or a PostgreSQL server that
    /// could not be reached (the URL is shown without its password).
    #[error("cannot open the database {url}: {reason}")]
    OpenUrl {
        url: String,
        reason: String,
        /// The server could not be reached (worth trying again), not a wrong location.
        unavailable: bool,
    },
}

impl StoreError {
    /// The database cannot be reached or is busy right now: worth answering "try again
    /// later" (the API's 503 with Retry-After) and backing off, not a fault of the request.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            StoreError::Postgres(e) => {
                e.is_closed()
                    || e.code().is_none_or(|code| {
                        // Class 08 (connection exception), 57P0x (shutdown, cannot connect
                        // now), 53 (insufficient resources).
                        let code = code.code();
                        code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
                    })
            }
            StoreError::NotCommitted(_) | StoreError::WriterGone => true,
            StoreError::OpenUrl { unavailable, .. } => *unavailable,
            _ => false,
        }
    }
}

/// A database URL without its passwords, for messages (the rule is `coda-types`').
pub use coda_types::scrub::redact_url;

pub type Result<T> = std::result::Result<T, StoreError>;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Has a node to run as soon as it is due.
    Ready,
    /// Paused until `due_at`.
    Parked,
    /// Waiting for an event until `due_at` (the timeout).
    Waiting,
    /// Ended through an exit (or an unwired one).
    Done,
    /// Ended through an error with no error exit wired.
    Failed,
    /// Stopped through the API before it finished.
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ready => "ready",
            RunStatus::Parked => "parked",
            RunStatus::Waiting => "waiting",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "ready" => RunStatus::Ready,
            "parked" => RunStatus::Parked,
            "waiting" => RunStatus::Waiting,
            "done" => RunStatus::Done,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            other => {
                return Err(StoreError::Json(serde::de::Error::custom(format!(
                    "unknown run status {other:?}"
                ))));
            }
        })
    }
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Done | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// A wait for an event: where the run goes when it arrives (none: the run ends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventWait {
    pub event: String,
    pub on_event: Option<String>,
    /// The node that waits: the event's or the timeout's step is journaled there.
    #[serde(default)]
    pub node: Option<String>,
}

/// One capability call's journaled result: the effect journal. A re-executed step (after a
/// crash) finds its calls here by position and request digest, and gets their results back
/// instead of acting twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectRecord {
    pub step_seq: u64,
    /// The call's position in the step, from 0.
    pub call_seq: u32,
    /// `http`, `email`, `sql-query`, `sql-execute`, `interactions`.
    pub kind: String,
    /// SHA-256 of the request, so a replay matches the same call, not only the same position.
    pub digest: String,
    /// The call's result as the applet got it (a response, or a host error).
    pub result: serde_json::Value,
    pub at_ms: i64,
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub tenant: String,
    pub plan: String,
    pub plan_version: u32,
    pub interaction: Option<String>,
    /// Unique per tenant: the same trigger (interaction + event) starts one run, not two.
    pub trigger_key: Option<String>,
    pub start_node: String,
    pub data: Values,
    pub now_ms: i64,
}

/// The result of [`Store::start_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedRun {
    pub id: String,
    /// False when the trigger had already started this run.
    pub created: bool,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub tenant: String,
    pub plan: String,
    pub plan_version: u32,
    pub interaction: Option<String>,
    pub status: RunStatus,
    /// The node to run next; none once finished.
    pub node: Option<String>,
    /// Steps committed so far.
    pub step_seq: u64,
    /// The attempt the next step will be (1 unless retrying).
    pub attempt: u32,
    pub data: Values,
    /// Node state, by node id.
    pub state: std::collections::BTreeMap<String, Values>,
    pub due_at_ms: Option<i64>,
    pub wait: Option<EventWait>,
    /// How many times the run has routed to another plan.
    pub route_depth: u32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
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

/// The database: SQLite embedded in the process, or a PostgreSQL server several nodes
/// share.
pub struct Store {
    writer: writer::Writer,
    reads: Reads,
    /// Told of every journal commit, after it is on disk (live tails wait on it).
    commits: runs::Commits,
}

enum Reads {
    Sqlite(Mutex<rusqlite::Connection>),
    Pg(std::sync::Arc<db::Pg>),
}

fn open_connection(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    // WAL: readers do not block the writer. FULL: a commit survives power loss, not only a
    // process crash. The busy timeout lets a reader wait out a checkpoint.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up
    /// to date.
    pub fn open(path: &Path) -> Result<Store> {
        let mut conn = open_connection(path)?;
        schema::migrate_sqlite(&mut conn)?;
        let reader = open_connection(path)?;
        Ok(Store {
            writer: writer::Writer::start(writer::WriteConn::Sqlite(conn)),
            reads: Reads::Sqlite(Mutex::new(reader)),
            commits: runs::Commits::new(),
        })
    }

    /// Opens the database `location` names: `postgres://…` (or `postgresql://…`) a
    /// PostgreSQL database, `sqlite:PATH` or a plain path a SQLite file. The schema is
    /// brought up to date; on PostgreSQL under an advisory lock, so nodes starting together
    /// migrate once.
    pub fn open_url(location: &str) -> Result<Store> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            return Store::open_postgres(location);
        }
        let path = location.strip_prefix("sqlite:").unwrap_or(location);
        if path.is_empty() || location.contains("://") {
            return Err(StoreError::OpenUrl {
                url: redact_url(location),
                reason: "not a database coda knows: give a file path, sqlite:PATH or postgres://USER@HOST:PORT/DB".into(),
                unavailable: false,
            });
        }
        Store::open(Path::new(path))
    }

    fn open_postgres(url: &str) -> Result<Store> {
        let pg = db::Pg::start(url)?;
        let open_error = |e: StoreError| StoreError::OpenUrl {
            url: redact_url(url),
            reason: e.to_string(),
            unavailable: e.is_unavailable(),
        };
        let mut conn = pg.connect().map_err(open_error)?;
        schema::migrate_postgres(&mut conn).map_err(open_error)?;
        Ok(Store {
            writer: writer::Writer::start(writer::WriteConn::Pg {
                pg: pg.clone(),
                conn: Some(conn),
            }),
            reads: Reads::Pg(pg),
            commits: runs::Commits::new(),
        })
    }

    /// Whether this store is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.reads, Reads::Pg(_))
    }

    fn read<T>(&self, f: impl FnOnce(&Conn<'_>) -> Result<T>) -> Result<T> {
        match &self.reads {
            Reads::Sqlite(reader) => {
                let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
                f(&Conn::Sqlite(&conn))
            }
            Reads::Pg(pg) => pg.read(f),
        }
    }

    /// Group-commit statistics: batches and writes since start.
    pub fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }

    /// Stores a new immutable version of a plan; returns its number (1, 2, ...).
    pub async fn publish_plan(
        &self,
        tenant: &str,
        name: &str,
        body: &serde_json::Value,
        now_ms: i64,
    ) -> Result<u32> {
        let (tenant, name, body) = (tenant.to_owned(), name.to_owned(), body.to_string());
        self.writer
            .write(move |tx| {
                let version: u32 = tx.query_row(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM plans WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                    |row| row.get(0),
                )?;
                tx.prepare_cached("INSERT INTO plans (tenant, name, version, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(
                    params![tenant, name, version, body, now_ms],
                )?;
                Ok(version)
            })
            .await
    }

    /// A plan version (the latest when `version` is none) and its number.
    pub fn plan(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<(u32, serde_json::Value)>> {
        self.read(|conn| {
            // No version: the latest. A version: that one, or none.
            let row: Option<(u32, String)> = conn
                .prepare_cached(
                    "SELECT version, body FROM plans
                     WHERE tenant = ?1 AND name = ?2 AND version = COALESCE(?3, version)
                     ORDER BY version DESC LIMIT 1",
                )?
                .query_row(params![tenant, name, version], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            row.map(|(v, body)| Ok((v, serde_json::from_str(&body)?)))
                .transpose()
        })
    }

    /// Creates a run, or finds the one its trigger already created: a unique insert, never
    /// check-then-insert, so a trigger delivered twice (even at once) starts one run.
    pub async fn start_run(&self, new: NewRun) -> Result<StartedRun> {
        let id = uuid::Uuid::now_v7().to_string();
        let data = serde_json::to_string(&new.data)?;
        self.writer
            .write(move |tx| {
                let inserted = tx.prepare_cached("INSERT INTO runs (id, tenant, plan, plan_version, interaction, trigger_key,
                        status, node, step_seq, attempt, data, state, due_at, route_depth,
                        created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'ready', ?7, 0, 1, ?8, '{}', ?9, 0, ?9, ?9)
                     ON CONFLICT (tenant, trigger_key) DO NOTHING")?.execute(
                    params![
                        id,
                        new.tenant,
                        new.plan,
                        new.plan_version,
                        new.interaction,
                        new.trigger_key,
                        new.start_node,
                        data,
                        new.now_ms
                    ],
                )?;
                if inserted == 1 {
                    return Ok(StartedRun { id, created: true });
                }
                let existing: String = tx.query_row(
                    "SELECT id FROM runs WHERE tenant = ?1 AND trigger_key = ?2",
                    params![new.tenant, new.trigger_key],
                    |r| r.get(0),
                )?;
                Ok(StartedRun {
                    id: existing,
                    created: false,
                })
            })
            .await
    }

    /// Commits a step and the run's next position together, fenced by the step sequence.
    pub async fn commit_step(&self, commit: StepCommit) -> Result<()> {
        self.commit_fenced(commit, None).await
    }

    /// [`Store::commit_step`], fenced by the claim too when `claim` is a claim's number
    /// (`leases.rs`): the commit applies only while that claim is the run's latest, and
    /// releases it in the same write.
    pub(crate) async fn commit_fenced(&self, commit: StepCommit, claim: Option<u64>) -> Result<()> {
        let step = commit.step;
        let next = commit.next;
        let result = serde_json::to_string(&step.result)?;
        let changes = serde_json::to_string(&step.data_changes)?;
        let data = serde_json::to_string(&next.data)?;
        let state = serde_json::to_string(&next.state)?;
        let wait = next.wait.as_ref().map(serde_json::to_string).transpose()?;
        let input = commit
            .input
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        let logs = (!step.logs.is_empty())
            .then(|| serde_json::to_string(&step.logs))
            .transpose()?;
        let (run_id, seq, status) = (commit.run_id.clone(), step.seq, next.status);
        self.writer
            .write(move |tx| {
                let updated = tx
                    .prepare_cached(
                        "UPDATE runs SET status = ?1, plan = ?2, plan_version = ?3, node = ?4,
                        step_seq = step_seq + 1, attempt = ?5, data = ?6, state = ?7, due_at = ?8,
                        wait = ?9, route_depth = ?10, updated_at = ?11,
                        claim_owner = CASE WHEN CAST(?14 AS BIGINT) IS NULL THEN claim_owner END,
                        claim_until = CASE WHEN CAST(?14 AS BIGINT) IS NULL THEN claim_until END
                     WHERE id = ?12 AND step_seq = ?13 AND (CAST(?14 AS BIGINT) IS NULL OR claim_seq = ?14)",
                    )?
                    .execute(params![
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
                        claim
                    ])?;
                if updated != 1 {
                    return Err(StoreError::Conflict {
                        run: commit.run_id.clone(),
                        expected: commit.expected_seq,
                    });
                }
                tx.prepare_cached(
                    "INSERT INTO steps (run_id, seq, plan, plan_version, node, applet, attempt,
                        result, note, fuel_used, duration_us, data_changes, at, input, logs)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )?
                .execute(params![
                    commit.run_id,
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
                    logs
                ])?;
                Ok(())
            })
            .await?;
        self.commits.send(&run_id, seq, status);
        Ok(())
    }

    /// Runs that are due at `now_ms`, oldest due first: ready runs, pauses that ended, and
    /// waits that timed out. Only what is due is read, never every parked run.
    pub fn due_runs(&self, now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs
                 WHERE status IN ('ready', 'parked', 'waiting') AND due_at <= ?1
                 ORDER BY due_at LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now_ms, limit as i64], run_from_row)?;
            rows.map(|r| r?).collect()
        })
    }

    /// The earliest due time of any unfinished run.
    pub fn next_due_at(&self) -> Result<Option<i64>> {
        self.read(|conn| {
            conn.query_row(
                "SELECT MIN(due_at) FROM runs WHERE status IN ('ready', 'parked', 'waiting')",
                &[],
                |r| r.get(0),
            )
        })
    }

    /// How many runs are not finished.
    pub fn unfinished_runs(&self) -> Result<u64> {
        self.read(|conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM runs WHERE status IN ('ready', 'parked', 'waiting')",
                &[],
                |r| r.get(0),
            )
        })
    }

    /// A page of this tenant's runs, oldest first: those after `after` (a run id), at most
    /// `limit`.
    pub fn runs(&self, tenant: &str, after: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![tenant, after.unwrap_or(""), limit as i64],
                run_from_row,
            )?;
            rows.map(|r| r?).collect()
        })
    }

    /// A run of this tenant; another tenant's run is `None`, exactly as a missing one.
    pub fn run(&self, tenant: &str, id: &str) -> Result<Option<RunRecord>> {
        self.read(|conn| {
            conn.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE tenant = ?1 AND id = ?2"),
                params![tenant, id],
                run_from_row,
            )
            .optional()?
            .transpose()
        })
    }

    /// Journals one capability call's result, durably: the call counts as done once this
    /// returns. Fenced like a step commit: it applies only while the run is still at
    /// `step_seq` (a step already committed cannot gain effects). A record at the same
    /// position with another digest replaces the old one (a replay that diverged made a
    /// different call there); one with the same digest leaves the first result in place.
    pub async fn record_effect(&self, run_id: &str, effect: EffectRecord) -> Result<()> {
        self.record_effect_fenced(run_id, effect, None).await
    }

    /// [`Store::record_effect`], fenced by the claim too when `claim` is a claim's number.
    pub(crate) async fn record_effect_fenced(
        &self,
        run_id: &str,
        effect: EffectRecord,
        claim: Option<u64>,
    ) -> Result<()> {
        let run_id = run_id.to_owned();
        self.writer
            .write(move |tx| journal_effect(tx, &run_id, &effect, claim))
            .await
    }

    /// The journaled capability calls of a run, in step and call order; `step_seq` narrows
    /// them to one step.
    pub fn effects(&self, run_id: &str, step_seq: Option<u64>) -> Result<Vec<EffectRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT step_seq, call_seq, kind, digest, result, at FROM effects
                 WHERE run_id = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR step_seq = ?2)
                 ORDER BY step_seq, call_seq",
            )?;
            let rows = stmt.query_map(params![run_id, step_seq], |r| {
                Ok((
                    EffectRecord {
                        step_seq: r.get(0)?,
                        call_seq: r.get(1)?,
                        kind: r.get(2)?,
                        digest: r.get(3)?,
                        result: serde_json::Value::Null,
                        at_ms: r.get(5)?,
                    },
                    r.get::<String>(4)?,
                ))
            })?;
            rows.map(|row| {
                let (mut effect, result) = row?;
                effect.result = serde_json::from_str(&result)?;
                Ok(effect)
            })
            .collect()
        })
    }

    /// The run's journal, in order; empty for another tenant's run.
    pub fn journal(&self, tenant: &str, run_id: &str) -> Result<Vec<StepRecord>> {
        self.journal_from(tenant, run_id, 0)
    }

    /// What step `seq` of the tenant's run was given, if it was an applet step journaled
    /// with its input (steps journaled before migration 11 were not). `Ok(None)` also for a
    /// run or step that does not exist, or belongs to another tenant.
    pub fn step_input(&self, tenant: &str, run_id: &str, seq: u64) -> Result<Option<StepInput>> {
        let text: Option<Option<String>> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT s.input FROM steps s JOIN runs r ON r.id = s.run_id
                 WHERE r.tenant = ?1 AND s.run_id = ?2 AND s.seq = ?3",
            )?
            .query_row(params![tenant, run_id, seq], |r| r.get::<Option<String>>(0))
            .optional()
        })?;
        match text.flatten() {
            Some(text) => Ok(Some(serde_json::from_str(&text)?)),
            None => Ok(None),
        }
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

    /// Wakes the runs of this interaction that wait for `event`: each goes on at its wait's
    /// event target (or ends), with the payload in the data source `Event`, journaled as a
    /// step so that a timeout being handled at the same moment cannot also commit.
    pub async fn wake_waiting(
        &self,
        tenant: &str,
        interaction: &str,
        event: &str,
        payload: coda_types::Value,
        now_ms: i64,
    ) -> Result<Vec<String>> {
        self.wake_waiting_with(tenant, interaction, event, payload, Values::new(), now_ms)
            .await
    }

    /// [`Store::wake_waiting`], also setting the data sources `data` on each woken run (a
    /// submitted disposition's `Disposition`, `DispositionAmount`).
    pub async fn wake_waiting_with(
        &self,
        tenant: &str,
        interaction: &str,
        event: &str,
        payload: coda_types::Value,
        extra: Values,
        now_ms: i64,
    ) -> Result<Vec<String>> {
        let (tenant, interaction, event) =
            (tenant.to_owned(), interaction.to_owned(), event.to_owned());
        let woken = self.writer
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs
                     WHERE tenant = ?1 AND interaction = ?2 AND status = 'waiting'"
                ))?;
                let waiting: Vec<RunRecord> = stmt
                    .query_map(params![tenant, interaction], run_from_row)?
                    .map(|r| r?)
                    .collect::<Result<_>>()?;
                let mut woken = Vec::new();
                for run in waiting {
                    let Some(wait) = run.wait.as_ref().filter(|w| w.event == event) else {
                        continue;
                    };
                    let mut data = run.data.clone();
                    data.extend(extra.clone());
                    data.insert("Event".into(), payload.clone());
                    let (status, node, note) = match &wait.on_event {
                        Some(node) => ("ready", Some(node.clone()), format!("event `{event}` received → {node}")),
                        None => ("done", None, format!("event `{event}` received; its exit is not wired: the run ends")),
                    };
                    conn.prepare_cached("UPDATE runs SET status = ?1, node = ?2, step_seq = step_seq + 1, attempt = 1,
                            data = ?3, due_at = ?4, wait = NULL, updated_at = ?4
                         WHERE id = ?5 AND step_seq = ?6")?.execute(
                        params![status, node, serde_json::to_string(&data)?, now_ms, run.id, run.step_seq],
                    )?;
                    let mut changes = extra.clone();
                    changes.insert("Event".into(), payload.clone());
                    conn.prepare_cached("INSERT INTO steps (run_id, seq, plan, plan_version, node, applet, attempt,
                            result, note, fuel_used, duration_us, data_changes, at)
                         VALUES (?1, ?2, ?3, ?4, ?5, '', 1, ?6, ?7, 0, 0, ?8, ?9)")?.execute(
                        params![
                            run.id,
                            run.step_seq,
                            run.plan,
                            run.plan_version,
                            wait.node.clone().or_else(|| run.node.clone()).unwrap_or_default(),
                            serde_json::json!({ "event": event }).to_string(),
                            note,
                            serde_json::to_string(&changes)?,
                            now_ms
                        ],
                    )?;
                    woken.push((run.id, run.step_seq, RunStatus::parse(status)?));
                }
                Ok(woken)
            })
            .await?;
        for (run_id, seq, status) in &woken {
            self.commits.send(run_id, *seq, *status);
        }
        Ok(woken.into_iter().map(|(id, ..)| id).collect())
    }

    /// Caps the SQLite file at `pages` pages (`PRAGMA max_page_count`; a page is 4 KiB):
    /// the bound an operator may put on the disk the database takes, and how the fault
    /// suite fills a disk. A write past it fails whole, as disk full, and nothing of it is
    /// stored. Returns the cap in force (SQLite never sets it below the pages in use). On
    /// PostgreSQL, whose disk is the server's, it is refused.
    pub async fn set_max_pages(&self, pages: u64) -> Result<u64> {
        if self.is_postgres() {
            return Err(StoreError::Column(
                "max_page_count is SQLite's: a PostgreSQL server bounds its own disk".into(),
            ));
        }
        self.writer
            .write(move |conn| {
                conn.query_row(&format!("PRAGMA max_page_count = {pages}"), &[], |r| {
                    r.get(0)
                })
            })
            .await
    }

    /// The pages the SQLite file has now (`PRAGMA page_count`); 0 on PostgreSQL.
    pub fn page_count(&self) -> Result<u64> {
        self.read(|conn| {
            if conn.is_postgres() {
                Ok(0)
            } else {
                conn.query_row("PRAGMA page_count", &[], |r| r.get(0))
            }
        })
    }

    /// `PRAGMA integrity_check` on SQLite: "ok" when the database is sound. PostgreSQL
    /// keeps its own consistency (WAL, checksums if enabled) and has no such check to ask
    /// for: there it answers "ok" once a query goes through.
    pub fn integrity_check(&self) -> Result<String> {
        self.read(|conn| {
            if conn.is_postgres() {
                conn.query_row("SELECT 'ok'", &[], |r| r.get(0))
            } else {
                conn.query_row("PRAGMA integrity_check", &[], |r| r.get(0))
            }
        })
    }
}

const RUN_COLUMNS: &str = "id, tenant, plan, plan_version, interaction, status, node, step_seq,
    attempt, data, state, due_at, wait, route_depth, created_at, updated_at";

fn run_from_row(r: &crate::db::Row) -> crate::Result<Result<RunRecord>> {
    let status: String = r.get(5)?;
    let data: String = r.get(9)?;
    let state: String = r.get(10)?;
    let wait: Option<String> = r.get(12)?;
    let record = (|| -> Result<RunRecord> {
        Ok(RunRecord {
            id: r.get(0)?,
            tenant: r.get(1)?,
            plan: r.get(2)?,
            plan_version: r.get(3)?,
            interaction: r.get(4)?,
            status: RunStatus::parse(&status)?,
            node: r.get(6)?,
            step_seq: r.get(7)?,
            attempt: r.get(8)?,
            data: serde_json::from_str(&data)?,
            state: serde_json::from_str(&state)?,
            due_at_ms: r.get(11)?,
            wait: wait.as_deref().map(serde_json::from_str).transpose()?,
            route_depth: r.get(13)?,
            created_at_ms: r.get(14)?,
            updated_at_ms: r.get(15)?,
        })
    })();
    Ok(record)
}

/// Fails with [`StoreError::Conflict`] unless the run is still at `step_seq` (and, when
/// `claim` is a claim's number, under that claim): the fence of every write a step makes
/// before its commit.
pub(crate) fn check_effect_fence(
    tx: &Conn<'_>,
    run_id: &str,
    step_seq: u64,
    claim: Option<u64>,
) -> Result<()> {
    let current: Option<(u64, u64)> = tx
        .prepare_cached("SELECT step_seq, claim_seq FROM runs WHERE id = ?1")?
        .query_row(params![run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let fenced =
        current.is_some_and(|(seq, claimed)| seq == step_seq && claim.is_none_or(|c| c == claimed));
    if fenced {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            run: run_id.to_owned(),
            expected: step_seq,
        })
    }
}

/// Writes one effect record inside `tx`, fenced (see [`Store::record_effect`]).
pub(crate) fn journal_effect(
    tx: &Conn<'_>,
    run_id: &str,
    effect: &EffectRecord,
    claim: Option<u64>,
) -> Result<()> {
    check_effect_fence(tx, run_id, effect.step_seq, claim)?;
    let result = serde_json::to_string(&effect.result)?;
    // A different call at this position (a diverged replay) replaces the record; the same
    // call never does: its first journaled result is the truth.
    tx.prepare_cached(
        "INSERT INTO effects (run_id, step_seq, call_seq, kind, digest, result, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (run_id, step_seq, call_seq) DO UPDATE SET
            kind = excluded.kind, digest = excluded.digest,
            result = excluded.result, at = excluded.at
         WHERE effects.digest <> excluded.digest",
    )?
    .execute(params![
        run_id,
        effect.step_seq,
        effect.call_seq,
        effect.kind.clone(),
        effect.digest.clone(),
        result,
        effect.at_ms
    ])?;
    Ok(())
}
