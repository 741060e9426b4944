//! Claim continuation (`continuation.rs`): a run's steps back to back under one claim.
//! A run's steps cost one pick and one claim instead of one of each per step; a run
//! cancelled while it continues stops at its next commit; a continuation yields to another
//! tenant's run at its bound; a continued step the host never finishes has counted its
//! start, so `max_step_starts` parks its run across restarts; and only the step that takes
//! its host down is parked, not the steps in flight beside it (`suspects.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coda_flow::{Applets, Clock, Engine, FlowLimits, Start, StepInput, VirtualClock};
use coda_plan::AppletRef;
use coda_store::{Control, RunStatus, Store};
use coda_types::{AppletInfo, InvocationReport, Outcome, Values};
use serde_json::json;

/// `next` for every applet, recording (tenant, node) in order; `gated` waits for the
/// test's gate first (unless the gate was left open), and `hangs` never ends (the host
/// dies in it).
#[derive(Default)]
struct Script {
    invoked: Mutex<Vec<(String, String)>>,
    gate: tokio::sync::Notify,
    open: std::sync::atomic::AtomicBool,
}

impl Script {
    fn invoked(&self) -> Vec<(String, String)> {
        self.invoked.lock().unwrap().clone()
    }

    fn nodes(&self) -> Vec<String> {
        self.invoked().into_iter().map(|(_, node)| node).collect()
    }
}

#[async_trait]
impl Applets for Script {
    fn info(&self, _tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        Some(AppletInfo {
            name: applet.name().into(),
            version: applet.version().into(),
            description: String::new(),
            exits: vec!["next".into()],
            config_schema: json!({}),
            needs_live_party: false,
            capabilities: vec![],
        })
    }

    async fn invoke(
        &self,
        tenant: &str,
        applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        self.invoked
            .lock()
            .unwrap()
            .push((tenant.to_owned(), input.context.node.clone()));
        match applet.name() {
            "gated" if !self.open.load(std::sync::atomic::Ordering::SeqCst) => {
                self.gate.notified().await
            }
            "hangs" => std::future::pending::<()>().await,
            // One effectful call, as the benchmark's data-connector step makes (refused
            // here: the engine grants no capability, and the refusal is journaled too).
            "calls" => {
                use coda_types::capabilities::{CapabilitiesExt, HttpRequest};
                let request = HttpRequest {
                    method: "POST".into(),
                    url: "http://127.0.0.1:9/".into(),
                    headers: vec![],
                    body: b"hello".to_vec(),
                    timeout: None,
                };
                let _ = input.capabilities.http_send(&input.context, request).await;
            }
            _ => {}
        }
        Ok(InvocationReport {
            result: Ok(Outcome::Exit("next".into())),
            data_changes: Values::new(),
            state_changes: Values::new(),
            logs: vec![],
            fuel_used: 1,
            host_calls: 0,
            elapsed: Duration::from_micros(1),
        })
    }
}

/// A plan of `nodes` steps in a chain, named `n0`, `n1`, ..., each `applet` but the ones
/// `special` names.
fn chain(name: &str, nodes: usize, special: &[(usize, &str)]) -> String {
    let mut text = format!("name: {name}\ntype: unattended\nstart: n0\nnodes:\n");
    for i in 0..nodes {
        let applet = special
            .iter()
            .find(|(at, _)| *at == i)
            .map_or("step", |(_, applet)| applet);
        text.push_str(&format!("  n{i}:\n    applet: {applet}@1.0.0\n"));
        if i + 1 < nodes {
            text.push_str(&format!("    exits: {{ next: n{} }}\n", i + 1));
        }
    }
    text
}

async fn publish(store: &Store, tenant: &str, text: &str) {
    let plan = coda_plan::parse(text).unwrap();
    store
        .publish_plan(tenant, &plan.name, &serde_json::to_value(&plan).unwrap(), 0)
        .await
        .unwrap();
}

fn engine(store: &Arc<Store>, script: &Arc<Script>, limits: FlowLimits) -> Arc<Engine> {
    Arc::new(Engine::new(
        store.clone(),
        script.clone(),
        Arc::new(VirtualClock::new()),
        limits,
    ))
}

