//! `GET /openapi.json`: the document lists exactly the routes the router serves, and it
//! drives two tables over every operation: another tenant's ids answer 404, and malformed
//! input answers a 4xx in the one error shape.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use coda_applet_artifacts as artifacts;
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

use super::{Harness, OPERATOR, call, call_ends, json_body, publish, tenant};

/// One request, its body kept as bytes (`/metrics` and the tail are not JSON).
async fn raw(
    h: &Harness,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> (StatusCode, Vec<u8>) {
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
    // The tail streams until its run ends: only its head matters here.
    if response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    {
        return (status, Vec::new());
    }
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

struct Operation {
    method: String,
    path: String,
    security: Option<String>,
    json_body: bool,
}

async fn document(h: &Harness) -> Json {
    let (status, bytes) = raw(h, "GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&bytes).expect("/openapi.json is JSON")
}

fn operations(doc: &Json) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let security = op["security"]
                .as_array()
                .and_then(|s| s.first())
                .and_then(|s| s.as_object())
                .and_then(|s| s.keys().next().cloned());
            let json_body = op["requestBody"]["content"]
                .as_object()
                .is_some_and(|c| c.contains_key("application/json"));
            ops.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                security,
                json_body,
            });
        }
    }
    ops
}

/// `path` with each `{param}` replaced by `value(param)`.
fn fill(path: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str(&rest[..start]);
        out.push_str(&value(&rest[start + 1..end]));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_served() {
    let h = super::harness();
    let doc = document(&h).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "coda");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    for scheme in ["operator", "tenant"] {
        let s = &doc["components"]["securitySchemes"][scheme];
        assert_eq!(
            (s["type"].as_str(), s["scheme"].as_str()),
            (Some("http"), Some("bearer"))
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());

    // Document ⊆ router: every documented operation reaches a handler.
    let ops = operations(&doc);
    for op in &ops {
        let path = fill(&op.path, |p| {
            if p == "version" {
                "1".into()
            } else {
                "x".into()
            }
        });
        let (status, bytes) = raw(&h, &op.method, &path, None, None).await;
        if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
            let body: Json = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
            let kind = &body["error"]["kind"];
            assert!(
                kind != "no-route" && kind != "method-not-allowed",
                "{} {} is documented but not served: {body}",
                op.method,
                op.path
            );
        }
    }

    // Router ⊆ document, for routes known to exist (a route can only be registered with
    // its entry; this guards that the registration stays that way).
    let documented: BTreeSet<(String, String)> = ops
        .iter()
        .map(|o| (o.method.clone(), o.path.clone()))
        .collect();
    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("POST", "/v1/operator/tenants"),
        ("POST", "/v1/operator/tenants/{tenant}/tokens"),
        ("DELETE", "/v1/operator/tenants/{tenant}/tokens/{token_id}"),
        ("PUT", "/v1/operator/tenants/{tenant}/ceiling"),
        ("POST", "/v1/applets"),
        ("DELETE", "/v1/applets/{name}/versions/{version}"),
        ("PUT", "/v1/plans/{name}"),
        ("POST", "/v1/plans/validate"),
        ("GET", "/v1/plans/{name}/diff"),
        ("GET", "/v1/runs"),
        ("GET", "/v1/runs/{id}/tail"),
        ("POST", "/v1/interactions/events"),
        ("PATCH", "/v1/interactions/{id}"),
        ("PUT", "/v1/skills/{skill}/post-contact"),
        ("PUT", "/v1/grants/{applet}"),
        ("PUT", "/v1/secrets/{name}"),
        ("GET", "/v1/usage"),
        ("PUT", "/v1/intake/connections/{name}"),
        ("POST", "/v1/intake/{adapter}/{connection}"),
    ] {
        assert!(
            documented.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is served but not documented"
        );
    }
    // Every operation says who may call it and how it refuses: a platform's delivery is
    // authenticated by the platform's own signature or key, not by a coda token.
    for op in &ops {
        let public = ["/healthz", "/readyz", "/metrics"].contains(&op.path.as_str());
        assert_eq!(op.security.is_none(), public, "{} {}", op.method, op.path);
        let platform = op.path == "/v1/intake/{adapter}/{connection}";
        assert_eq!(
            op.security.as_deref() == Some("platform"),
            platform,
            "{} {}",
            op.method,
            op.path
        );
    }
    let (status, _) = raw(&h, "GET", "/v1/no-such-thing", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Tenant A's ids of every kind, for the table below.
struct Ids {
    run: String,
    interaction: String,
    applet: String,
    applet_version: String,
    webhook: String,
    delivery: String,
}

async fn tenant_a(h: &Harness, acme: &str) -> Ids {
    publish(h, acme, "post-call", super::POST_CALL).await;
    publish(h, acme, "live", super::LIVE).await;
    let runs = call_ends(h, acme, "acme-call-1").await;
    let (status, uploaded) = call(
        h,
        "POST",
        "/v1/applets",
        Some(acme),
        Some(("application/wasm", artifacts::read(artifacts::HELLO))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let (status, body) = call(
        h,
        "PUT",
        "/v1/skills/acme-skill/post-contact",
        Some(acme),
        json_body(json!({ "mode": "wrap-up", "seconds": 30, "unavailable_code": "acw" })),
    )
    .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = call(
        h,
        "PUT",
        "/v1/operator/tenants/acme/ceiling",
        Some(OPERATOR),
        json_body(json!({ "ceiling": { "max_secrets": 5 } })),
    )
    .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = call(
        h,
        "PUT",
        "/v1/secrets/acme_secret",
        Some(acme),
        json_body(json!({ "value": "s3cret" })),
    )
    .await;
    assert!(status.is_success(), "{body}");
    // A webhook, and a delivery of the run's end made by projecting its journal (the
    // delivery loop is `coda serve`'s, not this harness').
    let (status, hook) = call(
        h,
        "POST",
        "/v1/webhooks",
        Some(acme),
        json_body(json!({ "url": "https://hooks.example.com/coda", "events": ["run.done", "step.finished"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let webhook = hook["webhook"]["id"].as_str().unwrap().to_owned();
    h.engine.run_until_idle().await.unwrap();
    coda_webhooks::project::project_run(h.engine.store(), &runs[0], 1)
        .await
        .unwrap();
    let (status, log) = call(
        h,
        "GET",
        &format!("/v1/webhooks/{webhook}/deliveries"),
        Some(acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let delivery = log["deliveries"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no delivery: {log}"))
        .to_owned();
    let (status, body) = call(
        h,
        "PUT",
        "/v1/intake/connections/acme-intake",
        Some(acme),
        json_body(json!({ "adapter": "twilio", "secret": "acme_secret", "plan": "live" })),
    )
    .await;
    assert!(status.is_success(), "{body}");
    Ids {
        webhook,
        delivery,
        run: runs[0].clone(),
        interaction: "acme-call-1".into(),
        applet: "hello".into(),
        applet_version: uploaded["version"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn every_tenant_operation_answers_404_for_another_tenants_ids() {
    let h = super::applets::harness();
    let acme = tenant(&h, "acme").await;
    let globex = tenant(&h, "globex").await;
    let a = tenant_a(&h, &acme).await;
    let doc = document(&h).await;

    let mut failures = Vec::new();
    for op in operations(&doc) {
        if op.security.as_deref() != Some("tenant") {
            continue;
        }
        let (method, template) = (op.method.as_str(), op.path.as_str());
        // Operations that name what they create, under the caller's own tenant: B's PUT
        // makes B's own plan/skill setting/grant/secret, never touches A's.
        if method == "PUT" || method == "POST" && template == "/v1/applets" {
            continue;
        }
        // No id of anybody's: events name their interaction in the body (a new one is the
        // caller's), validation stores nothing, `/v1/plans/validate` is a fixed segment.
        if ["/v1/interactions/events", "/v1/plans/validate"].contains(&template) {
            continue;
        }
        let path = fill(template, |param| {
            match (param, template.split('/').nth(2).unwrap_or("")) {
                ("id", "runs") => a.run.clone(),
                ("id", "webhooks") => a.webhook.clone(),
                ("delivery", _) => a.delivery.clone(),
                ("id", _) => a.interaction.clone(),
                ("name", "applets") => a.applet.clone(),
                ("version", "applets") => a.applet_version.clone(),
                ("name", "plans") => "post-call".into(),
                ("version", "plans") => "1".into(),
                ("name", "secrets") => "acme_secret".into(),
                ("name", "intake") => "acme-intake".into(),
                ("applet", _) => a.applet.clone(),
                ("skill", _) => "acme-skill".into(),
                ("agent", _) => "agent-7".into(),
                ("event", _) => "disposition".into(),
                (other, _) => panic!("{method} {template}: no id of A's for {{{other}}}"),
            }
        });
        let path = if template.ends_with("/diff") {
            format!("{path}?from=1&to=1")
        } else {
            path
        };
        // A well-formed body, so that only the id can be what is refused.
        let body = match template {
            "/v1/interactions/{id}/clone" => json!({ "channel": "voice", "queue": "q" }),
            "/v1/interactions/{id}/disposition" => json!({ "code": "sale" }),
            "/v1/webhooks/{id}/redeliver" => json!({ "since": "1h" }),
            _ => json!({}),
        };
        let body = op
            .json_body
            .then(|| ("application/json", body.to_string().into_bytes()));
        let (status, bytes) = raw(&h, method, &path, Some(&globex), body).await;
        let text = String::from_utf8_lossy(&bytes);
        if template.contains('{') {
            if status != StatusCode::NOT_FOUND {
                failures.push(format!("{method} {template} ({path}): {status} {text}"));
            }
        } else {
            // A collection: B's answer holds none of A's ids.
            for id in [
                &a.run,
                &a.interaction,
                "post-call",
                "hello",
                "acme_secret",
                "acme-intake",
                "acme",
                &a.webhook,
                &a.delivery,
            ] {
                if text.contains(id) {
                    failures.push(format!("{method} {template}: B sees A's `{id}`: {text}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn malformed_input_answers_4xx_in_the_error_shape() {
    let h = super::applets::harness();
    let acme = tenant(&h, "acme").await;
    let a = tenant_a(&h, &acme).await;
    let doc = document(&h).await;

    let oversized = format!("{{\"value\": \"{}\"}}", "x".repeat(1024 * 1024 + 16)).into_bytes();
    let mut failures = Vec::new();
    let mut checked = 0;
    for op in operations(&doc) {
        if !op.json_body {
            continue;
        }
        let (method, template) = (op.method.as_str(), op.path.as_str());
        let token = match op.security.as_deref() {
            Some("operator") => OPERATOR,
            _ => acme.as_str(),
        };
        let path = fill(template, |param| match param {
            "id" => a.interaction.clone(),
            "tenant" => "acme".into(),
            "applet" => a.applet.clone(),
            "skill" => "acme-skill".into(),
            "event" => "disposition".into(),
            _ => "acme_secret".into(),
        });
        let mut cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
            ("malformed JSON", Some(token), b"{\"a\": ".to_vec()),
            ("an oversized body", Some(token), oversized.clone()),
            ("a bad token", Some("coda_not_a_token"), b"{}".to_vec()),
        ];
        // A named event's body is any JSON at all (the runs' data source `Event`).
        if template != "/v1/interactions/{id}/events/{event}" {
            cases.push((
                "an unknown field",
                Some(token),
                br#"{"zz_unknown": 1}"#.to_vec(),
            ));
            cases.push(("a wrong type", Some(token), b"[1, 2]".to_vec()));
        }
        for (case, token, body) in cases {
            checked += 1;
            let (status, bytes) =
                raw(&h, method, &path, token, Some(("application/json", body))).await;
            let body: Json = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
            let message = body["error"]["message"].as_str().unwrap_or("");
            if !status.is_client_error()
                || message.is_empty()
                || body["error"]["kind"].as_str().is_none()
            {
                failures.push(format!("{method} {template}, {case}: {status} {body}"));
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} cases: are the JSON bodies documented?"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every body is described by its schema: a JSON request or answer names a component (or,
/// for a named event's payload, says it is any object), never a bare `object`.
#[tokio::test]
async fn every_json_body_has_its_schema() {
    let h = super::harness();
    let doc = document(&h).await;
    let schemas = &doc["components"]["schemas"];
    let mut untyped = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut bodies = vec![("request", &op["requestBody"]["content"])];
            for (status, answer) in op["responses"].as_object().unwrap() {
                if status.starts_with('2') {
                    bodies.push(("answer", &answer["content"]));
                }
            }
            for (which, content) in bodies {
                let Some(schema) = content.get("application/json").map(|c| &c["schema"]) else {
                    continue;
                };
                let named = schema["$ref"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    .is_some_and(|name| schemas[name].is_object());
                let any_payload = path.ends_with("/events/{event}") && which == "request";
                if !named && !any_payload {
                    untyped.push(format!("{method} {path} {which}: {schema}"));
                }
            }
        }
    }
    assert!(untyped.is_empty(), "{}", untyped.join("\n"));
}

/// JSON Schema counts `30.0` as an integer: a body that writes one so is read as the
/// integer, where serde alone would refuse it.
#[tokio::test]
async fn an_integer_written_as_a_float_is_read_as_the_integer() {
    let h = super::harness();
    let acme = tenant(&h, "acme").await;
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/skills/sales/post-contact",
        Some(&acme),
        json_body(json!({ "mode": "wrap-up", "seconds": 30.0, "unavailable_code": "acw" })),
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(body["seconds"], 30, "{body}");
    // A fraction is still no integer.
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/skills/sales/post-contact",
        Some(&acme),
        json_body(json!({ "mode": "wrap-up", "seconds": 30.5, "unavailable_code": "acw" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("seconds"),
        "{body}"
    );
}
