//! The store against a real SQLite file and, when `CODA_TEST_POSTGRES` names a PostgreSQL
//! server, against a real PostgreSQL database too (`Db`): every test runs once per backend
//! (and on PostgreSQL under both of tokio's runtime flavors, since the store's calls are
//! synchronous and made from async code).

use std::collections::BTreeMap;
use std::sync::Arc;

/// Each named test (an `async fn NAME()` taking its store from `open()` or `Db::new()`)
/// becomes a module `NAME` of tests: `sqlite`, `postgres` and `postgres_multi_thread`. The
/// PostgreSQL ones run on a database of their own on the server `CODA_TEST_POSTGRES` names
/// (`./dev test` starts one and sets it), and say they were skipped without it.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                crate::BACKEND.scope(crate::Backend::Sqlite, super::$name()).await
            }

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

mod applets;
mod events;
mod grants;
mod intake;
mod kv;
mod lists;
mod round_trips;
mod runs;
mod tenants;
mod webhooks;

use coda_store::{
    Claimed, EventWait, NewRun, RunStatus, RunUpdate, StepCommit, StepRecord, Store, StoreError,
    TenantSlots,
};
use coda_types::{Value, Values};
use serde_json::json;

/// The backend the current test runs on.
#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite,
    /// The server's administrative URL (`CODA_TEST_POSTGRES`).
    Postgres(String),
}

tokio::task_local! {
    pub(crate) static BACKEND: Backend;
}

/// The PostgreSQL server to test on, if there is one.
pub(crate) fn postgres_server() -> Option<String> {
    let server = std::env::var("CODA_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty());
    if server.is_none() {
        eprintln!("CODA_TEST_POSTGRES is not set: the PostgreSQL run of this test is skipped");
    }
    server
}

/// Where a test's store lives: a SQLite file in a temporary directory, or a database of its
/// own on the PostgreSQL server, created here and dropped when the test ends.
pub(crate) struct Db {
    dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
    pub(crate) url: String,
}

/// An administrative statement on the PostgreSQL server, from a thread of its own (tests
/// are async; a runtime cannot be started or dropped inside theirs).
fn admin(url: String, sql: String) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
            let task = tokio::spawn(connection);
            // One at a time: CREATE DATABASE cannot run in the implicit transaction of
            // a multi-statement query.
            for statement in sql.split("; ") {
                client
                    .batch_execute(statement)
                    .await
                    .unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
            drop(client);
            let _ = task.await;
        });
    })
    .join()
    .unwrap();
}

impl Db {
    pub(crate) fn new() -> Db {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = tempfile::tempdir().unwrap();
        let server = match BACKEND.try_with(Backend::clone).unwrap_or(Backend::Sqlite) {
            Backend::Sqlite => {
                let url = format!("sqlite:{}", dir.path().join("coda.db").display());
                return Db {
                    dir,
                    postgres: None,
                    url,
                };
            }
            Backend::Postgres(server) => server,
        };
        let name = format!(
            "coda_store_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        admin(
            server.clone(),
            format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"),
        );
        let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(&server);
        let url = format!("{base}/{name}");
        Db {
            dir,
            postgres: Some((server, name)),
            url,
        }
    }

    pub(crate) fn open(&self) -> Store {
        Store::open_url(&self.url).unwrap_or_else(|e| panic!("opening {}: {e}", self.url))
    }

