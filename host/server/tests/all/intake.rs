//! Platform intake through the API: each platform's documented payloads (coda-intake's
//! `testdata/`) delivered to a connection as the platform would send them, signed or keyed,
//! and what the tenant then sees: the interactions, their data sources, the runs started
//! (once, however often a payload is delivered), the waits woken by a wrap-up; and what is
//! refused without storing anything (a bad signature, an unknown connection, a payload too
//! large or malformed).

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use coda_flow::{Engine, FlowLimits, WallClock};
use coda_server::{AppState, hash_token, router};
use coda_store::{SecretsKey, Store};
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use std::sync::Arc;
use tower::ServiceExt;

use super::{
    Harness, LIVE, OPERATOR, POST_CALL, Script, call, json_body, publish, run_reaches, step_info,
    tenant, wait_info,
};

/// The API with a secrets key (a connection's secret is sealed like every secret) and the
/// scheduler running, as `coda serve` runs it.
fn harness() -> (Harness, tokio::sync::oneshot::Sender<()>) {
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
    .unwrap()
    .with_secrets_key(SecretsKey::generate().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = engine.clone();
    tokio::spawn(async move {
        scheduler
            .serve(async {
                let _ = stopped.await;
            })
            .await
    });
    (
        Harness {
            _dir: dir,
            engine,
            app: router(state),
        },
        stop,
    )
}

fn testdata(path: &str) -> Vec<u8> {
    let path = format!("{}/../intake/testdata/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The host the tests' platform calls, as its `Host` header says.
const HOST: &str = "coda.example.test";

/// A delivery as the platform sends it: `(status, answer)`.
async fn deliver(
    h: &Harness,
    path: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, Json) {
    let mut request = Request::builder()
        .method("POST")
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, content_type);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = h
        .app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
}

/// The tenant's secret `name`, allowed by its ceiling.
async fn secret(h: &Harness, tenant_id: &str, token: &str, name: &str, value: &str) {
    let (status, body) = call(
        h,
        "PUT",
        &format!("/v1/operator/tenants/{tenant_id}/ceiling"),
        Some(OPERATOR),
        json_body(json!({ "ceiling": { "max_secrets": 5 } })),
    )
    .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = call(
        h,
        "PUT",
        &format!("/v1/secrets/{name}"),
        Some(token),
        json_body(json!({ "value": value })),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

/// Creates connection `name`; returns its delivery path.
async fn connection(h: &Harness, token: &str, name: &str, config: Json) -> String {
    let (status, body) = call(
        h,
        "PUT",
        &format!("/v1/intake/connections/{name}"),
        Some(token),
        json_body(config),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["path"].as_str().unwrap().to_owned()
}

/// A tenant with the live plan and its post-interaction process published.
/// A tenant with the test's plans, its secret `(name, value)`, and a connection `name` of
/// `config`: the tenant's token and the connection's delivery path.
async fn connected(
    h: &Harness,
    id: &str,
    (secret_name, secret_value): (&str, &str),
    name: &str,
    config: Json,
) -> (String, String) {
    let token = tenant_with_plans(h, id).await;
    secret(h, id, &token, secret_name, secret_value).await;
    let path = connection(h, &token, name, config).await;
    (token, path)
}

async fn tenant_with_plans(h: &Harness, id: &str) -> String {
    let token = tenant(h, id).await;
    publish(h, &token, "post-call", POST_CALL).await;
    publish(h, &token, "live", LIVE).await;
    token
}

/// Twilio's signature of a form body posted to `path` on [`HOST`].
fn twilio_signature(path: &str, body: &[u8], auth_token: &str) -> String {
    coda_intake::auth::sign_twilio_form(&format!("http://{HOST}{path}"), body, auth_token).unwrap()
}

const TASK: &str = "WT00000000000000000000000000000001";
const FORM: &str = "application/x-www-form-urlencoded";

async fn twilio(h: &Harness, path: &str, file: &str, auth_token: &str) -> (StatusCode, Json) {
    let body = testdata(&format!("twilio/{file}"));
    let signature = twilio_signature(path, &body, auth_token);
    deliver(h, path, FORM, &[("X-Twilio-Signature", &signature)], body).await
}

#[tokio::test]
async fn twilio_task_events_start_one_post_interaction_run_with_the_tasks_data() {
    let (h, _stop) = harness();
    let (acme, path) = connected(
        &h,
        "acme",
        ("twilio-token", "acme-auth-token"),
        "flex",
        json!({"adapter": "twilio", "secret": "twilio-token", "plan": "live"}),
    )
    .await;
    assert!(path.starts_with("/v1/intake/twilio/ic_"), "{path}");

    let (status, body) = twilio(&h, &path, "task-created.txt", "acme-auth-token").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["platform_event"], &body["applied"][0]["kind"]),
        (&json!("task.created"), &json!("started"))
    );
    let (_, interaction) = call(
        &h,
        "GET",
        &format!("/v1/interactions/{TASK}"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(interaction["channel"], "voice");
    assert_eq!(interaction["plan"], "live");
    assert_eq!(interaction["data"]["CLID"], "+15555550100");
    assert_eq!(interaction["data"]["DialedNumber"], "+15555550199");
    assert_eq!(interaction["data"]["Language"], "en-US");

    let (status, body) = twilio(&h, &path, "reservation-accepted.txt", "acme-auth-token").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, interaction) = call(
        &h,
        "GET",
        &format!("/v1/interactions/{TASK}"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(interaction["agent"], "WK00000000000000000000000000000001");

    // The wrap-up ends the interaction and starts its post-interaction process; the same
    // callback again, and the completion after it, find that run rather than start another.
    let (status, body) = twilio(&h, &path, "task-wrapup.txt", "acme-auth-token").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let runs = body["applied"][0]["runs"].clone();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{body}");
    let (_, again) = twilio(&h, &path, "task-wrapup.txt", "acme-auth-token").await;
    assert_eq!(again["applied"][0]["runs"], runs, "{again}");
    let (status, completed) = twilio(&h, &path, "task-completed.txt", "acme-auth-token").await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    assert_eq!(completed["applied"][0]["runs"], runs);
    assert_eq!(completed["applied"][1]["kind"], "event:disposition");
    let (_, list) = call(
        &h,
        "GET",
        &format!("/v1/runs?interaction={TASK}"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(1), "{list}");

    let run = run_reaches(&h, &acme, runs[0].as_str().unwrap(), "done").await;
    assert_eq!(run["plan"], "post-call");
    assert_eq!(run["data"]["CLID"], "+15555550100");
    assert_eq!(run["data"]["InteractionId"], TASK);

    // An agent's join delivered after the end changes nothing and is acknowledged, so the
    // platform does not retry it.
    let (status, body) = twilio(&h, &path, "reservation-accepted.txt", "acme-auth-token").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applied"][0]["status"], "completed");

    // An event coda has no use for is acknowledged, nothing done.
    let (status, body) = twilio(&h, &path, "worker-activity-update.txt", "acme-auth-token").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["ignored"], &body["applied"]),
        (&json!(true), &json!([]))
    );
}

#[tokio::test]
async fn a_bad_signature_or_an_unknown_connection_stores_nothing() {
    let (h, _stop) = harness();
    let (acme, path) = connected(
        &h,
        "acme",
        ("twilio-token", "acme-auth-token"),
        "flex",
        json!({"adapter": "twilio", "secret": "twilio-token", "plan": "live"}),
    )
    .await;
    let (globex, globex_path) = connected(
        &h,
        "globex",
        ("twilio-token", "globex-auth-token"),
        "flex",
        json!({"adapter": "twilio", "secret": "twilio-token", "plan": "live"}),
    )
    .await;
    assert_ne!(path, globex_path);

    let body = testdata("twilio/task-created.txt");
    // Signed with another token (globex's, for acme's connection), with none, with a
    // signature of other parameters, for another URL.
    let wrong = [
        Some(twilio_signature(&path, &body, "globex-auth-token")),
        None,
        Some(twilio_signature(
            &path,
            b"EventType=task.created",
            "acme-auth-token",
        )),
        Some(twilio_signature(&globex_path, &body, "acme-auth-token")),
        Some("not base64 at all".to_owned()),
    ];
    for signature in wrong {
        let headers: Vec<(&str, &str)> = signature
            .as_deref()
            .map(|s| vec![("X-Twilio-Signature", s)])
            .unwrap_or_default();
        let (status, answer) = deliver(&h, &path, FORM, &headers, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{signature:?}: {answer}");
        assert_eq!(answer["error"]["kind"], "forbidden");
    }
    // An id nobody has, a malformed one, the right id under another adapter: the same 404.
    let unknown = format!("/v1/intake/twilio/ic_{}", "0".repeat(64));
    let other_adapter = path.replace("/twilio/", "/genesys/");
    for wrong_path in [
        unknown.as_str(),
        "/v1/intake/twilio/ic_1",
        "/v1/intake/fax/x",
        &other_adapter,
    ] {
        let signature = twilio_signature(wrong_path, &body, "acme-auth-token");
        let (status, answer) = deliver(
            &h,
            wrong_path,
            FORM,
            &[("X-Twilio-Signature", &signature)],
            body.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{wrong_path}: {answer}");
        assert_eq!(answer["error"]["kind"], "unknown-connection");
    }
    for token in [&acme, &globex] {
        let (_, list) = call(&h, "GET", "/v1/interactions", Some(token), None).await;
        assert_eq!(list["interactions"], json!([]), "{list}");
    }
    // A deleted connection's path is gone with it.
    let (status, _) = call(
        &h,
        "DELETE",
        "/v1/intake/connections/flex",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = twilio(&h, &path, "task-created.txt", "acme-auth-token").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Globex's still works, for globex.
    let (status, body) = twilio(&h, &globex_path, "task-created.txt", "globex-auth-token").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(
        &h,
        "GET",
        &format!("/v1/interactions/{TASK}"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

const CONTACT: &str = "11111111-1111-1111-1111-111111111111";
const KEY_HEADER: &str = "x-coda-intake-key";

async fn keyed(h: &Harness, path: &str, file: &str, key: &str) -> (StatusCode, Json) {
    deliver(
        h,
        path,
        "application/json",
        &[(KEY_HEADER, key)],
        testdata(file),
    )
    .await
}

#[tokio::test]
async fn amazon_connect_contact_events_start_one_run_and_refuse_bad_payloads() {
    let (h, _stop) = harness();
    let acme = tenant_with_plans(&h, "acme").await;
    secret(
        &h,
        "acme",
        &acme,
        "connect-key",
        "k3y-from-the-api-destination",
    )
    .await;
    let path = connection(
        &h,
        &acme,
        "connect",
        json!({"adapter": "amazon-connect", "secret": "connect-key", "header": KEY_HEADER,
            "plan": "live", "mapping": {"Dept": "/detail/tags/Dept"}}),
    )
    .await;
    let key = "k3y-from-the-api-destination";
    let (status, body) = keyed(&h, &path, "amazon-connect/initiated.json", key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, interaction) = call(
        &h,
        "GET",
        &format!("/v1/interactions/{CONTACT}"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(interaction["data"]["DialedNumber"], "+11234567890");
    let (status, body) = keyed(&h, &path, "amazon-connect/queued.json", key).await;
    assert_eq!(
        (status, &body["ignored"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let (status, body) = keyed(&h, &path, "amazon-connect/connected-to-agent.json", key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, ended) = keyed(&h, &path, "amazon-connect/disconnected.json", key).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    let runs = ended["applied"][0]["runs"].clone();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{ended}");
    // EventBridge delivers at least once: the same event again finds the same run.
    let (_, again) = keyed(&h, &path, "amazon-connect/disconnected.json", key).await;
    assert_eq!(again["applied"][0]["runs"], runs);
    let run = run_reaches(&h, &acme, runs[0].as_str().unwrap(), "done").await;
    assert_eq!(run["data"]["DialedNumber"], "+11234567890");
    assert_eq!(run["data"]["InteractionId"], CONTACT);
    let (status, body) = keyed(&h, &path, "amazon-connect/contact-data-updated.json", key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applied"][0]["kind"], "event:contact-data-updated");

    // A wrong key, or none: 403. Then what the payload itself gets wrong, with the key.
    let (status, _) = keyed(
        &h,
        &path,
        "amazon-connect/initiated.json",
        "k3y-from-elsewhere",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = deliver(
        &h,
        &path,
        "application/json",
        &[],
        testdata("amazon-connect/initiated.json"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let big = vec![b' '; coda_intake::limits::MAX_PAYLOAD_BYTES + 1];
    let deep = format!(
        "{{\"detail-type\": \"Amazon Connect Contact Event\", \"detail\": {}{}}}",
        "[".repeat(40),
        "]".repeat(40)
    );
    let cases: [(&[u8], StatusCode, &str); 4] = [
        (&big, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
        (b"{\"detail-type\": ", StatusCode::BAD_REQUEST, "malformed-payload"),
        (
            br#"{"detail-type": "Amazon Connect Contact Event", "detail": {"eventType": "INITIATED"}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing-field",
        ),
        (
            deep.as_bytes(),
            StatusCode::BAD_REQUEST,
            "payload-too-deep",
        ),
    ];
    for (payload, expected, kind) in cases {
        let (status, body) = deliver(
            &h,
            &path,
            "application/json",
            &[(KEY_HEADER, key)],
            payload.to_vec(),
        )
        .await;
        assert_eq!(
            (status, body["error"]["kind"].as_str()),
            (expected, Some(kind)),
            "{body}"
        );
        assert!(!body["error"]["message"].as_str().unwrap_or("").is_empty());
    }
    let (_, list) = call(&h, "GET", "/v1/interactions", Some(&acme), None).await;
    assert_eq!(
        list["interactions"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
}

/// Ended before started, and delivered again: Amazon Connect does not order its events and
/// EventBridge delivers at least once. The early end is held (202), nothing of the
/// interaction shows before its start; the start applies it, and the end delivered again
/// afterwards starts no second run.
#[tokio::test]
async fn an_end_held_before_its_start_and_delivered_again_starts_one_run() {
    let (h, _stop) = harness();
    let (acme, path) = connected(&h, "acme", ("connect-key", "k3y"), "connect", json!({"adapter": "amazon-connect", "secret": "connect-key", "header": KEY_HEADER, "plan": "live"})).await;
    let (status, body) = keyed(&h, &path, "amazon-connect/disconnected.json", "k3y").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["applied"][0]["status"], "held", "{body}");
    let (status, _) = call(
        &h,
        "GET",
        &format!("/v1/interactions/{CONTACT}"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = keyed(&h, &path, "amazon-connect/initiated.json", "k3y").await;
    assert_eq!(status, StatusCode::OK);
    let (status, ended) = keyed(&h, &path, "amazon-connect/disconnected.json", "k3y").await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    let (_, list) = call(
        &h,
        "GET",
        &format!("/v1/runs?interaction={CONTACT}"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(1), "{list}");
}

/// An end that comes first is held (answered 202) and reconciled
/// when the start arrives, with no redelivery: the interaction completes and its run starts.
#[tokio::test]
async fn an_end_before_its_start_is_kept_and_reconciled() {
    let (h, _stop) = harness();
    let (acme, path) = connected(&h, "acme", ("connect-key", "k3y"), "connect", json!({"adapter": "amazon-connect", "secret": "connect-key", "header": KEY_HEADER, "plan": "live"})).await;
    let (status, body) = keyed(&h, &path, "amazon-connect/disconnected.json", "k3y").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _) = keyed(&h, &path, "amazon-connect/initiated.json", "k3y").await;
    assert_eq!(status, StatusCode::OK);
    let (_, interaction) = call(
        &h,
        "GET",
        &format!("/v1/interactions/{CONTACT}"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(interaction["status"], "completed", "{interaction}");
    let (_, list) = call(
        &h,
        "GET",
        &format!("/v1/runs?interaction={CONTACT}"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(1), "{list}");
}

const CONVERSATION: &str = "7f1c7a52-1f36-4cfe-a2a5-0d5a6a0c3b11";
const WAIT_FOR_WRAPUP: &str = "name: post-call\ntype: unattended\nstart: w\nnodes:\n  w:\n    applet: wait@1.0.0\n    exits: { received: thank }\n  thank:\n    applet: step@1.0.0\n";

#[tokio::test]
async fn a_genesys_wrapup_wakes_the_run_waiting_for_its_disposition() {
    let (h, _stop) = harness();
    let acme = tenant(&h, "acme").await;
    publish(&h, &acme, "post-call", WAIT_FOR_WRAPUP).await;
    publish(&h, &acme, "live", LIVE).await;
    secret(&h, "acme", &acme, "genesys-key", "g3nesys").await;
    let path = connection(
        &h,
        &acme,
        "genesys",
        json!({"adapter": "genesys", "secret": "genesys-key", "header": KEY_HEADER, "plan": "live"}),
    )
    .await;
    for file in ["customer-start.json", "user-start.json"] {
        let (status, body) = keyed(&h, &path, &format!("genesys/{file}"), "g3nesys").await;
        assert_eq!(status, StatusCode::OK, "{file}: {body}");
    }
    let (_, interaction) = call(
        &h,
        "GET",
        &format!("/v1/interactions/{CONVERSATION}"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(interaction["data"]["CLID"], "+15555550100");
    assert_eq!(interaction["agent"], "2b4a71c6-8f0e-4d2b-9a3e-1c5d7e9f0a21");
    let (status, ended) = keyed(&h, &path, "genesys/customer-end.json", "g3nesys").await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    let run = ended["applied"][0]["runs"][0].as_str().unwrap().to_owned();
    run_reaches(&h, &acme, &run, "waiting").await;
    let (status, acw) = keyed(&h, &path, "genesys/acw.json", "g3nesys").await;
    assert_eq!(status, StatusCode::OK, "{acw}");
    assert_eq!(acw["applied"][0]["woken"], json!([run]));
    let done = run_reaches(&h, &acme, &run, "done").await;
    assert_eq!(
        done["data"]["Event"]["wrapupCode"],
        "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
    );
    let (_, interaction) = call(
        &h,
        "GET",
        &format!("/v1/interactions/{CONVERSATION}"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(interaction["data"]["InteractionOutcome"], "CLIENT");
}

#[tokio::test]
async fn cloudevents_start_and_end_an_interaction_and_deliver_named_events() {
    let (h, _stop) = harness();
    let acme = tenant(&h, "acme").await;
    publish(&h, &acme, "post-call", WAIT_FOR_WRAPUP).await;
    publish(&h, &acme, "live", LIVE).await;
    secret(&h, "acme", &acme, "ce-key", "cl0udevents").await;
    let path = connection(
        &h,
        &acme,
        "pbx",
        json!({"adapter": "cloudevents", "secret": "ce-key", "header": KEY_HEADER, "plan": "live"}),
    )
    .await;
    let structured = "application/cloudevents+json";
    let send = |file: &'static str| {
        let (h, path) = (&h, &path);
        async move {
            deliver(
                h,
                path,
                structured,
                &[(KEY_HEADER, "cl0udevents")],
                testdata(file),
            )
            .await
        }
    };
    let (status, body) = send("cloudevents/started.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = send("cloudevents/party-joined.json").await;
    assert_eq!(status, StatusCode::OK);
    let (_, interaction) = call(
        &h,
        "GET",
        "/v1/interactions/call-20261207-0001",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(interaction["skill"], "billing");
    assert_eq!(interaction["agent"], "agent-007");
    let (status, ended) = send("cloudevents/ended.json").await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    let run = ended["applied"][0]["runs"][0].as_str().unwrap().to_owned();
    run_reaches(&h, &acme, &run, "waiting").await;
    let (status, body) = send("cloudevents/disposition.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applied"][0]["woken"], json!([run]));
    let done = run_reaches(&h, &acme, &run, "done").await;
    assert_eq!(done["data"]["Event"]["code"], "refund");
    assert_eq!(done["data"]["InteractionOutcome"], "resolved");
}

#[tokio::test]
async fn a_connection_is_checked_before_it_is_stored() {
    let (h, _stop) = harness();
    let acme = tenant_with_plans(&h, "acme").await;
    secret(&h, "acme", &acme, "twilio-token", "t").await;
    let put = |config: Json| {
        let (h, acme) = (&h, &acme);
        async move {
            call(
                h,
                "PUT",
                "/v1/intake/connections/flex",
                Some(acme),
                json_body(config),
            )
            .await
        }
    };
    let (status, body) = put(json!({"adapter": "twilio", "secret": "nope", "plan": "live"})).await;
    assert_eq!(
        (status, &body["error"]["kind"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("unknown-secret")),
        "{body}"
    );
    let (status, body) =
        put(json!({"adapter": "twilio", "secret": "twilio-token", "plan": "nope"})).await;
    assert_eq!(
        (status, &body["error"]["kind"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("unknown-plan")),
        "{body}"
    );
    let (status, body) =
        put(json!({"adapter": "genesys", "secret": "twilio-token", "plan": "live"})).await;
    assert_eq!(
        (status, &body["error"]["kind"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!("invalid-connection")
        ),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`header` is missing"),
        "{body}"
    );
    let (status, body) =
        put(json!({"adapter": "fax", "secret": "twilio-token", "plan": "live"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(&h, "GET", "/v1/intake/connections/flex", Some(&acme), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Replaced, a connection keeps its id (the platform's URL); the mapping shows the
    // adapter's defaults under the tenant's entries.
    let (_, first) =
        put(json!({"adapter": "twilio", "secret": "twilio-token", "plan": "live"})).await;
    let (status, second) = put(
        json!({"adapter": "twilio", "secret": "twilio-token", "plan": "live",
        "mapping": {"Language": null, "Ticket": "/TaskAttributes/ticket"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(first["id"], second["id"]);
    assert_eq!(
        second["mapping"]["Ticket"],
        json!(["/TaskAttributes/ticket"])
    );
    assert_eq!(second["mapping"]["CLID"], json!(["/TaskAttributes/from"]));
    assert!(second["mapping"].get("Language").is_none(), "{second}");
    assert_eq!(second["wrapup_event"], "disposition");
    let (_, list) = call(&h, "GET", "/v1/intake/connections", Some(&acme), None).await;
    assert_eq!(list["connections"][0]["name"], "flex");
    assert!(
        !list.to_string().contains("\"t\""),
        "a secret's value is never shown: {list}"
    );
}

/// Twilio calls an https URL, which a proxy in front of coda terminates: the URL signed is
/// rebuilt from `X-Forwarded-Proto` and `Host` (with or without the port), or is the
/// connection's `public_url` when the proxy also rewrites the host or path.
#[tokio::test]
async fn twilio_signatures_hold_behind_a_tls_proxy() {
    let (h, _stop) = harness();
    let (acme, path) = connected(
        &h,
        "acme",
        ("twilio-token", "acme-auth-token"),
        "flex",
        json!({"adapter": "twilio", "secret": "twilio-token", "plan": "live"}),
    )
    .await;
    let body = testdata("twilio/task-created.txt");
    let sign =
        |url: &str| coda_intake::auth::sign_twilio_form(url, &body, "acme-auth-token").unwrap();
    for url in [
        format!("https://{HOST}{path}"),
        format!("https://{HOST}:443{path}"),
    ] {
        let (status, answer) = deliver(
            &h,
            &path,
            FORM,
            &[
                ("X-Twilio-Signature", &sign(&url)),
                ("X-Forwarded-Proto", "https"),
            ],
            body.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{url}: {answer}");
    }
    // Signed for https but forwarded as plain http: another URL, refused.
    let (status, _) = deliver(
        &h,
        &path,
        FORM,
        &[(
            "X-Twilio-Signature",
            &sign(&format!("https://{HOST}{path}")),
        )],
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let public = "https://contact.acme.example/hooks/twilio";
    let (status, answer) = call(
        &h,
        "PUT",
        "/v1/intake/connections/flex",
        Some(&acme),
        json_body(
            json!({"adapter": "twilio", "secret": "twilio-token", "plan": "live",
            "public_url": public}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["path"], path.as_str(), "the id stays");
    let (status, answer) = deliver(
        &h,
        &path,
        FORM,
        &[("X-Twilio-Signature", &sign(public))],
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = deliver(
        &h,
        &path,
        FORM,
        &[("X-Twilio-Signature", &sign(&format!("http://{HOST}{path}")))],
        body.clone(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "with a public_url, only it is signed"
    );
}
