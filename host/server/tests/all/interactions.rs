//! Completed interactions and post-contact work through the API: edits and their audit
//! trail, clones, each skill's wrap-up or dispositions, and a submitted disposition waking
//! a run parked in the built-in `wait-for-event` applet (the real component, run by
//! `coda-runtime`).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use coda_flow::{Applets, Clock, Engine, FlowLimits, StepInput, VirtualClock, WallClock};
use coda_plan::AppletRef;
use coda_runtime::{Invocation, LoadOptions, LoadedApplet, Runtime, RuntimeConfig};
use coda_server::{AppState, hash_token, router};
use coda_store::Store;
use coda_types::{AppletInfo, InvocationReport};
use serde_json::{Value as Json, json};

use super::{
    Harness, OPERATOR, Script, call, harness, json_body, run_reaches, step_info, wait_info,
};

/// A harness on a clock of the test's choosing.
fn harness_with(
    applets: Arc<dyn Applets>,
    infos: Vec<AppletInfo>,
    clock: Arc<dyn Clock>,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let engine = Arc::new(Engine::new(store, applets, clock, FlowLimits::default()));
    let state = AppState::new(engine.clone(), infos, &hash_token(OPERATOR)).unwrap();
    Harness {
        _dir: dir,
        engine,
        app: router(state),
    }
}

