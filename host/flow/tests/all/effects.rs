//! The effect journal: a step re-executed after a crash replays the capability calls it had
//! made, makes the one that was in flight again with the same key, and says so when the
//! re-execution made a different call.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coda_flow::{Applets, CapabilitySource, Engine, FlowLimits, StepInput, VirtualClock};
use coda_plan::AppletRef;
use coda_store::{RunStatus, Store};
use coda_types::capabilities::{
    Capabilities, CapabilitiesExt, CapabilityCall, CapabilityReply, HttpRequest, HttpResponse,
};
use coda_types::{AppletInfo, HostError, InvocationContext, InvocationReport, Outcome, Values};
use serde_json::json;

/// A downstream that counts what it was asked, by idempotency key.
#[derive(Default)]
struct Gateway {
    seen: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl Capabilities for Gateway {
    async fn call(
        &self,
        cx: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        let CapabilityCall::Http(request) = call else {
            return Err(call.not_granted());
        };
        let mut seen = self.seen.lock().unwrap();
        seen.push((cx.idempotency_key.clone(), request.url.clone()));
        Ok(CapabilityReply::Http(HttpResponse {
            status: 201,
            headers: vec![],
            body: format!("call {}", seen.len()).into_bytes(),
        }))
    }
}

struct Grants(Arc<Gateway>);

impl CapabilitySource for Grants {
    fn for_applet(&self, _tenant: &str, _applet: &AppletRef) -> Arc<dyn Capabilities> {
        self.0.clone()
    }
}

/// Sends to `/a` then `/b` (or `/c` instead of `/b` once `diverge` is set), and dies before
/// returning on its first `crashes` executions, as a host killed mid-step would.
struct Sender {
    crashes: AtomicU32,
    diverge: std::sync::atomic::AtomicBool,
    bodies: Mutex<Vec<String>>,
    /// Told when a step "dies": its host is then dropped mid-step, as a killed process.
    died: tokio::sync::Notify,
}

#[async_trait]
impl Applets for Sender {
    fn info(&self, _tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        Some(AppletInfo {
            name: applet.name().into(),
            version: applet.version().into(),
            description: String::new(),
            exits: vec!["sent".into()],
            config_schema: json!({}),
            needs_live_party: false,
            capabilities: vec![coda_types::Capability::Http],
        })
    }

    async fn invoke(
        &self,
        _tenant: &str,
        _applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        let send = |url: &str| HttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![],
            body: b"hello".to_vec(),
            timeout: None,
        };
        let first = input
            .capabilities
            .http_send(&input.context, send("http://gw/a"))
            .await
            .map_err(|e| e.to_string())?;
        let second_url = if self.diverge.load(Ordering::SeqCst) {
            "http://gw/c"
        } else {
            "http://gw/b"
        };
        if self.crashes.load(Ordering::SeqCst) > 0 {
            self.crashes.fetch_sub(1, Ordering::SeqCst);
            // The second call goes out, and the host dies before its result is journaled
            // would be the worst case; dying right after it is journaled is the common one.
            input
                .capabilities
                .http_send(&input.context, send(second_url))
                .await
                .map_err(|e| e.to_string())?;
            // The host dies here: the test drops it while this step waits forever. (A
            // panic would not do: the engine contains it and fails the step.)
            self.died.notify_one();
            std::future::pending::<()>().await;
        }
        let second = input
            .capabilities
            .http_send(&input.context, send(second_url))
            .await
            .map_err(|e| e.to_string())?;
        self.bodies.lock().unwrap().push(format!(
            "{} / {}",
            String::from_utf8_lossy(&first.body),
            String::from_utf8_lossy(&second.body)
        ));
        Ok(InvocationReport {
            result: Ok(Outcome::Exit("sent".into())),
            data_changes: Values::new(),
            state_changes: Values::new(),
            logs: vec![],
            fuel_used: 1,
            host_calls: 2,
            elapsed: std::time::Duration::from_micros(1),
        })
    }
}

async fn engine(store: Arc<Store>, sender: Arc<Sender>, gateway: Arc<Gateway>) -> Arc<Engine> {
    Arc::new(
        Engine::new(
            store,
            sender,
            Arc::new(VirtualClock::new()),
            FlowLimits::default(),
        )
        .with_capabilities(Arc::new(Grants(gateway))),
    )
}

