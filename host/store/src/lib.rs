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
mod effects;
mod events;
mod grants;
mod inputs;
mod intake;
mod interactions;
mod journal;
mod kv;
mod leases;
mod listen;
mod paging;
mod plans;
mod post_contact;
mod queue;
mod runs;
mod schema;
mod tenants;
mod usage;
mod waits;
mod webhooks;
mod writer;

pub use applets::{AppletRecord, NewApplet, PutApplet};
pub use audit::{AuditEntry, FieldChange, InteractionChange, InteractionChanged};
pub use interactions::{
    Channel, Customer, CustomerPatch, FollowUpOf, FollowUpRefused, InteractionDetails,
    InteractionFilter, InteractionRecord, InteractionStatus, InteractionSummary, NewFollowUp,
    Party, PostContactWork, PostFlowAction, PostFlowTarget, SubmittedDisposition,
};
pub use post_contact::{AgentState, DispositionOption, PostContact};

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use db::Conn;

pub use effects::EffectRecord;
pub use events::{
    Delivery, EVENT_PRUNE_BATCH, EventLimits, EventsFull, HeldEvent, Hold, NamedEvent, StoredEvent,
};
pub use grants::{GrantRecord, SecretInfo, SecretWrite, SecretsKey};
pub use intake::IntakeConnection;
pub use journal::{RunCommitted, RunUpdate, RunWatch, StepCommit, StepInput, StepRecord};
pub use kv::{EffectSlot, KV_PRUNE_BATCH, KvResult};
pub use leases::{ClaimState, Claimed, KeepClaim, TenantSlots};
pub use paging::ListOrder;
pub use plans::{PlanVersion, PlanVersionInfo};
pub use runs::{Control, NewRun, RunFilter, RunRecord, RunStatus, StartedRun};
pub use tenants::{NewToken, TenantInfo, TokenInfo};
pub use usage::{EffectCount, Usage, bucket_count};
pub use waits::EventWait;
pub use webhooks::{
    AttemptOutcome, AttemptResult, ClaimedDelivery, DELIVERY_DELIVERED, DELIVERY_FAILED,
    DELIVERY_PENDING, DeliveryRecord, NewDelivery, NewSubscription, RunNews, SubscriptionPatch,
    SubscriptionWrite, WebhookSubscription, WebhookTarget,
};
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
    /// An event would be kept past a bound of its tenant or interaction: nothing was written.
    #[error(transparent)]
    EventsFull(#[from] EventsFull),
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
                        // now), 53 (insufficient resources), 40P01 (chosen as a deadlock's
                        // victim: rolled back, the same write goes through once sent again).
                        let code = code.code();
                        code.starts_with("08")
                            || code.starts_with("57P")
                            || code.starts_with("53")
                            || code == "40P01"
                    })
            }
            StoreError::NotCommitted(_) | StoreError::WriterGone => true,
            StoreError::OpenUrl { unavailable, .. } => *unavailable,
            _ => false,
        }
    }
}

impl StoreError {
    /// PostgreSQL chose this write as a deadlock's victim (two nodes' transactions each
    /// holding an interaction's lock the other waits for, `events.rs`): nothing of it was
    /// written, and sent again it goes through.
    pub fn is_deadlock(&self) -> bool {
        matches!(self, StoreError::Postgres(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED))
    }
}

/// How often a write that takes an interaction's lock (`events.rs`) is sent again when
/// PostgreSQL picks it as a deadlock's victim, before the error is the caller's (then an
/// unavailable store: the API's 503, a step run again later).
pub(crate) const DEADLOCK_TRIES: usize = 5;

/// A database URL without its passwords, for messages (the rule is `coda-types`').
pub use coda_types::scrub::redact_url;

pub type Result<T> = std::result::Result<T, StoreError>;

/// The database: SQLite embedded in the process, or a PostgreSQL server several nodes
/// share.
pub struct Store {
    writer: writer::Writer,
    reads: Reads,
    /// Told of every journal commit, after it is on disk (live tails wait on it).
    commits: journal::Commits,
    /// Woken when another node sharing the database made a run due (`listen.rs`).
    work: std::sync::Arc<tokio::sync::Notify>,
}

enum Reads {
    Sqlite(Mutex<rusqlite::Connection>),
    Pg(std::sync::Arc<db::Pg>),
}

/// The page size of a new SQLite file. The WAL gets a frame per page a commit changes, and
/// a step commit changes a few rows in several b-trees (the run, its claim and due entries,
/// the journal entry and its indexes): at 4 KiB a page, rewriting those pages whole was most
/// of the bytes a workflow wrote (BENCHMARKS.md, "Bytes written per workflow"). 1 KiB pages
/// still hold a run or a journal entry each. A file keeps the page size it was made with.
const NEW_FILE_PAGE_SIZE: u32 = 1024;