    /// The temporary directory (the SQLite file's; empty on PostgreSQL).
    pub(crate) fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.postgres {
            admin(
                server.clone(),
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

fn open() -> (Db, Store) {
    let db = Db::new();
    let store = db.open();
    (db, store)
}

fn new_run(trigger: Option<&str>) -> NewRun {
    let mut data = Values::new();
    data.insert("CLID".into(), Value::Text("+15550100".into()));
    NewRun {
        tenant: "acme".into(),
        plan: "post-call".into(),
        plan_version: 1,
        interaction: Some("int-1".into()),
        trigger_key: trigger.map(str::to_owned),
        start_node: "greet".into(),
        data,
        now_ms: 1_000,
    }
}

fn step(seq: u64) -> StepRecord {
    StepRecord {
        seq,
        plan: "post-call".into(),
        plan_version: 1,
        node: "greet".into(),
        applet: "hello@0.1.0".into(),
        attempt: 1,
        result: json!({ "exit": "next" }),
        note: "exit next → route".into(),
        fuel_used: 100,
        duration_us: 20,
        data_changes: Values::new(),
        at_ms: 2_000,
        logs: vec![coda_types::LogLine {
            level: coda_types::LogLevel::Info,
            message: "greeted Ada".into(),
        }],
    }
}

fn update(node: Option<&str>, status: RunStatus, due: Option<i64>) -> RunUpdate {
    RunUpdate {
        status,
        plan: "post-call".into(),
        plan_version: 1,
        node: node.map(str::to_owned),
        attempt: 1,
        data: Values::new(),
        state: BTreeMap::new(),
        due_at_ms: due,
        wait: None,
        route_depth: 0,
    }
}

/// The node these tests claim runs as.
const NODE: &str = "test-node";

/// Claims for [`NODE`] every run of the given tenants due at `now_ms`, as the scheduler
/// does (in turns across the tenants, in the order given, at most `per_tenant` of each).
async fn claim_due(
    store: &Store,
    now_ms: i64,
    per_tenant: usize,
    tenants: &[&str],
) -> Vec<Claimed> {
    let slots = tenants
        .iter()
        .map(|tenant| TenantSlots {
            tenant: (*tenant).to_owned(),
            concurrency: 1_000,
        })
        .collect();
    store
        .claim_due_runs(NODE, now_ms, 60_000, per_tenant, 1_000, slots)
        .await
        .unwrap()
}

/// Commits a step the way the engine does: under a claim on its run, taken when the step
/// is (`at_ms`) if the run is due then; otherwise the commit is fenced by the run's latest
/// claim, as a step begun under it.
async fn commit(store: &Store, commit: StepCommit) -> Result<(), StoreError> {
    let claimed = claim_due(store, commit.step.at_ms, 1_000, &["acme"]).await;
    let claim = match claimed.iter().find(|c| c.run.id == commit.run_id) {
        Some(claimed) => claimed.claim_seq,
        None => store.claim_of(&commit.run_id)?.map_or(0, |c| c.seq),
    };
    store.commit_claimed_step(commit, claim).await
}

/// A commit that leaves its run due now keeps its claim for the next step (same number,
/// lease renewed, the next step's start counted as a claim counts it); one that leaves it
/// due later, or finished, releases it; a stale claim's commit is refused either way.
async fn a_kept_claim_carries_its_run_to_the_next_step_due_now() {
    let (_dir, store) = open();
    let run = store.start_run(new_run(None)).await.unwrap();
    let claimed = claim_due(&store, 2_000, 1_000, &["acme"]).await;
    let seq = claimed[0].claim_seq;
    let keep = |now_ms: i64| coda_store::KeepClaim {
        node: NODE.into(),
        now_ms,
        until_ms: now_ms + 60_000,
    };
    let at = |seq: u64, next: RunUpdate| StepCommit {
        input: None,
        run_id: run.id.clone(),
        expected_seq: seq,
        step: step(seq),
        next,
    };
    // Due now: kept, the run as committed, its next step's start counted once.
    let next = store
        .commit_claimed_step_and_continue(
            at(0, update(Some("route"), RunStatus::Ready, Some(2_000))),
            seq,
            keep(2_000),
        )
        .await
        .unwrap()
        .expect("the claim was kept");
    assert_eq!((next.claim_seq, next.step_claims), (seq, 1));
    assert_eq!(next.run.step_seq, 1);
    assert_eq!(next.run.node.as_deref(), Some("route"));
    let claim = store.claim_of(&run.id).unwrap().unwrap();
    assert_eq!(claim.owner.as_deref(), Some(NODE));
    assert_eq!((claim.until_ms, claim.seq), (Some(62_000), seq));
    // Kept is held: no one else claims the run meanwhile.
    assert!(claim_due(&store, 3_000, 1_000, &["acme"]).await.is_empty());
    // A stale claim's commit is refused, and nothing is kept or released by it.
    let stale = store
        .commit_claimed_step_and_continue(
            at(1, update(Some("send"), RunStatus::Ready, Some(2_000))),
            seq - 1,
            keep(2_000),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(stale, StoreError::Conflict { expected: 1, .. }),
        "{stale}"
    );
    assert_eq!(store.claim_of(&run.id).unwrap().unwrap(), claim);
    // Due later (a retry's backoff): released with the commit.
    let later = store
        .commit_claimed_step_and_continue(
            at(1, update(Some("send"), RunStatus::Ready, Some(9_000))),
            seq,
            keep(2_000),
        )
        .await
        .unwrap();
    assert_eq!(later, None);
    assert_eq!(store.claim_of(&run.id).unwrap().unwrap().owner, None);
    // Claimed again when due; its last step finishes the run: released.
    let again = claim_due(&store, 9_000, 1_000, &["acme"]).await;
    assert_eq!((again[0].claim_seq, again[0].step_claims), (seq + 1, 1));
    let done = store
        .commit_claimed_step_and_continue(
            at(2, update(None, RunStatus::Done, None)),
            seq + 1,
            keep(9_000),
        )
        .await
        .unwrap();
    assert_eq!(done, None);
    assert_eq!(store.claim_of(&run.id).unwrap().unwrap().owner, None);

    // A host that dies in a continued step has counted its start: the next claim, once the
    // kept lease ran out, is that step's second.
    let other = store.start_run(new_run(None)).await.unwrap();
    let first = claim_due(&store, 10_000, 1_000, &["acme"]).await;
    let kept = store
        .commit_claimed_step_and_continue(
            StepCommit {
                input: None,
                run_id: other.id.clone(),
                expected_seq: 0,
                step: step(0),
                next: update(Some("route"), RunStatus::Ready, Some(10_000)),
            },
            first[0].claim_seq,
            keep(10_000),
        )
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(kept.step_claims, 1);
    let retaken = claim_due(&store, 70_001, 1_000, &["acme"]).await;
    assert_eq!(retaken[0].run.id, other.id);
    assert_eq!(
        (retaken[0].claim_seq, retaken[0].step_claims),
        (first[0].claim_seq + 1, 2)
    );
}

async fn plan_versions_are_immutable_and_numbered() {
    let (_dir, store) = open();
    let v1 = store
        .publish_plan("acme", "post-call", &json!({"n": 1}), 1)
        .await
        .unwrap();
    let v2 = store
        .publish_plan("acme", "post-call", &json!({"n": 2}), 2)
        .await
        .unwrap();
    assert_eq!((v1, v2), (1, 2));
    assert_eq!(
        store.plan("acme", "post-call", None).unwrap(),
        Some((2, json!({"n": 2})))
    );
    assert_eq!(
        store.plan("acme", "post-call", Some(1)).unwrap(),
        Some((1, json!({"n": 1})))
    );
    assert_eq!(store.plan("acme", "post-call", Some(3)).unwrap(), None);
    // Another tenant's plan of the same name is a different plan.
    assert_eq!(store.plan("globex", "post-call", None).unwrap(), None);
}

async fn the_same_trigger_starts_one_run_even_at_once() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(
                async move { store.start_run(new_run(Some("int-1/ended"))).await.unwrap() },
            )
        })
        .collect();
    let mut ids = Vec::new();
    let mut created = 0;
    for start in starts {
        let started = start.await.unwrap();
        created += started.created as usize;
        ids.push(started.id);
    }
    assert_eq!(created, 1);
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    // Runs without a trigger key are all distinct.
    let a = store.start_run(new_run(None)).await.unwrap();
    let b = store.start_run(new_run(None)).await.unwrap();
    assert_ne!(a.id, b.id);
}

