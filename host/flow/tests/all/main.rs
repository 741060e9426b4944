//! The engine against a real SQLite store, with applets answered by a small script instead
//! of WebAssembly (the wasm path is covered end to end in `tests/`): interaction events,
//! triggers, post-flow actions and event waits.

use std::sync::Arc;

use async_trait::async_trait;
use coda_flow::{
    Applets, Engine, EventError, FlowLimits, InteractionEvent, StepInput, VirtualClock,
};
use coda_plan::AppletRef;
use coda_store::{PostFlowAction, PostFlowTarget, RunStatus, Store};
use coda_types::{AppletInfo, InvocationReport, Outcome, Value, Values};
use serde_json::json;

/// `next` for every applet, except: `waiter` waits for a `disposition` for an hour,
/// `router` routes to a plan that does not exist, `rogue` takes an exit it never declared,
/// `missing` is not installed, and `slow` takes `next` after 300 ms of wall time.
pub(crate) struct Script;

#[async_trait]
impl Applets for Script {
    fn info(&self, _tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        Some(AppletInfo {
            name: applet.name().into(),
            version: applet.version().into(),
            description: String::new(),
            exits: vec!["next".into(), "received".into(), "timeout".into()],
            config_schema: json!({}),
            needs_live_party: applet.name() == "prompt",
            capabilities: vec![],
        })
    }

    async fn invoke(
        &self,
        _tenant: &str,
        applet: &AppletRef,
        _input: StepInput,
    ) -> Result<InvocationReport, String> {
        let outcome = match applet.name() {
            "waiter" => Outcome::Wait {
                event: "disposition".into(),
                timeout_millis: 3_600_000,
                on_event: "received".into(),
                on_timeout: "timeout".into(),
            },
            "router" => Outcome::Route {
                plan: "no-such-plan".into(),
                version: None,
            },
            "rogue" => Outcome::Exit("sideways".into()),
            "missing" => return Err(format!("applet {applet} is not installed")),
            "slow" => {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                Outcome::Exit("next".into())
            }
            _ => Outcome::Exit("next".into()),
        };
        Ok(InvocationReport {
            result: Ok(outcome),
            data_changes: Values::new(),
            state_changes: Values::new(),
            logs: vec![],
            fuel_used: 1,
            host_calls: 0,
            elapsed: std::time::Duration::from_micros(1),
        })
    }
}

struct Host {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    /// The PostgreSQL database of a test on PostgreSQL, dropped after the engine.
    _database: Option<postgres::Database>,
}

async fn host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("coda.db")).unwrap();
    host_on(dir, store, None).await
}

async fn host_on(
    dir: tempfile::TempDir,
    store: Store,
    database: Option<postgres::Database>,
) -> Host {
    let store = Arc::new(store);
    let plans = [
        "name: live\ntype: default\nstart: a\npost_interaction: post-call\nnodes:\n  a:\n    applet: step@1.0.0\n",
        "name: post-call\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n",
        "name: survey\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n",
        "name: call-finished\ntype: default\nstart: wrap\nnodes:\n  wrap:\n    applet: step@1.0.0\n    exits: { next: survey }\n  survey:\n    applet: prompt@1.0.0\n",
        "name: spin\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n    exits: { next: b }\n  b:\n    applet: step@1.0.0\n    exits: { next: a }\n",
        "name: broken\ntype: unattended\nstart: route\nnodes:\n  route:\n    applet: router@1.0.0\n    error: rogue\n  rogue:\n    applet: rogue@1.0.0\n    error: gone\n  gone:\n    applet: missing@1.0.0\n",
        "name: slow\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: slow@1.0.0\n    exits: { next: b }\n  b:\n    applet: step@1.0.0\n",
        "name: dispo\ntype: unattended\nstart: w\nnodes:\n  w:\n    applet: waiter@1.0.0\n    exits: { received: thank, timeout: remind }\n  thank:\n    applet: step@1.0.0\n  remind:\n    applet: step@1.0.0\n",
    ];
    for text in plans {
        let plan = coda_plan::parse(text).unwrap();
        store
            .publish_plan("acme", &plan.name, &serde_json::to_value(&plan).unwrap(), 0)
            .await
            .unwrap();
    }
    let engine = Arc::new(Engine::new(
        store,
        Arc::new(Script),
        Arc::new(VirtualClock::new()),
        FlowLimits {
            max_steps: 50,
            ..FlowLimits::default()
        },
    ));
    Host {
        _dir: dir,
        engine,
        _database: database,
    }
}

