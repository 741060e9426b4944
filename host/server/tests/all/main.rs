//! The API driven in-process (`tower::ServiceExt::oneshot`) against a real SQLite store,
//! with applets answered by a small script instead of WebAssembly (the wasm path is the
//! end-to-end test's): tenants and tokens, isolation between tenants, malformed requests,
//! and a post-interaction run from publish to done. `applets.rs` uploads real components,
//! checked by the runtime as `coda serve` checks them.

mod applets;

mod auth;

mod grants;

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use coda_flow::{Applets, Engine, FlowLimits, StepInput, WallClock};
use coda_plan::AppletRef;
use coda_server::{AppState, hash_token, router};
use coda_store::Store;
use coda_types::{AppletInfo, InvocationReport, Outcome, Value, Values};
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

mod conn;
mod console;
mod effects_usage;
mod faults;
mod intake;
mod interactions;
mod openapi;
mod operator_lists;
mod ops;
mod plans_runs;

const OPERATOR: &str = "coda_op_test_token";

/// `step@1.0.0` takes `next` and records that it ran in the data source `Stepped`;
/// `wait@1.0.0` waits an hour for the event `disposition`.
struct Script;

fn step_info() -> AppletInfo {
    AppletInfo {
        name: "step".into(),
        version: "1.0.0".into(),
        description: String::new(),
        exits: vec!["next".into()],
        config_schema: json!({}),
        needs_live_party: false,
        capabilities: vec![],
    }
}

fn wait_info() -> AppletInfo {
    AppletInfo {
        name: "wait".into(),
        exits: vec!["received".into(), "timeout".into()],
        ..step_info()
    }
}

#[async_trait]
impl Applets for Script {
    fn info(&self, _tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        match applet.to_string().as_str() {
            "step@1.0.0" => Some(step_info()),
            "wait@1.0.0" => Some(wait_info()),
            _ => None,
        }
    }

    async fn invoke(
        &self,
        _tenant: &str,
        applet: &AppletRef,
        _input: StepInput,
    ) -> Result<InvocationReport, String> {
        if applet.to_string() == "wait@1.0.0" {
            return Ok(InvocationReport {
                result: Ok(Outcome::Wait {
                    event: "disposition".into(),
                    timeout_millis: 3_600_000,
                    on_event: "received".into(),
                    on_timeout: "timeout".into(),
                }),
                data_changes: Values::new(),
                state_changes: Values::new(),
                logs: vec![],
                fuel_used: 1,
                host_calls: 0,
                elapsed: std::time::Duration::from_micros(1),
            });
        }
        if applet.to_string() != "step@1.0.0" {
            return Err(format!("applet {applet} is not installed"));
        }
        let mut data = Values::new();
        data.insert("Stepped".into(), Value::from_json(&json!(true)));
        Ok(InvocationReport {
            result: Ok(Outcome::Exit("next".into())),
            data_changes: data,
            state_changes: Values::new(),
            logs: vec![],
            fuel_used: 1,
            host_calls: 0,
            elapsed: std::time::Duration::from_micros(1),
        })
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    app: axum::Router,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let engine = Arc::new(Engine::new(
        store,
        Arc::new(Script),
        Arc::new(WallClock),
        FlowLimits::default(),
    ));
    let state = AppState::new(
        engine.clone(),
        vec![step_info(), wait_info()],
        &hash_token(OPERATOR),
    )
    .unwrap();
    Harness {
        _dir: dir,
        engine,
        app: router(state),
    }
}

/// One request: (status, body as JSON, or Null for an empty body).
async fn call(
    h: &Harness,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Payload,
) -> (StatusCode, Json) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some((content_type, bytes)) => request
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(bytes)),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        Json::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {status} answered a body that is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, json)
}

