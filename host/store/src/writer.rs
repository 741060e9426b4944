//! The single writer: group commit over one connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use crate::db::{Conn, Pg, PgConn, Pipelined, Row, Value};
use crate::{Result, StoreError};

/// Most writes folded into one transaction; more wait for the next batch.
const MAX_BATCH: usize = 1024;

/// Called once the batch a job belonged to has committed (`None`) or failed (the reason).
type Reply = Box<dyn FnOnce(Option<&str>) + Send>;
type Answer = Box<dyn FnOnce(Result<Vec<Row>>, Option<&str>) + Send>;

/// A write waiting for the next batch.
enum Job {
    /// Any write: statements run by a closure, whatever their number.
    Any(Box<dyn FnOnce(&Conn<'_>) -> Reply + Send>),
    /// A write that is one statement. On PostgreSQL a batch of only these is sent as one
    /// pipeline, `BEGIN` and `COMMIT` included: one round trip for the whole batch.
    One(OneStatement),
}

struct OneStatement {
    sql: String,
    params: Vec<Value>,
    /// Whether the write, once applied, made a run due that another node may take
    /// ([`Conn::made_work`]).
    makes_work: bool,
    /// Told the statement's rows, and the batch's failure if it failed.
    answer: Answer,
}

impl Job {
    /// Runs the job in the batch's transaction, in a savepoint of its own.
    fn run(self, conn: &Conn<'_>) -> Reply {
        match self {
            Job::Any(job) => job(conn),
            Job::One(one) => {
                let rows = in_savepoint(conn, |c| c.query(&one.sql, &one.params));
                if one.makes_work && rows.is_ok() {
                    conn.made_work();
                }
                let answer = one.answer;
                Box::new(move |failure| answer(rows, failure))
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed.
    pub batches: u64,
    /// Writes committed in them.
    pub writes: u64,
    /// PostgreSQL round trips of the writer's connection (each statement, savepoint,
    /// `BEGIN` and `COMMIT` it waited on, and each statement prepared); 0 on SQLite, whose
    /// statements are calls in the process.
    pub write_round_trips: u64,
    /// The same for the read connections.
    pub read_round_trips: u64,
}

/// The writer's connection. A PostgreSQL one is made again after it broke (the server
/// restarted, the network dropped): the batch in hand fails, the next one reconnects.
pub(crate) enum WriteConn {
    Sqlite(rusqlite::Connection),
    Pg { pg: Arc<Pg>, conn: Option<PgConn> },
}

pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    batches: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
}

impl Writer {
    pub(crate) fn start(mut conn: WriteConn) -> Writer {
        let (jobs, queue) = mpsc::channel::<Job>();
        let batches = Arc::new(AtomicU64::new(0));
        let writes = Arc::new(AtomicU64::new(0));
        let (b, w) = (batches.clone(), writes.clone());
        std::thread::Builder::new()
            .name("coda-store-writer".into())
            .spawn(move || {
                // Ends when every `Writer` (and so every sender) is dropped.
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let count = batch.len() as u64;
                    let (replies, failure) = match &mut conn {
                        WriteConn::Sqlite(conn) => commit_sqlite(conn, batch),
                        WriteConn::Pg { pg, conn } => commit_pg(pg, conn, batch),
                    };
                    if failure.is_none() {
                        b.fetch_add(1, Ordering::Relaxed);
                        w.fetch_add(count, Ordering::Relaxed);
                    } else {
                        tracing::error!("store commit failed: {failure:?}");
                    }
                    for reply in replies {
                        reply(failure.as_deref());
                    }
                }
            })
            .expect("spawning the store writer thread");
        Writer {
            jobs,
            batches,
            writes,
        }
    }

    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            batches: self.batches.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            ..WriteStats::default()
        }
    }

    /// Runs `f` in the next batch, in a savepoint of its own (its failure undoes only its
    /// own changes), and resolves once that batch is committed.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Conn<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job::Any(Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |failure| {
                let answer = match failure {
                    None => result,
                    Some(why) => Err(StoreError::NotCommitted(why.to_owned())),
                };
                let _ = tx.send(answer);
            })
        }));
        self.jobs.send(job).map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| {
            StoreError::NotCommitted("the database refused to begin a transaction".into())
        })?
    }

    /// [`Writer::write`] for a write that is one statement (`sql` with `params`): its
    /// rows, once the batch is committed. On PostgreSQL such writes cost no round trip of
    /// their own: a batch of them goes out as one pipeline.
    pub(crate) async fn write_one(
        &self,
        sql: String,
        params: Vec<Value>,
        makes_work: bool,
    ) -> Result<Vec<Row>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let answer: Answer = Box::new(move |rows, failure| {
            let answer = match failure {
                None => rows,
                Some(why) => Err(StoreError::NotCommitted(why.to_owned())),
            };
            let _ = tx.send(answer);
        });
        let job = Job::One(OneStatement {
            sql,
            params,
            makes_work,
            answer,
        });
        self.jobs.send(job).map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| {
            StoreError::NotCommitted("the database refused to begin a transaction".into())
        })?
    }
}

