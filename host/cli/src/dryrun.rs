//! `coda run PLAN --event E --dry-run`: the flow runs for real (every applet, every
//! decision, on a throwaway database and the virtual clock), but no capability call is
//! performed. Each is answered from a recorded fixture when one is given for its node, or
//! simulated with a plain success; the output lists the path taken and every effect that
//! would have happened.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coda_capabilities::{Access, Scheme, Settings};
use coda_flow::CapabilitySource;
use coda_harness::{Fixture, RecordedCall, answer_json, request_json};
use coda_plan::AppletRef;
use coda_runtime::capabilities::{
    CallKind, Capabilities, CapabilityCall, CapabilityReply, HttpResponse, SqlRows,
};
use coda_types::kv::{KvAnswer, KvOp};
use coda_types::{HostError, InvocationContext};
use serde::Serialize;
use serde_json::Value as Json;

use crate::Exit;

/// One effect that would have happened.
#[derive(Debug, Clone, Serialize)]
pub struct WouldBe {
    pub node: String,
    /// The step's idempotency key and the call's position in it (`run/3/0`).
    pub key: String,
    pub kind: CallKind,
    pub request: Json,
    /// `recorded` (from a fixture for the node), `simulated` (a plain success), or
    /// `not-granted` (the grants of `--grants` refuse it: the call would not happen).
    pub answered: &'static str,
    pub answer: Json,
}

/// Recorded answers per node, consumed in order, and what was asked.
#[derive(Default)]
struct Shared {
    recorded: HashMap<String, VecDeque<RecordedCall>>,
    secrets: BTreeMap<String, String>,
    effects: Vec<WouldBe>,
    /// Calls per step key so far, for each call's own key.
    positions: HashMap<String, u32>,
}

/// The capability source of a dry run.
pub struct DryRun {
    shared: Arc<Mutex<Shared>>,
    /// Secrets from `--grants`, grant-checked, when the fixtures do not give them.
    real: Arc<dyn CapabilitySource>,
    /// The grants of `--grants`: a call they refuse is answered `not-granted`, as it
    /// would be for real. Without them every call is answered.
    grants: Option<Arc<Settings>>,
}

impl DryRun {
    /// Reads the fixtures: each answers for the node its `context.node` names.
    /// `is_node` says whether a node name is one of the plans' (the plan run and those it
    /// may route to): a fixture for no node would answer nothing, silently, so it is refused.
    pub fn new(
        fixtures: &[PathBuf],
        real: Arc<dyn CapabilitySource>,
        grants: Option<&std::path::Path>,
        is_node: impl Fn(&str) -> bool,
    ) -> Result<Self, Exit> {
        let grants = grants
            .map(|file| {
                Settings::from_file(file)
                    .map(Arc::new)
                    .map_err(|e| Exit::usage("invalid-grants", format!("{}: {e}", file.display())))
            })
            .transpose()?;
        let mut shared = Shared::default();
        for path in fixtures {
            let fixture = Fixture::from_file(path)
                .map_err(|e| Exit::usage("invalid-fixture", e.to_string()))?;
            let Some(node) = fixture.context.node.clone() else {
                return Err(Exit::usage(
                    "invalid-fixture",
                    format!(
                        "{}: a dry run's fixture names the node it answers for in \
                         `context.node` (as `coda runs show ID --as-fixture` writes it)",
                        path.display()
                    ),
                ));
            };
            if !is_node(&node) {
                return Err(Exit::usage(
                    "invalid-fixture",
                    format!(
                        "{}: `context.node` is `{node}`, which is no node of the plans given",
                        path.display()
                    ),
                ));
            }
            shared
                .recorded
                .entry(node)
                .or_default()
                .extend(fixture.calls);
            shared.secrets.extend(fixture.secrets);
        }
        Ok(DryRun {
            shared: Arc::new(Mutex::new(shared)),
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

impl CapabilitySource for DryRun {
    fn for_applet(&self, tenant: &str, applet: &AppletRef) -> Arc<dyn Capabilities> {
        Arc::new(DryCapabilities {
            shared: self.shared.clone(),
            real: self.real.for_applet(tenant, applet),
            grants: self.grants.clone(),
            tenant: tenant.to_owned(),
            name: applet.name().to_owned(),
            version: applet.version().to_owned(),
        })
    }
}

struct DryCapabilities {
    shared: Arc<Mutex<Shared>>,
    real: Arc<dyn Capabilities>,
    grants: Option<Arc<Settings>>,
    tenant: String,
    name: String,
    version: String,
}

impl DryCapabilities {
    /// The grant decision the real call would meet first; none without `--grants`.
    fn refused(&self, call: &CapabilityCall) -> Option<HostError> {
        let settings = self.grants.as_ref()?;
        let url;
        let access = match call {
            CapabilityCall::Http(request) => {
                url = url::Url::parse(&request.url).ok();
                url.as_ref().and_then(http_access)
            }
            CapabilityCall::Email(_) => Some(Access::Email),
            CapabilityCall::SqlQuery(statement) | CapabilityCall::SqlExecute(statement) => {
                Some(Access::Sql {
                    database: &statement.database,
                })
            }
            CapabilityCall::Secret { name } => Some(Access::Secret { name }),
            CapabilityCall::Interactions(_) => Some(Access::Interactions),
            CapabilityCall::Kv(kv) => Some(Access::Kv {
                key: kv.op.key(),
                value_bytes: kv.op.value().map(|v| v.stored_len() as u64),
            }),
        };
        let Some(access) = access else {
            return Some(HostError::Invalid("the URL cannot be parsed".into()));
        };
        coda_capabilities::grants::check(settings, &self.tenant, &self.name, &self.version, &access)
            .err()
    }

    /// Answers one effectful call: refused when the grants refuse it, else the node's next
    /// recorded answer when it is of this kind, else the simulated one; either way the call
    /// is listed.
    fn answer(
        &self,
        cx: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        let kind = call.kind();
        let refused = self.refused(&call);
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

/// What a request to `url` asks of the grants.
fn http_access(url: &url::Url) -> Option<Access<'_>> {
    let scheme = match url.scheme() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return None,
    };
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    Some(Access::Http {
        scheme,
        host,
        port: url.port_or_known_default()?,
    })
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
            // Secrets are read, not acted on: from the fixtures, else as `--grants` grants
            // them.
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
