//! PostgreSQL at SQLite's pace: what a step costs in round trips to the server, the fence
//! still holding in the one-statement commit, a batch with a failing write, and the
//! notices that wake another node (LISTEN/NOTIFY), including after the listening
//! connection was killed.

use std::time::{Duration, Instant};

use coda_store::{EffectRecord, KeepClaim, RunStatus, StepCommit, StepInput, Store, StoreError};
use coda_types::Values;
use serde_json::json;

use super::{Db, NODE, claim_due, new_run, open, step, update};

/// The poll an idle scheduler falls back on (`FlowLimits::lease_ms / 2` by default): a
/// notice must wake a node far sooner.
const POLL: Duration = Duration::from_secs(15);

/// A PostgreSQL-only test: a test each for both of tokio's runtime flavors, skipped (with a
/// word) without `CODA_TEST_POSTGRES`.
macro_rules! on_postgres {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn postgres() {
                if let Some(server) = crate::postgres_server() {
                    crate::BACKEND.scope(crate::Backend::Postgres(server), super::$name()).await
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_multi_thread() {
                if let Some(server) = crate::postgres_server() {
                    crate::BACKEND.scope(crate::Backend::Postgres(server), super::$name()).await
                }
            }
        }
    )*};
}

fn keep(now_ms: i64) -> KeepClaim {
    KeepClaim {
        node: NODE.into(),
        now_ms,
        until_ms: now_ms + 60_000,
    }
}

/// An applet step's commit (it carries what the applet was given, as the engine's do).
fn applet_step(run_id: &str, seq: u64, next: coda_store::RunUpdate) -> StepCommit {
    StepCommit {
        run_id: run_id.to_owned(),
        expected_seq: seq,
        step: step(seq),
        next,
        input: Some(StepInput {
            data: Values::new(),
            state: Values::new(),
        }),
    }
}

fn effect(step_seq: u64, kind: &str) -> EffectRecord {
    EffectRecord {
        step_seq,
        call_seq: 0,
        kind: kind.into(),
        digest: "d".into(),
        result: json!({ "Ok": { "status": 200 } }),
        at_ms: 2_000,
    }
}

fn write_trips(store: &Store) -> u64 {
    store.write_stats().write_round_trips
}

/// A step on the common path: its effect's record is one round trip, its commit (journal
/// entry, the run's next position, the claim kept for the next step) one more; a stale
/// claim's commit and record are refused by the fence in that one statement, changing
/// nothing.
async fn a_step_costs_one_round_trip_and_the_fence_holds() {
    let (_dir, store) = open();
    // Each statement is prepared once per connection: a first run prepares them.
    for round in 0..2 {
        let run = store.start_run(new_run(None)).await.unwrap();
        let claimed = claim_due(&store, 2_000, 1_000, &["acme"]).await;
        let claim = claimed[0].claim_seq;

        let before = write_trips(&store);
        store
            .record_claimed_effect(&run.id, effect(0, "http"), claim)
            .await
            .unwrap();
        let recorded = write_trips(&store) - before;

        let before = write_trips(&store);
        let next = store
            .commit_claimed_step_and_continue(
                applet_step(
                    &run.id,
                    0,
                    update(Some("route"), RunStatus::Ready, Some(2_000)),
                ),
                claim,
                keep(2_000),
            )
            .await
            .unwrap()
            .expect("the claim was kept");
        let committed = write_trips(&store) - before;
        assert_eq!((next.claim_seq, next.run.step_seq), (claim, 1));

        // A stale claim: refused, by the same one statement.
        let before = write_trips(&store);
        let stale = store
            .commit_claimed_step_and_continue(
                applet_step(
                    &run.id,
                    1,
                    update(Some("send"), RunStatus::Ready, Some(2_000)),
                ),
                claim - 1,
                keep(2_000),
            )
            .await
            .unwrap_err();
        let refused = write_trips(&store) - before;
        assert!(
            matches!(stale, StoreError::Conflict { expected: 1, .. }),
            "{stale}"
        );
        let effect_refused = store
            .record_claimed_effect(&run.id, effect(1, "http"), claim - 1)
            .await
            .unwrap_err();
        assert!(
            matches!(effect_refused, StoreError::Conflict { .. }),
            "{effect_refused}"
        );
        let record = store.run("acme", &run.id).unwrap().unwrap();
        assert_eq!(
            (record.step_seq, record.node.as_deref()),
            (1, Some("route"))
        );
        assert_eq!(store.journal("acme", &run.id).unwrap().len(), 1);
        assert_eq!(store.effects(&run.id, None).unwrap().len(), 1);
        assert_eq!(
            store.claim_of(&run.id).unwrap().unwrap().owner.as_deref(),
            Some(NODE)
        );

        // The last step ends the run and releases the claim.
        store
            .commit_claimed_step_and_continue(
                applet_step(&run.id, 1, update(None, RunStatus::Done, None)),
                claim,
                keep(2_000),
            )
            .await
            .unwrap();
        assert_eq!(store.claim_of(&run.id).unwrap().unwrap().owner, None);
        if round == 1 {
            // SQLite's statements are calls in the process: no round trips at all.
            let one = u64::from(store.is_postgres());
            assert_eq!(
                (recorded, committed, refused),
                (one, one, one),
                "round trips of an effect's record, a step's commit, a refused commit"
            );
        }
    }
}