fn in_savepoint<T>(conn: &Conn<'_>, f: impl FnOnce(&Conn<'_>) -> Result<T>) -> Result<T> {
    // Deferred: on PostgreSQL each goes out with the write's next statement, not in a
    // round trip of its own; an error in one is that statement's.
    conn.defer("SAVEPOINT job")?;
    match f(conn) {
        Ok(value) => {
            conn.defer("RELEASE job")?;
            Ok(value)
        }
        Err(error) => {
            conn.defer("ROLLBACK TO job")?;
            conn.defer("RELEASE job")?;
            Err(error)
        }
    }
}

/// Applies a batch in one SQLite transaction. Returns the replies and, if the commit
/// failed, why.
fn commit_sqlite(conn: &mut rusqlite::Connection, batch: Vec<Job>) -> (Vec<Reply>, Option<String>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Nothing ran. Dropping the jobs drops their reply channels, which their callers
        // see as `NotCommitted`.
        return (Vec::new(), Some(e.to_string()));
    }
    let replies: Vec<Reply> = batch
        .into_iter()
        .map(|job| job.run(&Conn::Sqlite(conn)))
        .collect();
    match conn.execute_batch("COMMIT") {
        Ok(()) => (replies, None),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            (replies, Some(e.to_string()))
        }
    }
}

/// The same on PostgreSQL, connecting first when there is no live connection. A batch of
/// only single-statement writes is one pipeline with its `BEGIN` and `COMMIT`
/// ([`commit_pipelined`]). Otherwise its single-statement writes go first, as one pipeline
/// in a savepoint of their own ([`pipeline_ones`]; the batch's writes were all waiting at
/// once, so any order of them is one they could have come in), then each other write
/// statement by statement in its savepoint; `BEGIN`, the savepoints and their releases are
/// sent along with the statements rather than each in a round trip of its own.
fn commit_pg(pg: &Pg, slot: &mut Option<PgConn>, batch: Vec<Job>) -> (Vec<Reply>, Option<String>) {
    if slot.as_ref().is_none_or(PgConn::is_closed) {
        *slot = None;
        match pg.connect_writer() {
            Ok(conn) => *slot = Some(conn),
            Err(e) => return (Vec::new(), Some(format!("database unavailable: {e}"))),
        }
    }
    let Some(conn) = slot.as_mut() else {
        return (Vec::new(), Some("database unavailable".into()));
    };
    let mut ones = Vec::new();
    let mut anys = Vec::new();
    for job in batch {
        match job {
            Job::One(one) => ones.push(one),
            any => anys.push(any),
        }
    }
    if anys.is_empty() {
        match commit_pipelined(conn, ones, &pg.id) {
            Ok(replies) => return (replies, None),
            Err((ones, Some(failure))) => {
                let replies = ones
                    .into_iter()
                    .map(|one| -> Reply {
                        let answer = one.answer;
                        Box::new(move |failure| answer(Ok(Vec::new()), failure))
                    })
                    .collect();
                if conn.is_closed() {
                    *slot = None;
                }
                return (replies, Some(failure));
            }
            // A statement failed: the batch was rolled back, and is run again below.
            Err((again, None)) => ones = again,
        }
    }
    conn.clear_deferred();
    conn.defer("BEGIN");
    let mut replies = pipeline_ones(conn, ones);
    {
        let view = Conn::pg(conn);
        replies.extend(anys.into_iter().map(|job| job.run(&view)));
    }
    if conn.take_made_work() {
        conn.defer(&crate::listen::notice(&pg.id));
    }
    match conn.batch("COMMIT") {
        Ok(()) => (replies, None),
        Err(e) => {
            conn.clear_deferred();
            if conn.batch("ROLLBACK").is_err() || conn.is_closed() {
                *slot = None;
            }
            (replies, Some(e.to_string()))
        }
    }
}