fn event(value: serde_json::Value) -> InteractionEvent {
    serde_json::from_value(value).unwrap()
}

async fn send(host: &Host, value: serde_json::Value) -> coda_flow::EventOutcome {
    host.engine
        .on_event("acme", event(value))
        .await
        .unwrap()
        .unwrap()
        .applied()
        .expect("applied, not held")
}

async fn call_with_agent(host: &Host, id: &str) {
    send(
        host,
        json!({"type": "started", "interaction": id, "channel": "voice", "plan": "live",
        "data": {"CLID": "+15550100", "DialedNumber": "+15550199", "Language": "en-US"}}),
    )
    .await;
    send(
        host,
        json!({"type": "party-joined", "interaction": id, "party": "agent"}),
    )
    .await;
}

#[tokio::test]
async fn the_end_of_an_interaction_starts_its_post_interaction_process_once() {
    let host = host().await;
    call_with_agent(&host, "i1").await;
    let out = send(
        &host,
        json!({"type": "party-disconnected", "interaction": "i1", "party": "agent"}),
    )
    .await;
    assert!(out.runs.is_empty(), "the caller is still there");
    let writes = host.engine.store().write_stats().writes;
    let out = send(
        &host,
        json!({"type": "party-disconnected", "interaction": "i1", "party": "caller"}),
    )
    .await;
    assert_eq!(out.runs.len(), 1);
    // The interaction's end and its run are stored in one write, not two in sequence: a
    // crash cannot leave one without the other, and the event costs one commit.
    assert_eq!(host.engine.store().write_stats().writes - writes, 1);
    let run = &out.runs[0];
    assert!(run.created);
    // An explicit `ended` afterwards, and the same again: the same run, not a new one.
    for _ in 0..2 {
        let again = send(
            &host,
            json!({"type": "ended", "interaction": "i1", "outcome": "completed"}),
        )
        .await;
        assert_eq!(again.runs.len(), 1);
        assert_eq!(again.runs[0].id, run.id);
        assert!(!again.runs[0].created);
    }
    let record = host.engine.store().run("acme", &run.id).unwrap().unwrap();
    assert_eq!(record.plan, "post-call");
    assert_eq!(
        record.data.get("CLID"),
        Some(&Value::Text("+15550100".into()))
    );
    assert_eq!(
        record.data.get("DialedNumber"),
        Some(&Value::Text("+15550199".into()))
    );
    assert_eq!(
        record.data.get("InteractionId"),
        Some(&Value::Text("i1".into()))
    );
    host.engine.run_until_idle().await.unwrap();
    let record = host.engine.store().run("acme", &run.id).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Done);
}