async fn a_step_commits_once_and_fences_the_next() {
    let (_dir, store) = open();
    let run = store.start_run(new_run(None)).await.unwrap();
    let step_once = StepCommit {
        input: None,
        run_id: run.id.clone(),
        expected_seq: 0,
        step: step(0),
        next: update(Some("route"), RunStatus::Ready, Some(2_000)),
    };
    let step_again = step_once.clone();
    commit(&store, step_once).await.unwrap();
    // The same step again (a node that lost its claim, a replayed commit): refused, and
    // nothing about the run changes.
    let again = commit(&store, step_again).await.unwrap_err();
    assert!(
        matches!(again, StoreError::Conflict { expected: 0, .. }),
        "{again}"
    );
    let record = store.run("acme", &run.id).unwrap().unwrap();
    assert_eq!(record.step_seq, 1);
    assert_eq!(record.node.as_deref(), Some("route"));
    let journal = store.journal("acme", &run.id).unwrap();
    assert_eq!(journal.len(), 1);
    // The step reads back whole, the applet's log lines with it.
    assert_eq!(journal[0], step(0));
}

async fn a_step_keeps_what_its_applet_was_given_for_its_tenant_only() {
    let (_dir, store) = open();
    let run = store.start_run(new_run(None)).await.unwrap();
    let input = coda_store::StepInput {
        data: [("CLID".to_owned(), Value::Text("+15550100".into()))].into(),
        state: [("passes".to_owned(), Value::Integer(2))].into(),
    };
    commit(
        &store,
        StepCommit {
            input: Some(input.clone()),
            run_id: run.id.clone(),
            expected_seq: 0,
            step: step(0),
            next: update(Some("route"), RunStatus::Ready, Some(2_000)),
        },
    )
    .await
    .unwrap();
    commit(
        &store,
        StepCommit {
            input: None,
            run_id: run.id.clone(),
            expected_seq: 1,
            step: step(1),
            next: update(None, RunStatus::Done, None),
        },
    )
    .await
    .unwrap();
    assert_eq!(store.step_input("acme", &run.id, 0).unwrap(), Some(input));
    // A step the host took itself, a step that does not exist, another tenant's run.
    assert_eq!(store.step_input("acme", &run.id, 1).unwrap(), None);
    assert_eq!(store.step_input("acme", &run.id, 7).unwrap(), None);
    assert_eq!(store.step_input("globex", &run.id, 0).unwrap(), None);
}