/// Single-statement writes inside the batch's transaction: one pipeline in a savepoint;
/// if a statement of it failed, rolled back to the savepoint and run again one savepoint
/// each, so that only the failing write fails.
fn pipeline_ones(conn: &mut PgConn, ones: Vec<OneStatement>) -> Vec<Reply> {
    if ones.len() > 1 {
        conn.defer("SAVEPOINT ones");
        let statements: Vec<(&str, &[Value])> = ones
            .iter()
            .map(|one| (one.sql.as_str(), one.params.as_slice()))
            .collect();
        let Pipelined { statements, .. } = conn.pipeline(&statements, None);
        if statements.iter().all(Result::is_ok) {
            conn.defer("RELEASE ones");
            return ones
                .into_iter()
                .zip(statements)
                .map(|(one, rows)| -> Reply {
                    if one.makes_work {
                        conn.note_made_work();
                    }
                    let answer = one.answer;
                    Box::new(move |failure| answer(rows, failure))
                })
                .collect();
        }
        conn.defer("ROLLBACK TO ones");
        conn.defer("RELEASE ones");
    }
    let view = Conn::pg(conn);
    ones.into_iter()
        .map(|one| Job::One(one).run(&view))
        .collect()
}

/// `BEGIN`, every statement and `COMMIT` in one round trip. When a statement failed, the
/// `COMMIT` rolled the whole batch back: the writes come back (`Err(_, None)`) to be run
/// again one savepoint each, so that only the failing one fails. When the connection
/// failed, they come back with the reason (`Err(_, Some(why))`): nothing was committed.
#[allow(clippy::type_complexity)]
fn commit_pipelined(
    conn: &mut PgConn,
    batch: Vec<OneStatement>,
    id: &str,
) -> std::result::Result<Vec<Reply>, (Vec<OneStatement>, Option<String>)> {
    conn.clear_deferred();
    conn.defer("BEGIN");
    let statements: Vec<(&str, &[Value])> = batch
        .iter()
        .map(|one| (one.sql.as_str(), one.params.as_slice()))
        .collect();
    let end = if batch.iter().any(|one| one.makes_work) {
        format!("{};COMMIT", crate::listen::notice(id))
    } else {
        "COMMIT".to_owned()
    };
    let Pipelined { statements, commit } = conn.pipeline(&statements, Some(&end));
    match commit {
        Ok(()) if statements.iter().all(Result::is_ok) => Ok(batch
            .into_iter()
            .zip(statements)
            .map(|(one, rows)| -> Reply {
                let answer = one.answer;
                Box::new(move |failure| answer(rows, failure))
            })
            .collect()),
        Err(e) if conn.is_closed() => Err((batch, Some(format!("database unavailable: {e}")))),
        _ => {
            // Rolled back (the COMMIT of an aborted transaction is a rollback); a failed
            // COMMIT or prepare may have left the transaction open.
            conn.clear_deferred();
            if let Err(e) = conn.batch("ROLLBACK") {
                return Err((batch, Some(format!("database unavailable: {e}"))));
            }
            Err((batch, None))
        }
    }
}
