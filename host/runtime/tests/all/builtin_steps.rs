//! The built-in applets' steps that pre-initialization is for, as the benchmark flow runs
//! them (`examples/bench/five-real-steps.yaml`) plus the other template and time-zone
//! applets: each with its config, data, the capability answers it needs and the fuel goal
//! of issue 17. Shared by the test `preinit.rs` and the example `builtin_fuel`, which
//! prints the figures of BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use coda_runtime::capabilities::{Capabilities, CapabilityCall, CapabilityReply, HttpResponse};
use coda_runtime::{HostError, Invocation, InvocationContext, Value, Values};
use serde_json::json;

/// Issue 17's goal for a CEL step (set-data with an expression, data-router). Not reached:
/// pre-initialized, such a step costs 32–36 k, most of it parsing (~8 k) and evaluating
/// (~8 k) the expression and reading the data sources (~5.5 k), work that depends on the
/// step's config and data and so cannot be in a snapshot (BENCHMARKS.md).
pub const CEL_FUEL_GOAL: u64 = 30_000;
/// Issue 17's goal for a template step (data-connector, send-email). Not reached:
/// compiling and rendering one template costs about 25 k in MiniJinja, and these steps
/// render two to four.
pub const TEMPLATE_FUEL_GOAL: u64 = 50_000;

/// One step of a built-in applet.
pub struct Step {
    /// What the step is, for the report.
    pub name: &'static str,
    /// The component's file name in the applets' target directory (`set_data.wasm`).
    pub file: &'static str,
    pub config: serde_json::Value,
    pub data: Vec<(&'static str, Value)>,
    /// The goal issue 17 sets for this kind of step, if any.
    pub goal: Option<u64>,
    /// The fuel the pre-initialized step stays under (today's figure and about 10 % of
    /// room), so that losing the snapshot's gain fails a test; `None` for a step without an
    /// init.
    pub bound: Option<u64>,
}

impl Step {
    /// The invocation of this step: its config and data, the answers of [`Answers`], and
    /// a fixed wall clock, so that every run of it does the same.
    pub fn invocation(&self) -> Invocation {
        let mut invocation = Invocation::new(context(), self.config.clone());
        invocation.data = self
            .data
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect::<Values>();
        invocation.capabilities = Arc::new(Answers);
        // Monday 2025-12-08 10:00 UTC: within Berlin's open hours below.
        invocation.wall_clock = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_188_000));
        invocation
    }
}

fn context() -> InvocationContext {
    InvocationContext {
        tenant: "acme".into(),
        interaction: Some("int-1".into()),
        run: "run-1".into(),
        plan: "post-call".into(),
        node: "n1".into(),
        idempotency_key: "run-1/1".into(),
        attempt: 1,
        ..Default::default()
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// The steps, in the order the report prints them.
pub fn steps() -> Vec<Step> {
    vec![
        Step {
            name: "set-data, a CEL expression",
            file: "set_data.wasm",
            config: json!({"set": [{"name": "Greeting", "expression": "\"Thanks, \" + CustomerName"}]}),
            data: vec![("CustomerName", text("Ada"))],
            goal: Some(CEL_FUEL_GOAL),
            bound: Some(40_000),
        },
        Step {
            name: "data-router, a CEL rule",
            file: "data_router.wasm",
            config: json!({"rules": [{"when": "InteractionOutcome == \"completed\"", "exit": "completed"}]}),
            data: vec![("InteractionOutcome", text("completed"))],
            goal: Some(CEL_FUEL_GOAL),
            bound: Some(36_000),
        },
        Step {
            name: "set-data, a literal",
            file: "set_data.wasm",
            config: json!({"set": [{"name": "Done", "value": true}]}),
            data: vec![],
            goal: None,
            bound: Some(10_000),
        },
        Step {
            name: "data-connector, templated POST",
            file: "data_connector.wasm",
            config: json!({
                "method": "POST",
                "url": "http://127.0.0.1:8026/calls/{{ InteractionId | urlencode }}",
                "body": "{\"greeting\": {{ Greeting | tojson }}}",
                "response": {"CallLogged": "/ok"}
            }),
            data: vec![
                ("InteractionId", text("int-1")),
                ("Greeting", text("Thanks, Ada")),
            ],
            goal: Some(TEMPLATE_FUEL_GOAL),
            bound: Some(100_000),
        },
        Step {
            name: "send-email, templated",
            file: "send_email.wasm",
            config: json!({
                "to": ["{{ CustomerEmail }}"],
                "subject": "Your call about order {{ OrderId }}",
                "text": "Hello {{ CustomerName | default('there') }}, thanks for calling.",
                "html": "<p>Hello {{ CustomerName | default('there') }}, thanks for calling.</p>"
            }),
            data: vec![
                ("CustomerEmail", text("ada@example.com")),
                ("OrderId", text("A-42")),
                ("CustomerName", text("Ada")),
            ],
            goal: Some(TEMPLATE_FUEL_GOAL),
            bound: Some(140_000),
        },
        Step {
            name: "schedule-router, Europe/Berlin",
            file: "schedule_router.wasm",
            config: json!({"schedule": {
                "time_zone": "Europe/Berlin",
                "weekly": {"monday": [{"open": "09:00", "close": "17:00"}]}
            }}),
            data: vec![],
            goal: None,
            bound: Some(105_000),
        },
        Step {
            name: "loop-counter (no init)",
            file: "loop_counter.wasm",
            config: json!({"times": 3}),
            data: vec![],
            goal: None,
            bound: None,
        },
    ]
}

/// The downstreams of the steps: every HTTP call answers 200 `{"ok": true}`, every email is
/// sent; anything else is refused.
pub struct Answers;

#[async_trait]
impl Capabilities for Answers {
    async fn call(
        &self,
        _cx: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        match call {
            CapabilityCall::Http(_) => Ok(CapabilityReply::Http(HttpResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"{"ok": true}"#.to_vec(),
            })),
            CapabilityCall::Email(_) => Ok(CapabilityReply::Email("<msg-1@example.com>".into())),
            other => Err(HostError::NotGranted(format!("{:?}", other.kind()))),
        }
    }
}