/// A step's input is journaled as the first step's data and each commit's change of it
/// (an applet's changes, the host's `LastError`, a removal), and reads back whole.
async fn every_steps_input_is_rebuilt_from_the_first_steps_data_and_each_change() {
    let (_dir, store) = open();
    let run = store.start_run(new_run(None)).await.unwrap();
    let values = |pairs: &[(&str, &str)]| -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::Text((*v).to_owned())))
            .collect()
    };
    let given = |data: Values, passes: Option<i64>| coda_store::StepInput {
        data,
        state: passes
            .map(|p| [("passes".to_owned(), Value::Integer(p))].into())
            .unwrap_or_default(),
    };
    let first = given(values(&[("CLID", "+15550100")]), None);
    let greeted = values(&[("CLID", "+15550100"), ("Greeting", "hi")]);
    let failed = values(&[
        ("CLID", "+15550100"),
        ("Greeting", "hi"),
        ("LastError", "boom"),
    ]);
    let third = given(failed.clone(), Some(1));
    let fourth = given(values(&[("CLID", "+15550100"), ("Greeting", "bye")]), None);
    let steps = [
        // An applet's step: its changes are the whole change.
        (
            Some(first.clone()),
            values(&[("Greeting", "hi")]),
            greeted.clone(),
        ),
        // The host's step: the data it adds is not an applet's change.
        (None, Values::new(), failed),
        // Changes and a removal.
        (
            Some(third.clone()),
            values(&[("Greeting", "bye")]),
            fourth.data.clone(),
        ),
        (Some(fourth.clone()), Values::new(), fourth.data.clone()),
    ];
    for (seq, (input, changes, after)) in steps.into_iter().enumerate() {
        let mut record = step(seq as u64);
        record.data_changes = changes;
        if input.is_none() {
            record.applet = String::new();
        }
        let mut next = update(Some("route"), RunStatus::Ready, Some(2_000));
        next.data = after;
        commit(
            &store,
            StepCommit {
                input,
                run_id: run.id.clone(),
                expected_seq: seq as u64,
                step: record,
                next,
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(store.step_input("acme", &run.id, 0).unwrap(), Some(first));
    assert_eq!(store.step_input("acme", &run.id, 1).unwrap(), None);
    assert_eq!(store.step_input("acme", &run.id, 2).unwrap(), Some(third));
    assert_eq!(store.step_input("acme", &run.id, 3).unwrap(), Some(fourth));
    assert_eq!(store.step_input("globex", &run.id, 3).unwrap(), None);
    // The journal still shows each step's own changes.
    let journal = store.journal("acme", &run.id).unwrap();
    assert_eq!(
        journal[0].data_changes,
        greeted
            .into_iter()
            .filter(|(k, _)| k == "Greeting")
            .collect()
    );
    assert!(journal[1].data_changes.is_empty());
}

async fn only_due_runs_are_claimed_and_parked_ones_cost_disk() {
    let (_dir, store) = open();
    let parked = store.start_run(new_run(None)).await.unwrap();
    commit(
        &store,
        StepCommit {
            input: None,
            run_id: parked.id.clone(),
            expected_seq: 0,
            step: step(0),
            next: update(Some("after"), RunStatus::Parked, Some(60_000)),
        },
    )
    .await
    .unwrap();
    let waiting = store.start_run(new_run(None)).await.unwrap();
    let mut next = update(Some("on-timeout"), RunStatus::Waiting, Some(90_000));
    next.wait = Some(EventWait {
        event: "disposition".into(),
        on_event: Some("thank".into()),
        node: Some("wait".into()),
    });
    commit(
        &store,
        StepCommit {
            input: None,
            run_id: waiting.id.clone(),
            expected_seq: 0,
            step: step(0),
            next,
        },
    )
    .await
    .unwrap();
    let ready = store.start_run(new_run(None)).await.unwrap();

    let ids =
        |claimed: Vec<Claimed>| -> Vec<String> { claimed.into_iter().map(|c| c.run.id).collect() };
    // At 2 s only the ready run is due, and claimed (until 62 s); the parked run is the next
    // to become due.
    let due = ids(claim_due(&store, 2_000, 10, &["acme"]).await);
    assert_eq!(due, std::slice::from_ref(&ready.id));
    assert_eq!(
        store.next_claimable(2_000).unwrap(),
        (Some(60_000), Some(62_000))
    );
    // At 100 s every run is due, oldest due first (the ready run's claim has run out).
    let due = ids(claim_due(&store, 100_000, 10, &["acme"]).await);
    assert_eq!(due, [ready.id, parked.id, waiting.id.clone()]);
    let record = store.run("acme", &waiting.id).unwrap().unwrap();
    assert_eq!(record.wait.unwrap().on_event.as_deref(), Some("thank"));
}

async fn another_tenants_run_is_not_found() {
    let (_dir, store) = open();
    let run = store.start_run(new_run(None)).await.unwrap();
    assert!(store.run("acme", &run.id).unwrap().is_some());
    assert_eq!(store.run("globex", &run.id).unwrap(), None);
    assert!(store.journal("globex", &run.id).unwrap().is_empty());
}

async fn concurrent_steps_share_commits() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    let mut runs = Vec::new();
    for _ in 0..200 {
        runs.push(store.start_run(new_run(None)).await.unwrap().id);
    }
    // The scheduler's pick: every run claimed in one write, each step then committed under
    // its claim.
    let claimed = claim_due(&store, 5_000, 1_000, &["acme"]).await;
    assert_eq!(claimed.len(), runs.len());
    let before = store.write_stats();
    let commits: Vec<_> = claimed
        .into_iter()
        .map(|claimed| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .commit_claimed_step(
                        StepCommit {
                            input: None,
                            run_id: claimed.run.id,
                            expected_seq: 0,
                            step: step(0),
                            next: update(None, RunStatus::Done, None),
                        },
                        claimed.claim_seq,
                    )
                    .await
            })
        })
        .collect();
    for commit in commits {
        commit.await.unwrap().unwrap();
    }
    let after = store.write_stats();
    assert_eq!(after.writes - before.writes, 200);
    assert!(
        after.batches - before.batches < 200,
        "no batching: {after:?}"
    );
    assert_eq!(store.unfinished_runs().unwrap(), 0);
}

