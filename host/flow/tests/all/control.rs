//! Cancel and retry against the engine: a cancelled run never steps again, even when a step
//! of it was in flight (its commit loses to the cancel), and a failed run retried goes on
//! from its failed node as a further attempt of that step.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coda_flow::{Applets, Engine, FlowLimits, Start, StepInput, VirtualClock};
use coda_plan::AppletRef;
use coda_store::{Control, RunStatus, Store};
use coda_types::{AppletInfo, Failure, InvocationReport, InvokeError, Outcome, Values};
use serde_json::json;

/// `next` for every applet, except: `nap` pauses an hour; `gated` takes `next` only once
/// the test opens its gate; `flaky` fails (not retryable) on its first run in a run.
#[derive(Default)]
struct Script {
    /// (run, node, attempt, idempotency key) of every invocation.
    invoked: Mutex<Vec<(String, String, u32, String)>>,
    gate: tokio::sync::Notify,
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
        _tenant: &str,
        applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        let cx = &input.context;
        let before = {
            let mut invoked = self.invoked.lock().unwrap();
            let before = invoked
                .iter()
                .filter(|(run, node, ..)| *run == cx.run && *node == cx.node)
                .count();
            invoked.push((
                cx.run.clone(),
                cx.node.clone(),
                cx.attempt,
                cx.idempotency_key.clone(),
            ));
            before
        };
        let result = match applet.name() {
            "nap" => Ok(Outcome::Pause {
                millis: 3_600_000,
                exit: "next".into(),
            }),
            "gated" => {
                self.gate.notified().await;
                Ok(Outcome::Exit("next".into()))
            }
            "flaky" if before == 0 => Err(InvokeError::Failure(Failure {
                code: "down".into(),
                message: "the downstream is down".into(),
                retryable: false,
                retry_after_millis: None,
            })),
            _ => Ok(Outcome::Exit("next".into())),
        };
        Ok(InvocationReport {
            result,
            data_changes: Values::new(),
            state_changes: Values::new(),
            logs: vec![],
            fuel_used: 1,
            host_calls: 0,
            elapsed: std::time::Duration::from_micros(1),
        })
    }
}

impl Script {
    fn nodes(&self, run: &str) -> Vec<String> {
        let invoked = self.invoked.lock().unwrap();
        invoked
            .iter()
            .filter(|(r, ..)| r == run)
            .map(|(_, node, ..)| node.clone())
            .collect()
    }
}

struct Host {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    script: Arc<Script>,
}

async fn host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    for text in [
        "name: napper\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: nap@1.0.0\n    exits: { next: b }\n  b:\n    applet: step@1.0.0\n",
        "name: gated\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: gated@1.0.0\n    exits: { next: b }\n  b:\n    applet: step@1.0.0\n",
        "name: shaky\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n    exits: { next: b }\n  b:\n    applet: flaky@1.0.0\n    exits: { next: c }\n  c:\n    applet: step@1.0.0\n",
        "name: spin\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n    exits: { next: b }\n  b:\n    applet: step@1.0.0\n    exits: { next: a }\n",
    ] {
        let plan = coda_plan::parse(text).unwrap();
        store
            .publish_plan("acme", &plan.name, &serde_json::to_value(&plan).unwrap(), 0)
            .await
            .unwrap();
    }
    let script = Arc::new(Script::default());
    let engine = Arc::new(Engine::new(
        store,
        script.clone(),
        Arc::new(VirtualClock::new()),
        FlowLimits {
            max_steps: 20,
            ..FlowLimits::default()
        },
    ));
    Host {
        _dir: dir,
        engine,
        script,
    }
}

