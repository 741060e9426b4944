//! The fault suite's single-node API cases: the same interaction-ended event posted twice at
//! once starts one run; a database held busy by another connection answers 503 with
//! `Retry-After` (the one error shape, naming the database), and the same request succeeds
//! once the lock is released.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

use super::{Harness, LIVE, POST_CALL, call, harness, publish, tenant};

/// One JSON request: (status, `Retry-After` if any, body).
async fn send(h: &Harness, token: &str, body: Json) -> (StatusCode, Option<String>, Json) {
    let request = Request::builder()
        .method("POST")
        .uri("/v1/interactions/events")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry_after, serde_json::from_slice(&bytes).unwrap())
}

async fn started(h: &Harness, token: &str, id: &str) {
    let (status, _, body) = send(
        h,
        token,
        json!({ "type": "started", "interaction": id, "channel": "voice", "plan": "live" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn ended(id: &str) -> Json {
    json!({ "type": "ended", "interaction": id, "outcome": "resolved" })
}

/// How many runs the store holds, counted by the test's own connection.
fn runs_in(h: &Harness) -> i64 {
    let conn = rusqlite::Connection::open(h._dir.path().join("coda.db")).unwrap();
    conn.query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_end_posted_twice_at_once_starts_one_run() {
    let h = std::sync::Arc::new(harness());
    let acme = tenant(&h, "acme").await;
    publish(&h, &acme, "post-call", POST_CALL).await;
    publish(&h, &acme, "live", LIVE).await;
    for n in 0..10 {
        let id = format!("call-{n}");
        started(&h, &acme, &id).await;
        let (a, b) = tokio::join!(
            tokio::spawn({
                let (h, acme, id) = (h.clone(), acme.clone(), id.clone());
                async move { send(&h, &acme, ended(&id)).await }
            }),
            tokio::spawn({
                let (h, acme, id) = (h.clone(), acme.clone(), id.clone());
                async move { send(&h, &acme, ended(&id)).await }
            }),
        );
        let ((sa, _, a), (sb, _, b)) = (a.unwrap(), b.unwrap());
        assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK), "{a} {b}");
        assert_eq!(a["runs"].as_array().unwrap().len(), 1, "{a}");
        assert_eq!(a["runs"], b["runs"], "both answers name the one run");
    }
    assert_eq!(runs_in(&h), 10);
}

#[tokio::test]
async fn a_busy_database_answers_503_with_retry_after_then_the_request_succeeds() {
    let h = harness();
    let acme = tenant(&h, "acme").await;
    publish(&h, &acme, "post-call", POST_CALL).await;
    publish(&h, &acme, "live", LIVE).await;
    started(&h, &acme, "call-1").await;

    // Another connection holds the write lock for longer than the store's busy timeout.
    let holder = rusqlite::Connection::open(h._dir.path().join("coda.db")).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, retry_after, body) = send(&h, &acme, ended("call-1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry_after.as_deref(), Some("2"));
    assert_eq!(body["error"]["kind"], "database-unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database is unavailable"),
        "{body}"
    );
    // Reads do not need the write lock (WAL): the API still answers them.
    let (status, body) = call(&h, "GET", "/v1/runs", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["runs"], json!([]));
    holder.execute_batch("COMMIT").unwrap();

    // The same request again, as Retry-After asks: one run, nothing half-written before.
    let (status, _, body) = send(&h, &acme, ended("call-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["runs"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(runs_in(&h), 1);
    let check: String = holder
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
