//! Secret values a step read never reach what the host writes: the step's journal entry,
//! note, logs, data and state, `LastError`, the effect journal, or the database's files,
//! whichever route they took (a client's error echoing a URL, a response echoing a header,
//! an applet logging or failing with one).

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use coda_flow::{Applets, CapabilitySource, Engine, FlowLimits, StepInput, VirtualClock};
use coda_plan::AppletRef;
use coda_store::{RunStatus, Store};
use coda_types::capabilities::{
    Capabilities, CapabilitiesExt, CapabilityCall, CapabilityReply, HttpRequest, HttpResponse,
};
use coda_types::{
    AppletInfo, Failure, HostError, InvocationContext, InvocationReport, InvokeError, LogLevel,
    LogLine, Outcome, Value, Values,
};
use serde_json::json;

const SECRET: &str = "tok-9Zq2xK7wPm";

/// The tenant's secret, and a downstream that echoes what it is sent: the request's
/// `Authorization` header in a response header and body, and (for `api.invalid`) an error
/// text carrying the whole URL, as reqwest's did.
struct Downstream;

#[async_trait]
impl Capabilities for Downstream {
    async fn call(
        &self,
        _: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        match call {
            CapabilityCall::Secret { name } if name == "crm" => {
                Ok(CapabilityReply::Secret(SECRET.into()))
            }
            CapabilityCall::Secret { name } => {
                Err(HostError::NotGranted(format!("secret '{name}'")))
            }
            CapabilityCall::Http(request) => http(request).map(CapabilityReply::Http),
            other => Err(other.not_granted()),
        }
    }
}

/// The downstream's answer to a request.
fn http(request: HttpRequest) -> Result<HttpResponse, HostError> {
    if request.url.contains("api.invalid") {
        return Err(HostError::Unavailable(format!(
            "error sending request for url ({}): dns error",
            request.url
        )));
    }
    let auth = request
        .headers
        .iter()
        .find(|(n, _)| n == "Authorization")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Ok(HttpResponse {
        status: 200,
        headers: vec![("x-echo".into(), auth.clone())],
        body: json!({ "you_sent": auth, "url": request.url })
            .to_string()
            .into_bytes(),
    })
}

struct Source;

impl CapabilitySource for Source {
    fn for_applet(&self, _: &str, _: &AppletRef) -> Arc<dyn Capabilities> {
        Arc::new(Downstream)
    }
}

/// Reads the secret (recording it in the step's scrubber, as the runtime's `secrets.get`
/// does), sends it in a URL's query, path and user info, a Basic header and a body, then
/// leaks it every way an applet can: `leaky` in a log line, a data source and node state,
/// `failing` in its failure (whose text becomes `LastError`).
struct Leaky;

#[async_trait]
impl Applets for Leaky {
    fn info(&self, _: &str, applet: &AppletRef) -> Option<AppletInfo> {
        Some(AppletInfo {
            name: applet.name().into(),
            version: applet.version().into(),
            description: String::new(),
            exits: vec!["next".into()],
            config_schema: json!({}),
            needs_live_party: false,
            capabilities: vec![
                coda_types::Capability::Http,
                coda_types::Capability::Secrets,
            ],
        })
    }

    async fn invoke(
        &self,
        _: &str,
        applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        let report = |result| InvocationReport {
            result,
            data_changes: Values::new(),
            state_changes: Values::new(),
            logs: vec![],
            fuel_used: 1,
            host_calls: 1,
            elapsed: std::time::Duration::from_micros(1),
        };
        if applet.name() == "after" {
            return Ok(report(Ok(Outcome::Exit("next".into()))));
        }
        let caps = &input.capabilities;
        let cx = &input.context;
        let secret = caps
            .secret_get(cx, "crm".into())
            .await
            .map_err(|e| e.to_string())?;
        cx.scrubber.record("crm", &secret);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("bot:{secret}"));
        let request = |url: String| HttpRequest {
            method: "POST".into(),
            url,
            headers: vec![("Authorization".into(), format!("Basic {basic}"))],
            body: format!("{{\"token\": \"{secret}\"}}").into_bytes(),
            timeout: None,
        };
        let unresolved = caps
            .http_send(
                cx,
                request(format!("https://api.invalid/orders?key={secret}")),
            )
            .await
            .unwrap_err();
        let echoed = caps
            .http_send(
                cx,
                request(format!("https://bot:{secret}@crm.test/v1/{secret}/x")),
            )
            .await
            .unwrap();
        let mut data = Values::new();
        data.insert(
            "Echo".into(),
            Value::Text(String::from_utf8_lossy(&echoed.body).into_owned()),
        );
        data.insert("Token".into(), Value::Text(secret.clone()));
        let mut state = Values::new();
        state.insert("auth".into(), Value::Text(basic.clone()));
        if applet.name() == "failing" {
            return Ok(report(Err(InvokeError::Failure(Failure {
                code: "crm-down".into(),
                message: format!("{unresolved}"),
                retryable: false,
                retry_after_millis: None,
            }))));
        }
        let mut leaked = report(Ok(Outcome::Exit("next".into())));
        leaked.data_changes = data;
        leaked.state_changes = state;
        leaked.logs = vec![LogLine {
            level: LogLevel::Info,
            message: format!("calling the CRM with {secret} ({basic})"),
        }];
        Ok(leaked)
    }
}

