//! Poison pills: one run's step that fails in the host (a panic, a plan that no longer
//! loads, a host that dies in it again and again) never stops the scheduler or the other
//! tenants' runs. It fails through its error exit, or its run is parked as failed with the
//! reason (`host-fault`), and a restart does not start it forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coda_flow::{Applets, Clock, Engine, FlowLimits, HOST_FAULT, StepInput, VirtualClock};
use coda_plan::AppletRef;
use coda_store::{NewRun, RunStatus, Store, TenantSlots};
use coda_types::{AppletInfo, InvocationReport, Outcome, Values};
use serde_json::json;

/// `panics` panics in the host while it runs (as a capability's host side or the runtime
/// might); every other applet takes `next`. Counts the invocations of each applet.
#[derive(Default)]
struct Poison {
    invoked: Mutex<HashMap<String, u32>>,
}

impl Poison {
    fn invoked(&self, applet: &str) -> u32 {
        self.invoked
            .lock()
            .unwrap()
            .get(applet)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl Applets for Poison {
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
        _tenant: &str,
        applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        *self
            .invoked
            .lock()
            .unwrap()
            .entry(applet.name().to_owned())
            .or_default() += 1;
        if applet.name() == "panics" {
            panic!("the host side of this step broke");
        }
        if applet.name() == "leaks" {
            // As a capability's host side that read a secret and broke with it in hand.
            input.context.scrubber.record("crm", LEAKED);
            panic!("the host side broke calling https://api.invalid/?key={LEAKED}");
        }
        // `hoards` adds 300 KB under a new name at every step: within the sandbox's
        // per-invocation data limit, without end for the run.
        let mut data_changes = Values::new();
        if applet.name() == "hoards" {
            data_changes.insert(
                format!("Hoard{}", input.data.len()),
                coda_types::Value::Text("x".repeat(300_000)),
            );
        }
        Ok(InvocationReport {
            result: Ok(Outcome::Exit("next".into())),
            data_changes,
            state_changes: Values::new(),
            logs: vec![],
            fuel_used: 1,
            host_calls: 0,
            elapsed: std::time::Duration::from_micros(1),
        })
    }
}

/// The secret value the `leaks` applet's host side reads before it breaks.
const LEAKED: &str = "sk-live-7f3a9c";

const PLANS: [(&str, &str); 6] = [
    (
        "acme",
        "name: hoard\ntype: unattended\nstart: h\nnodes:\n  h:\n    applet: hoards@1.0.0\n    exits: { next: h }\n    error: recover\n  recover:\n    applet: step@1.0.0\n",
    ),
    (
        "acme",
        "name: leak\ntype: unattended\nstart: p\nnodes:\n  p:\n    applet: leaks@1.0.0\n",
    ),
    (
        "acme",
        "name: pill\ntype: unattended\nstart: p\nnodes:\n  p:\n    applet: panics@1.0.0\n    error: recover\n  recover:\n    applet: step@1.0.0\n",
    ),
    (
        "acme",
        "name: bare-pill\ntype: unattended\nstart: p\nnodes:\n  p:\n    applet: panics@1.0.0\n",
    ),
    (
        "acme",
        "name: calm\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n    exits: { next: b }\n  b:\n    applet: step@1.0.0\n",
    ),
    (
        "globex",
        "name: calm\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n    exits: { next: b }\n  b:\n    applet: step@1.0.0\n",
    ),
];

async fn publish(store: &Store) {
    for (tenant, text) in PLANS {
        let plan = coda_plan::parse(text).unwrap();
        store
            .publish_plan(tenant, &plan.name, &serde_json::to_value(&plan).unwrap(), 0)
            .await
            .unwrap();
    }
}

async fn start(engine: &Engine, tenant: &str, plan: &str) -> String {
    engine
        .start(coda_flow::Start {
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

/// The run's `LastError` data source, as JSON.
fn last_error(store: &Store, tenant: &str, run: &str) -> serde_json::Value {
    let record = store.run(tenant, run).unwrap().unwrap();
    record
        .data
        .get("LastError")
        .map(coda_types::Value::to_json)
        .unwrap_or_else(|| panic!("run {run} has no LastError: {record:?}"))
}

#[tokio::test]
async fn a_step_that_panics_in_the_host_fails_alone_and_everyone_else_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    publish(&store).await;
    let applets = Arc::new(Poison::default());
    let engine = Arc::new(Engine::new(
        store.clone(),
        applets.clone(),
        Arc::new(VirtualClock::new()),
        FlowLimits::default(),
    ));
    let pill = start(&engine, "acme", "pill").await;
    let bare = start(&engine, "acme", "bare-pill").await;
    let mut calm = Vec::new();
    for tenant in ["acme", "globex", "globex"] {
        calm.push((tenant, start(&engine, tenant, "calm").await));
    }

    // Before: the pass stopped at the panic (`StepPanicked`) and `coda serve` exited.
    let steps = engine.run_until_idle().await.expect("the pass goes on");
    // pill: p, recover; bare: p; calm: a, b each.
    assert_eq!(steps, 2 + 1 + 3 * 2);

    // The step failed through its error exit, like an applet's failure, and said why.
    let record = store.run("acme", &pill).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Done);
    let journal = store.journal("acme", &pill).unwrap();
    assert_eq!(journal[0].result["error"]["kind"], HOST_FAULT);
    assert!(
        journal[0].note.contains("the host side of this step broke")
            && journal[0].note.contains("error exit recover"),
        "{}",
        journal[0].note
    );
    assert_eq!(journal[1].node, "recover");
    let error = last_error(&store, "acme", &pill);
    assert_eq!(error["kind"], HOST_FAULT);
    assert_eq!(error["node"], "p");

    // Without an error exit the run fails, with the reason for the API to show.
    let record = store.run("acme", &bare).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    assert_eq!(last_error(&store, "acme", &bare)["kind"], HOST_FAULT);

    for (tenant, id) in &calm {
        let record = store.run(tenant, id).unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Done, "{tenant}'s run {id}");
    }
    // Each poisoned step ran once: contained, not retried in a loop.
    assert_eq!(applets.invoked("panics"), 2);
}

#[tokio::test]
async fn a_host_fault_is_journaled_without_the_secret_the_step_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    publish(&store).await;
    let engine = Arc::new(Engine::new(
        store.clone(),
        Arc::new(Poison::default()),
        Arc::new(VirtualClock::new()),
        FlowLimits::default(),
    ));
    let run = start(&engine, "acme", "leak").await;
    engine.run_until_idle().await.unwrap();
    assert_eq!(
        store.run("acme", &run).unwrap().unwrap().status,
        RunStatus::Failed
    );
    // Before: the panic's text went into the note, the result and `LastError` as it was.
    let error = last_error(&store, "acme", &run);
    let journal = store.journal("acme", &run).unwrap();
    for text in [
        error.to_string(),
        journal[0].note.clone(),
        journal[0].result.to_string(),
    ] {
        assert!(
            !text.contains(LEAKED) && text.contains("[secret:crm]"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_serving_engine_outlives_a_poisoned_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    publish(&store).await;
    let engine = Arc::new(Engine::new(
        store.clone(),
        Arc::new(Poison::default()),
        Arc::new(coda_flow::WallClock),
        FlowLimits::default(),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn({
        let engine = engine.clone();
        async move {
            engine
                .serve(async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    let bare = start(&engine, "acme", "bare-pill").await;
    // Started after the pill: the scheduler must still be there to take it.
    let calm = start(&engine, "globex", "calm").await;
    let (bare_commits, calm_commits) = (engine.watch_run(&bare), engine.watch_run(&calm));
    let finished = |tenant: &str, id: &str| {
        let status = store.run(tenant, id).unwrap().unwrap().status;
        status == RunStatus::Done || status == RunStatus::Failed
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !(finished("acme", &bare) && finished("globex", &calm)) {
            tokio::select! {
                _ = bare_commits.changed() => {}
                _ = calm_commits.changed() => {}
            }
        }
    })
    .await
    .expect("both runs finish while the engine serves");
    assert!(!serving.is_finished(), "the scheduler stopped on its own");
    assert_eq!(
        store.run("globex", &calm).unwrap().unwrap().status,
        RunStatus::Done
    );
    assert_eq!(
        store.run("acme", &bare).unwrap().unwrap().status,
        RunStatus::Failed
    );
    stop.send(()).unwrap();
    serving
        .await
        .unwrap()
        .expect("serve ends cleanly when told");
}

#[tokio::test]
async fn a_step_the_host_never_finishes_is_parked_after_its_starts_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coda.db");
    let clock = Arc::new(VirtualClock::new());
    let limits = FlowLimits {
        lease_ms: 1_000,
        max_step_starts: 3,
        ..FlowLimits::default()
    };
    let run;
    {
        let store = Arc::new(Store::open(&db).unwrap());
        publish(&store).await;
        let engine = Engine::new(
            store.clone(),
            Arc::new(Poison::default()),
            clock.clone(),
            limits,
        );
        run = start(&engine, "acme", "calm").await;
        // Five hosts in turn claim the step and die in it (the process killed, out of
        // memory, a panic that aborts): each claim runs out with nothing committed. The
        // first two had it beside other steps; from the third claim it is a suspect, and
        // each host records its start alone before running it (as `Engine` does).
        for (i, node) in ["first", "second", "third", "fourth", "fifth"]
            .into_iter()
            .enumerate()
        {
            let claimed = store
                .claim_due_runs(
                    node,
                    clock.now_ms(),
                    limits.lease_ms,
                    8,
                    8,
                    vec![TenantSlots {
                        tenant: "acme".into(),
                        concurrency: 8,
                    }],
                )
                .await
                .unwrap();
            assert_eq!(claimed.len(), 1);
            assert_eq!(claimed[0].step_claims, i as u32 + 1);
            if claimed[0].step_claims >= 3 {
                let alone = store.start_alone(&run, claimed[0].claim_seq).await.unwrap();
                assert_eq!(alone, Some(i as u32 - 1));
            }
            clock.advance_to(clock.now_ms() + limits.lease_ms as i64 + 1);
        }
        // A start alone under a claim that was lost is refused.
        assert_eq!(store.start_alone(&run, 1).await.unwrap(), None);
    }

    // A fresh host (a restart) does not start that step alone a fourth time.
    let store = Arc::new(Store::open(&db).unwrap());
    let applets = Arc::new(Poison::default());
    let engine = Arc::new(Engine::new(
        store.clone(),
        applets.clone(),
        clock.clone(),
        limits,
    ));
    engine.run_until_idle().await.unwrap();
    assert_eq!(applets.invoked("step"), 0, "the step was started again");
    let record = store.run("acme", &run).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    let error = last_error(&store, "acme", &run);
    assert_eq!(error["kind"], HOST_FAULT);
    assert_eq!(error["node"], "a");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("started 3 times alone and never finished"),
        "{error}"
    );
    let journal = store.journal("acme", &run).unwrap();
    assert!(journal[0].note.contains("parked"), "{}", journal[0].note);

    // Once the cause is fixed, a retry runs it, and its count starts afresh.
    assert!(matches!(
        engine.retry("acme", &run).await.unwrap(),
        coda_store::Control::Applied(_)
    ));
    engine.run_until_idle().await.unwrap();
    assert_eq!(
        store.run("acme", &run).unwrap().unwrap().status,
        RunStatus::Done
    );
    assert_eq!(applets.invoked("step"), 2);
}

#[tokio::test]
async fn a_run_whose_plan_no_longer_loads_is_parked_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    publish(&store).await;
    // A stored plan body the engine cannot read (a hand-edited database, a bad migration).
    store
        .publish_plan("acme", "garbled", &json!({ "nodes": 7 }), 0)
        .await
        .unwrap();
    let clock = Arc::new(VirtualClock::new());
    let garbled = store
        .start_run(NewRun {
            tenant: "acme".into(),
            plan: "garbled".into(),
            plan_version: 1,
            interaction: None,
            trigger_key: None,
            start_node: "a".into(),
            data: Values::new(),
            now_ms: clock.now_ms(),
        })
        .await
        .unwrap()
        .id;
    let engine = Arc::new(Engine::new(
        store.clone(),
        Arc::new(Poison::default()),
        clock,
        FlowLimits::default(),
    ));
    let calm = start(&engine, "globex", "calm").await;
    engine.run_until_idle().await.expect("the pass goes on");
    assert_eq!(
        store.run("acme", &garbled).unwrap().unwrap().status,
        RunStatus::Failed
    );
    let error = last_error(&store, "acme", &garbled);
    assert_eq!(error["kind"], HOST_FAULT);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("does not parse"),
        "{error}"
    );
    assert_eq!(
        store.run("globex", &calm).unwrap().unwrap().status,
        RunStatus::Done
    );
}

/// Issue 14's second round: a run's data is stored whole and rewritten at every commit in
/// the store's writer. An applet adding 300 KB under a new name at every step (within the
/// per-invocation limit) grew one run without bound, each commit slower for every tenant,
/// until SQLite refused the value and the step's failure could not be committed either.
/// The run's data is capped as a whole: the step that would pass the cap fails as a limit
/// (kind `data`) through its error exit, its changes neither stored nor journaled.
#[tokio::test]
async fn a_run_cannot_hoard_data_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    publish(&store).await;
    let applets = Arc::new(Poison::default());
    let limits = FlowLimits {
        max_run_data_bytes: 1_000_000,
        ..FlowLimits::default()
    };
    let engine = Arc::new(Engine::new(
        store.clone(),
        applets.clone(),
        Arc::new(VirtualClock::new()),
        limits,
    ));
    let run = start(&engine, "acme", "hoard").await;
    engine.run_until_idle().await.unwrap();
    // Three hoards fit (900 KB), the fourth is refused, and the error exit is taken.
    assert_eq!(applets.invoked("hoards"), 4);
    let record = store.run("acme", &run).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Done);
    assert_eq!(
        record
            .data
            .keys()
            .filter(|k| k.starts_with("Hoard"))
            .count(),
        3
    );
    let error = last_error(&store, "acme", &run);
    assert_eq!(error["kind"], "data", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("limit 1000000"),
        "{error}"
    );
    let journal = store.journal("acme", &run).unwrap();
    assert!(journal[3].data_changes.is_empty(), "{:?}", journal[3].note);
    assert_eq!(journal[4].node, "recover");
}
