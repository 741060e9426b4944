//! Several nodes on one database (SQLite here: two `Store`s opened on one file, each with
//! its own writer, as two processes would be): runs shared through claims, a dead node's
//! runs taken over when its lease runs out, a paused node's late commit refused by the
//! claim fence, and a tenant's concurrency held across nodes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coda_flow::{
    Applets, CapabilitySource, Clock, Engine, FlowLimits, Start, StepInput, TenantLimit,
    VirtualClock, WallClock,
};
use coda_plan::AppletRef;
use coda_store::{
    EffectRecord, RunStatus, RunUpdate, StepCommit, StepRecord, Store, StoreError, TenantSlots,
};
use coda_types::capabilities::{
    Capabilities, CapabilitiesExt, CapabilityCall, CapabilityReply, HttpRequest, HttpResponse,
};
use coda_types::{
    AppletInfo, Failure, HostError, InvocationContext, InvocationReport, InvokeError, Outcome,
    Values,
};
use serde_json::json;

const THREE_STEPS: &str = "name: three\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: work@1.0.0\n    exits: { next: b }\n  b:\n    applet: work@1.0.0\n    exits: { next: c }\n  c:\n    applet: work@1.0.0\n";
const ONE_STEP: &str =
    "name: one\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: work@1.0.0\n";

/// What every node's applets saw, shared by the nodes of a test.
#[derive(Default)]
struct Seen {
    /// Invocations by step key (`run/seq`).
    invoked: Mutex<HashMap<String, usize>>,
    /// Steps in flight per tenant now, and the most seen, across every node.
    in_flight: Mutex<HashMap<String, (usize, usize)>>,
}

impl Seen {
    fn invocations(&self) -> usize {
        self.invoked.lock().unwrap().values().sum()
    }
    fn most_in_flight(&self, tenant: &str) -> usize {
        self.in_flight
            .lock()
            .unwrap()
            .get(tenant)
            .map_or(0, |(_, most)| *most)
    }
}

/// Takes `next` after `step`; with `hang`, never answers (a node that stopped mid-step);
/// with `gate`, answers once the gate opens.
struct Work {
    seen: Arc<Seen>,
    step: Duration,
    hang: bool,
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl Work {
    fn new(seen: &Arc<Seen>, step_ms: u64) -> Arc<Work> {
        Arc::new(Work {
            seen: seen.clone(),
            step: Duration::from_millis(step_ms),
            hang: false,
            gate: None,
        })
    }
}

#[async_trait]
impl Applets for Work {
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
        _applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        *self
            .seen
            .invoked
            .lock()
            .unwrap()
            .entry(input.context.idempotency_key.clone())
            .or_default() += 1;
        {
            let mut all = self.seen.in_flight.lock().unwrap();
            let (now, most) = all.entry(tenant.to_owned()).or_default();
            *now += 1;
            *most = (*most).max(*now);
        }
        if self.hang {
            std::future::pending::<()>().await;
        }
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        tokio::time::sleep(self.step).await;
        self.seen
            .in_flight
            .lock()
            .unwrap()
            .get_mut(tenant)
            .unwrap()
            .0 -= 1;
        Ok(InvocationReport {
            result: Ok(Outcome::Exit("next".into())),
            data_changes: Values::new(),
            state_changes: Values::new(),
            logs: vec![],
            fuel_used: 1,
            host_calls: 0,
            elapsed: self.step,
        })
    }
}

async fn publish(db: &Path, tenants: &[&str]) {
    let store = Store::open(db).unwrap();
    for tenant in tenants {
        for text in [THREE_STEPS, ONE_STEP] {
            let plan = coda_plan::parse(text).unwrap();
            store
                .publish_plan(tenant, &plan.name, &serde_json::to_value(&plan).unwrap(), 0)
                .await
                .unwrap();
        }
    }
}