async fn start(engine: &Engine, tenant: &str, plan: &str) -> String {
    engine
        .start(Start {
            tenant: tenant.into(),
            plan: plan.into(),
            version: None,
            interaction: None,
            trigger_key: None,
            data: Values::new(),
        })
        .await
        .unwrap()
        .id
}

/// The benchmark's five steps, counted: one pick and one claim, then five commits, four
/// of which keep the claim for the next step. Before continuation each step had a pick
/// and a claim's write of its own: 5 picks, 10 writes (10 group commits when alone).
#[tokio::test]
async fn a_runs_five_steps_take_one_pick_and_one_claim() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    publish(&store, "acme", &chain("five", 5, &[])).await;
    let script = Arc::new(Script::default());
    let engine = engine(&store, &script, FlowLimits::default());
    // The first pass releases the claims of an earlier process under this node's id (one
    // write): done before counting.
    engine.run_until_idle().await.unwrap();
    // Started in the store, without waking the scheduler: a wake while the run is in
    // flight would make a pick of its own (that finds nothing to claim), which is not
    // the run's cost.
    let run = store.start_run(five_step_run()).await.unwrap().id;
    let (writes, metrics) = (store.write_stats(), engine.metrics());
    assert_eq!(engine.run_until_idle().await.unwrap(), 5);
    let record = store.run("acme", &run).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Done);
    assert_eq!(script.nodes(), ["n0", "n1", "n2", "n3", "n4"]);
    let (after, now) = (store.write_stats(), engine.metrics());
    assert_eq!(now.picks - metrics.picks, 1, "picks");
    assert_eq!(now.continued - metrics.continued, 4, "continued steps");
    // One claim and five commits, each alone in its group commit.
    assert_eq!(after.writes - writes.writes, 6, "writes");
    assert_eq!(after.batches - writes.batches, 6, "group commits");
    assert_eq!(store.claim_of(&run).unwrap().unwrap().owner, None);
    assert_eq!(store.journal("acme", &run).unwrap().len(), 5);
}

/// A cancel while a run continues: the continued step's commit is refused by the fence
/// (the cancel moved the step sequence on), the run stops there, and the claim is given
/// back.
#[tokio::test]
async fn a_run_cancelled_while_it_continues_stops_at_its_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    publish(&store, "acme", &chain("gated", 3, &[(1, "gated")])).await;
    let script = Arc::new(Script::default());
    let engine = engine(&store, &script, FlowLimits::default());
    let run = start(&engine, "acme", "gated").await;
    let pass = tokio::spawn({
        let engine = engine.clone();
        async move { engine.run_until_idle().await }
    });
    // n0 committed and kept the claim; n1 runs under it, held at the gate.
    while script.nodes().len() < 2 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(engine.metrics().continued, 1);
    assert!(matches!(
        engine.cancel("acme", &run).await.unwrap(),
        Control::Applied(_)
    ));
    script.gate.notify_one();
    // n0's commit counts; n1's lost to the cancel, and n2 never started.
    assert_eq!(pass.await.unwrap().unwrap(), 1);
    assert_eq!(script.nodes(), ["n0", "n1"]);
    let record = store.run("acme", &run).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Cancelled);
    let journal = store.journal("acme", &run).unwrap();
    assert_eq!(journal.len(), 2, "{journal:?}");
    assert!(journal[1].note.starts_with(coda_flow::CANCELLED_BY_API));
    assert_eq!(store.claim_of(&run).unwrap().unwrap().owner, None);
    assert_eq!(engine.run_until_idle().await.unwrap(), 0);
}

/// One slot (`batch: 1`): tenant a's ten-step run is claimed first and continues, tenant
/// b's one-step run waits for the slot. At the bound (3 steps) a's claim is released with
/// its commit, the run goes back to the queue, and the next pick's turn is b's: b's step
/// runs fourth, not eleventh. The turns across tenants hold because a continuation ends at
/// its bound and its run is then picked like any other.
#[tokio::test]
async fn a_continuation_yields_to_another_tenants_run_at_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    publish(&store, "a", &chain("long", 10, &[])).await;
    publish(&store, "b", &chain("short", 1, &[])).await;
    let script = Arc::new(Script::default());
    let engine = engine(
        &store,
        &script,
        FlowLimits {
            batch: 1,
            continue_steps: 3,
            // The step bound decides here, not the machine's speed.
            continue_ms: 600_000,
            ..FlowLimits::default()
        },
    );
    let long = start(&engine, "a", "long").await;
    let short = start(&engine, "b", "short").await;
    assert_eq!(engine.run_until_idle().await.unwrap(), 11);
    let order: Vec<String> = script
        .invoked()
        .into_iter()
        .map(|(tenant, node)| format!("{tenant}:{node}"))
        .collect();
    assert_eq!(
        order,
        [
            "a:n0", "a:n1", "a:n2", "b:n0", "a:n3", "a:n4", "a:n5", "a:n6", "a:n7", "a:n8", "a:n9"
        ]
    );
    for (tenant, run) in [("a", &long), ("b", &short)] {
        let record = store.run(tenant, run).unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Done);
    }
    // a's ten steps: 4 claims (n0, n3, n6, n9), 6 steps continued.
    assert_eq!(engine.metrics().continued, 6);
}

