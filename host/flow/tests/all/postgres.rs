//! The engine on a PostgreSQL store, in both tokio runtime flavors: the store's PostgreSQL
//! calls are synchronous (like SQLite's) and are made from the engine's async tasks, so they
//! must neither start a runtime inside the test's nor need a second worker to make progress.
//! Needs `CODA_TEST_POSTGRES` (`./dev test` starts a server); each test makes its own
//! database and drops it.

use coda_store::{RunStatus, Store};
use serde_json::json;

use crate::{call_with_agent, host_on, send};

/// A database of a test's own on the server `CODA_TEST_POSTGRES` names, dropped with it.
pub(crate) struct Database {
    server: String,
    name: String,
    pub(crate) url: String,
}

/// An administrative statement, on a thread (and runtime) of its own: the tests' runtimes
/// are async, and a current-thread one cannot block on another connection's I/O.
fn admin(server: &str, sql: &str) {
    let (server, sql) = (server.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {server}: {e}"));
            let task = tokio::spawn(connection);
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            drop(client);
            let _ = task.await;
        });
    })
    .join()
    .unwrap();
}

impl Database {
    /// `None` (the test says it is skipped) without `CODA_TEST_POSTGRES`.
    pub(crate) fn new(test: &str) -> Option<Database> {
        let Ok(server) = std::env::var("CODA_TEST_POSTGRES") else {
            eprintln!("{test}: skipped, CODA_TEST_POSTGRES is not set (`./dev test` sets it)");
            return None;
        };
        let name = format!("coda_flow_{}_{test}", std::process::id());
        admin(&server, &format!("DROP DATABASE IF EXISTS {name}"));
        admin(&server, &format!("CREATE DATABASE {name}"));
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(Database { server, name, url })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        admin(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// An interaction's end starts its post-interaction run once, and the engine runs it to
/// the end, every read and commit on PostgreSQL.
async fn a_flow_runs_to_its_end(test: &str) {
    let Some(database) = Database::new(test) else {
        return;
    };
    let store = Store::open_url(&database.url).unwrap();
    let url = database.url.clone();
    let host = host_on(tempfile::tempdir().unwrap(), store, Some(database)).await;
    call_with_agent(&host, "i1").await;
    let out = send(
        &host,
        json!({"type": "ended", "interaction": "i1", "outcome": "completed"}),
    )
    .await;
    assert_eq!(out.runs.len(), 1);
    let again = send(
        &host,
        json!({"type": "ended", "interaction": "i1", "outcome": "completed"}),
    )
    .await;
    assert_eq!(again.runs[0].id, out.runs[0].id);
    assert!(!again.runs[0].created);
    host.engine.run_until_idle().await.unwrap();
    let store = host.engine.store();
    let record = store.run("acme", &out.runs[0].id).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Done);
    assert_eq!(store.journal("acme", &record.id).unwrap().len(), 1);
    // It is in the database, not only in this process: another store reads it there.
    let other = Store::open_url(&url).unwrap();
    assert_eq!(
        other.run("acme", &record.id).unwrap().unwrap().status,
        RunStatus::Done
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_engine_on_postgres_runs_a_flow_on_a_current_thread_runtime() {
    a_flow_runs_to_its_end("current").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_on_postgres_runs_a_flow_on_a_multi_thread_runtime() {
    a_flow_runs_to_its_end("multi").await;
}
