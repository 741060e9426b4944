//! The fixture layer of a dry run (`coda run PLAN --event E --dry-run`): the flow runs for
//! real, but no capability call is performed. Each is answered from the recorded fixture of
//! its node when there is one of its kind, or simulated with a plain success; every call is
//! listed as an effect that would have happened. It answers through the same recorded
//! replies, request and answer forms as the offline harness ([`crate::FixtureCapabilities`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coda_types::capabilities::{
    CallKind, Capabilities, CapabilityCall, CapabilityReply, HttpResponse, SqlRows,
};
use coda_types::kv::{KvAnswer, KvOp};
use coda_types::{HostError, InvocationContext};
use serde::Serialize;
use serde_json::Value as Json;

use crate::calls::{answer_json, request_json};
use crate::fixture::{Fixture, RecordedCall};

/// One effect that would have happened.
#[derive(Debug, Clone, Serialize)]
pub struct WouldBe {
    pub node: String,
    /// The step's idempotency key and the call's position in it (`run/3/0`).
    pub key: String,
    pub kind: CallKind,
    pub request: Json,
    /// `recorded` (from a fixture for the node), `simulated` (a plain success), or
    /// `not-granted` (the grants refuse it: the call would not happen).
    pub answered: &'static str,
    pub answer: Json,
}

/// The grant decision a call would meet first, for one applet: `Err` refuses it.
pub type GrantCheck = Arc<dyn Fn(&CapabilityCall) -> Result<(), HostError> + Send + Sync>;

/// Recorded answers per node, consumed in order, and what was asked.
#[derive(Default)]
struct Shared {
    recorded: HashMap<String, VecDeque<RecordedCall>>,
    secrets: BTreeMap<String, String>,
    effects: Vec<WouldBe>,
    /// Calls per step key so far, for each call's own key.
    positions: HashMap<String, u32>,
}

/// The calls of one dry run, shared by the capabilities of every applet it runs.
#[derive(Default)]
pub struct DryRun {
    shared: Arc<Mutex<Shared>>,
}

impl DryRun {
    /// Answers from `fixtures`, each for the node its `context.node` names; their secrets
    /// answer secret reads of any node.
    pub fn new(fixtures: impl IntoIterator<Item = (String, Fixture)>) -> Self {
        let mut shared = Shared::default();
        for (node, fixture) in fixtures {
            shared
                .recorded
                .entry(node)
                .or_default()
                .extend(fixture.calls);
            shared.secrets.extend(fixture.secrets);
        }
        DryRun {
            shared: Arc::new(Mutex::new(shared)),
        }
    }

    /// The capabilities of one applet: `real` answers the secrets no fixture gives, and
    /// `grants` (when the run has grants) refuses what they do not grant.
    pub fn for_applet(
        &self,
        real: Arc<dyn Capabilities>,
        grants: Option<GrantCheck>,
    ) -> Arc<dyn Capabilities> {
        Arc::new(DryCapabilities {
            shared: self.shared.clone(),
            real,
            grants,
        })
    }

    /// The effects that would have happened, in the order they were asked for.
    pub fn effects(&self) -> Vec<WouldBe> {
        self.lock().effects.clone()
    }

    /// Recorded answers no call used, by node.
    pub fn unused(&self) -> BTreeMap<String, usize> {
        self.lock()
            .recorded
            .iter()
            .filter(|(_, calls)| !calls.is_empty())
            .map(|(node, calls)| (node.clone(), calls.len()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct DryCapabilities {
    shared: Arc<Mutex<Shared>>,
    real: Arc<dyn Capabilities>,
    grants: Option<GrantCheck>,
}

impl DryCapabilities {
    /// Answers one effectful call: refused when the grants refuse it, else the node's next
    /// recorded answer when it is of this kind, else the simulated one; either way the call
    /// is listed.
    fn answer(
        &self,
        cx: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        let kind = call.kind();
        let refused = self.grants.as_ref().and_then(|check| check(&call).err());
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let position = shared
            .positions
            .entry(cx.idempotency_key.clone())
            .or_default();
        let key = format!("{}/{position}", cx.idempotency_key);
        *position += 1;
        let (result, answered) = if let Some(error) = refused {
            (Err(error), "not-granted")
        } else {
            let from_fixture = shared.recorded.get_mut(&cx.node).and_then(|calls| {
                let recorded = calls.front().filter(|r| r.kind() == kind)?.reply();
                calls.pop_front();
                Some(recorded)
            });
            match from_fixture {
                Some(result) => (result, "recorded"),
                None => (simulated(&call, &key), "simulated"),
            }
        };
        // Printed for the user: without the secret values the step read, as the journal.
        let mut request = request_json(&call);
        let mut answer = answer_json(&result);
        cx.scrubber.json(&mut request);
        cx.scrubber.json(&mut answer);
        shared.effects.push(WouldBe {
            node: cx.node.clone(),
            key,
            kind,
            request,
            answered,
            answer,
        });
        result
    }
}

/// A plain success for a call no fixture answers; `key` is the call's own idempotency key.
fn simulated(call: &CapabilityCall, key: &str) -> Result<CapabilityReply, HostError> {
    Ok(match call {
        CapabilityCall::Http(_) => CapabilityReply::Http(HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        }),
        CapabilityCall::Email(_) => {
            CapabilityReply::Email(format!("<dry-run.{}@coda.invalid>", key.replace('/', ".")))
        }
        CapabilityCall::SqlQuery(_) => CapabilityReply::SqlQuery(SqlRows {
            columns: Vec::new(),
            rows: Vec::new(),
        }),
        CapabilityCall::SqlExecute(_) => CapabilityReply::SqlExecute(1),
        // Secrets are never simulated: a dry run reads them as a real one does.
        CapabilityCall::Secret { .. } => return Err(call.not_granted()),
        CapabilityCall::Interactions(_) => {
            CapabilityReply::Interactions(format!("dry-run-{}", key.replace('/', "-")))
        }
        // As an empty store answers: nothing there, the first version, the first count.
        CapabilityCall::Kv(kv) => CapabilityReply::Kv(match &kv.op {
            KvOp::Get { .. } => KvAnswer::Entry(None),
            KvOp::Set { .. } => KvAnswer::Written(1),
            KvOp::Delete { .. } => KvAnswer::Deleted(false),
            KvOp::CompareAndSet { .. } => KvAnswer::Swapped(Some(1)),
            KvOp::Increment { by, .. } => KvAnswer::Counted(*by),
        }),
    })
}

#[async_trait]
impl Capabilities for DryCapabilities {
    async fn call(
        &self,
        cx: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        match call {
            CapabilityCall::Http(_)
            | CapabilityCall::Email(_)
            | CapabilityCall::SqlQuery(_)
            | CapabilityCall::SqlExecute(_)
            | CapabilityCall::Interactions(_)
            | CapabilityCall::Kv(_) => self.answer(cx, call),
            // Secrets are read, not acted on: from the fixtures, else as the real
            // capabilities grant them.
            CapabilityCall::Secret { name } => {
                let value = self
                    .shared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .secrets
                    .get(&name)
                    .cloned();
                match value {
                    Some(value) => Ok(CapabilityReply::Secret(value)),
                    None => self.real.call(cx, CapabilityCall::Secret { name }).await,
                }
            }
        }
    }
}