async fn what_was_committed_survives_reopening() {
    let db = Db::new();
    let id = {
        let store = db.open();
        let run = store.start_run(new_run(Some("t"))).await.unwrap();
        let mut next = update(Some("route"), RunStatus::Ready, Some(2_000));
        next.data = store.run("acme", &run.id).unwrap().unwrap().data;
        next.data
            .insert("Greeting".into(), Value::Text("Hi".into()));
        commit(
            &store,
            StepCommit {
                input: None,
                run_id: run.id.clone(),
                expected_seq: 0,
                step: step(0),
                next,
            },
        )
        .await
        .unwrap();
        run.id
    };
    let store = db.open();
    let record = store.run("acme", &id).unwrap().unwrap();
    assert_eq!(
        (record.step_seq, record.node.as_deref()),
        (1, Some("route"))
    );
    assert_eq!(
        record.data.get("CLID"),
        Some(&Value::Text("+15550100".into()))
    );
    assert_eq!(
        store.journal("acme", &id).unwrap()[0].note,
        "exit next → route"
    );
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

fn token(id: &str, hash: &str) -> coda_store::NewToken {
    coda_store::NewToken {
        id: id.into(),
        hash: hash.into(),
    }
}

async fn tokens_are_found_by_hash_until_revoked_and_only_under_their_tenant() {
    let (_dir, store) = open();
    assert!(
        store
            .create_tenant("acme", token("t1", "h1"), 1)
            .await
            .unwrap()
    );
    // The same tenant again: nothing written, its first token not replaced.
    assert!(
        !store
            .create_tenant("acme", token("t2", "h2"), 2)
            .await
            .unwrap()
    );
    assert_eq!(store.token_tenant("h2").unwrap(), None);
    assert!(
        store
            .create_tenant("beta", token("t3", "h3"), 3)
            .await
            .unwrap()
    );
    assert!(
        !store
            .add_token("nobody", token("t4", "h4"), 4)
            .await
            .unwrap()
    );
    assert!(store.add_token("acme", token("t5", "h5"), 5).await.unwrap());
    assert_eq!(store.token_tenant("h1").unwrap().as_deref(), Some("acme"));
    assert_eq!(store.token_tenant("h5").unwrap().as_deref(), Some("acme"));
    assert_eq!(store.token_tenant("h3").unwrap().as_deref(), Some("beta"));
    // Another tenant's token id is not found under this tenant, and stays live.
    assert!(!store.revoke_token("acme", "t3", 6).await.unwrap());
    assert_eq!(store.token_tenant("h3").unwrap().as_deref(), Some("beta"));
    assert!(store.revoke_token("acme", "t1", 7).await.unwrap());
    assert!(store.revoke_token("acme", "t1", 8).await.unwrap());
    assert_eq!(store.token_tenant("h1").unwrap(), None);
    assert_eq!(store.token_tenant("h5").unwrap().as_deref(), Some("acme"));
}

async fn the_operator_token_is_stored_once() {
    let (_dir, store) = open();
    assert_eq!(store.operator_token_hash().unwrap(), None);
    assert!(store.init_operator_token("first", 1).await.unwrap());
    assert!(!store.init_operator_token("second", 2).await.unwrap());
    assert_eq!(
        store.operator_token_hash().unwrap().as_deref(),
        Some("first")
    );
}

async fn latest_plans_lists_each_of_the_tenants_plans_once() {
    let (_dir, store) = open();
    for (tenant, name, n) in [
        ("acme", "b", 1),
        ("acme", "a", 1),
        ("acme", "b", 2),
        ("beta", "c", 1),
    ] {
        store
            .publish_plan(tenant, name, &json!({ "n": n }), n)
            .await
            .unwrap();
    }
    let plans = store.latest_plans("acme").unwrap();
    let listed: Vec<(&str, u32, i64)> = plans
        .iter()
        .map(|p| (p.name.as_str(), p.version, p.body["n"].as_i64().unwrap()))
        .collect();
    assert_eq!(listed, [("a", 1, 1), ("b", 2, 2)]);
    assert!(store.latest_plans("nobody").unwrap().is_empty());
}

/// The fair claim: every tenant's first due run, then every tenant's second, each tenant
/// at most `per_tenant`; backlogs counted per tenant, up to a cap.
async fn due_runs_are_claimed_in_turns_across_tenants() {
    let (_dir, store) = open();
    for (tenant, runs) in [("big", 50), ("small", 1), ("mid", 3)] {
        for i in 0..runs {
            store
                .start_run(NewRun {
                    tenant: tenant.into(),
                    trigger_key: None,
                    now_ms: 1_000 + i,
                    ..new_run(None)
                })
                .await
                .unwrap();
        }
    }
    // Nothing is claimed before it is due.
    assert!(
        claim_due(&store, 999, 2, &["big", "mid", "small"])
            .await
            .is_empty()
    );
    let due = claim_due(&store, 5_000, 2, &["big", "mid", "small"]).await;
    let tenants: Vec<&str> = due.iter().map(|d| d.run.tenant.as_str()).collect();
    // Turn 1 (tenants in the order given), then turn 2.
    assert_eq!(tenants, ["big", "mid", "small", "big", "mid"]);
    // Each tenant's oldest due first.
    let big: Vec<i64> = due
        .iter()
        .filter(|d| d.run.tenant == "big")
        .map(|d| d.run.created_at_ms)
        .collect();
    assert_eq!(big, [1_000, 1_001]);

    assert_eq!(store.queued_runs("big", 5_000, 10).unwrap(), 10);
    assert_eq!(store.queued_runs("big", 5_000, 1_000).unwrap(), 50);
    assert_eq!(store.queued_runs("big", 1_010, 1_000).unwrap(), 11);
    assert_eq!(store.queued_runs("nobody", 5_000, 10).unwrap(), 0);
    assert_eq!(
        store.queue_depths(5_000).unwrap(),
        [("big".into(), 50), ("mid".into(), 3), ("small".into(), 1)]
    );
    assert!(
        store
            .runs_by_state()
            .unwrap()
            .contains(&("mid".into(), "ready".into(), 3))
    );
}

/// Usage: a tenant's invocations, fuel and capability calls in a window, nobody else's.
async fn usage_counts_steps_and_effects_in_a_window() {
    let (_dir, store) = open();
    let run = store.start_run(new_run(None)).await.unwrap().id;
    let other = store
        .start_run(NewRun {
            tenant: "other".into(),
            ..new_run(None)
        })
        .await
        .unwrap()
        .id;
    for (id, result) in [
        (&run, json!({ "Ok": "message-id" })),
        (&run, json!({ "Err": { "unavailable": "451" } })),
        (&other, json!({ "Ok": "message-id" })),
    ] {
        let call_seq = store.effects(id, None).unwrap().len() as u32;
        store
            .record_effect(
                id,
                coda_store::EffectRecord {
                    step_seq: 0,
                    call_seq,
                    kind: "email".into(),
                    digest: format!("d{call_seq}"),
                    result,
                    at_ms: 2_000,
                },
            )
            .await
            .unwrap();
    }
    commit(
        &store,
        StepCommit {
            input: None,
            run_id: run.clone(),
            expected_seq: 0,
            step: step(0),
            next: update(None, RunStatus::Done, None),
        },
    )
    .await
    .unwrap();
    let usage = store.usage("acme", 0, 10_000).unwrap();
    assert_eq!((usage.invocations, usage.fuel_used), (1, 100));
    assert_eq!(
        usage.effects["email"],
        coda_store::EffectCount {
            calls: 2,
            succeeded: 1
        }
    );
    // The window is half-open, and another tenant's calls are not counted.
    assert_eq!(
        store.usage("acme", 0, 2_000).unwrap(),
        coda_store::Usage::default()
    );
    assert_eq!(
        store.usage("other", 0, 10_000).unwrap().effects["email"].calls,
        1
    );
}

/// Two nodes starting together on a new database: both open it, and the schema is applied
/// once (on PostgreSQL under an advisory lock; on SQLite inside one immediate transaction).
async fn two_nodes_opening_a_new_database_together_both_open_it() {
    let db = Db::new();
    let url = db.url.clone();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Store::open_url(&url).map(|_| ()))
        })
        .collect();
    for open in opens {
        open.join().unwrap().expect("every node opens the database");
    }
    // And it works: a plan published through one store is read through another.
    let (a, b) = (db.open(), db.open());
    a.publish_plan("acme", "p", &json!({"name": "p"}), 1)
        .await
        .unwrap();
    assert_eq!(b.plan("acme", "p", None).unwrap().unwrap().0, 1);
}

