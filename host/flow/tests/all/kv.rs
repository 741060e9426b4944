//! The kv capability in a flow, through the effect journal and the real capability over the
//! run store: a step that counted a contact and died before its commit is re-executed and
//! gets its count back, and the count is applied once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use coda_capabilities::{HostCapabilities, Settings};
use coda_flow::{Applets, CapabilitySource, Engine, FlowLimits, StepInput, VirtualClock};
use coda_plan::AppletRef;
use coda_store::{RunStatus, Store};
use coda_types::capabilities::{Capabilities, CapabilitiesExt};
use coda_types::kv::{KvAnswer, KvOp};
use coda_types::{AppletInfo, InvocationReport, Outcome, Value, Values};
use serde_json::json;

const KEY: &str = "contacts/+15550100";

/// Counts one contact on `KEY` and sets the count in `Count`; on its first `crashes`
/// executions it dies after the increment, before returning, as a host killed mid-step.
struct Counter {
    crashes: AtomicU32,
    died: tokio::sync::Notify,
}

#[async_trait]
impl Applets for Counter {
    fn info(&self, _tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        Some(AppletInfo {
            name: applet.name().into(),
            version: applet.version().into(),
            description: String::new(),
            exits: vec!["counted".into()],
            config_schema: json!({}),
            needs_live_party: false,
            capabilities: vec![coda_types::Capability::Kv],
        })
    }

    async fn invoke(
        &self,
        _tenant: &str,
        _applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        let increment = KvOp::Increment {
            key: KEY.into(),
            by: 1,
            ttl_millis: Some(86_400_000),
        };
        let count = match input.capabilities.kv(&input.context, increment).await {
            Ok(KvAnswer::Counted(count)) => count,
            other => return Err(format!("the increment answered {other:?}")),
        };
        if self.crashes.load(Ordering::SeqCst) > 0 {
            self.crashes.fetch_sub(1, Ordering::SeqCst);
            // The host dies here: the test drops it while this step waits forever.
            self.died.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(InvocationReport {
            result: Ok(Outcome::Exit("counted".into())),
            data_changes: Values::from([("Count".into(), Value::Integer(count))]),
            state_changes: Values::new(),
            logs: vec![],
            fuel_used: 1,
            host_calls: 1,
            elapsed: std::time::Duration::from_micros(1),
        })
    }
}

/// The service's capabilities: `counter` granted the prefix `contacts/` of acme's store.
struct Grants(HostCapabilities);

impl CapabilitySource for Grants {
    fn for_applet(&self, tenant: &str, applet: &AppletRef) -> Arc<dyn Capabilities> {
        self.0.for_applet(tenant, applet.name(), applet.version())
    }
}

fn engine(store: Arc<Store>, counter: Arc<Counter>) -> Arc<Engine> {
    let settings = Settings::from_yaml_str(
        "tenants:\n  acme:\n    ceiling: {kv: {}}\n    grants:\n      counter: {kv: [contacts/]}\n  globex:\n    ceiling: {kv: {}}\n    grants:\n      counter: {kv: [contacts/]}\n",
    )
    .unwrap();
    let capabilities = HostCapabilities::new(settings)
        .unwrap()
        .with_kv(store.clone());
    Arc::new(
        Engine::new(
            store,
            counter,
            Arc::new(VirtualClock::new()),
            FlowLimits::default(),
        )
        .with_capabilities(Arc::new(Grants(capabilities))),
    )
}

async fn start(engine: &Engine, tenant: &str) -> String {
    engine
        .start(coda_flow::Start {
            tenant: tenant.into(),
            plan: "count".into(),
            version: None,
            interaction: None,
            trigger_key: None,
            data: Values::new(),
        })
        .await
        .unwrap()
        .id
}

async fn entry(store: &Store, tenant: &str) -> KvAnswer {
    use coda_types::kv::{KvLimits, KvStore};
    store
        .apply(
            tenant,
            KvOp::Get { key: KEY.into() },
            KvLimits::default(),
            0,
            None,
            &Default::default(),
        )
        .await
        .unwrap()
}

fn count(answer: KvAnswer) -> Option<i64> {
    match answer {
        KvAnswer::Entry(Some(entry)) => match entry.value {
            Value::Integer(n) => Some(n),
            other => panic!("{other:?}"),
        },
        KvAnswer::Entry(None) => None,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_increment_whose_step_died_before_its_commit_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let plan = coda_plan::parse(
        "name: count\ntype: unattended\nstart: count\nnodes:\n  count:\n    applet: counter@1.0.0\n",
    )
    .unwrap();
    for tenant in ["acme", "globex"] {
        store
            .publish_plan(tenant, "count", &serde_json::to_value(&plan).unwrap(), 0)
            .await
            .unwrap();
    }
    let counter = Arc::new(Counter {
        crashes: AtomicU32::new(1),
        died: tokio::sync::Notify::new(),
    });

    // The first host counts the contact, then dies with the step uncommitted.
    let first = engine(store.clone(), counter.clone());
    let run = start(&first, "acme").await;
    tokio::select! {
        done = first.run_until_idle() => panic!("the step was to die, the pass ended: {done:?}"),
        _ = counter.died.notified() => {}
    }
    drop(first);
    assert!(
        store.journal("acme", &run).unwrap().is_empty(),
        "nothing committed"
    );
    assert_eq!(count(entry(&store, "acme").await), Some(1));
    let effects = store.effects(&run, None).unwrap();
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert_eq!(effects[0].kind, "kv");
    assert_eq!(effects[0].result, json!({"Ok": {"counted": 1}}));

    // The restarted host re-executes the step: the count comes back from the journal, and
    // the store still holds one contact.
    let second = engine(store.clone(), counter.clone());
    assert_eq!(second.run_until_idle().await.unwrap(), 1);
    let finished = store.run("acme", &run).unwrap().unwrap();
    assert_eq!(finished.status, RunStatus::Done);
    assert_eq!(finished.data.get("Count"), Some(&Value::Integer(1)));
    let journal = store.journal("acme", &run).unwrap();
    assert!(
        journal[0].note.contains("1 capability call(s) replayed"),
        "{}",
        journal[0].note
    );
    assert_eq!(count(entry(&store, "acme").await), Some(1));

    // The next run counts the second contact; another tenant's run counts its own first.
    let again = start(&second, "acme").await;
    let foreign = start(&second, "globex").await;
    assert_eq!(second.run_until_idle().await.unwrap(), 2);
    for (tenant, run, expected) in [("acme", &again, 2), ("globex", &foreign, 1)] {
        let data = store.run(tenant, run).unwrap().unwrap().data;
        assert_eq!(
            data.get("Count"),
            Some(&Value::Integer(expected)),
            "{tenant}"
        );
    }
    assert_eq!(count(entry(&store, "acme").await), Some(2));
    assert_eq!(count(entry(&store, "globex").await), Some(1));
}