async fn setup() -> (tempfile::TempDir, Arc<Store>, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let plan = coda_plan::parse(
        "name: notify\ntype: unattended\nstart: send\nnodes:\n  send:\n    applet: sender@1.0.0\n",
    )
    .unwrap();
    store
        .publish_plan("acme", "notify", &serde_json::to_value(&plan).unwrap(), 0)
        .await
        .unwrap();
    let probe = engine(
        store.clone(),
        Arc::new(Sender {
            crashes: AtomicU32::new(0),
            diverge: false.into(),
            bodies: Mutex::default(),
            died: tokio::sync::Notify::new(),
        }),
        Arc::default(),
    )
    .await;
    let run = probe
        .start(coda_flow::Start {
            tenant: "acme".into(),
            plan: "notify".into(),
            version: None,
            interaction: None,
            trigger_key: None,
            data: Values::new(),
        })
        .await
        .unwrap();
    (dir, store, run.id)
}

/// Runs `host` until its step dies, then drops it there, uncommitted: a killed process.
async fn die_mid_step(host: &Arc<Engine>, sender: &Sender) {
    tokio::select! {
        done = host.run_until_idle() => panic!("the step was to die, the pass ended: {done:?}"),
        _ = sender.died.notified() => {}
    }
}

#[tokio::test]
async fn a_step_re_executed_after_a_crash_replays_its_journaled_calls() {
    let (_dir, store, run) = setup().await;
    let gateway = Arc::new(Gateway::default());
    let sender = Arc::new(Sender {
        crashes: AtomicU32::new(1),
        diverge: false.into(),
        bodies: Mutex::default(),
        died: tokio::sync::Notify::new(),
    });

    // First execution: both calls go out and are journaled, then the step dies uncommitted.
    let first = engine(store.clone(), sender.clone(), gateway.clone()).await;
    die_mid_step(&first, &sender).await;
    assert!(
        store.journal("acme", &run).unwrap().is_empty(),
        "nothing committed"
    );
    assert_eq!(store.effects(&run, None).unwrap().len(), 2);

    // The restarted host re-executes the step: both results come from the journal.
    let second = engine(store.clone(), sender.clone(), gateway.clone()).await;
    assert_eq!(second.run_until_idle().await.unwrap(), 1);
    let seen = gateway.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        2,
        "each call reached the gateway once: {seen:?}"
    );
    let step_key = format!("{run}/0");
    assert_eq!(
        seen,
        vec![
            (format!("{step_key}/0"), "http://gw/a".to_string()),
            (format!("{step_key}/1"), "http://gw/b".to_string()),
        ]
    );
    assert_eq!(
        sender.bodies.lock().unwrap().as_slice(),
        ["call 1 / call 2"],
        "the replayed results are the ones the gateway gave"
    );
    let journal = store.journal("acme", &run).unwrap();
    assert_eq!(journal.len(), 1);
    assert!(
        journal[0]
            .note
            .contains("2 capability call(s) replayed from the effect journal"),
        "{}",
        journal[0].note
    );
    assert_eq!(
        store.run("acme", &run).unwrap().unwrap().status,
        RunStatus::Done
    );
}

#[tokio::test]
async fn a_re_execution_that_makes_another_call_makes_it_for_real_and_says_so() {
    let (_dir, store, run) = setup().await;
    let gateway = Arc::new(Gateway::default());
    let sender = Arc::new(Sender {
        crashes: AtomicU32::new(1),
        diverge: false.into(),
        bodies: Mutex::default(),
        died: tokio::sync::Notify::new(),
    });
    let first = engine(store.clone(), sender.clone(), gateway.clone()).await;
    die_mid_step(&first, &sender).await;

    sender.diverge.store(true, Ordering::SeqCst);
    let second = engine(store.clone(), sender.clone(), gateway.clone()).await;
    assert_eq!(second.run_until_idle().await.unwrap(), 1);
    let urls: Vec<String> = gateway
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, url)| url.clone())
        .collect();
    assert_eq!(urls, ["http://gw/a", "http://gw/b", "http://gw/c"]);
    let journal = store.journal("acme", &run).unwrap();
    assert!(
        journal[0].note.contains("replay diverged: call 1"),
        "{}",
        journal[0].note
    );
    let effects = store.effects(&run, None).unwrap();
    assert_eq!(
        effects.len(),
        2,
        "the diverged call replaced the old record"
    );
}
