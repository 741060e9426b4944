//! The database under stress, on SQLite: a disk that fills up mid-flow and a database
//! another process holds locked. Writes fail whole (nothing half-written, the file sound),
//! the engine neither loses a run nor stops, and once the disk has room or the lock is
//! released every run finishes with each step committed exactly once.

use std::sync::Arc;
use std::time::Duration;

use coda_flow::{Engine, FlowLimits, VirtualClock, WallClock};
use coda_store::{RunStatus, Store};
use coda_types::Values;

use crate::Script;

const CHAIN: &str = "name: chain\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n    exits: { next: b }\n  b:\n    applet: step@1.0.0\n    exits: { next: c }\n  c:\n    applet: step@1.0.0\n    exits: { next: d }\n  d:\n    applet: step@1.0.0\n    exits: { next: e }\n  e:\n    applet: step@1.0.0\n";

async fn chain_engine(store: Arc<Store>, clock: Arc<dyn coda_flow::Clock>) -> Arc<Engine> {
    let plan = coda_plan::parse(CHAIN).unwrap();
    store
        .publish_plan("acme", "chain", &serde_json::to_value(&plan).unwrap(), 0)
        .await
        .unwrap();
    Arc::new(Engine::new(
        store,
        Arc::new(Script),
        clock,
        FlowLimits::default(),
    ))
}

async fn start(engine: &Engine, runs: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..runs {
        ids.push(
            engine
                .start(coda_flow::Start {
                    tenant: "acme".into(),
                    plan: "chain".into(),
                    version: None,
                    interaction: None,
                    trigger_key: None,
                    data: Values::new(),
                })
                .await
                .unwrap()
                .id,
        );
    }
    ids
}

/// Every run's journal is whole: as many steps as the run says it committed, numbered
/// from 0 with no gap or repeat.
fn journals_are_whole(store: &Store, ids: &[String]) -> u64 {
    let mut steps = 0;
    for id in ids {
        let run = store.run("acme", id).unwrap().unwrap();
        let seqs: Vec<u64> = store
            .journal("acme", id)
            .unwrap()
            .iter()
            .map(|s| s.seq)
            .collect();
        assert_eq!(seqs, (0..run.step_seq).collect::<Vec<_>>(), "run {id}");
        steps += run.step_seq;
    }
    steps
}

fn all_done(store: &Store, ids: &[String]) {
    for id in ids {
        let run = store.run("acme", id).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Done, "run {id}");
        assert_eq!(run.step_seq, 5, "run {id}: each of the five steps once");
    }
}

#[tokio::test]
async fn a_full_disk_fails_writes_whole_and_work_resumes_when_it_has_room() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let engine = chain_engine(store.clone(), Arc::new(VirtualClock::new())).await;
    let ids = start(&engine, 200).await;

    // No room for a page more: the steps' journal entries cannot be written.
    let pages = store.page_count().unwrap();
    assert_eq!(store.set_max_pages(pages).await.unwrap(), pages);
    let failed = engine.run_until_idle().await;
    let error = failed.expect_err("the disk is full").to_string();
    assert!(
        error.contains("full") || error.contains("not committed"),
        "the error names the cause: {error}"
    );
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let before = journals_are_whole(&store, &ids);
    assert!(before < 5 * 200, "the disk filled before the work was done");

    // Room again: every run finishes, each step committed once.
    store.set_max_pages(1 << 30).await.unwrap();
    engine.run_until_idle().await.unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    assert_eq!(journals_are_whole(&store, &ids), 5 * 200);
    all_done(&store, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_process_is_waited_out_by_the_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coda.db");
    let store = Arc::new(Store::open(&path).unwrap());
    let engine = chain_engine(store.clone(), Arc::new(WallClock)).await;
    let ids = start(&engine, 50).await;

    // Another process takes the write lock and keeps it past the store's busy timeout (5 s).
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let locker = std::thread::spawn(move || {
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
        other.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .serve(async {
                    let _ = stop_rx.await;
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    assert!(
        !serving.is_finished(),
        "the scheduler keeps serving while the database is locked"
    );
    assert_eq!(
        journals_are_whole(&store, &ids),
        0,
        "nothing committed under the lock"
    );
    release_tx.send(()).unwrap();
    locker.join().unwrap();

    // The scheduler comes back by itself (its backoff is at most 5 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.unfinished_runs().unwrap() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the runs did not resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(());
    serving.await.unwrap().unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    assert_eq!(journals_are_whole(&store, &ids), 5 * 50);
    all_done(&store, &ids);
}
