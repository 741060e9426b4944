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

/// Another node's new run wakes an idle engine on PostgreSQL at once (the commit's notice,
/// LISTEN/NOTIFY), not at its poll, which is set to 30 s here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_engine_is_woken_by_another_nodes_new_run() {
    use std::time::{Duration, Instant};
    let Some(database) = Database::new("woken") else {
        return;
    };
    let here = std::sync::Arc::new(Store::open_url(&database.url).unwrap());
    let there = Store::open_url(&database.url).unwrap();
    let plan = coda_plan::parse(
        "name: post-call\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n",
    )
    .unwrap();
    there
        .publish_plan("acme", &plan.name, &serde_json::to_value(&plan).unwrap(), 0)
        .await
        .unwrap();
    let engine = std::sync::Arc::new(coda_flow::Engine::new(
        here.clone(),
        std::sync::Arc::new(crate::Script),
        std::sync::Arc::new(coda_flow::WallClock),
        coda_flow::FlowLimits {
            lease_ms: 60_000,
            ..coda_flow::FlowLimits::default()
        },
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .serve(async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let start = || coda_store::NewRun {
        tenant: "acme".into(),
        plan: "post-call".into(),
        plan_version: 1,
        interaction: None,
        trigger_key: None,
        start_node: "a".into(),
        data: coda_types::Values::new(),
        now_ms: coda_types::time::now_ms(),
    };
    // The first run, however it is found, leaves the engine idle after its last step; the
    // second is started by the other node once it is: once its scheduler has stopped
    // reading the database (nothing tells when it went to sleep, so quiet for 300 ms is
    // taken as asleep; without the notice it would sleep the 30 s).
    for round in 0..2 {
        if round == 1 {
            let mut reads = here.write_stats().read_round_trips;
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let now = here.write_stats().read_round_trips;
                if now == reads {
                    break;
                }
                reads = now;
            }
        }
        let began = Instant::now();
        let run = there.start_run(start()).await.unwrap().id;
        // Watched from now on; a commit made before the watch shows in the run's status.
        let commits = here.watch_run(&run);
        let done = tokio::time::timeout(Duration::from_secs(10), async {
            while here.run("acme", &run).unwrap().unwrap().status != RunStatus::Done {
                commits.changed().await;
            }
        })
        .await;
        assert!(done.is_ok(), "round {round}: the idle engine was not woken");
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "round {round}: {:?}",
            began.elapsed()
        );
    }
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    drop((engine, here, there));
    drop(database);
}