#[tokio::test]
async fn a_secret_the_step_read_is_written_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let plan = coda_plan::parse(
        "name: leak\ntype: unattended\nstart: call\nnodes:\n  call:\n    applet: leaky@1.0.0\n    exits: { next: fail }\n  fail:\n    applet: failing@1.0.0\n    error: after\n  after:\n    applet: after@1.0.0\n",
    )
    .unwrap();
    store
        .publish_plan("acme", "leak", &serde_json::to_value(&plan).unwrap(), 0)
        .await
        .unwrap();
    let engine = Arc::new(
        Engine::new(
            store.clone(),
            Arc::new(Leaky),
            Arc::new(VirtualClock::new()),
            FlowLimits::default(),
        )
        .with_capabilities(Arc::new(Source)),
    );
    let run = engine
        .start(coda_flow::Start {
            tenant: "acme".into(),
            plan: "leak".into(),
            version: None,
            interaction: None,
            trigger_key: None,
            data: Values::new(),
        })
        .await
        .unwrap();
    engine.run_until_idle().await.unwrap();

    let record = store.run("acme", &run.id).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Done);
    let journal = store.journal("acme", &run.id).unwrap();
    let effects = store.effects(&run.id, None).unwrap();
    let input = store.step_input("acme", &run.id, 2).unwrap();
    let written = format!(
        "{}\n{}\n{:?}\n{:?}\n{:?}",
        serde_json::to_string(&journal).unwrap(),
        serde_json::to_string(&effects).unwrap(),
        record.data,
        record.state,
        input,
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("bot:{SECRET}"));
    for form in [SECRET, &basic] {
        assert!(!written.contains(form), "{form} is written: {written}");
    }
    // Replaced, not dropped: what was there stays readable.
    assert_eq!(journal.len(), 3, "{journal:?}");
    assert!(journal[0].logs[0].message.contains("[secret:crm]"));
    let error = &journal[1].result["error"]["message"];
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("https://api.invalid/orders?key=[secret:crm]"),
        "{error}"
    );
    assert_eq!(
        record.data.get("Token"),
        Some(&Value::Text("[secret:crm]".into()))
    );
    let last_error = format!("{:?}", record.data.get("LastError"));
    assert!(last_error.contains("[secret:crm]"), "{last_error}");
    assert_eq!(effects.len(), 4);
    // The journaled response still parses (a replay after a crash reads it back).
    let response: Result<HttpResponse, HostError> =
        serde_json::from_value(effects[1].result.clone()).unwrap();
    let response = response.unwrap();
    // The base64 of `bot:SECRET`: the secret's stable part is replaced, `bot:`'s remains.
    let echoed = &response.headers[0].1;
    assert!(
        echoed.starts_with("Basic Ym90On") && echoed.contains("[secret:crm]"),
        "{echoed}"
    );
    let body = String::from_utf8(response.body).unwrap();
    assert!(body.contains("[secret:crm]"), "{body}");

    // At rest: neither the database nor its WAL holds the value, plain or in base64.
    drop(engine);
    drop(store);
    let mut files = 0;
    for file in ["coda.db", "coda.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            files += 1;
            for form in [SECRET, &basic] {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                    "{file} holds {form}"
                );
            }
        }
    }
    assert!(files > 0);
}