async fn start(host: &Host, plan: &str) -> String {
    host.engine
        .start(Start {
            tenant: "acme".into(),
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

fn status(host: &Host, run: &str) -> RunStatus {
    host.engine
        .store()
        .run("acme", run)
        .unwrap()
        .unwrap()
        .status
}

#[tokio::test]
async fn a_cancelled_parked_run_never_steps_again() {
    let host = host().await;
    let run = start(&host, "napper").await;
    // Step to the pause, no further (the virtual clock would otherwise jump the hour).
    host.engine.run_until(Some(1)).await.unwrap();
    assert_eq!(status(&host, &run), RunStatus::Parked);
    let Control::Applied(cancelled) = host.engine.cancel("acme", &run).await.unwrap() else {
        panic!("the cancel was refused");
    };
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    // Nothing is due any more: the hour passes and nothing runs.
    assert_eq!(host.engine.run_until_idle().await.unwrap(), 0);
    assert_eq!(host.script.nodes(&run), ["a"]);
    let journal = host.engine.store().journal("acme", &run).unwrap();
    assert_eq!(journal.len(), 2);
    assert!(journal[1].note.starts_with(coda_flow::CANCELLED_BY_API));
    // Finished: refused with its status. Another tenant: not found.
    assert!(matches!(
        host.engine.cancel("acme", &run).await.unwrap(),
        Control::Refused {
            status: RunStatus::Cancelled,
            ..
        }
    ));
    assert_eq!(
        host.engine.cancel("globex", &run).await.unwrap(),
        Control::NotFound
    );
}

#[tokio::test]
async fn a_step_in_flight_when_its_run_is_cancelled_commits_nothing() {
    let host = host().await;
    let run = start(&host, "gated").await;
    let engine = host.engine.clone();
    let pass = tokio::spawn(async move { engine.run_until_idle().await });
    // Wait for the step to be in flight, then cancel under it.
    while host.script.nodes(&run).is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(matches!(
        host.engine.cancel("acme", &run).await.unwrap(),
        Control::Applied(_)
    ));
    host.script.gate.notify_one();
    // The step's commit lost to the cancel's: not counted, not journaled.
    assert_eq!(pass.await.unwrap().unwrap(), 0);
    assert_eq!(status(&host, &run), RunStatus::Cancelled);
    assert_eq!(host.script.nodes(&run), ["a"]);
    let journal = host.engine.store().journal("acme", &run).unwrap();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert!(journal[0].note.starts_with(coda_flow::CANCELLED_BY_API));
    assert_eq!(host.engine.run_until_idle().await.unwrap(), 0);
}

#[tokio::test]
async fn a_failed_run_retried_goes_on_from_its_failed_node_with_the_same_key() {
    let host = host().await;
    let run = start(&host, "shaky").await;
    host.engine.run_until_idle().await.unwrap();
    assert_eq!(status(&host, &run), RunStatus::Failed);
    // Only a failed run is retried.
    let other = start(&host, "napper").await;
    host.engine.run_until(Some(1)).await.unwrap();
    assert!(matches!(
        host.engine.retry("acme", &other).await.unwrap(),
        Control::Refused {
            status: RunStatus::Parked,
            ..
        }
    ));

    let Control::Applied(ready) = host.engine.retry("acme", &run).await.unwrap() else {
        panic!("the retry was refused");
    };
    assert_eq!(ready.status, RunStatus::Ready);
    assert_eq!(ready.node.as_deref(), Some("b"));
    host.engine.run_until(Some(2)).await.unwrap();
    assert_eq!(status(&host, &run), RunStatus::Done);
    assert_eq!(host.script.nodes(&run), ["a", "b", "b", "c"]);
    let invoked = host.script.invoked.lock().unwrap().clone();
    let b: Vec<_> = invoked
        .iter()
        .filter(|(r, node, ..)| *r == run && node == "b")
        .collect();
    assert!(b[1].2 > b[0].2, "a new attempt: {b:?}");
    assert_eq!(b[1].3, b[0].3, "the same idempotency key: {b:?}");
    let journal = host.engine.store().journal("acme", &run).unwrap();
    let seqs: Vec<u64> = journal.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    assert!(journal[2].note.starts_with("retried by API"));
    // Done now: no second retry.
    assert!(matches!(
        host.engine.retry("acme", &run).await.unwrap(),
        Control::Refused {
            status: RunStatus::Done,
            ..
        }
    ));
}

#[tokio::test]
async fn a_run_stopped_at_the_step_limit_is_not_retried() {
    let host = host().await;
    let run = start(&host, "spin").await;
    host.engine.run_until_idle().await.unwrap();
    assert_eq!(status(&host, &run), RunStatus::Failed);
    let Control::Refused { why, .. } = host.engine.retry("acme", &run).await.unwrap() else {
        panic!("a run at the step limit was retried");
    };
    assert!(why.contains("step limit"), "{why}");
}
