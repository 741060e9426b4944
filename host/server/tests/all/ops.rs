//! Operating the service: backpressure (a tenant over its queue bound gets 429 with
//! Retry-After, nothing half-applied, other tenants unaffected), `/metrics`, and the
//! usage API.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use coda_flow::{Engine, FlowLimits, WallClock};
use coda_server::{AppState, hash_token, router};
use coda_store::Store;
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

use super::{
    Harness, LIVE, OPERATOR, POST_CALL, Script, call, call_ends, json_body, publish, step_info,
    tenant, wait_info,
};

/// A harness whose tenants may have at most `queue` due runs waiting.
fn harness_with_queue(queue: u64) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let engine = Arc::new(Engine::new(
        store,
        Arc::new(Script),
        Arc::new(WallClock),
        FlowLimits {
            tenant_queue: queue,
            ..FlowLimits::default()
        },
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

/// A request whose answer's headers matter: (status, headers, body text).
async fn raw(
    h: &Harness,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Json>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some(json) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn run_count(h: &Harness, token: &str) -> usize {
    let (status, body) = call(h, "GET", "/v1/runs", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["runs"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_tenant_over_its_queue_bound_gets_429_and_others_do_not() {
    const QUEUE: u64 = 5;
    // No scheduler runs here: every run started stays due, so the queue only grows.
    let h = harness_with_queue(QUEUE);
    let a = tenant(&h, "flooder").await;
    let b = tenant(&h, "quiet").await;
    for token in [&a, &b] {
        publish(&h, token, "post-call", POST_CALL).await;
        publish(&h, token, "live", LIVE).await;
    }
    for i in 0..QUEUE {
        assert_eq!(call_ends(&h, &a, &format!("a{i}")).await.len(), 1);
    }

    // One more: the interaction starts (that starts no run), its end is refused.
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/events",
        Some(&a),
        json_body(
            json!({ "type": "started", "interaction": "over", "channel": "voice",
            "plan": "live" }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ended = json!({ "type": "ended", "interaction": "over", "outcome": "resolved" });
    let (status, headers, text) = raw(
        &h,
        "POST",
        "/v1/interactions/events",
        Some(&a),
        Some(ended.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    let retry_after: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["kind"], "queue-full");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("queue limit of 5"), "{message}");

    // Nothing of the refused event was applied: the interaction is live, no run started.
    let (status, interaction) = call(&h, "GET", "/v1/interactions/over", Some(&a), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(interaction["status"], "active", "{interaction}");
    assert_eq!(run_count(&h, &a).await, QUEUE as usize);

    // Another tenant is not held back by the first one's queue.
    assert_eq!(call_ends(&h, &b, "b0").await.len(), 1);

    // Once the queue drains, the same event goes through and starts its run.
    h.engine.run_until_idle().await.unwrap();
    let (status, body) = call(
        &h,
        "POST",
        "/v1/interactions/events",
        Some(&a),
        json_body(ended),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["runs"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(run_count(&h, &a).await, QUEUE as usize + 1);
}

#[tokio::test]
async fn metrics_are_served_without_a_token_in_prometheus_text() {
    let h = harness_with_queue(1000);
    let a = tenant(&h, "acme").await;
    publish(&h, &a, "post-call", POST_CALL).await;
    publish(&h, &a, "live", LIVE).await;
    call_ends(&h, &a, "i1").await;
    call_ends(&h, &a, "i2").await;
    // Queued, before the scheduler runs: a queue depth of 2.
    let (status, headers, text) = raw(&h, "GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{headers:?}"
    );
    for line in [
        "coda_queue_depth{tenant=\"acme\"} 2",
        "coda_runs{tenant=\"acme\",state=\"ready\"} 2",
        "# TYPE coda_step_duration_seconds histogram",
        "coda_http_requests_total{class=\"2xx\"}",
        "coda_http_requests_total{class=\"4xx\"} 0",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    h.engine.run_until_idle().await.unwrap();
    let (_, _, text) = raw(&h, "GET", "/metrics", None, None).await;
    // Each post-call run takes two steps; the script reports 1 fuel unit a step.
    for line in [
        "coda_runs{tenant=\"acme\",state=\"done\"} 2",
        "coda_steps_total 4",
        "coda_invocations_total 4",
        "coda_fuel_used_total 4",
        "coda_step_duration_seconds_count 4",
        "coda_step_duration_seconds_bucket{le=\"0.0001\"} 4",
        // Each run's second step follows its first under the same claim, without a pick.
        "coda_steps_continued_total 2",
        "# TYPE coda_scheduler_picks counter",
        "# TYPE coda_store_commits counter",
        // The store is SQLite here: no round trips to a server.
        "coda_store_write_round_trips_total 0",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    assert!(!text.contains("coda_queue_depth{"), "{text}");
}

#[tokio::test]
async fn usage_counts_a_tenants_invocations_and_fuel_in_a_window() {
    let h = harness_with_queue(1000);
    let a = tenant(&h, "acme").await;
    let b = tenant(&h, "other").await;
    for token in [&a, &b] {
        publish(&h, token, "post-call", POST_CALL).await;
        publish(&h, token, "live", LIVE).await;
    }
    call_ends(&h, &a, "i1").await;
    call_ends(&h, &a, "i2").await;
    call_ends(&h, &b, "j1").await;
    h.engine.run_until_idle().await.unwrap();

    let (status, body) = call(&h, "GET", "/v1/usage", Some(&a), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["invocations"], 4, "{body}");
    assert_eq!(body["fuel_used"], 4, "{body}");
    assert_eq!(body["emails_sent"], 0);
    assert_eq!(body["http_calls"], 0);
    assert_eq!(body["sql_calls"], 0);
    let (_, body) = call(&h, "GET", "/v1/usage", Some(&b), None).await;
    assert_eq!(body["invocations"], 2, "{body}");

    // A window before any of it: nothing.
    let (status, body) = call(
        &h,
        "GET",
        "/v1/usage?since=2020-01-01&until=2020-02-01T00:00:00Z",
        Some(&a),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["invocations"], 0, "{body}");
    assert_eq!(body["since"], "2020-01-01T00:00:00.000Z");

    for (query, names) in [
        ("since=yesterday", "`since`"),
        ("until=2026-02-30", "`until`"),
        ("since=2026-02-01&until=2026-01-01", "since"),
        ("from=0", "from"),
    ] {
        let (status, body) = call(&h, "GET", &format!("/v1/usage?{query}"), Some(&a), None).await;
        // Two times in the wrong order are well-formed: refused 422, not 400.
        let expected = if query.contains("&until") {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, expected, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{query}: {message}");
    }
    let (status, _) = call(&h, "GET", "/v1/usage", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// `since` and `until` mean the same on `/v1/runs` and `/v1/usage`: one parser, the same
/// forms accepted, the same 400 (naming the parameter and the forms) for the same mistake.
#[tokio::test]
async fn since_and_until_mean_the_same_on_runs_and_usage() {
    let h = harness_with_queue(1000);
    let a = tenant(&h, "acme").await;
    publish(&h, &a, "post-call", POST_CALL).await;
    publish(&h, &a, "live", LIVE).await;
    call_ends(&h, &a, "i1").await;
    h.engine.run_until_idle().await.unwrap();

    // The run and its two steps happened in the last hour: every form of "since before it"
    // finds them, every form of "until before it" finds none.
    for (query, found) in [
        ("since=1h", true),
        ("since=7d", true),
        ("since=2020-01-01", true),
        ("since=2020-01-01T00:00:00Z", true),
        ("since=2020-01-01T01:00:00%2B01:00", true),
        ("since=0", true),
        ("until=1h", false),
        ("since=2020-01-01&until=2020-02-01T00:00:00Z", false),
        ("since=0&until=1577836800000", false),
    ] {
        let (status, runs) = call(&h, "GET", &format!("/v1/runs?{query}"), Some(&a), None).await;
        assert_eq!(status, StatusCode::OK, "runs {query}: {runs}");
        let (status, usage) = call(&h, "GET", &format!("/v1/usage?{query}"), Some(&a), None).await;
        assert_eq!(status, StatusCode::OK, "usage {query}: {usage}");
        assert_eq!(
            runs["runs"].as_array().unwrap().len(),
            usize::from(found),
            "{query}: {runs}"
        );
        assert_eq!(
            usage["invocations"],
            if found { 2 } else { 0 },
            "{query}: {usage}"
        );
    }

    for (query, names) in [
        ("since=yesterday", "`since` is not a time"),
        ("until=2026-02-30", "`until` is not a time"),
        ("since=2026-11-22T08:17:08", "`since` is not a time"),
        ("since=-1h", "`since` is not a time"),
        ("since=1h%20ago", "`since` is not a time"),
        ("since=2026-02-01&until=2026-01-01", "`until`"),
        ("since=1h&until=2h", "must be later than `since`"),
    ] {
        let mut messages = Vec::new();
        for route in ["/v1/runs", "/v1/usage"] {
            let (status, body) = call(&h, "GET", &format!("{route}?{query}"), Some(&a), None).await;
            // Times that are not times: 400; well-formed times in the wrong order: 422.
            let expected = if names.contains("not a time") {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            assert_eq!(status, expected, "{route}?{query}: {body}");
            assert_eq!(body["error"]["kind"], "invalid-query", "{body}");
            let message = body["error"]["message"].as_str().unwrap().to_owned();
            assert!(message.contains(names), "{route}?{query}: {message}");
            messages.push(message);
        }
        // A window of durations names its times, which are each request's own "now".
        if !query.contains("1h&") {
            assert_eq!(messages[0], messages[1], "{query}");
        }
    }
    // The message names the forms a time takes.
    let (_, body) = call(&h, "GET", "/v1/runs?since=soon", Some(&a), None).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("RFC 3339") && message.contains("7d"),
        "{message}"
    );
}