/// A node: its own store (connections and writer) on the shared database.
fn node(
    db: &Path,
    id: &str,
    applets: Arc<Work>,
    clock: Arc<dyn Clock>,
    limits: FlowLimits,
) -> Arc<Engine> {
    let store = Arc::new(Store::open(db).unwrap());
    Arc::new(Engine::new(store, applets, clock, limits).with_node_id(id))
}

fn lease(ms: u64) -> FlowLimits {
    FlowLimits {
        lease_ms: ms,
        ..FlowLimits::default()
    }
}

async fn start(engine: &Engine, tenant: &str, plan: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let started = engine
            .start(Start {
                tenant: tenant.into(),
                plan: plan.into(),
                version: None,
                interaction: None,
                trigger_key: None,
                data: Values::new(),
            })
            .await
            .unwrap();
        ids.push(started.id);
    }
    ids
}

/// Every run done, its journal holding each step once, in sequence.
fn assert_done_once(store: &Store, tenant: &str, ids: &[String], steps: u64) {
    for id in ids {
        let run = store.run(tenant, id).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Done, "run {id}");
        let journal = store.journal(tenant, id).unwrap();
        let seqs: Vec<u64> = journal.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (0..steps).collect::<Vec<_>>(), "run {id}'s journal");
        let claim = store.claim_of(id).unwrap().unwrap();
        assert_eq!(claim.owner, None, "run {id}'s claim is released");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_runs_and_each_step_commits_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coda.db");
    publish(&db, &["acme"]).await;
    let seen = Arc::new(Seen::default());
    // Each node takes at most 8 steps at once: neither can hold all 40 runs. Steps take
    // 50 ms, so one node cannot finish all 120 before the other starts, even under load.
    let limits = FlowLimits {
        batch: 8,
        tenant_concurrency: 100,
        ..lease(2_000)
    };
    let a = node(
        &db,
        "node-a",
        Work::new(&seen, 50),
        Arc::new(WallClock),
        limits,
    );
    let b = node(
        &db,
        "node-b",
        Work::new(&seen, 50),
        Arc::new(WallClock),
        limits,
    );
    let ids = start(&a, "acme", "three", 40).await;
    let (sa, sb) = tokio::join!(a.run_until_idle(), b.run_until_idle());
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    assert_eq!(sa + sb, 120, "every step committed once: {sa} + {sb}");
    assert!(sa > 0 && sb > 0, "both nodes stepped runs: {sa} and {sb}");
    // No step ran twice: claims kept the nodes off each other's runs.
    assert_eq!(seen.invocations(), 120);
    assert!(seen.invoked.lock().unwrap().values().all(|n| *n == 1));
    assert_done_once(a.store(), "acme", &ids, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_runs_are_taken_over_once_its_lease_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coda.db");
    publish(&db, &["acme"]).await;
    let seen = Arc::new(Seen::default());
    let hanging = Arc::new(Work {
        seen: seen.clone(),
        step: Duration::ZERO,
        hang: true,
        gate: None,
    });
    let a = node(&db, "node-a", hanging, Arc::new(WallClock), lease(300));
    let ids = start(&a, "acme", "three", 6).await;
    let dead = tokio::spawn({
        let a = a.clone();
        async move { a.run_until_idle().await }
    });
    // Node A claims every run and hangs in their first steps; then it dies (its scheduler,
    // its heartbeat and its steps dropped), its claims left in the store.
    tokio::time::timeout(Duration::from_secs(10), async {
        while seen.invocations() < 6 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("node A took the runs");
    dead.abort();
    let _ = dead.await;
    for id in &ids {
        let claim = a.store().claim_of(id).unwrap().unwrap();
        assert_eq!(claim.owner.as_deref(), Some("node-a"));
    }
    let b = node(
        &db,
        "node-b",
        Work::new(&seen, 1),
        Arc::new(WallClock),
        lease(300),
    );
    let began = std::time::Instant::now();
    let steps = tokio::time::timeout(Duration::from_secs(20), b.run_until_idle())
        .await
        .expect("node B finished the runs")
        .unwrap();
    assert_eq!(steps, 18);
    assert_done_once(b.store(), "acme", &ids, 3);
    // B waited for A's leases (it could not take a live claim), and claimed each run anew:
    // a claim number past A's (1), under which its steps continued.
    assert!(began.elapsed() >= Duration::from_millis(150), "{began:?}");
    for id in &ids {
        assert!(b.store().claim_of(id).unwrap().unwrap().seq >= 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_its_lease_commits_nothing_when_it_wakes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coda.db");
    publish(&db, &["acme"]).await;
    let seen = Arc::new(Seen::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let paused = Arc::new(Work {
        seen: seen.clone(),
        step: Duration::ZERO,
        hang: false,
        gate: Some(gate.clone()),
    });
    // Node A's clock stands still: its heartbeat renews its claim to the same instant, as
    // a node stopped (SIGSTOP) renews nothing. Its step waits at the gate meanwhile.
    let frozen = Arc::new(VirtualClock::new());
    let a = node(&db, "node-a", paused, frozen, lease(300));
    let ids = start(&a, "acme", "one", 1).await;
    let paused_node = tokio::spawn({
        let a = a.clone();
        async move { a.run_until_idle().await }
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while seen.invocations() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("node A took the run");
    // Node B takes the run over once A's lease has run out, and commits its step. B's own
    // lease is long: on a loaded machine a 300 ms one ran out under B too, and B then ran
    // the step again under a new claim, which is not what this test is about.
    let b = node(
        &db,
        "node-b",
        Work::new(&seen, 1),
        Arc::new(WallClock),
        lease(10_000),
    );
    let steps = tokio::time::timeout(Duration::from_secs(20), b.run_until_idle())
        .await
        .expect("node B finished the run")
        .unwrap();
    assert_eq!(steps, 1);
    // A wakes up and finishes its step: its commit is refused.
    gate.add_permits(1);
    let late = tokio::time::timeout(Duration::from_secs(20), paused_node)
        .await
        .expect("node A stopped")
        .unwrap()
        .unwrap();
    assert_eq!(late, 0, "the paused node committed nothing");
    assert_eq!(seen.invocations(), 2, "the step ran on both nodes");
    assert_done_once(b.store(), "acme", &ids, 1);
}

#[tokio::test]
async fn a_stale_claims_commit_and_effects_are_refused_by_the_claim_fence() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coda.db");
    publish(&db, &["acme"]).await;
    let seen = Arc::new(Seen::default());
    let engine = node(
        &db,
        "x",
        Work::new(&seen, 0),
        Arc::new(WallClock),
        lease(100),
    );
    let id = start(&engine, "acme", "one", 1).await.remove(0);
    let store = engine.store();
    let now = engine_now();
    let slots = || {
        vec![TenantSlots {
            tenant: "acme".into(),
            concurrency: 8,
        }]
    };
    let a = store
        .claim_due_runs("node-a", now, 100, 8, 8, slots())
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    // A live claim is not taken again, not even by its owner.
    assert!(
        store
            .claim_due_runs("node-b", now + 50, 100, 8, 8, slots())
            .await
            .unwrap()
            .is_empty()
    );
    // A's lease runs out (it was paused); B takes the run.
    let b = store
        .claim_due_runs("node-b", now + 101, 100, 8, 8, slots())
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].claim_seq, a[0].claim_seq + 1);
    // A wakes: renewing finds its claim gone, and its journal writes and commit are refused
    // although B has committed nothing yet (the step sequence alone would let A through).
    assert!(
        store
            .renew_claims("node-a", &[(id.clone(), a[0].claim_seq)], now + 500)
            .await
            .unwrap()
            .is_empty()
    );
    let effect = EffectRecord {
        step_seq: 0,
        call_seq: 0,
        kind: "http".into(),
        digest: "d".into(),
        result: json!({"ok": 1}),
        at_ms: now,
    };
    let refused = store
        .record_claimed_effect(&id, effect.clone(), a[0].claim_seq)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    let refused = store
        .commit_claimed_step(commit(&id, now), a[0].claim_seq)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    // B's are taken, and its commit releases the claim.
    assert_eq!(
        store
            .renew_claims("node-b", &[(id.clone(), b[0].claim_seq)], now + 500)
            .await
            .unwrap(),
        std::slice::from_ref(&id)
    );
    store
        .record_claimed_effect(&id, effect, b[0].claim_seq)
        .await
        .unwrap();
    store
        .commit_claimed_step(commit(&id, now), b[0].claim_seq)
        .await
        .unwrap();
    assert_eq!(store.journal("acme", &id).unwrap().len(), 1);
    assert_eq!(store.effects(&id, None).unwrap().len(), 1);
    let claim = store.claim_of(&id).unwrap().unwrap();
    assert_eq!((claim.owner, claim.until_ms), (None, None));
    // A second commit of the same step under B's claim changes nothing.
    let again = store
        .commit_claimed_step(commit(&id, now), b[0].claim_seq)
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    assert_eq!(store.journal("acme", &id).unwrap().len(), 1);
}

fn engine_now() -> i64 {
    WallClock.now_ms()
}

fn commit(id: &str, now: i64) -> StepCommit {
    StepCommit {
        input: None,
        run_id: id.into(),
        expected_seq: 0,
        step: StepRecord {
            seq: 0,
            plan: "one".into(),
            plan_version: 1,
            node: "a".into(),
            applet: "work@1.0.0".into(),
            attempt: 1,
            result: json!({"exit": "next"}),
            note: String::new(),
            fuel_used: 0,
            duration_us: 0,
            data_changes: Values::new(),
            at_ms: now,
            logs: Vec::new(),
        },
        next: RunUpdate {
            status: RunStatus::Done,
            plan: "one".into(),
            plan_version: 1,
            node: None,
            attempt: 1,
            data: Values::new(),
            state: Default::default(),
            due_at_ms: None,
            wait: None,
            route_depth: 0,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_concurrency_holds_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coda.db");
    publish(&db, &["acme", "globex"]).await;
    let seen = Arc::new(Seen::default());
    let limits = |tenant: &str| TenantLimit {
        concurrency: Some(if tenant == "acme" { 3 } else { 1 }),
        queue: None,
    };
    let mk = |id: &str| {
        let store = Arc::new(Store::open(&db).unwrap());
        Arc::new(
            Engine::new(
                store,
                Work::new(&seen, 30),
                Arc::new(WallClock),
                lease(2_000),
            )
            .with_node_id(id)
            .with_tenant_limits(Arc::new(limits)),
        )
    };
    let (a, b) = (mk("node-a"), mk("node-b"));
    let acme = start(&a, "acme", "one", 24).await;
    let globex = start(&b, "globex", "one", 6).await;
    let (sa, sb) = tokio::join!(a.run_until_idle(), b.run_until_idle());
    assert_eq!(sa.unwrap() + sb.unwrap(), 30);
    assert_done_once(a.store(), "acme", &acme, 1);
    assert_done_once(a.store(), "globex", &globex, 1);
    // Each node alone would allow 3 (and 1): together they still kept to it.
    assert_eq!(seen.most_in_flight("acme"), 3);
    assert_eq!(seen.most_in_flight("globex"), 1);
}

/// Sends one SMS through its http capability. With `stopped` set, its first step first
/// stops its node's whole thread (its runtime, heartbeat included), as SIGSTOP stops a
/// process, until released.
struct Texting {
    url: String,
    /// Told when the step has stopped; the step waits on `release` meanwhile.
    stopped: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    release: Option<Mutex<std::sync::mpsc::Receiver<()>>>,
}

impl Texting {
    fn stopping(url: String) -> (Self, Stopped) {
        let (stopped, is_stopped) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel();
        let texting = Texting {
            url,
            stopped: Mutex::new(Some(stopped)),
            release: Some(Mutex::new(released)),
        };
        (
            texting,
            Stopped {
                is_stopped,
                release,
            },
        )
    }
}

/// The test's side of a stopping [`Texting`].
struct Stopped {
    is_stopped: tokio::sync::oneshot::Receiver<()>,
    release: std::sync::mpsc::Sender<()>,
}

/// Runs `engine` to idle on a thread of its own (a process of its own), on a one-thread
/// runtime: a step blocking that thread stops the whole node.
fn on_own_thread(engine: &Arc<Engine>) -> std::thread::JoinHandle<coda_flow::Result<u64>> {
    let engine = engine.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(engine.run_until_idle())
    })
}

async fn join(node: std::thread::JoinHandle<coda_flow::Result<u64>>) -> u64 {
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || node.join().unwrap()),
    )
    .await
    .expect("the node finished")
    .unwrap()
    .unwrap()
}

#[async_trait]
impl Applets for Texting {
    fn info(&self, tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        Work::new(&Arc::default(), 0).info(tenant, applet)
    }

    async fn invoke(
        &self,
        _tenant: &str,
        _applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        let stopped = self.stopped.lock().unwrap().take();
        if let (Some(stopped), Some(release)) = (stopped, &self.release) {
            let _ = stopped.send(());
            // Blocks the thread, not just this task: nothing of the node runs meanwhile.
            release.lock().unwrap().recv().unwrap();
        }
        let sent = input
            .capabilities
            .http_send(
                &input.context,
                HttpRequest {
                    method: "POST".into(),
                    url: format!("{}/sms", self.url),
                    headers: vec![],
                    body: b"your callback is booked".to_vec(),
                    timeout: None,
                },
            )
            .await;
        Ok(InvocationReport {
            result: match sent {
                Ok(_) => Ok(Outcome::Exit("next".into())),
                Err(e) => Err(InvokeError::Failure(Failure {
                    code: "http".into(),
                    message: e.to_string(),
                    retryable: true,
                    retry_after_millis: None,
                })),
            },
            data_changes: Values::new(),
            state_changes: Values::new(),
            logs: vec![],
            fuel_used: 1,
            host_calls: 1,
            elapsed: Duration::ZERO,
        })
    }
}

/// A real HTTP client, the call's idempotency key in a header. A call once started goes
/// out even if the step is dropped meanwhile (it runs on the test's runtime), as a request
/// already written to its socket does: only not starting it keeps it from the downstream.
struct Http {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl Capabilities for Http {
    async fn call(
        &self,
        cx: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        let CapabilityCall::Http(request) = call else {
            return Err(call.not_granted());
        };
        let call = self
            .client
            .post(&request.url)
            .header("idempotency-key", &cx.idempotency_key)
            .body(request.body)
            .send();
        let response = self
            .runtime
            .spawn(call)
            .await
            .map_err(|e| HostError::Unavailable(e.to_string()))?
            .map_err(|e| HostError::Unavailable(e.to_string()))?;
        Ok(CapabilityReply::Http(HttpResponse {
            status: response.status().as_u16(),
            headers: vec![],
            body: vec![],
        }))
    }
}

impl CapabilitySource for Http {
    fn for_applet(&self, _tenant: &str, _applet: &AppletRef) -> Arc<dyn Capabilities> {
        Arc::new(Http {
            client: self.client.clone(),
            runtime: self.runtime.clone(),
        })
    }
}

/// The "leases without fences" trap: node A stops (its whole thread) in a step, right
/// before an effectful call, for longer than its lease; node B takes the run over, makes
/// the call and commits. When A wakes, its monotonic clock is past the claim's local
/// deadline: the call it had in hand is not made, and the step ends with nothing journaled,
/// committed or counted. The downstream (a real loopback server) saw the call once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_woken_past_its_lease_makes_no_effectful_call() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coda.db");
    publish(&db, &["acme"]).await;
    let sms = coda_testkit::Recorder::start(201, json!({ "sid": "SM1" }))
        .await
        .unwrap();
    let node = texting_node(&db);
    let (texting, stop) = Texting::stopping(sms.url());
    let a = node("node-a", texting);
    let id = start(&a, "acme", "one", 1).await.remove(0);
    let node_a = on_own_thread(&a);
    tokio::time::timeout(Duration::from_secs(10), stop.is_stopped)
        .await
        .expect("node A took the run")
        .unwrap();
    // Node B takes the run over once A's lease has run out, sends the SMS and commits.
    let b = node(
        "node-b",
        Texting {
            url: sms.url(),
            stopped: Mutex::new(None),
            release: None,
        },
    );
    let steps = tokio::time::timeout(Duration::from_secs(20), b.run_until_idle())
        .await
        .expect("node B finished the run")
        .unwrap();
    assert_eq!(steps, 1);
    assert_eq!(sms.requests().len(), 1, "node B sent the SMS");
    // A wakes with the call in hand.
    stop.release.send(()).unwrap();
    let late = join(node_a).await;
    assert_eq!(late, 0, "the woken node committed nothing");
    let sent = sms.requests();
    assert_eq!(sent.len(), 1, "the SMS was sent once: {sent:?}");
    assert_eq!(
        sent[0].header("idempotency-key"),
        Some(format!("{}/0", coda_flow::step_key(&id, 0, 1)).as_str())
    );
    assert_done_once(b.store(), "acme", std::slice::from_ref(&id), 1);
    assert_eq!(b.store().effects(&id, None).unwrap().len(), 1);
    // Nothing of A's step was counted: the run simply went on elsewhere.
    let counted = a.metrics();
    assert_eq!((counted.steps, counted.errors.len()), (0, 0), "{counted:?}");
}

/// A node on `db` whose applets send SMS through a real HTTP client; lease 300 ms.
fn texting_node(db: &Path) -> impl Fn(&str, Texting) -> Arc<Engine> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = Arc::new(Http {
        client: reqwest::Client::new(),
        runtime: tokio::runtime::Handle::current(),
    });
    let db = db.to_owned();
    move |id, applets| {
        let store = Arc::new(Store::open(&db).unwrap());
        Arc::new(
            Engine::new(store, Arc::new(applets), Arc::new(WallClock), lease(300))
                .with_node_id(id)
                .with_capabilities(http.clone()),
        )
    }
}

/// The same stop with no other node about: the woken node gives its claim up (its heartbeat
/// does not renew it, its call is not made) although nobody took the run, then claims the
/// run anew like any other node would and steps it once — no failure journaled for the
/// abandoned attempt, the SMS sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_woken_past_its_lease_with_no_one_else_about_claims_the_run_anew() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coda.db");
    publish(&db, &["acme"]).await;
    let sms = coda_testkit::Recorder::start(201, json!({ "sid": "SM1" }))
        .await
        .unwrap();
    let (texting, stop) = Texting::stopping(sms.url());
    let a = texting_node(&db)("node-a", texting);
    let id = start(&a, "acme", "one", 1).await.remove(0);
    let node_a = on_own_thread(&a);
    tokio::time::timeout(Duration::from_secs(10), stop.is_stopped)
        .await
        .expect("node A took the run")
        .unwrap();
    let first = a.store().claim_of(&id).unwrap().unwrap();
    // Stopped past its lease: no heartbeat can have run meanwhile.
    let until = first.until_ms.unwrap();
    let past = (until + 1 - WallClock.now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(past)).await;
    assert_eq!(
        a.store().claim_of(&id).unwrap().unwrap().until_ms,
        Some(until)
    );
    assert!(sms.requests().is_empty());
    stop.release.send(()).unwrap();
    assert_eq!(
        join(node_a).await,
        1,
        "the run was stepped once, under a new claim"
    );
    assert_done_once(a.store(), "acme", std::slice::from_ref(&id), 1);
    assert!(a.store().claim_of(&id).unwrap().unwrap().seq > first.seq);
    assert_eq!(sms.requests().len(), 1, "the SMS was sent once");
    let journal = a.store().journal("acme", &id).unwrap();
    assert_eq!(journal[0].result, json!({ "exit": "next" }), "{journal:?}");
    let counted = a.metrics();
    assert_eq!((counted.steps, counted.errors.len()), (1, 0), "{counted:?}");
}