/// A SQLite store's file says it is one (`application_id`), so that a tenant database
/// configured onto it is refused by the sql capability.
#[test]
fn a_sqlite_store_marks_its_file_as_the_hosts_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coda.db");
    drop(Store::open(&path).unwrap());
    let id: i32 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(id, coda_types::STORE_APPLICATION_ID);
}

/// A location the store cannot open is refused by name, without its password.
#[test]
fn a_database_location_that_cannot_be_opened_is_named_without_its_password() {
    let error = Store::open_url("postgres://coda:hunter2@127.0.0.1:1/none")
        .err()
        .expect("nothing listens on port 1");
    let message = error.to_string();
    assert!(
        message.contains("postgres://coda:***@127.0.0.1:1/none"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert!(error.is_unavailable(), "{error:?}");
    // libpq's other places for a password: the query (`?password=`), in any case.
    for url in [
        "postgres://coda@127.0.0.1:1/none?password=hunter2",
        "postgres://coda@127.0.0.1:1/none?sslmode=disable&PassWord=hunter2&connect_timeout=1",
        "postgresql://coda@127.0.0.1:1/none?sslpassword=hunter2",
        "postgres://coda:hunter2@127.0.0.1:1/none?options=-c%20a%3Db@c",
    ] {
        let message = Store::open_url(url).err().expect("port 1").to_string();
        assert!(
            !message.contains("hunter2") && message.contains("127.0.0.1:1/none"),
            "{message}"
        );
    }
    let error = Store::open_url("mysql://x@y/z")
        .err()
        .expect("not a backend");
    assert!(error.to_string().contains("mysql://x@y/z"), "{error}");
    assert!(
        !error.is_unavailable(),
        "a wrong location is not a database that is down"
    );
}

on_every_backend!(
    a_kept_claim_carries_its_run_to_the_next_step_due_now,
    plan_versions_are_immutable_and_numbered,
    the_same_trigger_starts_one_run_even_at_once,
    a_step_commits_once_and_fences_the_next,
    a_step_keeps_what_its_applet_was_given_for_its_tenant_only,
    every_steps_input_is_rebuilt_from_the_first_steps_data_and_each_change,
    only_due_runs_are_claimed_and_parked_ones_cost_disk,
    another_tenants_run_is_not_found,
    concurrent_steps_share_commits,
    what_was_committed_survives_reopening,
    tokens_are_found_by_hash_until_revoked_and_only_under_their_tenant,
    the_operator_token_is_stored_once,
    latest_plans_lists_each_of_the_tenants_plans_once,
    due_runs_are_claimed_in_turns_across_tenants,
    usage_counts_steps_and_effects_in_a_window,
    two_nodes_opening_a_new_database_together_both_open_it,
);