/// A continued step the host dies in, again and again: its start was counted by the
/// commit that kept the claim, so after two deaths it is a suspect and runs alone; with
/// `max_step_starts: 2` the second host to die in it alone is the last, and the next one
/// parks the run instead of starting the step again.
#[tokio::test]
async fn a_continued_step_the_host_never_finishes_is_parked_after_its_starts_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coda.db");
    let limits = FlowLimits {
        lease_ms: 1_000,
        max_step_starts: 2,
        ..FlowLimits::default()
    };
    let clock = Arc::new(VirtualClock::new());
    let script = Arc::new(Script::default());
    let run;
    {
        let store = Arc::new(Store::open(&db).unwrap());
        publish(&store, "acme", &chain("doomed", 2, &[(1, "hangs")])).await;
        let first = Arc::new(Engine::new(
            store.clone(),
            script.clone(),
            clock.clone(),
            limits,
        ));
        run = start(&first, "acme", "doomed").await;
        // Four hosts in turn die in n1 (the pass dropped mid-step, as a SIGKILL would):
        // two make it a suspect, two more die in it alone.
        for host in 0..4 {
            let engine = Arc::new(Engine::new(
                store.clone(),
                script.clone(),
                clock.clone(),
                limits,
            ));
            let pass = tokio::time::timeout(Duration::from_millis(300), engine.run_until_idle());
            assert!(pass.await.is_err(), "host {host}: the step ended");
            let record = store.run("acme", &run).unwrap().unwrap();
            assert_eq!(record.step_seq, 1, "n0 committed, n1 never");
            clock.advance_to(clock.now_ms() + limits.lease_ms as i64 + 1);
        }
        // The first host took n1 straight after n0's commit, without a claim of its own.
        assert_eq!(script.nodes(), ["n0", "n1", "n1", "n1", "n1"]);
    }
    let store = Arc::new(Store::open(&db).unwrap());
    let engine = Arc::new(Engine::new(
        store.clone(),
        script.clone(),
        clock.clone(),
        limits,
    ));
    // Had the continued start not been counted, n1 would start again and hang.
    tokio::time::timeout(Duration::from_secs(30), engine.run_until_idle())
        .await
        .expect("n1 was started again")
        .unwrap();
    assert_eq!(script.nodes(), ["n0", "n1", "n1", "n1", "n1"]);
    let record = store.run("acme", &run).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    let journal = store.journal("acme", &run).unwrap();
    assert!(journal[1].note.contains("parked"), "{}", journal[1].note);
}