/// What a commit that parks its run on a wait costs: it looks for an event stored for it
/// (`events.rs`), so it is a write of its own rather than one pipelined statement: the
/// commit, the interaction's lock, the lookup and the batch's `COMMIT`, four round trips
/// on PostgreSQL where a pipelined commit shares one (none on SQLite). Every other commit
/// keeps its one (above).
async fn a_commit_parking_on_a_wait_pays_the_events_lookup_alone() {
    let (_dir, store) = open();
    let mut parked = Vec::new();
    // Each statement is prepared once per connection: the first commit prepares them.
    for _ in 0..2 {
        let run = store.start_run(new_run(None)).await.unwrap();
        let claimed = claim_due(&store, 2_000, 1_000, &["acme"]).await;
        let claim = claimed
            .iter()
            .find(|c| c.run.id == run.id)
            .unwrap()
            .claim_seq;
        let mut next = update(Some("late"), RunStatus::Waiting, Some(3_600_000));
        next.wait = Some(coda_store::EventWait {
            event: "reply".into(),
            on_event: Some("thank".into()),
            node: Some("wait".into()),
        });
        let before = write_trips(&store);
        store
            .commit_claimed_step(applet_step(&run.id, 0, next), claim)
            .await
            .unwrap();
        parked.push(write_trips(&store) - before);
        assert_eq!(
            store.run("acme", &run.id).unwrap().unwrap().status,
            RunStatus::Waiting
        );
    }
    let four = 4 * u64::from(store.is_postgres());
    assert_eq!(
        parked[1], four,
        "round trips of a commit that parks on a wait"
    );
}

/// Writes pipelined together, one of which PostgreSQL refuses (a NUL in text), beside other
/// writes: the others commit, the refused one fails alone with its own error (the batch, or
/// its pipeline's savepoint, is run again one savepoint a write).
async fn a_failing_write_in_a_pipelined_batch_fails_alone() {
    let (_dir, store) = open();
    let store = std::sync::Arc::new(store);
    let mut runs = Vec::new();
    for _ in 0..20 {
        runs.push(store.start_run(new_run(None)).await.unwrap().id);
    }
    let claimed = claim_due(&store, 2_000, 1_000, &["acme"]).await;
    assert_eq!(claimed.len(), runs.len());
    let writes: Vec<_> = claimed
        .into_iter()
        .enumerate()
        .map(|(i, claimed)| {
            let store = store.clone();
            // The tenth: text PostgreSQL cannot hold.
            let kind = if i == 9 { "ht\0tp" } else { "http" };
            tokio::spawn(async move {
                let recorded = store
                    .record_claimed_effect(&claimed.run.id, effect(0, kind), claimed.claim_seq)
                    .await;
                (claimed.run.id, recorded)
            })
        })
        .collect();
    // Other writes in the same batches (statements run one by one, each in its savepoint).
    let starts: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.start_run(new_run(None)).await })
        })
        .collect();
    let mut failed = Vec::new();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    for write in writes {
        let (run, recorded) = write.await.unwrap();
        match recorded {
            Ok(()) => assert_eq!(store.effects(&run, None).unwrap().len(), 1),
            Err(e) => {
                assert!(!matches!(e, StoreError::Conflict { .. }), "{e}");
                assert!(store.effects(&run, None).unwrap().is_empty());
                failed.push(run);
            }
        }
    }
    // SQLite holds a NUL in text: nothing fails there.
    let refused = usize::from(store.is_postgres());
    assert_eq!(failed.len(), refused, "{failed:?}");
}

/// Waits for `store`'s next notice of work from elsewhere, at most `within`: how long it
/// took, or `None` if none came.
async fn notice(store: &Store, within: Duration) -> Option<Duration> {
    let began = Instant::now();
    tokio::time::timeout(within, store.work_elsewhere())
        .await
        .ok()
        .map(|()| began.elapsed())
}

/// A run started by another node sharing the database wakes this one at once (its
/// commit's notice), not at its next poll.
async fn another_nodes_new_run_wakes_a_listening_node() {
    let db = Db::new();
    let (here, there) = (db.open(), db.open());
    // The listener looks once when it has connected: then it is listening.
    assert!(
        notice(&here, POLL).await.is_some(),
        "the listener never connected"
    );
    let began = Instant::now();
    there.start_run(new_run(None)).await.unwrap();
    let woken = notice(&here, POLL).await;
    assert!(woken.is_some(), "no notice of the new run");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

/// The listening connection killed (`pg_terminate_backend`): the store connects again,
/// looks once, and is woken by the next new run from another node as before.
async fn the_listener_reconnects_after_its_connection_is_killed() {
    let db = Db::new();
    let (here, there) = (db.open(), db.open());
    for store in [&here, &there] {
        assert!(
            notice(store, POLL).await.is_some(),
            "a listener never connected"
        );
    }
    let killed = kill_listeners(&db.url);
    assert_eq!(killed, 2, "both stores' listeners");
    // Connected again: it looks once.
    assert!(
        notice(&here, POLL).await.is_some(),
        "the listener did not come back"
    );
    let began = Instant::now();
    there.start_run(new_run(None)).await.unwrap();
    assert!(
        notice(&here, POLL).await.is_some(),
        "no notice after reconnecting"
    );
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

/// Terminates the listening connections on the database at `url`; returns how many.
fn kill_listeners(url: &str) -> i64 {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let task = tokio::spawn(connection);
            let row = client
                .query_one(
                    "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE application_name = 'coda-work-listener' AND datname = current_database()",
                    &[],
                )
                .await
                .unwrap();
            drop(client);
            let _ = task.await;
            row.get::<_, i64>(0)
        })
    })
    .join()
    .unwrap()
}

on_every_backend!(
    a_step_costs_one_round_trip_and_the_fence_holds,
    a_commit_parking_on_a_wait_pays_the_events_lookup_alone,
    a_failing_write_in_a_pipelined_batch_fails_alone,
);

on_postgres!(
    another_nodes_new_run_wakes_a_listening_node,
    the_listener_reconnects_after_its_connection_is_killed,
);