/// A request body: its Content-Type and bytes.
type Payload = Option<(&'static str, Vec<u8>)>;

fn json_body(value: Json) -> Payload {
    Some(("application/json", value.to_string().into_bytes()))
}

/// Creates a tenant; returns its first token.
async fn tenant(h: &Harness, id: &str) -> String {
    let (status, body) = call(
        h,
        "POST",
        "/v1/operator/tenants",
        Some(OPERATOR),
        json_body(json!({ "id": id })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["tenant"], id);
    body["token"].as_str().unwrap().to_owned()
}

const LIVE: &str = "name: live\ntype: default\nstart: a\npost_interaction: post-call\nnodes:\n  a:\n    applet: step@1.0.0\n";
const POST_CALL: &str = "name: post-call\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n    exits: { next: b }\n  b:\n    applet: step@1.0.0\n";

async fn publish(h: &Harness, token: &str, name: &str, yaml: &str) -> u32 {
    let (status, body) = call(
        h,
        "PUT",
        &format!("/v1/plans/{name}"),
        Some(token),
        Some(("application/yaml", yaml.as_bytes().to_vec())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["plan"], name);
    body["version"].as_u64().unwrap() as u32
}

/// Publishes both plans and takes interaction `id` from started to ended; returns the ids
/// of the runs the end started.
async fn call_ends(h: &Harness, token: &str, id: &str) -> Vec<String> {
    let (status, body) = call(
        h,
        "POST",
        "/v1/interactions/events",
        Some(token),
        json_body(
            json!({ "type": "started", "interaction": id, "channel": "voice",
            "plan": "live", "data": { "CLID": "+15550100" } }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["runs"], json!([]));
    let (status, body) = call(
        h,
        "POST",
        "/v1/interactions/events",
        Some(token),
        json_body(json!({ "type": "ended", "interaction": id, "outcome": "resolved" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn health_and_readiness_need_no_token() {
    let h = harness();
    let (status, body) = call(&h, "GET", "/healthz", None, None).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("ok"))
    );
    let (status, body) = call(&h, "GET", "/readyz", None, None).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("ready"))
    );
    let (status, body) = call(&h, "GET", "/v1/nothing-here", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["kind"], "no-route");
    let (status, body) = call(&h, "DELETE", "/v1/plans", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["kind"], "method-not-allowed");
}

#[tokio::test]
async fn tenants_get_tokens_that_work_until_revoked() {
    let h = harness();
    let first = tenant(&h, "acme").await;
    assert!(
        first.starts_with("coda_") && first.len() == 5 + 64,
        "{first}"
    );
    let (status, body) = call(&h, "GET", "/v1/plans", Some(&first), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["plans"], json!([]));

    // The same id twice: refused, and the first tenant keeps working.
    let (status, body) = call(
        &h,
        "POST",
        "/v1/operator/tenants",
        Some(OPERATOR),
        json_body(json!({ "id": "acme" })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "tenant-exists");
    for bad in ["", "Acme", "a/b", "-x", &"x".repeat(65)] {
        let (status, body) = call(
            &h,
            "POST",
            "/v1/operator/tenants",
            Some(OPERATOR),
            json_body(json!({ "id": bad })),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["kind"], "invalid-tenant");
    }

    // A second token, then the first revoked: the second still works.
    let (status, second) = call(
        &h,
        "POST",
        "/v1/operator/tenants/acme/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let second_token = second["token"].as_str().unwrap().to_owned();
    assert_ne!(second_token, first);
    let (status, _) = call(&h, "GET", "/v1/plans", Some(&second_token), None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = call(
        &h,
        "POST",
        "/v1/operator/tenants/nobody/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["kind"], "unknown-tenant");

    let token_id = second["token_id"].as_str().unwrap();
    let path = format!("/v1/operator/tenants/acme/tokens/{token_id}");
    let (status, body) = call(&h, "DELETE", &path, Some(OPERATOR), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(body, Json::Null);
    let (status, body) = call(&h, "GET", "/v1/plans", Some(&second_token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["kind"], "unauthorized");
    let (status, _) = call(&h, "GET", "/v1/plans", Some(&first), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(
        &h,
        "DELETE",
        "/v1/operator/tenants/acme/tokens/tok_nope",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["kind"], "unknown-token");
}

#[tokio::test]
async fn bad_tokens_and_the_wrong_api_are_refused_with_401() {
    let h = harness();
    let acme = tenant(&h, "acme").await;
    let bad_headers: [Option<&str>; 4] = [None, Some("coda_not_a_token"), Some(""), Some(OPERATOR)];
    for token in bad_headers {
        let (status, body) = call(&h, "GET", "/v1/runs", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert_eq!(body["error"]["kind"], "unauthorized");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    // A scheme other than Bearer.
    let request = Request::builder()
        .uri("/v1/runs")
        .header(header::AUTHORIZATION, format!("Basic {acme}"))
        .body(Body::empty())
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");

    // The operator API refuses a tenant's token, whichever endpoint.
    let operator_calls = [
        (
            "POST",
            "/v1/operator/tenants",
            json_body(json!({ "id": "evil" })),
        ),
        ("POST", "/v1/operator/tenants/acme/tokens", None),
        ("DELETE", "/v1/operator/tenants/acme/tokens/tok_x", None),
    ];
    for (method, path, body) in operator_calls {
        let (status, answer) = call(&h, method, path, Some(&acme), body).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {answer}"
        );
    }
    // Refused before the body is read: no tenant `evil` was made.
    let (status, _) = call(
        &h,
        "POST",
        "/v1/operator/tenants/evil/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_tenants_ids_answer_404_exactly_as_missing_ones() {
    let h = harness();
    let owner = tenant(&h, "owner").await;
    let other = tenant(&h, "other").await;
    // A third tenant with nothing: what "missing" looks like for the same ids.
    let empty = tenant(&h, "empty").await;
    publish(&h, &owner, "post-call", POST_CALL).await;
    publish(&h, &owner, "live", LIVE).await;
    let runs = call_ends(&h, &owner, "call-1").await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    // An interaction of the owner's that is still live.
    let (status, _) = call(
        &h,
        "POST",
        "/v1/interactions/events",
        Some(&owner),
        json_body(json!({ "type": "started", "interaction": "call-2", "channel": "voice", "plan": "live" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let cases: Vec<(&str, String, Payload)> = vec![
        ("GET", format!("/v1/runs/{run}"), None),
        ("GET", "/v1/interactions/call-2".into(), None),
        (
            "PUT",
            "/v1/interactions/call-2/post-flow".into(),
            json_body(json!({ "target": "caller", "action": "voice-survey-flow",
                "plan": "post-call", "invocation_data": { "json": { "survey": 1 } } })),
        ),
        ("DELETE", "/v1/interactions/call-2/post-flow".into(), None),
        (
            "POST",
            "/v1/interactions/call-2/events/disposition".into(),
            json_body(json!({ "outcome": "resolved" })),
        ),
        ("GET", "/v1/plans/post-call".into(), None),
        ("GET", "/v1/plans/live".into(), None),
        ("GET", "/v1/plans/post-call/versions/1".into(), None),
    ];
    for (method, path, body) in cases {
        let foreign = call(&h, method, &path, Some(&other), body.clone()).await;
        let missing = call(&h, method, &path, Some(&empty), body.clone()).await;
        assert_eq!(
            foreign.0,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            foreign.1
        );
        assert_eq!(foreign, missing, "{method} {path}");
        // And the owner does see it (or, for the completed call, is told it ended).
        let own = call(&h, method, &path, Some(&owner), body).await;
        assert_ne!(own.0, StatusCode::NOT_FOUND, "{method} {path}: {}", own.1);
    }
    // An interaction event for an id that is another tenant's is, to this tenant, one for
    // an interaction it has not started: held for its own tenant (202), exactly as for an
    // id nobody uses, and the owner's interaction is not touched.
    let before = call(&h, "GET", "/v1/interactions/call-1", Some(&owner), None).await;
    for event in [
        json!({ "type": "party-joined", "interaction": "call-2", "party": "agent" }),
        json!({ "type": "ended", "interaction": "call-2" }),
        json!({ "type": "party-disconnected", "interaction": "call-1", "party": "caller" }),
    ] {
        for token in [&other, &empty] {
            let (status, body) = call(
                &h,
                "POST",
                "/v1/interactions/events",
                Some(token),
                json_body(event.clone()),
            )
            .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{event}: {body}");
            assert_eq!(body["status"], "held", "{body}");
            assert_eq!(body["runs"], json!([]), "{body}");
        }
    }
    let after = call(&h, "GET", "/v1/interactions/call-1", Some(&owner), None).await;
    assert_eq!(before, after);
    // Listings hold only the tenant's own.
    let (_, body) = call(&h, "GET", "/v1/runs", Some(&other), None).await;
    assert_eq!(body["runs"], json!([]));
    let (_, body) = call(&h, "GET", "/v1/plans", Some(&other), None).await;
    assert_eq!(body["plans"], json!([]));
    // A foreign run id as a page cursor shows nothing of the owner either.
    let (_, body) = call(&h, "GET", "/v1/runs?after=0", Some(&other), None).await;
    assert_eq!(body["runs"], json!([]));

    // The operator revoking a token through the wrong tenant's path: not found.
    let (_, second) = call(
        &h,
        "POST",
        "/v1/operator/tenants/owner/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    let token_id = second["token_id"].as_str().unwrap();
    let (status, _) = call(
        &h,
        "DELETE",
        &format!("/v1/operator/tenants/other/tokens/{token_id}"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&h, "GET", "/v1/plans", second["token"].as_str(), None).await;
    assert_eq!(status, StatusCode::OK, "the owner's token was not revoked");
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_that_names_the_problem() {
    let h = harness();
    let acme = tenant(&h, "acme").await;
    let raw = |s: &str| Some(("application/json", s.as_bytes().to_vec()));
    // Nesting far past serde_json's recursion limit: refused, not a stack overflow.
    let deep = format!(
        "{{\"type\": \"started\", \"interaction\": \"i\", \"channel\": \"voice\", \"data\": {{\"a\": {}",
        "[".repeat(100_000)
    );
    // method, path, token, body, status, kind, what the message says
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Payload,
        StatusCode,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/operator/tenants",
            Some(OPERATOR),
            raw("{\"id\": "),
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "EOF",
        ),
        (
            "POST",
            "/v1/operator/tenants",
            Some(OPERATOR),
            raw("not json"),
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "expected",
        ),
        (
            "POST",
            "/v1/operator/tenants",
            Some(OPERATOR),
            raw("{\"id\": \"a\"} trailing"),
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "trailing",
        ),
        (
            "POST",
            "/v1/operator/tenants",
            Some(OPERATOR),
            raw("{\"id\": \"a\", \"admin\": true}"),
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "unknown field `admin`",
        ),
        (
            "POST",
            "/v1/operator/tenants",
            Some(OPERATOR),
            raw("{\"id\": 7}"),
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "invalid type",
        ),
        (
            "POST",
            "/v1/operator/tenants",
            Some(OPERATOR),
            raw("{}"),
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "missing field `id`",
        ),
        (
            "POST",
            "/v1/interactions/events",
            Some(&acme),
            raw("{\"type\": \"ended\"}"),
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "missing field `interaction`",
        ),
        (
            "POST",
            "/v1/interactions/events",
            Some(&acme),
            raw("{\"type\": \"exploded\", \"interaction\": \"i\"}"),
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "unknown variant `exploded`",
        ),
        (
            "POST",
            "/v1/interactions/events",
            Some(&acme),
            raw("{\"type\": \"started\", \"interaction\": \"i\", \"channel\": \"pigeon\"}"),
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "pigeon",
        ),
        (
            "POST",
            "/v1/interactions/events",
            Some(&acme),
            raw("{\"type\": \"ended\", \"interaction\": [1]}"),
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "invalid type",
        ),
        (
            "POST",
            "/v1/interactions/events",
            Some(&acme),
            raw(
                "{\"type\": \"started\", \"interaction\": \"i\", \"channel\": \"voice\", \"plan\": \"nope\"}",
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-plan",
            "nope",
        ),
        (
            "POST",
            "/v1/interactions/events",
            Some(&acme),
            raw("{\"type\": \"ended\", \"interaction\": \"i\", \"tenant\": \"other\"}"),
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "unknown field `tenant`",
        ),
        (
            "POST",
            "/v1/interactions/events",
            Some(&acme),
            raw(&deep),
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "recursion limit",
        ),
        (
            "GET",
            "/v1/runs?limit=many",
            Some(&acme),
            None,
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "limit",
        ),
        (
            "GET",
            "/v1/runs?limit=0",
            Some(&acme),
            None,
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "limit",
        ),
        (
            "GET",
            "/v1/runs?color=red",
            Some(&acme),
            None,
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "color",
        ),
        (
            "GET",
            "/v1/runs/nope",
            Some(&acme),
            None,
            StatusCode::NOT_FOUND,
            "unknown-run",
            "nope",
        ),
        (
            "GET",
            "/v1/plans/nope/versions/x",
            Some(&acme),
            None,
            StatusCode::NOT_FOUND,
            "unknown-plan",
            "nope",
        ),
        (
            "PUT",
            "/v1/plans/post-call",
            Some(&acme),
            Some(("application/yaml", b"name: [".to_vec())),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-plan",
            "problem",
        ),
        (
            "PUT",
            "/v1/plans/post-call",
            Some(&acme),
            Some(("application/yaml", vec![0xff, 0xfe])),
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "UTF-8",
        ),
        (
            "PUT",
            "/v1/plans/other-name",
            Some(&acme),
            Some(("application/yaml", POST_CALL.as_bytes().to_vec())),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-plan",
            "problem",
        ),
    ];
    for (method, path, token, body, want, kind, says) in cases {
        let (status, answer) = call(&h, method, path, token, body).await;
        assert_eq!(status, want, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["kind"], kind, "{method} {path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{method} {path}: `{message}` does not say `{says}`"
        );
    }

    // Oversized bodies: 413 on a JSON endpoint and on a plan, before anything is parsed.
    let big = vec![b' '; coda_server::MAX_BODY_BYTES + 1];
    for (method, path, token) in [
        ("POST", "/v1/operator/tenants", OPERATOR),
        ("POST", "/v1/interactions/events", acme.as_str()),
        ("PUT", "/v1/plans/big", acme.as_str()),
    ] {
        let (status, answer) = call(
            &h,
            method,
            path,
            Some(token),
            Some(("application/json", big.clone())),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {answer}");
        assert_eq!(answer["error"]["kind"], "body-too-large");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1048576")
        );
    }
}

/// Issue 14: a 320 KB plan whose 20 KB string is aliased 100 000 times took 2 GB to refuse.
/// It is refused before it is built, with the expansion limit named, and quickly.
#[tokio::test]
async fn a_plan_whose_aliases_expand_past_the_limit_is_refused_before_it_is_built() {
    let h = harness();
    let acme = tenant(&h, "acme").await;
    let plan = format!(
        "name: big\ntype: default\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n    config:\n      big: &a {}\n      many: [{}]\n",
        "x".repeat(20 * 1024),
        vec!["*a"; 100_000].join(",")
    );
    let started = std::time::Instant::now();
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/plans/big",
        Some(&acme),
        Some(("application/yaml", plan.into_bytes())),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "invalid-plan");
    let message = body["error"]["problems"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the plan expands through its anchors and aliases to more than"),
        "{body}"
    );
    // Unbounded, this took 8 to 16 s; the walk stops after about 65 aliases.
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    let (status, _) = call(&h, "GET", "/v1/plans/big", Some(&acme), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_plan_that_does_not_validate_lists_every_problem() {
    let h = harness();
    let acme = tenant(&h, "acme").await;
    let bad = "name: bad\ntype: unattended\nstart: a\npost_interaction: nowhere\nnodes:\n  a:\n    applet: missing@1.0.0\n    exits: { next: gone }\n";
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/plans/bad",
        Some(&acme),
        Some(("text/plain", bad.as_bytes().to_vec())),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "invalid-plan");
    let problems = body["error"]["problems"].as_array().unwrap();
    let fields: Vec<&str> = problems
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"nodes.a.applet"), "{body}");
    assert!(fields.contains(&"post_interaction"), "{body}");
    assert!(problems.iter().any(|p| p["node"] == "a"), "{body}");
    // Nothing was published.
    let (status, _) = call(&h, "GET", "/v1/plans/bad", Some(&acme), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // JSON works as well as YAML, and versions count up.
    let plan = coda_plan::parse(POST_CALL).unwrap();
    let json = serde_json::to_vec(&plan).unwrap();
    for expected in 1..=2 {
        let (status, body) = call(
            &h,
            "PUT",
            "/v1/plans/post-call",
            Some(&acme),
            Some(("application/json", json.clone())),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["version"], expected);
    }
    let (_, body) = call(&h, "GET", "/v1/plans", Some(&acme), None).await;
    assert_eq!(
        body["plans"],
        json!([{ "name": "post-call", "version": 2, "type": "unattended", "created_at_ms": body["plans"][0]["created_at_ms"] }])
    );
    let (status, body) = call(
        &h,
        "GET",
        "/v1/plans/post-call/versions/1",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["body"]["start"], "a");
    let (status, _) = call(
        &h,
        "GET",
        "/v1/plans/post-call/versions/3",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_ended_interaction_runs_its_post_interaction_plan_to_the_end() {
    let h = harness();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let engine = h.engine.clone();
    let scheduler = tokio::spawn(async move {
        engine
            .serve(async {
                let _ = stop_rx.await;
            })
            .await
    });
    let acme = tenant(&h, "acme").await;
    assert_eq!(publish(&h, &acme, "post-call", POST_CALL).await, 1);
    assert_eq!(publish(&h, &acme, "live", LIVE).await, 1);
    let runs = call_ends(&h, &acme, "call-1").await;
    assert_eq!(runs.len(), 1);
    // The same end again (a redelivery) starts no second run.
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/events",
        Some(&acme),
        json_body(json!({ "type": "ended", "interaction": "call-1" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["runs"], json!([runs[0]]));

    let path = format!("/v1/runs/{}", runs[0]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let run = loop {
        let (status, run) = call(&h, "GET", &path, Some(&acme), None).await;
        assert_eq!(status, StatusCode::OK, "{run}");
        if run["status"] == "done" {
            break run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not finish: {run}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(run["plan"], "post-call");
    assert_eq!(run["interaction"], "call-1");
    assert_eq!(run["data"]["CLID"], "+15550100");
    assert_eq!(run["data"]["InteractionOutcome"], "resolved");
    assert_eq!(run["data"]["Stepped"], true);
    let nodes: Vec<&str> = run["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["a", "b"]);
    assert_eq!(run["effects"], json!([]));

    let (_, list) = call(&h, "GET", "/v1/runs?limit=1", Some(&acme), None).await;
    assert_eq!(list["runs"][0]["id"], runs[0]);
    assert_eq!(list["next"], runs[0]);
    let (_, list) = call(
        &h,
        "GET",
        &format!("/v1/runs?after={}", runs[0]),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(list["runs"], json!([]));
    assert_eq!(list["next"], Json::Null);

    let _ = stop_tx.send(());
    scheduler.await.unwrap().unwrap();
}

#[tokio::test]
async fn post_flow_actions_fire_on_their_disconnect_and_named_events_wake_waiting_runs() {
    let h = harness();
    // The scheduler, as `coda serve` runs it (the wait's timeout is an hour of wall time:
    // `run_until_idle` would sleep until then).
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = h.engine.clone();
    tokio::spawn(async move {
        engine
            .serve(async {
                let _ = stopped.await;
            })
            .await
    });
    let acme = tenant(&h, "acme").await;
    publish(&h, &acme, "post-call", POST_CALL).await;
    publish(&h, &acme, "live", LIVE).await;
    publish(
        &h,
        &acme,
        "dispo",
        "name: dispo\ntype: unattended\nstart: w\nnodes:\n  w:\n    applet: wait@1.0.0\n    exits: { received: thank }\n  thank:\n    applet: step@1.0.0\n",
    )
    .await;
    let event = |value: Json| json_body(value);
    let (status, _) = call(
        &h,
        "POST",
        "/v1/interactions/events",
        Some(&acme),
        event(
            json!({ "type": "started", "interaction": "c1", "channel": "voice", "plan": "live" }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // JSON of the wrong shape is named as such, at its field, not called "not JSON": an
    // empty object names neither form of the invocation data, two keys name both.
    for data in [
        json!({}),
        json!({ "json": 1, "expression": "1" }),
        json!({ "cel": "1" }),
    ] {
        let (status, body) = call(
            &h,
            "PUT",
            "/v1/interactions/c1/post-flow",
            Some(&acme),
            event(json!({ "target": "caller", "action": "voice-survey-flow",
                "plan": "dispo", "invocation_data": data })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{data}: {body}");
        assert_eq!(body["error"]["kind"], "invalid-body", "{data}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("invocation_data"), "{data}: {message}");
        assert!(!message.contains("not JSON"), "{data}: {message}");
    }
    // What is not JSON still says so.
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/interactions/c1/post-flow",
        Some(&acme),
        Some(("application/json", b"{\"target\": ".to_vec())),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["kind"], "malformed-json", "{body}");

    // An expression needs the built-in that evaluates it in the sandbox; without it (these
    // scripted applets), it is refused, never evaluated by the host itself.
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/interactions/c1/post-flow",
        Some(&acme),
        event(json!({ "target": "caller", "action": "voice-survey-flow",
        "plan": "dispo", "invocation_data": { "expression": "1 + 1" } })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "invalid-invocation-data");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the built-in set-data applet is not installed"),
        "{body}"
    );
    // An action naming a plan that does not exist is refused, and leaves none set.
    let action = |plan: &str| {
        event(json!({ "target": "caller", "action": "voice-survey-flow",
        "plan": plan, "invocation_data": { "json": 2 } }))
    };
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/interactions/c1/post-flow",
        Some(&acme),
        action("nope"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "unknown-plan");
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/interactions/c1/post-flow",
        Some(&acme),
        action("dispo"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["post_flow"]["invocation_data"], 2);
    let (_, body) = call(&h, "GET", "/v1/interactions/c1", Some(&acme), None).await;
    assert_eq!(body["post_flow"]["plan"], "dispo");
    assert_eq!(body["data"]["InteractionId"], "c1");

    // The caller hangs up: the action's run starts instead of the post-interaction process.
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/events",
        Some(&acme),
        event(json!({ "type": "party-disconnected", "interaction": "c1", "party": "caller" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let runs = body["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 1, "{body}");
    let run = runs[0].as_str().unwrap();
    let body = run_reaches(&h, &acme, run, "waiting").await;
    assert_eq!(body["plan"], "dispo");

    // The disposition wakes it; the run ends through `thank`.
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/c1/events/disposition",
        Some(&acme),
        event(json!({ "outcome": "resolved" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["woken"], json!([run]));
    let body = run_reaches(&h, &acme, run, "done").await;
    assert_eq!(body["data"]["Event"], json!({ "outcome": "resolved" }));

    // The interaction has ended: its action can no longer change, and a missing one is 404.
    let (status, body) = call(
        &h,
        "DELETE",
        "/v1/interactions/c1/post-flow",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "interaction-completed");
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/nope/events/disposition",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["kind"], "unknown-interaction");
}

/// Polls a run until it has `status` (at most 10 s); returns it.
async fn run_reaches(h: &Harness, token: &str, run: &str, status: &str) -> Json {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (code, body) = call(h, "GET", &format!("/v1/runs/{run}"), Some(token), None).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        if body["status"] == status {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never became {status}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
