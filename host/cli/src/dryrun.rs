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
use coda_harness::{
    Fixture, HttpResponseFixture, RecordedCall, SqlRowsFixture, email_request_json, follow_up_json,
    http_request_json, sql_request_json,
};
use coda_plan::AppletRef;
use coda_runtime::capabilities::{
    Capabilities, EmailMessage, FollowUp, HttpRequest, HttpResponse, SqlRows,
};
use coda_types::{HostError, InvocationContext, Value};
use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::Exit;

/// One effect that would have happened.
#[derive(Debug, Clone, Serialize)]
pub struct WouldBe {
    pub node: String,
    /// The step's idempotency key and the call's position in it (`run/3/0`).
    pub key: String,
    pub kind: String,
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
    fn refused(&self, access: Option<Access<'_>>) -> Option<HostError> {
        let settings = self.grants.as_ref()?;
        let Some(access) = access else {
            return Some(HostError::Invalid("the URL cannot be parsed".into()));
        };
        coda_capabilities::grants::check(settings, &self.tenant, &self.name, &self.version, &access)
            .err()
    }

    /// Answers one call: refused when the grants refuse it, else the node's next recorded
    /// answer when it is of this kind, else the simulated one; either way the call is
    /// listed.
    #[allow(clippy::too_many_arguments)]
    fn answer<T: Serialize>(
        &self,
        cx: &InvocationContext,
        kind: &str,
        refused: Option<HostError>,
        request: Json,
        recorded: impl FnOnce(&RecordedCall) -> Option<Result<T, HostError>>,
        simulated: impl FnOnce(&str) -> T,
        shown: impl FnOnce(&Result<T, HostError>) -> Json,
    ) -> Result<T, HostError> {
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
                let answer = recorded(calls.front()?)?;
                calls.pop_front();
                Some(answer)
            });
            match from_fixture {
                Some(result) => (result, "recorded"),
                None => (Ok(simulated(&key)), "simulated"),
            }
        };
        // Printed for the user: without the secret values the step read, as the journal.
        let mut request = request;
        let mut answer = shown(&result);
        cx.scrubber.json(&mut request);
        cx.scrubber.json(&mut answer);
        shared.effects.push(WouldBe {
            node: cx.node.clone(),
            key,
            kind: kind.to_owned(),
            request,
            answered,
            answer,
        });
        result
    }
}

fn shown<T: Serialize>(result: &Result<T, HostError>) -> Json {
    match result {
        Ok(value) => json!({ "response": value }),
        Err(error) => json!({ "error": error }),
    }
}

#[async_trait]
impl Capabilities for DryCapabilities {
    async fn http_send(
        &self,
        cx: &InvocationContext,
        request: HttpRequest,
    ) -> Result<HttpResponse, HostError> {
        let url = url::Url::parse(&request.url).ok();
        let access = url.as_ref().and_then(|url| {
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
        });
        let refused = self.refused(access);
        self.answer(
            cx,
            "http",
            refused,
            http_request_json(&request),
            |call| match call {
                RecordedCall::Http(r) => Some(r.answer(|response| {
                    // Checked when the fixture was read.
                    response.to_response().unwrap_or(HttpResponse {
                        status: 500,
                        headers: Vec::new(),
                        body: Vec::new(),
                    })
                })),
                _ => None,
            },
            |_| HttpResponse {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
            },
            |result| match result {
                Ok(response) => {
                    json!({ "response": HttpResponseFixture::from_response(response) })
                }
                Err(error) => json!({ "error": error }),
            },
        )
    }

    async fn email_send(
        &self,
        cx: &InvocationContext,
        message: EmailMessage,
    ) -> Result<String, HostError> {
        self.answer(
            cx,
            "email",
            self.refused(Some(Access::Email)),
            email_request_json(&message),
            |call| match call {
                RecordedCall::Email(r) => Some(r.answer(String::clone)),
                _ => None,
            },
            |key| format!("<dry-run.{}@coda.invalid>", key.replace('/', ".")),
            shown,
        )
    }

    async fn sql_query(
        &self,
        cx: &InvocationContext,
        database: String,
        statement: String,
        params: Vec<Value>,
    ) -> Result<SqlRows, HostError> {
        self.answer(
            cx,
            "sql-query",
            self.refused(Some(Access::Sql {
                database: &database,
            })),
            sql_request_json(&database, &statement, &params),
            |call| match call {
                RecordedCall::SqlQuery(r) => Some(r.answer(SqlRowsFixture::to_rows)),
                _ => None,
            },
            |_| SqlRows {
                columns: Vec::new(),
                rows: Vec::new(),
            },
            |result| match result {
                Ok(rows) => json!({ "response": SqlRowsFixture::from_rows(rows) }),
                Err(error) => json!({ "error": error }),
            },
        )
    }

    async fn sql_execute(
        &self,
        cx: &InvocationContext,
        database: String,
        statement: String,
        params: Vec<Value>,
    ) -> Result<u64, HostError> {
        self.answer(
            cx,
            "sql-execute",
            self.refused(Some(Access::Sql {
                database: &database,
            })),
            sql_request_json(&database, &statement, &params),
            |call| match call {
                RecordedCall::SqlExecute(r) => Some(r.answer(|n| *n)),
                _ => None,
            },
            |_| 1,
            shown,
        )
    }

    /// Secrets are read, not acted on: from the fixtures, else as `--grants` grants them.
    async fn secret_get(&self, cx: &InvocationContext, name: String) -> Result<String, HostError> {
        let value = self
            .shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .secrets
            .get(&name)
            .cloned();
        match value {
            Some(value) => Ok(value),
            None => self.real.secret_get(cx, name).await,
        }
    }

    async fn clone_interaction(
        &self,
        cx: &InvocationContext,
        follow_up: FollowUp,
    ) -> Result<String, HostError> {
        self.answer(
            cx,
            "interactions",
            self.refused(Some(Access::Interactions)),
            follow_up_json(&follow_up),
            |call| match call {
                RecordedCall::Interactions(r) => Some(r.answer(String::clone)),
                _ => None,
            },
            |key| format!("dry-run-{}", key.replace('/', "-")),
            shown,
        )
    }
}
