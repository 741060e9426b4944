//! The single writer: group commit over one connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use rusqlite::Connection;

use crate::{Result, StoreError};

/// Most writes folded into one transaction; more wait for the next batch.
const MAX_BATCH: usize = 1024;

/// Called once the batch a job belonged to has committed (`None`) or failed (the reason).
type Reply = Box<dyn FnOnce(Option<&str>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Reply + Send>;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed.
    pub batches: u64,
    /// Writes committed in them.
    pub writes: u64,
}

pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    batches: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
}

impl Writer {
    pub(crate) fn start(mut conn: Connection) -> Writer {
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
                    let (replies, failure) = commit_batch(&mut conn, batch);
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
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
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

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    // Cached statements: a batch runs these for every write, and parsing them each time
    // showed in profiles.
    let run = |sql: &str| -> Result<()> {
        conn.prepare_cached(sql)?.execute([])?;
        Ok(())
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

/// Applies a batch in one transaction. Returns the replies and, if the commit failed, why.
fn commit_batch(conn: &mut Connection, batch: Vec<Job>) -> (Vec<Reply>, Option<String>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Nothing ran. Dropping the jobs drops their reply channels, which their callers
        // see as `NotCommitted`.
        return (Vec::new(), Some(e.to_string()));
    }
    let replies: Vec<Reply> = batch.into_iter().map(|job| job(conn)).collect();
    match conn.execute_batch("COMMIT") {
        Ok(()) => (replies, None),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            (replies, Some(e.to_string()))
        }
    }
}