/// A live plan whose post-interaction plan is not published: the events before the end are
/// applied as usual, and the end is refused whole (nothing stored, the interaction still
/// active), naming the plan, until the plan is published and the end sent again.
#[tokio::test]
async fn an_end_whose_process_is_missing_is_refused_whole_and_earlier_events_are_not() {
    let host = host().await;
    let store = host.engine.store();
    let orphan = coda_plan::parse(
        "name: orphan\ntype: default\nstart: a\npost_interaction: nowhere\nnodes:\n  a:\n    applet: step@1.0.0\n",
    )
    .unwrap();
    store
        .publish_plan("acme", "orphan", &serde_json::to_value(&orphan).unwrap(), 0)
        .await
        .unwrap();
    send(
        &host,
        json!({"type": "started", "interaction": "o1", "channel": "voice", "plan": "orphan"}),
    )
    .await;
    send(
        &host,
        json!({"type": "party-joined", "interaction": "o1", "party": "agent"}),
    )
    .await;
    let out = send(
        &host,
        json!({"type": "party-disconnected", "interaction": "o1", "party": "agent"}),
    )
    .await;
    assert!(out.runs.is_empty());
    let ended = event(json!({"type": "ended", "interaction": "o1", "outcome": "completed"}));
    let refused = host
        .engine
        .on_event("acme", ended.clone())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("nowhere"), "{refused}");
    let record = store.interaction("acme", "o1").unwrap().unwrap();
    assert_eq!(record.status, coda_store::InteractionStatus::Active);
    // Published, the same end goes through and starts the run.
    let nowhere = coda_plan::parse(
        "name: nowhere\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n",
    )
    .unwrap();
    store
        .publish_plan(
            "acme",
            "nowhere",
            &serde_json::to_value(&nowhere).unwrap(),
            0,
        )
        .await
        .unwrap();
    let out = host
        .engine
        .on_event("acme", ended)
        .await
        .unwrap()
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(out.runs.len(), 1);
    assert_eq!(
        out.interaction.status,
        coda_store::InteractionStatus::Completed
    );
}