/// Creates a tenant; returns its token and the token's id (the "who" of its changes).
async fn tenant(h: &Harness, id: &str) -> (String, String) {
    let (status, body) = call(
        h,
        "POST",
        "/v1/operator/tenants",
        Some(OPERATOR),
        json_body(json!({ "id": id })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["token"].as_str().unwrap().to_owned(),
        body["token_id"].as_str().unwrap().to_owned(),
    )
}

async fn event(h: &Harness, token: &str, event: Json) -> Json {
    let (status, body) = call(
        h,
        "POST",
        "/v1/interactions/events",
        Some(token),
        json_body(event),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// A voice call routed by `skill`, answered by `agent`, then ended: completed. Answers the
/// end's answer (the runs it started).
async fn completed_call(
    h: &Harness,
    token: &str,
    id: &str,
    skill: &str,
    agent: &str,
    plan: Option<&str>,
) -> Json {
    let mut started = json!({ "type": "started", "interaction": id, "channel": "voice",
        "skill": skill, "data": { "CLID": "+15550100" } });
    if let Some(plan) = plan {
        started["plan"] = json!(plan);
    }
    event(h, token, started).await;
    event(
        h,
        token,
        json!({ "type": "party-joined", "interaction": id, "party": "agent", "agent": agent }),
    )
    .await;
    event(
        h,
        token,
        json!({ "type": "ended", "interaction": id, "outcome": "resolved" }),
    )
    .await
}

#[tokio::test]
async fn edits_to_a_completed_interaction_are_audited_and_its_activity_is_not_editable() {
    let h = harness();
    let (acme, acme_token) = tenant(&h, "acme").await;
    let (other, _) = tenant(&h, "other").await;
    completed_call(&h, &acme, "c1", "billing", "agent-7", None).await;

    let (status, body) = call(
        &h,
        "PATCH",
        "/v1/interactions/c1",
        Some(&acme),
        json_body(json!({
            "subject": "Billing dispute", "type": "complaint", "result": "refund promised",
            "notes": "Customer was double charged in March.",
            "customer": { "name": "Ada Lovelace", "email": "ada@example.com" },
            "custom_fields": { "tier": "gold", "order": 1042 }
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["details"]["subject"], "Billing dispute");
    assert_eq!(body["details"]["type"], "complaint");
    assert_eq!(body["details"]["customer"]["email"], "ada@example.com");
    assert_eq!(body["details"]["custom_fields"]["order"], 1042);
    assert_eq!(body["completed_by"], "agent-7");

    // A second edit: one field changed, one cleared, one the same (not recorded).
    let (status, body) = call(
        &h,
        "PATCH",
        "/v1/interactions/c1",
        Some(&acme),
        json_body(json!({ "notes": null, "subject": "Billing dispute",
            "custom_fields": { "tier": "platinum" } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["details"]["notes"], Json::Null);

    let (status, audit) = call(&h, "GET", "/v1/interactions/c1/audit", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let entries = audit["audit"].as_array().unwrap();
    let fields: Vec<&str> = entries
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "subject",
            "type",
            "result",
            "notes",
            "customer.name",
            "customer.email",
            "custom_fields.order",
            "custom_fields.tier",
            "notes",
            "custom_fields.tier"
        ],
        "{audit}"
    );
    for (n, entry) in entries.iter().enumerate() {
        assert_eq!(entry["seq"], n as u64 + 1);
        assert_eq!(
            entry["by"],
            acme_token.as_str(),
            "who: the caller's token id"
        );
        assert!(entry["at_ms"].as_i64().unwrap() > 0);
    }
    assert_eq!(entries[0]["before"], Json::Null);
    assert_eq!(entries[0]["after"], "Billing dispute");
    assert_eq!(
        entries[8]["before"],
        "Customer was double charged in March."
    );
    assert_eq!(entries[8]["after"], Json::Null);
    assert_eq!(entries[9]["before"], "gold");
    assert_eq!(entries[9]["after"], "platinum");

    // An edit that changes nothing records nothing.
    let (status, _) = call(
        &h,
        "PATCH",
        "/v1/interactions/c1",
        Some(&acme),
        json_body(json!({ "subject": "Billing dispute", "customer": { "name": "Ada Lovelace" } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, again) = call(&h, "GET", "/v1/interactions/c1/audit", Some(&acme), None).await;
    assert_eq!(again["audit"].as_array().unwrap().len(), entries.len());

    // Who completed it and its activity: 422, naming the field.
    for field in [
        "agent",
        "completed_by",
        "channel",
        "present",
        "data",
        "completed_at_ms",
        "status",
    ] {
        let mut patch = json!({ "subject": "x" });
        patch[field] = json!("changed");
        let (status, body) = call(
            &h,
            "PATCH",
            "/v1/interactions/c1",
            Some(&acme),
            json_body(patch),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {body}");
        assert_eq!(body["error"]["kind"], "not-editable");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{field}`")) && message.contains("not editable"),
            "{message}"
        );
    }
    // Wrong types and unknown fields: 400 naming the field; bad values: 422 naming it.
    let cases = [
        (json!({ "subject": 5 }), StatusCode::BAD_REQUEST, "subject"),
        (
            json!({ "customer": { "phone": true } }),
            StatusCode::BAD_REQUEST,
            "customer.phone",
        ),
        (
            json!({ "customer": { "fax": "1" } }),
            StatusCode::BAD_REQUEST,
            "fax",
        ),
        (
            json!({ "colour": "red" }),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (json!(["subject"]), StatusCode::BAD_REQUEST, "map"),
        (
            json!({ "customer": { "email": "nowhere" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "customer.email",
        ),
        (
            json!({ "customer": { "phone": "call me" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "customer.phone",
        ),
        (
            json!({ "custom_fields": { "x": { "nested": 1 } } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "custom_fields.x",
        ),
    ];
    for (patch, want, names) in cases {
        let (status, body) = call(
            &h,
            "PATCH",
            "/v1/interactions/c1",
            Some(&acme),
            json_body(patch.clone()),
        )
        .await;
        assert_eq!(status, want, "{patch}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(names),
            "{patch}: `{message}` does not name `{names}`"
        );
    }
    let (_, again) = call(&h, "GET", "/v1/interactions/c1/audit", Some(&acme), None).await;
    assert_eq!(
        again["audit"].as_array().unwrap().len(),
        entries.len(),
        "refused edits changed nothing"
    );

    // An active interaction is still being worked: 409.
    event(
        &h,
        &acme,
        json!({ "type": "started", "interaction": "live-1", "channel": "chat" }),
    )
    .await;
    let (status, body) = call(
        &h,
        "PATCH",
        "/v1/interactions/live-1",
        Some(&acme),
        json_body(json!({ "notes": "too early" })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "interaction-active");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still active")
    );

    // Another tenant's interaction is missing, exactly.
    for path in ["/v1/interactions/c1", "/v1/interactions/nope"] {
        let (status, body) = call(
            &h,
            "PATCH",
            path,
            Some(&other),
            json_body(json!({ "notes": "mine now" })),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["kind"], "unknown-interaction");
    }
    let (status, theirs) = call(&h, "GET", "/v1/interactions/c1/audit", Some(&other), None).await;
    let (_, missing) = call(
        &h,
        "GET",
        "/v1/interactions/c1/audit",
        Some(&tenant(&h, "empty").await.0),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(theirs, missing);
    let (_, unchanged) = call(&h, "GET", "/v1/interactions/c1", Some(&acme), None).await;
    assert_eq!(unchanged["details"]["notes"], Json::Null);
}

#[tokio::test]
async fn a_clone_is_a_new_outbound_interaction_assigned_to_the_caller() {
    let h = harness();
    let (acme, acme_token) = tenant(&h, "acme").await;
    let (other, _) = tenant(&h, "other").await;
    completed_call(&h, &acme, "c1", "billing", "agent-7", None).await;
    let (status, _) = call(
        &h,
        "PATCH",
        "/v1/interactions/c1",
        Some(&acme),
        json_body(json!({ "subject": "Billing dispute",
            "customer": { "name": "Ada Lovelace", "email": "ada@example.com" } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Texting the customer back: no email this time.
    let (status, clone) = call(
        &h,
        "POST",
        "/v1/interactions/c1/clone",
        Some(&acme),
        json_body(json!({ "channel": "sms", "queue": "callbacks", "customer": { "email": null } })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{clone}");
    let id = clone["id"].as_str().unwrap().to_owned();
    assert_ne!(id, "c1");
    assert_eq!(clone["status"], "active");
    assert_eq!(clone["channel"], "sms");
    assert_eq!(clone["follow_up"]["source"], "c1");
    assert_eq!(clone["follow_up"]["queue"], "callbacks");
    assert_eq!(clone["follow_up"]["assigned_to"], acme_token.as_str());
    assert_eq!(clone["details"]["subject"], "Billing dispute");
    assert_eq!(
        clone["details"]["customer"],
        json!({ "name": "Ada Lovelace", "phone": "+15550100", "email": Json::Null }),
        "prefilled from the original (its phone from the caller's number), email removed"
    );
    assert_eq!(clone["data"]["InteractionId"], id.as_str());
    assert_eq!(clone["completed_by"], Json::Null);
    let (status, fetched) = call(
        &h,
        "GET",
        &format!("/v1/interactions/{id}"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, clone);
    // The original is unchanged.
    let (_, original) = call(&h, "GET", "/v1/interactions/c1", Some(&acme), None).await;
    assert_eq!(original["status"], "completed");
    assert_eq!(original["details"]["customer"]["email"], "ada@example.com");

    // Each request is a new clone, unless it repeats an Idempotency-Key.
    let mut ids = Vec::new();
    for key in ["k1", "k1"] {
        let request = axum::http::Request::builder()
            .method("POST")
            .uri("/v1/interactions/c1/clone")
            .header("authorization", format!("Bearer {acme}"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(axum::body::Body::from(
                json!({ "channel": "task", "queue": "review", "subject": "Check the refund" })
                    .to_string(),
            ))
            .unwrap();
        let response = tower::ServiceExt::oneshot(h.app.clone(), request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body: Json = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["details"]["subject"], "Check the refund");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[0], id);

    // Only a completed interaction is cloned; the form is checked by field.
    let (status, body) = call(
        &h,
        "POST",
        &format!("/v1/interactions/{id}/clone"),
        Some(&acme),
        json_body(json!({ "channel": "voice", "queue": "callbacks" })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "interaction-active");
    let cases = [
        (
            json!({ "channel": "chat", "queue": "q" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "channel",
        ),
        (
            json!({ "channel": "voice", "queue": " " }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "queue",
        ),
        (
            json!({ "channel": "pigeon", "queue": "q" }),
            StatusCode::BAD_REQUEST,
            "pigeon",
        ),
        (
            json!({ "channel": "voice" }),
            StatusCode::BAD_REQUEST,
            "queue",
        ),
        (
            json!({ "channel": "voice", "queue": "q", "agent": "me" }),
            StatusCode::BAD_REQUEST,
            "agent",
        ),
        (
            json!({ "channel": "email", "queue": "q", "customer": { "email": "x" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "customer.email",
        ),
    ];
    for (form, want, names) in cases {
        let (status, body) = call(
            &h,
            "POST",
            "/v1/interactions/c1/clone",
            Some(&acme),
            json_body(form.clone()),
        )
        .await;
        assert_eq!(status, want, "{form}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(names),
            "{form}: `{message}` does not name `{names}`"
        );
    }
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/c1/clone",
        Some(&other),
        json_body(json!({ "channel": "voice", "queue": "callbacks" })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["kind"], "unknown-interaction");
}

#[tokio::test]
async fn post_contact_work_is_set_per_skill_and_checked_by_field() {
    let h = harness();
    let (acme, _) = tenant(&h, "acme").await;
    let (other, _) = tenant(&h, "other").await;
    let put = |body: Json| json_body(body);
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/skills/Sales%20EN/post-contact",
        Some(&acme),
        put(json!({ "mode": "dispositions", "dispositions": [
            { "code": "sale", "label": "Sale", "amount": true },
            { "code": "no-sale", "label": "No sale" } ] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, got) = call(
        &h,
        "GET",
        "/v1/skills/Sales%20EN/post-contact",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        got,
        json!({ "skill": "Sales EN", "mode": "dispositions", "dispositions": [
            { "code": "sale", "label": "Sale", "amount": true },
            { "code": "no-sale", "label": "No sale", "amount": false } ] })
    );
    // Replaced by wrap-up.
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/skills/Sales%20EN/post-contact",
        Some(&acme),
        put(json!({ "mode": "wrap-up", "seconds": 120, "unavailable_code": "after-call" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "skill": "Sales EN", "mode": "wrap-up", "seconds": 120, "unavailable_code": "after-call" })
    );

    let cases = [
        (
            json!({ "mode": "wrap-up", "seconds": 0, "unavailable_code": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`seconds`",
        ),
        (
            json!({ "mode": "wrap-up", "seconds": 3601, "unavailable_code": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`seconds`",
        ),
        (
            json!({ "mode": "wrap-up", "seconds": -5, "unavailable_code": "x" }),
            StatusCode::BAD_REQUEST,
            "seconds",
        ),
        (
            json!({ "mode": "wrap-up", "seconds": "60", "unavailable_code": "x" }),
            StatusCode::BAD_REQUEST,
            "seconds",
        ),
        (
            json!({ "mode": "wrap-up", "unavailable_code": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`seconds`",
        ),
        (
            json!({ "mode": "wrap-up", "seconds": 60 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`unavailable_code`",
        ),
        (
            json!({ "mode": "wrap-up", "seconds": 60, "unavailable_code": " " }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`unavailable_code`",
        ),
        (
            json!({ "mode": "dispositions", "dispositions": [] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`dispositions`",
        ),
        (
            json!({ "mode": "dispositions" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`dispositions`",
        ),
        (
            json!({ "mode": "dispositions", "seconds": 5, "dispositions": [{ "code": "a", "label": "A" }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`seconds`",
        ),
        (
            json!({ "mode": "dispositions", "dispositions": [{ "code": "a", "label": "A" }, { "code": "a", "label": "Again" }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`dispositions[1].code`: `a` is listed twice",
        ),
        (
            json!({ "mode": "dispositions", "dispositions": [{ "code": "a", "label": "" }] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`dispositions[0].label`",
        ),
        (
            json!({ "mode": "dispositions", "dispositions": [{ "code": "a", "label": "A", "amount": "yes" }] }),
            StatusCode::BAD_REQUEST,
            "dispositions[0].amount",
        ),
        (
            json!({ "mode": "dispositions", "dispositions": [{ "code": "a", "label": "A", "colour": 1 }] }),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            json!({ "mode": "thank-you" }),
            StatusCode::BAD_REQUEST,
            "thank-you",
        ),
    ];
    for (config, want, names) in cases {
        let (status, body) = call(
            &h,
            "PUT",
            "/v1/skills/support/post-contact",
            Some(&acme),
            put(config.clone()),
        )
        .await;
        assert_eq!(status, want, "{config}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(names),
            "{config}: `{message}` does not name `{names}`"
        );
    }
    // Nothing refused was stored; another tenant's skill is missing, exactly.
    let (status, missing) = call(
        &h,
        "GET",
        "/v1/skills/support/post-contact",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, theirs) = call(
        &h,
        "GET",
        "/v1/skills/Sales%20EN/post-contact",
        Some(&other),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(theirs["error"]["kind"], "unknown-skill");
    assert_eq!(missing["error"]["kind"], theirs["error"]["kind"]);
}

#[tokio::test]
async fn wrap_up_keeps_the_agent_unavailable_under_its_code_until_its_time() {
    let clock = Arc::new(VirtualClock::new());
    let h = harness_with(
        Arc::new(Script),
        vec![step_info(), wait_info()],
        clock.clone(),
    );
    let (acme, _) = tenant(&h, "acme").await;
    let (other, _) = tenant(&h, "other").await;
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/skills/support/post-contact",
        Some(&acme),
        json_body(
            json!({ "mode": "wrap-up", "seconds": 90, "unavailable_code": "after-call-notes" }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(&h, "GET", "/v1/agents/agent-2", Some(&acme), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no post-contact work yet");

    let ended_at = clock.now_ms();
    completed_call(&h, &acme, "c1", "support", "agent-2", None).await;
    let (status, agent) = call(&h, "GET", "/v1/agents/agent-2", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{agent}");
    assert_eq!(
        agent,
        json!({ "agent": "agent-2", "state": "unavailable", "unavailable_code": "after-call-notes",
            "interaction": "c1", "since_ms": ended_at, "until_ms": ended_at + 90_000 })
    );
    let (_, interaction) = call(&h, "GET", "/v1/interactions/c1", Some(&acme), None).await;
    assert_eq!(
        interaction["post_contact"],
        json!({ "mode": "wrap-up", "agent": "agent-2", "unavailable_code": "after-call-notes",
            "until_ms": ended_at + 90_000 })
    );
    // The same end again (a redelivery) does not start the wrap-up over.
    clock.advance_to(ended_at + 30_000);
    event(&h, &acme, json!({ "type": "ended", "interaction": "c1" })).await;
    let (_, agent) = call(&h, "GET", "/v1/agents/agent-2", Some(&acme), None).await;
    assert_eq!(agent["until_ms"], ended_at + 90_000);
    // Another tenant does not see the agent.
    let (status, body) = call(&h, "GET", "/v1/agents/agent-2", Some(&other), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["kind"], "unknown-agent");

    clock.advance_to(ended_at + 89_999);
    let (_, agent) = call(&h, "GET", "/v1/agents/agent-2", Some(&acme), None).await;
    assert_eq!(agent["state"], "unavailable");
    clock.advance_to(ended_at + 90_000);
    let (_, agent) = call(&h, "GET", "/v1/agents/agent-2", Some(&acme), None).await;
    assert_eq!(agent["state"], "available");

    // A wrap-up skill takes no disposition.
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/c1/disposition",
        Some(&acme),
        json_body(json!({ "code": "sale" })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "no-dispositions");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wrap-up")
    );
}

/// The built-in applets a plan here uses, run by the real runtime.
struct Builtins {
    runtime: Runtime,
    applets: HashMap<String, Arc<LoadedApplet>>,
}

impl Builtins {
    async fn load(packages: &[&str]) -> Builtins {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let mut applets = HashMap::new();
        for (package, bytes) in coda_applet_artifacts::BUILTIN {
            if packages.contains(package) {
                let loaded = runtime.load(bytes, &LoadOptions::default()).await.unwrap();
                applets.insert(
                    format!("{}@{}", loaded.info.name, loaded.info.version),
                    loaded,
                );
            }
        }
        assert_eq!(applets.len(), packages.len(), "built-ins: {packages:?}");
        Builtins { runtime, applets }
    }

    fn infos(&self) -> Vec<AppletInfo> {
        self.applets.values().map(|a| a.info.clone()).collect()
    }
}

#[async_trait]
impl Applets for Builtins {
    fn info(&self, _tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        self.applets
            .get(&applet.to_string())
            .map(|a| a.info.clone())
    }

    async fn invoke(
        &self,
        _tenant: &str,
        applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        let loaded = self
            .applets
            .get(&applet.to_string())
            .ok_or_else(|| format!("applet {applet} is not installed"))?;
        let mut invocation = Invocation::new(input.context, input.config);
        invocation.data = input.data;
        invocation.state = input.state;
        invocation.capabilities = input.capabilities;
        Ok(self.runtime.invoke(loaded, invocation).await)
    }

    fn expression_applet(&self) -> Option<AppletRef> {
        let info = self
            .applets
            .values()
            .map(|a| &a.info)
            .find(|i| i.name == coda_flow::EXPRESSION_APPLET)?;
        AppletRef::new(&info.name, &info.version).ok()
    }
}

const SALES_LIVE: &str = "name: sales\ntype: default\nstart: hello\npost_interaction: after-sale\nnodes:\n  hello:\n    applet: set-data@0.1.0\n    config: { set: [{ name: Greeted, value: true }] }\n";
const AFTER_SALE: &str = r#"
name: after-sale
type: unattended
start: wait
nodes:
  wait:
    applet: wait-for-event@0.1.0
    config: { event: disposition, timeout_seconds: 3600 }
    exits: { received: got, timeout: late }
  got:
    applet: set-data@0.1.0
    config: { set: [{ name: Booked, expression: 'Disposition == "sale" ? DispositionAmount * 2.0 : 0.0' }] }
  late:
    applet: set-data@0.1.0
    config: { set: [{ name: Path, value: timeout }] }
"#;

#[tokio::test]
async fn a_submitted_disposition_becomes_data_and_wakes_the_run_waiting_for_it() {
    let builtins = Arc::new(Builtins::load(&["wait-for-event", "set-data"]).await);
    let h = harness_with(builtins.clone(), builtins.infos(), Arc::new(WallClock));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = h.engine.clone();
    tokio::spawn(async move {
        engine
            .serve(async {
                let _ = stopped.await;
            })
            .await
    });
    let (acme, acme_token) = tenant(&h, "acme").await;
    let (other, _) = tenant(&h, "other").await;
    for (name, yaml) in [("after-sale", AFTER_SALE), ("sales", SALES_LIVE)] {
        super::publish(&h, &acme, name, yaml).await;
    }
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/skills/sales/post-contact",
        Some(&acme),
        json_body(json!({ "mode": "dispositions", "dispositions": [
            { "code": "sale", "label": "Sale", "amount": true },
            { "code": "no-sale", "label": "No sale" },
            { "code": "callback", "label": "Call back later" } ] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let ended = completed_call(&h, &acme, "c1", "sales", "agent-1", Some("sales")).await;
    let run = ended["runs"][0].as_str().unwrap().to_owned();
    let parked = run_reaches(&h, &acme, &run, "waiting").await;
    assert_eq!(parked["wait"]["event"], "disposition");
    // The agent owes a disposition: unavailable until it is submitted.
    let (_, agent) = call(&h, "GET", "/v1/agents/agent-1", Some(&acme), None).await;
    assert_eq!(agent["state"], "unavailable", "{agent}");
    assert_eq!(agent["unavailable_code"], "disposition");
    assert_eq!(agent["until_ms"], Json::Null);

    // Refused: a code not offered (listing those that are), an amount where none is taken,
    // another tenant's interaction.
    let submit = |body: Json| json_body(body);
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/c1/disposition",
        Some(&acme),
        submit(json!({ "code": "maybe" })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "unknown-disposition");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`maybe`") && message.contains("sale, no-sale, callback"),
        "{message}"
    );
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/c1/disposition",
        Some(&acme),
        submit(json!({ "code": "no-sale", "amount": 3 })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`amount`"),
        "{body}"
    );
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/c1/disposition",
        Some(&acme),
        submit(json!({ "code": "sale", "amount": "lots" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("amount"),
        "{body}"
    );
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/c1/disposition",
        Some(&other),
        submit(json!({ "code": "sale" })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["kind"], "unknown-interaction");
    let still = run_reaches(&h, &acme, &run, "waiting").await;
    assert_eq!(still["step_seq"], parked["step_seq"]);

    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/c1/disposition",
        Some(&acme),
        submit(json!({ "code": "sale", "amount": 12.5, "notes": "two seats" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["woken"], json!([run]));
    assert_eq!(body["disposition"]["code"], "sale");
    assert_eq!(body["disposition"]["by"], acme_token.as_str());

    // The run went on through `received`, with the disposition as data sources.
    let done = run_reaches(&h, &acme, &run, "done").await;
    let nodes: Vec<&str> = done["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["wait", "wait", "got"], "{done}");
    assert_eq!(done["data"]["Disposition"], "sale");
    assert_eq!(done["data"]["DispositionAmount"], 12.5);
    assert_eq!(done["data"]["Booked"], 25.0);
    assert_eq!(done["data"]["Event"]["code"], "sale");
    assert_eq!(done["data"]["Event"]["label"], "Sale");

    // The interaction has them too; the agent is free; the trail has it.
    let (_, interaction) = call(&h, "GET", "/v1/interactions/c1", Some(&acme), None).await;
    assert_eq!(interaction["data"]["Disposition"], "sale");
    assert_eq!(interaction["data"]["DispositionLabel"], "Sale");
    assert_eq!(interaction["data"]["DispositionAmount"], 12.5);
    assert_eq!(interaction["data"]["DispositionNotes"], "two seats");
    assert_eq!(interaction["disposition"]["amount"], 12.5);
    let (_, agent) = call(&h, "GET", "/v1/agents/agent-1", Some(&acme), None).await;
    assert_eq!(agent["state"], "available", "{agent}");
    let (_, audit) = call(&h, "GET", "/v1/interactions/c1/audit", Some(&acme), None).await;
    assert_eq!(audit["audit"][0]["field"], "disposition");
    assert_eq!(audit["audit"][0]["after"]["code"], "sale");

    // One disposition per interaction: the run has gone on with the first.
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/c1/disposition",
        Some(&acme),
        submit(json!({ "code": "no-sale" })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "disposition-exists");
    let (_, interaction) = call(&h, "GET", "/v1/interactions/c1", Some(&acme), None).await;
    assert_eq!(interaction["data"]["Disposition"], "sale");
}

/// A disposition submitted before its run reaches the wait (the scheduler has not stepped
/// it yet) is kept, and the built-in `wait-for-event` takes it when the run gets there:
/// the run goes on by `received` at once, never by its hour's timeout (to which the virtual
/// clock would jump if it waited).
#[tokio::test]
async fn a_disposition_submitted_before_the_wait_is_taken_by_it() {
    let builtins = Arc::new(Builtins::load(&["wait-for-event", "set-data"]).await);
    let h = harness_with(
        builtins.clone(),
        builtins.infos(),
        Arc::new(VirtualClock::new()),
    );
    let (acme, _) = tenant(&h, "acme").await;
    for (name, yaml) in [("after-sale", AFTER_SALE), ("sales", SALES_LIVE)] {
        super::publish(&h, &acme, name, yaml).await;
    }
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/skills/sales/post-contact",
        Some(&acme),
        json_body(json!({ "mode": "dispositions", "dispositions": [
            { "code": "sale", "label": "Sale", "amount": true } ] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ended = completed_call(&h, &acme, "c1", "sales", "agent-1", Some("sales")).await;
    let run = ended["runs"][0].as_str().unwrap().to_owned();
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/c1/disposition",
        Some(&acme),
        json_body(json!({ "code": "sale", "amount": 40 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["woken"], json!([]));
    assert_eq!(body["kept"], true);
    // Stored once: a second is refused as before.
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/c1/disposition",
        Some(&acme),
        json_body(json!({ "code": "sale", "amount": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    h.engine.run_until_idle().await.unwrap();
    let (_, done) = call(&h, "GET", &format!("/v1/runs/{run}"), Some(&acme), None).await;
    assert_eq!(done["status"], "done", "{done}");
    let nodes: Vec<&str> = done["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["wait", "wait", "got"], "{done}");
    assert_eq!(done["data"]["Booked"], 80.0);
    assert_eq!(done["data"]["Event"]["code"], "sale");
}

/// The API's answers for early events: a named event no run waits for is kept (and says
/// until when); an interaction event before its start is held (202), and the start says
/// how many held events it applied.
#[tokio::test]
async fn early_events_are_answered_as_kept_or_held() {
    let h = harness();
    let (acme, _) = tenant(&h, "acme").await;
    let (other, _) = tenant(&h, "other").await;
    let ended = json!({ "type": "ended", "interaction": "e1", "outcome": "resolved" });
    for _ in 0..2 {
        let (status, body) = call(
            &h,
            "POST",
            "/v1/interactions/events",
            Some(&acme),
            json_body(ended.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["status"], "held");
        assert_eq!(body["runs"], json!([]));
        assert!(body["held_until_ms"].as_i64().unwrap() > 0, "{body}");
    }
    // Held is not started: the interaction is not there for anyone yet.
    let (status, _) = call(&h, "GET", "/v1/interactions/e1", Some(&acme), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/events",
        Some(&acme),
        json_body(json!({ "type": "started", "interaction": "e1", "channel": "voice" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reconciled"], 1);
    assert_eq!(body["status"], "completed");

    // A named event nothing waits for is kept for a later wait.
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/e1/events/survey-reply",
        Some(&acme),
        json_body(json!({ "score": 5 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["woken"], json!([]));
    assert_eq!(body["kept"], true);
    assert_eq!(body["seq"], 1);
    assert!(body["kept_until_ms"].as_i64().unwrap() > 0, "{body}");
    // Another tenant's interaction id is not found, and keeps nothing.
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/e1/events/survey-reply",
        Some(&other),
        json_body(json!({ "score": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        h.engine
            .store()
            .named_events("other", "e1")
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn another_tenants_interactions_skills_and_agents_answer_404_exactly_as_missing_ones() {
    let h = harness();
    let (owner, _) = tenant(&h, "owner").await;
    let (other, _) = tenant(&h, "other").await;
    let (empty, _) = tenant(&h, "empty").await;
    let (status, _) = call(
        &h,
        "PUT",
        "/v1/skills/sales/post-contact",
        Some(&owner),
        json_body(json!({ "mode": "dispositions", "dispositions": [{ "code": "sale", "label": "Sale" }] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    completed_call(&h, &owner, "c1", "sales", "a1", None).await;

    let cases: Vec<(&str, &str, Option<Json>)> = vec![
        (
            "PATCH",
            "/v1/interactions/c1",
            Some(json!({ "notes": "mine" })),
        ),
        ("GET", "/v1/interactions/c1/audit", None),
        (
            "POST",
            "/v1/interactions/c1/clone",
            Some(json!({ "channel": "voice", "queue": "q" })),
        ),
        (
            "POST",
            "/v1/interactions/c1/disposition",
            Some(json!({ "code": "sale" })),
        ),
        ("GET", "/v1/skills/sales/post-contact", None),
        ("GET", "/v1/agents/a1", None),
    ];
    for (method, path, body) in cases {
        let foreign = call(
            &h,
            method,
            path,
            Some(&other),
            body.clone().and_then(json_body),
        )
        .await;
        let missing = call(
            &h,
            method,
            path,
            Some(&empty),
            body.clone().and_then(json_body),
        )
        .await;
        assert_eq!(
            foreign.0,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            foreign.1
        );
        assert_eq!(foreign, missing, "{method} {path}");
        let own = call(&h, method, path, Some(&owner), body.and_then(json_body)).await;
        assert!(own.0.is_success(), "{method} {path}: {}", own.1);
    }
}

#[tokio::test]
async fn ids_and_names_that_could_be_paths_or_are_huge_are_refused_at_every_entry() {
    let h = harness();
    let (acme, _) = tenant(&h, "acme").await;
    let huge = "i".repeat(900 * 1024);
    let bad_ids = ["", "call\u{0}1", "../../etc", "a/b", "..", huge.as_str()];
    for id in bad_ids {
        let shown: String = id.chars().take(20).collect();
        let (status, body) = call(
            &h,
            "POST",
            "/v1/interactions/events",
            Some(&acme),
            json_body(json!({ "type": "started", "interaction": id, "channel": "voice" })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{shown:?}: {body}");
        assert_eq!(body["error"]["kind"], "invalid-name", "{shown:?}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("interaction id"), "{message}");
        assert!(message.len() < 400, "a huge id is not echoed whole");
    }
    // A skill or an agent id in an event is held to the same rule.
    for event in [
        json!({ "type": "started", "interaction": "c1", "channel": "voice", "skill": "../x" }),
        json!({ "type": "started", "interaction": "c1", "channel": "voice", "skill": " sales" }),
    ] {
        let (status, body) = call(
            &h,
            "POST",
            "/v1/interactions/events",
            Some(&acme),
            json_body(event),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("skill name")
        );
    }
    let (status, _) = call(
        &h,
        "POST",
        "/v1/interactions/events",
        Some(&acme),
        json_body(json!({ "type": "started", "interaction": "c1", "channel": "voice" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/events",
        Some(&acme),
        json_body(
            json!({ "type": "party-joined", "interaction": "c1", "party": "agent", "agent": "a\u{7}" }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("agent id")
    );
    // None of the refused ids was stored.
    for id in ["../../etc", "a%2Fb", "..%2F..%2Fetc"] {
        let (status, _) = call(
            &h,
            "GET",
            &format!("/v1/interactions/{id}"),
            Some(&acme),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
    }

    // An event name in a path (`POST /v1/interactions/{id}/events/{event}`), and the id
    // there, are held to their rules too: before, any name was looked up and answered 200.
    let long_event = "e".repeat(200);
    for (id, event, noun) in [
        ("c1", "..%2f..%2fx", "event name"),
        ("c1", "a%0Ab", "event name"),
        ("c1", "%20disposition", "event name"),
        ("c1", long_event.as_str(), "event name"),
        ("..%2F..%2Fetc", "disposition", "interaction id"),
    ] {
        let (status, body) = call(
            &h,
            "POST",
            &format!("/v1/interactions/{id}/events/{event}"),
            Some(&acme),
            json_body(json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{event}: {body}");
        assert_eq!(body["error"]["kind"], "invalid-name", "{event}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(noun), "{message}");
    }
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/c1/events/Survey%20Reply",
        Some(&acme),
        json_body(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A skill in a path, its slashes encoded: decoded, it is a path, and refused.
    let post_contact = json!({ "mode": "wrap-up", "seconds": 30, "unavailable_code": "acw" });
    for skill in ["..%2f..%2fx", "..", "a%5Cb", "x%00y"] {
        let (status, body) = call(
            &h,
            "PUT",
            &format!("/v1/skills/{skill}/post-contact"),
            Some(&acme),
            json_body(post_contact.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{skill}: {body}");
        assert_eq!(body["error"]["kind"], "invalid-name", "{skill}");
    }
    // What other systems name skills and calls stays welcome.
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/skills/Sales%20EN/post-contact",
        Some(&acme),
        json_body(post_contact),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/events",
        Some(&acme),
        json_body(json!({ "type": "started", "interaction": "CA9f:2026-12-07", "channel": "voice", "skill": "Sales EN" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Issue 14: a post-flow action's invocation data given as an expression is the tenant's
/// code. Four nested `map`s over a 60-element list (13 million evaluations) ran 12.7 s in the
/// host, inside the store's writer, and another tenant's event waited 11.7 s for it. Now the
/// expression runs in the sandbox, before the writer is taken: it is stopped by a limit it
/// names, and other tenants' events are answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_post_flow_expression_is_stopped_by_a_limit_and_blocks_no_other_tenant() {
    let builtins = Arc::new(Builtins::load(&["set-data"]).await);
    let h = harness_with(builtins.clone(), builtins.infos(), Arc::new(WallClock));
    let (acme, _) = tenant(&h, "acme").await;
    let (globex, _) = tenant(&h, "globex").await;
    let after = "name: after\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: set-data@0.1.0\n    config: { set: [{ name: Done, value: true }] }\n";
    super::publish(&h, &acme, "after", after).await;
    let list: Vec<u32> = (0..60).collect();
    event(
        &h,
        &acme,
        json!({ "type": "started", "interaction": "c1", "channel": "voice",
                "data": { "L": list, "Name": "Ada" } }),
    )
    .await;
    let action = |expression: &str| {
        json_body(
            json!({ "target": "caller", "action": "voice-survey-flow", "plan": "after",
                          "invocation_data": { "expression": expression } }),
        )
    };

    // A small expression is evaluated over the interaction's data sources, as before.
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/interactions/c1/post-flow",
        Some(&acme),
        action(r#"{"n": size(L) * 2, "who": Name, "first": data.L[0]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["post_flow"]["invocation_data"],
        json!({ "n": 120, "who": "Ada", "first": 0 })
    );

    // One that does not parse is refused, naming it.
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/interactions/c1/post-flow",
        Some(&acme),
        action("Name +"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expression `Name +`"),
        "{body}"
    );

    // The review's expression, while another tenant sends events.
    let heavy = "L.map(a, L.map(b, L.map(c, L.map(d, a + b + c + d))))";
    let done = std::sync::atomic::AtomicBool::new(false);
    let heavy_call = async {
        let started = std::time::Instant::now();
        let answer = call(
            &h,
            "PUT",
            "/v1/interactions/c1/post-flow",
            Some(&acme),
            action(heavy),
        )
        .await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (answer, started.elapsed())
    };
    let others = async {
        let mut latencies = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let started = std::time::Instant::now();
            event(
                &h,
                &globex,
                json!({ "type": "started", "interaction": format!("g{}", latencies.len()),
                        "channel": "chat" }),
            )
            .await;
            latencies.push(started.elapsed());
        }
        latencies
    };
    let (((status, body), took), latencies) = tokio::join!(heavy_call, others);
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "heavy expression refused after {took:?} ({body}); {} events of another tenant meanwhile, the slowest {slowest:?}",
        latencies.len()
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "invalid-invocation-data");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the expression was stopped") && message.contains("limit exceeded"),
        "{message}"
    );
    // Bounded by the sandbox's limits (fuel, then the deadline), not by the expression.
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(!latencies.is_empty());
    assert!(
        slowest < std::time::Duration::from_secs(2),
        "another tenant's event waited {slowest:?}"
    );
    // The action set before is still the one in place.
    let (_, body) = call(&h, "GET", "/v1/interactions/c1", Some(&acme), None).await;
    assert_eq!(body["post_flow"]["invocation_data"]["n"], 120, "{body}");
}

/// The ids of a page of `GET /v1/interactions`.
fn listed(body: &Json) -> Vec<String> {
    body["interactions"]
        .as_array()
        .unwrap_or_else(|| panic!("no interactions in {body}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn interactions_are_listed_filtered_and_paged_in_either_order() {
    let h = harness();
    let (acme, _) = tenant(&h, "acme").await;
    let (other, _) = tenant(&h, "other").await;
    // l1 and l3 completed (by the sales and billing skills); l2 a chat still active.
    completed_call(&h, &acme, "l1", "sales", "agent-1", None).await;
    event(
        &h,
        &acme,
        json!({ "type": "started", "interaction": "l2", "channel": "chat", "skill": "sales" }),
    )
    .await;
    completed_call(&h, &acme, "l3", "billing", "agent-2", None).await;
    completed_call(&h, &other, "o1", "sales", "agent-9", None).await;
    let (status, _) = call(
        &h,
        "PATCH",
        "/v1/interactions/l1",
        Some(&acme),
        json_body(json!({ "subject": "Renewal" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let list = |query: &str| {
        let (h, acme, query) = (&h, acme.clone(), query.to_owned());
        async move {
            let (status, body) = call(
                h,
                "GET",
                &format!("/v1/interactions?{query}"),
                Some(&acme),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            body
        }
    };
    let all = list("").await;
    assert_eq!(listed(&all), ["l1", "l2", "l3"], "oldest first by default");
    assert_eq!(listed(&list("order=newest").await), ["l3", "l2", "l1"]);
    // What an entry says: its status, channel, skill, times and counts.
    let l1 = &all["interactions"][0];
    assert_eq!(
        (
            &l1["status"],
            &l1["channel"],
            &l1["skill"],
            &l1["edits"],
            &l1["runs"]
        ),
        (
            &json!("completed"),
            &json!("voice"),
            &json!("sales"),
            &json!(1),
            &json!(0)
        )
    );
    assert!(l1["completed_at_ms"].as_i64().unwrap() >= l1["created_at_ms"].as_i64().unwrap());
    assert_eq!(all["interactions"][1]["completed_at_ms"], Json::Null);
    // Filters.
    assert_eq!(listed(&list("status=active").await), ["l2"]);
    assert_eq!(
        listed(&list("status=completed&order=newest").await),
        ["l3", "l1"]
    );
    assert_eq!(listed(&list("channel=chat").await), ["l2"]);
    assert_eq!(listed(&list("skill=sales").await), ["l1", "l2"]);
    assert_eq!(listed(&list("skill=sales&channel=voice").await), ["l1"]);
    assert_eq!(
        listed(&list("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z").await).len(),
        3
    );
    assert!(listed(&list("until=2000-01-01T00:00:00Z").await).is_empty());
    // Pages of one, both ways: each once, none missed.
    for (order, expected) in [
        ("newest", ["l3", "l2", "l1"]),
        ("oldest", ["l1", "l2", "l3"]),
    ] {
        let mut read = Vec::new();
        let mut query = format!("order={order}&limit=1");
        loop {
            let page = list(&query).await;
            read.extend(listed(&page));
            match page["next"].as_str() {
                Some(next) => query = format!("order={order}&limit=1&after={next}"),
                None => break,
            }
        }
        assert_eq!(read, expected, "{order} first");
    }
    // Another tenant sees only its own; an id of ours is no cursor for it.
    let (_, theirs) = call(&h, "GET", "/v1/interactions", Some(&other), None).await;
    assert_eq!(listed(&theirs), ["o1"]);
    let (_, theirs) = call(&h, "GET", "/v1/interactions?after=l1", Some(&other), None).await;
    assert!(listed(&theirs).is_empty(), "{theirs}");
    // Bad values are 400s naming the parameter.
    for (query, names) in [
        ("status=closed", "`status`"),
        ("channel=fax", "`channel`"),
        ("skill=", "`skill`"),
        ("order=random", "`order`"),
        ("limit=0", "`limit`"),
        ("since=soon", "`since`"),
    ] {
        let (status, body) = call(
            &h,
            "GET",
            &format!("/v1/interactions?{query}"),
            Some(&acme),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{query}: {message}");
    }
}

/// An interaction keeps at most `max_events_per_interaction` (100) named events no wait
/// took: the next is refused 429 `events-full`, naming the interaction and the bound, and
/// nothing is stored; another interaction has room of its own.
#[tokio::test]
async fn named_events_past_an_interactions_bound_are_refused_429_not_dropped() {
    let h = harness();
    let (acme, _) = tenant(&h, "acme").await;
    let bound = coda_flow::FlowLimits::default().max_events_per_interaction;
    for id in ["i1", "i2"] {
        event(
            &h,
            &acme,
            json!({ "type": "started", "interaction": id, "channel": "chat" }),
        )
        .await;
    }
    let send = |interaction: &'static str, n: u64| {
        let (h, acme) = (&h, &acme);
        async move {
            call(
                h,
                "POST",
                &format!("/v1/interactions/{interaction}/events/reply"),
                Some(acme),
                json_body(json!({ "n": n })),
            )
            .await
        }
    };
    for n in 0..bound {
        let (status, body) = send("i1", n).await;
        assert_eq!(status, StatusCode::OK, "event {n}: {body}");
        assert_eq!(body["kept"], true, "{body}");
    }
    let (status, body) = send("i1", bound).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["kind"], "events-full");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`i1`") && message.contains(&bound.to_string()),
        "{message}"
    );
    assert_eq!(
        h.engine.store().event_counts("acme").unwrap(),
        (bound, 0),
        "the refused event was not stored"
    );
    let (status, body) = send("i2", 0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