/// A step that takes its host down, in flight beside sound steps that are slow: every
/// death counts a claim for all of them, yet only the culprit is parked. Two deaths make
/// each of them a suspect; suspects run alone, only the deaths of a step alone count
/// toward `max_step_starts`, and the sound ones finish though they were claimed more
/// often than that bound.
#[tokio::test]
async fn only_the_step_that_takes_its_host_down_is_parked_not_the_ones_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coda.db");
    let limits = FlowLimits {
        lease_ms: 1_000,
        max_step_starts: 2,
        ..FlowLimits::default()
    };
    let clock = Arc::new(VirtualClock::new());
    let script = Arc::new(Script::default());
    let store = Arc::new(Store::open(&db).unwrap());
    publish(&store, "acme", &chain("culprit", 2, &[(0, "hangs")])).await;
    publish(&store, "acme", &chain("sound", 2, &[(0, "gated")])).await;
    let starter = Engine::new(store.clone(), script.clone(), clock.clone(), limits);
    let culprit = start(&starter, "acme", "culprit").await;
    let mut sound = Vec::new();
    for _ in 0..3 {
        sound.push(start(&starter, "acme", "sound").await);
    }
    // Hosts die (each pass dropped mid-step, as a SIGKILL would) until one ends by itself.
    let mut deaths = 0;
    loop {
        if deaths == 2 {
            // The sound steps would finish now, given a turn.
            script.open.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let host = Arc::new(Engine::new(
            store.clone(),
            script.clone(),
            clock.clone(),
            limits,
        ));
        match tokio::time::timeout(Duration::from_millis(300), host.run_until_idle()).await {
            Ok(pass) => {
                pass.unwrap();
                break;
            }
            Err(_) => deaths += 1,
        }
        assert!(deaths <= 8, "the hosts kept dying");
        clock.advance_to(clock.now_ms() + limits.lease_ms as i64 + 1);
    }
    // Two deaths beside the others, two alone; the fifth host parks the culprit.
    assert_eq!(deaths, 4);
    let record = store.run("acme", &culprit).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    let journal = store.journal("acme", &culprit).unwrap();
    assert!(
        journal[0].note.contains("started 2 times alone"),
        "{}",
        journal[0].note
    );
    for run in &sound {
        let record = store.run("acme", run).unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Done, "run {run}");
    }
    // Each sound step ran in the two crowded deaths, then once more, alone, to its end.
    let ran = script.nodes().iter().filter(|n| *n == "n0").count();
    assert_eq!(ran, 2 * 4 + 2 + 3, "{:?}", script.nodes());
}

/// The benchmark's five steps on PostgreSQL (the fourth making one effectful call), counted
/// in round trips to the server: the claim, the effect's record, the five commits and the
/// reads a step makes. Each is a wait on another process, so this is what bounds one
/// node's pace on PostgreSQL (BENCHMARKS.md, "PostgreSQL at SQLite's pace"); the bound
/// fails the test if a change adds round trips back.
#[tokio::test]
async fn a_runs_five_steps_on_postgres_take_few_round_trips() {
    let Some(database) = crate::postgres::Database::new("five_round_trips") else {
        return;
    };
    let store = Arc::new(Store::open_url(&database.url).unwrap());
    publish(&store, "acme", &chain("five", 5, &[(3, "calls")])).await;
    let script = Arc::new(Script::default());
    let engine = engine(&store, &script, FlowLimits::default());
    engine.run_until_idle().await.unwrap();
    // A first run prepares each statement on its connections (a round trip each, once per
    // connection): counted from the second.
    let mut trips = Vec::new();
    for _ in 0..2 {
        let run = store.start_run(five_step_run()).await.unwrap().id;
        let before = store.write_stats();
        assert_eq!(engine.run_until_idle().await.unwrap(), 5);
        let after = store.write_stats();
        assert_eq!(
            store.run("acme", &run).unwrap().unwrap().status,
            RunStatus::Done
        );
        assert_eq!(
            store.effects(&run, None).unwrap().len(),
            1,
            "the call's record"
        );
        trips.push((
            after.write_round_trips - before.write_round_trips,
            after.read_round_trips - before.read_round_trips,
        ));
    }
    let (writes, reads) = trips[1];
    eprintln!("five steps on PostgreSQL: {writes} write and {reads} read round trips");
    // The claim (its tenant's lock, its count of live claims, its oldest due runs, the
    // claim returning the run, the commit: 5), the effect's record (1), each step's commit
    // (1 each, the claim kept by the first four): 11. Reads: the effect journal at the
    // step's one call, and the scheduler's look at the queue before and after. It was 49
    // and 9 before the commit became one statement and the batches pipelines.
    assert!(writes <= 11, "{writes} write round trips");
    assert!(reads <= 5, "{reads} read round trips");
    drop((engine, store));
    drop(database);
}

/// A run of tenant acme's plan `five` (version 1) at its first node, to start in the store
/// itself: without waking the scheduler, so that a pass counts only the run's own cost.
fn five_step_run() -> coda_store::NewRun {
    coda_store::NewRun {
        tenant: "acme".into(),
        plan: "five".into(),
        plan_version: 1,
        interaction: None,
        trigger_key: None,
        start_node: "n0".into(),
        data: Values::new(),
        now_ms: 0,
    }
}