#[tokio::test]
async fn the_same_ended_event_at_once_starts_one_run() {
    let host = Arc::new(host().await);
    call_with_agent(&host, "i2").await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move {
                send(
                    &host,
                    json!({"type": "ended", "interaction": "i2", "outcome": "completed"}),
                )
                .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap().runs.into_iter().map(|r| r.id));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

/// Issue 15: `coda run`'s path. A process the caller names (a local run has no live plan)
/// starts from the interaction's end exactly as its live plan's would: the same completed
/// interaction and data sources, one run per trigger however often the end is delivered.
#[tokio::test]
async fn a_named_process_starts_from_the_end_as_the_live_plans_would() {
    let host = host().await;
    let started = |id: &str, plan: Option<&str>| {
        event(
            json!({"type": "started", "interaction": id, "channel": "chat", "plan": plan,
            "data": {"CLID": "+15550100", "InteractionId": "not-this"}}),
        )
    };
    let ended =
        |id: &str| event(json!({"type": "ended", "interaction": id, "outcome": "resolved"}));
    let local = |event| async {
        host.engine
            .on_event_with_process("acme", event, "post-call")
            .await
            .map(|accepted| accepted.map(|a| a.applied().expect("applied, not held")))
    };

    send(
        &host,
        json!({"type": "started", "interaction": "served", "channel": "chat", "plan": "live",
            "data": {"CLID": "+15550100", "InteractionId": "not-this"}}),
    )
    .await;
    let served = send(
        &host,
        json!({"type": "ended", "interaction": "served", "outcome": "resolved"}),
    )
    .await;
    assert!(
        local(started("local", None))
            .await
            .unwrap()
            .unwrap()
            .runs
            .is_empty()
    );
    let ran = local(ended("local")).await.unwrap().unwrap();
    assert_eq!((served.runs.len(), ran.runs.len()), (1, 1));
    let again = local(ended("local")).await.unwrap().unwrap();
    assert_eq!(again.runs[0].id, ran.runs[0].id);
    assert!(!again.runs[0].created);

    let store = host.engine.store();
    let served_run = store.run("acme", &served.runs[0].id).unwrap().unwrap();
    let local_run = store.run("acme", &ran.runs[0].id).unwrap().unwrap();
    assert_eq!(local_run.plan, served_run.plan);
    let mut local_data = local_run.data.clone();
    local_data.insert("InteractionId".into(), Value::Text("served".into()));
    assert_eq!(local_data, served_run.data);
    assert_eq!(
        local_run.data.get("InteractionOutcome"),
        Some(&Value::Text("resolved".into()))
    );
    assert_eq!(local_run.data.get("Channel"), None);
    let (mut local_record, served_record) = (ran.interaction, served.interaction);
    local_record.id = served_record.id.clone();
    local_record.plan = served_record.plan.clone();
    local_record.data = served_record.data.clone();
    assert_eq!(local_record, served_record);
}

fn survey(target: PostFlowTarget) -> PostFlowAction {
    PostFlowAction {
        target,
        action: "voice-survey-flow".into(),
        plan: "survey".into(),
        invocation_data: json!({ "survey": "nps", "language": "en-US" }),
    }
}

#[tokio::test]
async fn a_post_flow_action_fires_on_its_disconnect_and_replaces_the_post_interaction_process() {
    let host = host().await;
    call_with_agent(&host, "i3").await;
    host.engine
        .set_post_flow("acme", "i3", Some(survey(PostFlowTarget::Agent)))
        .await
        .unwrap()
        .unwrap();
    let out = send(
        &host,
        json!({"type": "party-disconnected", "interaction": "i3", "party": "agent"}),
    )
    .await;
    assert_eq!(out.runs.len(), 1);
    let record = host
        .engine
        .store()
        .run("acme", &out.runs[0].id)
        .unwrap()
        .unwrap();
    assert_eq!(record.plan, "survey");
    assert_eq!(
        record.data.get("InvocationData").map(Value::to_json),
        Some(json!({ "survey": "nps", "language": "en-US" }))
    );
    let out = send(
        &host,
        json!({"type": "party-disconnected", "interaction": "i3", "party": "caller"}),
    )
    .await;
    assert!(
        out.runs.is_empty(),
        "the post-flow action took the place of post-call"
    );
}

#[tokio::test]
async fn an_agent_target_cannot_fire_when_no_agent_was_reached() {
    let host = host().await;
    send(
        &host,
        json!({"type": "started", "interaction": "i4", "channel": "voice", "plan": "live"}),
    )
    .await;
    host.engine
        .set_post_flow("acme", "i4", Some(survey(PostFlowTarget::Agent)))
        .await
        .unwrap()
        .unwrap();
    let out = send(
        &host,
        json!({"type": "party-disconnected", "interaction": "i4", "party": "caller"}),
    )
    .await;
    assert_eq!(out.runs.len(), 1);
    let record = host
        .engine
        .store()
        .run("acme", &out.runs[0].id)
        .unwrap()
        .unwrap();
    assert_eq!(
        record.plan, "post-call",
        "the action did not fire, so the process runs"
    );
}

#[tokio::test]
async fn a_cleared_action_does_not_fire_and_foreign_interactions_are_not_touched() {
    let host = host().await;
    call_with_agent(&host, "i5").await;
    host.engine
        .set_post_flow("acme", "i5", Some(survey(PostFlowTarget::Any)))
        .await
        .unwrap()
        .unwrap();
    host.engine
        .set_post_flow("acme", "i5", None)
        .await
        .unwrap()
        .unwrap();
    let out = send(
        &host,
        json!({"type": "party-disconnected", "interaction": "i5", "party": "agent"}),
    )
    .await;
    assert!(out.runs.is_empty());

    // Another tenant's end of an interaction of the same id is held as globex's (its
    // interaction has not started): acme's is not touched, and nothing starts.
    let before = host.engine.store().interaction("acme", "i5").unwrap();
    let held = host
        .engine
        .on_event(
            "globex",
            event(json!({"type": "ended", "interaction": "i5"})),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&held, coda_flow::EventAccepted::Held(h) if h.interaction == "i5"),
        "{held:?}"
    );
    assert_eq!(
        host.engine.store().interaction("acme", "i5").unwrap(),
        before
    );
    assert!(
        host.engine
            .store()
            .interaction("globex", "i5")
            .unwrap()
            .is_none()
    );
    assert!(
        host.engine
            .store()
            .held_events("acme", "i5")
            .unwrap()
            .is_empty()
    );
    let refused = host
        .engine
        .set_post_flow("globex", "i5", None)
        .await
        .unwrap();
    assert!(matches!(refused, Err(EventError::Unknown(_))));
    // A post-flow action naming a plan that does not exist is refused when set.
    let mut action = survey(PostFlowTarget::Any);
    action.plan = "no-such-plan".into();
    assert!(
        host.engine
            .set_post_flow("acme", "i5", Some(action))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_wait_goes_on_when_its_event_arrives() {
    let host = host().await;
    let started = start_run(&host, "dispo", Some("i6")).await;
    // One step, the one due when the run started: the run now waits (its timeout is an hour
    // away, so the virtual clock would jump there if we ran until idle).
    let created = host
        .engine
        .store()
        .run("acme", &started)
        .unwrap()
        .unwrap()
        .created_at_ms;
    assert_eq!(host.engine.run_until(Some(created)).await.unwrap(), 1);
    let record = host.engine.store().run("acme", &started).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Waiting);

    // Another interaction's event, or another event name, does not wake it: each is kept
    // for a later wait.
    for (interaction, name) in [("other", "disposition"), ("i6", "survey-reply")] {
        let kept = host
            .engine
            .deliver("acme", interaction, name, json!({}))
            .await
            .unwrap()
            .unwrap();
        assert!(kept.kept && kept.woken.is_empty());
    }
    let delivered = host
        .engine
        .deliver(
            "acme",
            "i6",
            "disposition",
            json!({"code": "sale", "amount": 120}),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!delivered.kept);
    assert_eq!(delivered.woken, std::slice::from_ref(&started));
    host.engine.run_until_idle().await.unwrap();
    let journal = host.engine.store().journal("acme", &started).unwrap();
    let nodes: Vec<&str> = journal.iter().map(|s| s.note.as_str()).collect();
    assert_eq!(
        nodes,
        [
            "wait up to 3600000 ms for `disposition`",
            "event `disposition` received → thank",
            "exit next is not wired: the run ends"
        ]
    );
    // The event's step is journaled at the node that waited, not where it leads.
    let at: Vec<&str> = journal.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(at, ["w", "w", "thank"]);
    let record = host.engine.store().run("acme", &started).unwrap().unwrap();
    assert_eq!(
        record.data.get("Event").map(Value::to_json),
        Some(json!({"code": "sale", "amount": 120}))
    );
}

/// Starts a run of `plan` (on disk when this returns) and gives its id.
async fn start_run(host: &Host, plan: &str, interaction: Option<&str>) -> String {
    host.engine
        .start(coda_flow::Start {
            tenant: "acme".into(),
            plan: plan.into(),
            version: None,
            interaction: interaction.map(str::to_owned),
            trigger_key: None,
            data: Values::new(),
        })
        .await
        .unwrap()
        .id
}

async fn run_plan(host: &Host, plan: &str) -> coda_store::RunRecord {
    let id = start_run(host, plan, None).await;
    host.engine.run_until_idle().await.unwrap();
    host.engine.store().run("acme", &id).unwrap().unwrap()
}

#[tokio::test]
async fn a_run_that_never_ends_is_stopped_at_the_step_limit() {
    // Validation refuses such a cycle; a plan stored without it still cannot spin forever.
    let host = host().await;
    let run = run_plan(&host, "spin").await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.step_seq, 51);
    let journal = host.engine.store().journal("acme", &run.id).unwrap();
    assert_eq!(
        journal.last().unwrap().note,
        "the run reached 50 steps and was stopped"
    );
}

