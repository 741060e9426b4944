//! The single writer: group commit over one connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use crate::db::{Conn, Pg, PgConn};
use crate::{Result, StoreError};

/// Most writes folded into one transaction; more wait for the next batch.
const MAX_BATCH: usize = 1024;

/// Called once the batch a job belonged to has committed (`None`) or failed (the reason).
type Reply = Box<dyn FnOnce(Option<&str>) + Send>;
type Job = Box<dyn FnOnce(&Conn<'_>) -> Reply + Send>;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed.
    pub batches: u64,
    /// Writes committed in them.
    pub writes: u64,
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
        }
    }

    /// Runs `f` in the next batch, in a savepoint of its own (its failure undoes only its
    /// own changes), and resolves once that batch is committed.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Conn<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |failure| {
                let answer = match failure {
                    None => result,
                    Some(why) => Err(StoreError::NotCommitted(why.to_owned())),
                };
                let _ = tx.send(answer);
            })
        });
        self.jobs.send(job).map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| {
            StoreError::NotCommitted("the database refused to begin a transaction".into())
        })?
    }
}

fn in_savepoint<T>(conn: &Conn<'_>, f: impl FnOnce(&Conn<'_>) -> Result<T>) -> Result<T> {
    // Cached statements on SQLite: a batch runs these for every write, and parsing them
    // each time showed in profiles. PostgreSQL takes them as simple queries.
    let run = |sql: &str| -> Result<()> {
        match conn {
            Conn::Sqlite(c) => {
                c.prepare_cached(sql)?.execute([])?;
                Ok(())
            }
            Conn::Pg(_) => conn.execute_batch(sql),
        }
    };
    run("SAVEPOINT job")?;
    match f(conn) {
        Ok(value) => {
            run("RELEASE job")?;
            Ok(value)
        }
        Err(error) => {
            run("ROLLBACK TO job")?;
            run("RELEASE job")?;
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
        .map(|job| job(&Conn::Sqlite(conn)))
        .collect();
    match conn.execute_batch("COMMIT") {
        Ok(()) => (replies, None),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            (replies, Some(e.to_string()))
        }
    }
}

/// The same on PostgreSQL, connecting first when there is no live connection.
fn commit_pg(pg: &Pg, slot: &mut Option<PgConn>, batch: Vec<Job>) -> (Vec<Reply>, Option<String>) {
    if slot.as_ref().is_none_or(PgConn::is_closed) {
        *slot = None;
        match pg.connect() {
            Ok(conn) => *slot = Some(conn),
            Err(e) => return (Vec::new(), Some(format!("database unavailable: {e}"))),
        }
    }
    let Some(conn) = slot.as_mut() else {
        return (Vec::new(), Some("database unavailable".into()));
    };
    if let Err(e) = conn.batch("BEGIN") {
        *slot = None;
        return (Vec::new(), Some(format!("database unavailable: {e}")));
    }
    let replies: Vec<Reply> = {
        let view = Conn::pg(conn);
        batch.into_iter().map(|job| job(&view)).collect()
    };
    match conn.batch("COMMIT") {
        Ok(()) => (replies, None),
        Err(e) => {
            if conn.batch("ROLLBACK").is_err() || conn.is_closed() {
                *slot = None;
            }
            (replies, Some(e.to_string()))
        }
    }
}