/// How much the WAL holds before a checkpoint copies its pages into the database: a page
/// changed by many commits in that window is copied once, so a longer window writes less
/// (the 1,000 pages SQLite defaults to are 1 MiB at 1 KiB pages). Bounded, since a reader
/// and the recovery after a crash go through the WAL.
const WAL_CHECKPOINT_BYTES: u32 = 16 << 20;

/// How many prepared statements a SQLite connection keeps. Every query is prepared through
/// the cache (`Conn::prepare_cached`); at rusqlite's default of 16, the store's statements
/// (well over a hundred) would push each other out and be parsed again.
const STATEMENT_CACHE: usize = 512;

/// How long opening a SQLite file waits out other processes opening it.
const OPEN_BUSY_FOR: std::time::Duration = std::time::Duration::from_secs(5);

fn open_connection(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    // First, so that every step below waits out another process opening the same file
    // (turning a new file to WAL takes a write lock) instead of failing busy at once.
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Only a file with no page yet takes it: before the WAL header is written.
    conn.pragma_update(None, "page_size", NEW_FILE_PAGE_SIZE)?;
    // WAL: readers do not block the writer. FULL: a commit survives power loss, not only a
    // process crash. The busy timeout also lets a reader wait out a checkpoint.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let page_size: u32 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        WAL_CHECKPOINT_BYTES / page_size.max(512),
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // A cached statement keeps its plan whatever values are bound to it. Without this,
    // SQLite 3.54 marks a statement whose plan looked at a bound value (a `LIMIT ?`, a
    // range bound) to be prepared again whenever that value changes: 17 % of the service's
    // CPU under load went to parsing statements already in the cache (`sqlite3Reprepare`,
    // perf on the service benchmark). The plans here are chosen by their indexes, not by
    // the values.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up
    /// to date.
    pub fn open(path: &Path) -> Result<Store> {
        // Processes opening a new file together: SQLite answers busy at once, without its
        // busy handler, to one that turns the file to WAL while another does; it finds the
        // file turned when it looks again.
        let started = std::time::Instant::now();
        let (conn, reader) = loop {
            let opened = open_connection(path).and_then(|mut conn| {
                schema::migrate_sqlite(&mut conn)?;
                Ok((conn, open_connection(path)?))
            });
            match opened {
                Err(e) if e.is_unavailable() && started.elapsed() < OPEN_BUSY_FOR => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                opened => break opened?,
            }
        };
        Ok(Store {
            writer: writer::Writer::start(writer::WriteConn::Sqlite(conn)),
            reads: Reads::Sqlite(Mutex::new(reader)),
            commits: journal::Commits::new(),
            work: Default::default(),
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
        let mut conn = pg.connect_writer().map_err(open_error)?;
        schema::migrate_postgres(&mut conn).map_err(open_error)?;
        let work = std::sync::Arc::new(tokio::sync::Notify::new());
        pg.spawn(listen::listen(pg.url.clone(), pg.id.clone(), work.clone()));
        Ok(Store {
            writer: writer::Writer::start(writer::WriteConn::Pg {
                pg: pg.clone(),
                conn: Some(conn),
            }),
            reads: Reads::Pg(pg),
            commits: journal::Commits::new(),
            work,
        })
    }

    /// Resolves when another node sharing the database has made a run due (started one,
    /// woke or retried one, released a claim, left a run queued after a step), or when this
    /// store's listener (re)connected and may have missed such news: the scheduler then
    /// looks at the queue (`listen.rs`). Notices that come while nobody waits are kept as
    /// one. Never on SQLite, which one process owns.
    pub async fn work_elsewhere(&self) {
        self.work.notified().await
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

    /// Group-commit statistics: batches and writes since start, and on PostgreSQL the
    /// round trips made to the server.
    pub fn write_stats(&self) -> WriteStats {
        let mut stats = self.writer.stats();
        if let Reads::Pg(pg) = &self.reads {
            use std::sync::atomic::Ordering;
            stats.write_round_trips = pg.write_trips.load(Ordering::Relaxed);
            stats.read_round_trips = pg.read_trips.load(Ordering::Relaxed);
        }
        stats
    }

    /// Caps the SQLite file at `pages` pages (`PRAGMA max_page_count`; a page is 1 KiB in a file made
    /// by this version, 4 KiB in an older one):
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