#[tokio::test]
async fn bad_routes_undeclared_exits_and_missing_applets_take_the_error_exit() {
    let host = host().await;
    let run = run_plan(&host, "broken").await;
    let journal = host.engine.store().journal("acme", &run.id).unwrap();
    let notes: Vec<&str> = journal.iter().map(|s| s.note.as_str()).collect();
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(
        notes[0].starts_with("route: plan `no-such-plan`"),
        "{notes:?}"
    );
    assert!(notes[0].ends_with("→ error exit rogue"), "{notes:?}");
    assert!(
        notes[1].starts_with("undeclared-exit: the applet took exit `sideways`"),
        "{notes:?}"
    );
    assert_eq!(
        notes[2],
        "unavailable: applet missing@1.0.0 is not installed; no error exit is wired: the run fails"
    );
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.data.get("LastError").map(Value::to_json),
        Some(
            json!({"node": "gone", "kind": "unavailable", "message": "applet missing@1.0.0 is not installed"})
        )
    );
}

#[tokio::test]
async fn after_the_contact_leaves_a_live_step_ends_the_run_and_says_why() {
    let host = host().await;
    // The agent left, the caller is still on the line: the live step runs.
    call_with_agent(&host, "i7").await;
    send(
        &host,
        json!({"type": "party-disconnected", "interaction": "i7", "party": "agent"}),
    )
    .await;
    let on_line = start_run(&host, "call-finished", Some("i7")).await;
    host.engine.run_until_idle().await.unwrap();
    let notes: Vec<String> = host
        .engine
        .store()
        .journal("acme", &on_line)
        .unwrap()
        .into_iter()
        .map(|s| s.note)
        .collect();
    assert_eq!(
        notes,
        ["exit next → survey", "exit next is not wired: the run ends"]
    );

    // The caller has gone too: the wrap-up step runs, the live one does not.
    send(
        &host,
        json!({"type": "party-disconnected", "interaction": "i7", "party": "caller"}),
    )
    .await;
    let gone = start_run(&host, "call-finished", Some("i7")).await;
    host.engine.run_until_idle().await.unwrap();
    let journal = host.engine.store().journal("acme", &gone).unwrap();
    let notes: Vec<&str> = journal.iter().map(|s| s.note.as_str()).collect();
    assert_eq!(
        notes,
        [
            "exit next → survey",
            "prompt@1.0.0 needs a live party and the contact has disconnected: the run ends"
        ]
    );
    assert_eq!(journal[1].applet, "");
    let run = host.engine.store().run("acme", &gone).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Done);
}

mod continuation;
mod control;
mod disk;
mod effects;
mod events;
mod fair;
mod kv;
mod leases;
mod poison;
mod postgres;
mod secrets;

#[tokio::test]
async fn a_serving_engine_steps_a_run_started_while_it_is_idle_and_stops_when_told() {
    let host = host().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = host.engine.clone();
    let serving = tokio::spawn(async move {
        engine
            .serve(async {
                let _ = stopped.await;
            })
            .await
    });
    // Idle first: nothing to do yet.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let run = start_run(&host, "post-call", None).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let record = host.engine.store().run("acme", &run).unwrap().unwrap();
        if record.status == RunStatus::Done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the serving engine never stepped the run: {record:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    let steps = tokio::time::timeout(std::time::Duration::from_secs(5), serving)
        .await
        .expect("serve stops when told")
        .unwrap()
        .unwrap();
    assert_eq!(steps, 1);
}

#[tokio::test]
async fn a_stopped_engine_lets_its_step_in_flight_commit_and_starts_no_other() {
    let host = host().await;
    let run = start_run(&host, "slow", None).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = host.engine.clone();
    let serving = tokio::spawn(async move {
        engine
            .serve(async {
                let _ = stopped.await;
            })
            .await
    });
    // The slow step is in flight when the stop comes.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let steps = tokio::time::timeout(std::time::Duration::from_secs(5), serving)
        .await
        .expect("serve stops once the step in flight commits")
        .unwrap()
        .unwrap();
    assert_eq!(
        steps, 1,
        "the step in flight committed, and no other started"
    );
    let record = host.engine.store().run("acme", &run).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Ready);
    assert_eq!(record.node.as_deref(), Some("b"));
    assert_eq!(host.engine.store().journal("acme", &run).unwrap().len(), 1);

    // Served again, the run goes on where it stopped.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = host.engine.clone();
    let serving = tokio::spawn(async move {
        engine
            .serve(async {
                let _ = stopped.await;
            })
            .await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while host
        .engine
        .store()
        .run("acme", &run)
        .unwrap()
        .unwrap()
        .status
        != RunStatus::Done
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not go on"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    assert_eq!(serving.await.unwrap().unwrap(), 1);
}

/// The expression applet of the race tests: answers the expression with the data source
/// `N` it was given, after changing `N` in the store on its first `changes` calls, as an
/// event arriving while the expression is evaluated would.
struct Racer {
    store: Arc<Store>,
    changes: usize,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Applets for Racer {
    fn info(&self, tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        Script.info(tenant, applet)
    }

    async fn invoke(
        &self,
        tenant: &str,
        applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        if applet.name() != coda_flow::EXPRESSION_APPLET {
            return Script.invoke(tenant, applet, input).await;
        }
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if call < self.changes {
            let interaction = input.context.interaction.clone().unwrap();
            self.store
                .update_interaction(tenant, &interaction, |current| {
                    let mut record = current.unwrap();
                    let n = match record.data.get("N") {
                        Some(Value::Integer(n)) => *n,
                        _ => 0,
                    };
                    record.data.insert("N".into(), Value::Integer(n + 1));
                    Ok::<_, ()>(record)
                })
                .await
                .unwrap()
                .unwrap();
        }
        let mut report = Script.invoke(tenant, applet, input.clone()).await?;
        report.data_changes.insert(
            "InvocationData".into(),
            input.data.get("N").cloned().unwrap_or(Value::Null),
        );
        Ok(report)
    }

    fn expression_applet(&self) -> Option<AppletRef> {
        AppletRef::new(coda_flow::EXPRESSION_APPLET, "0.1.0").ok()
    }
}

async fn racing(changes: usize) -> (tempfile::TempDir, Arc<Engine>, Arc<Racer>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let plan = coda_plan::parse(
        "name: survey\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n",
    )
    .unwrap();
    store
        .publish_plan("acme", "survey", &serde_json::to_value(&plan).unwrap(), 0)
        .await
        .unwrap();
    let racer = Arc::new(Racer {
        store: store.clone(),
        changes,
        calls: Default::default(),
    });
    let engine = Arc::new(Engine::new(
        store,
        racer.clone(),
        Arc::new(VirtualClock::new()),
        FlowLimits::default(),
    ));
    engine
        .on_event(
            "acme",
            event(json!({"type": "started", "interaction": "r1", "channel": "voice", "data": {"N": 1}})),
        )
        .await
        .unwrap()
        .unwrap();
    (dir, engine, racer)
}

fn expression_action() -> coda_flow::SetPostFlow {
    coda_flow::SetPostFlow {
        target: PostFlowTarget::Any,
        action: "voice-survey-flow".into(),
        plan: "survey".into(),
        invocation_data: coda_flow::InvocationData::Expression("N".into()),
    }
}

/// An expression is evaluated outside the store's writer, so an event can change the data
/// sources it read before its result is written: the write notices, and the expression is
/// evaluated again over the new data, so the stored result is never that of stale data.
#[tokio::test]
async fn a_post_flow_expression_whose_data_changed_meanwhile_is_evaluated_again() {
    let (_dir, engine, racer) = racing(1).await;
    let record = engine
        .set_post_flow_with("acme", "r1", Some(expression_action()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.data["N"], Value::Integer(2));
    assert_eq!(record.post_flow.unwrap().invocation_data, json!(2));
    assert_eq!(racer.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// Data that keeps changing under the expression gives up after a bounded number of tries,
/// naming why, and leaves the interaction's action as it was.
#[tokio::test]
async fn a_post_flow_expression_whose_data_keeps_changing_gives_up() {
    let (_dir, engine, racer) = racing(usize::MAX).await;
    let refused = engine
        .set_post_flow_with("acme", "r1", Some(expression_action()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&refused, EventError::InvocationData(m) if m.contains("changed 3 times")),
        "{refused}"
    );
    assert_eq!(
        racer.calls.load(std::sync::atomic::Ordering::SeqCst),
        coda_flow::EXPRESSION_TRIES
    );
    let record = engine.store().interaction("acme", "r1").unwrap().unwrap();
    assert_eq!(record.post_flow, None);
}
