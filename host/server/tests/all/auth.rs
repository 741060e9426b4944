//! Credentials: exactly one `Authorization` header, and a source that keeps sending tokens
//! that are not valid is slowed down (its peer address as `serve` gives it) while sources
//! whose tokens are good are never slowed.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use coda_server::AUTH_FAILURE_BURST;
use http_body_util::BodyExt;
use serde_json::Value as Json;
use tower::ServiceExt;

use super::{OPERATOR, harness, tenant};

/// `GET /v1/runs` from `peer` with these Authorization headers: (status, Retry-After, body).
async fn from(h: &super::Harness, peer: &str, tokens: &[&str]) -> (StatusCode, Option<u64>, Json) {
    let mut request = Request::builder().uri("/v1/runs");
    for token in tokens {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let mut request = request.body(Body::empty()).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = h.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        retry,
        serde_json::from_slice(&bytes).unwrap_or(Json::Null),
    )
}

#[tokio::test]
async fn two_authorization_headers_are_refused_whichever_comes_first() {
    let h = harness();
    let acme = tenant(&h, "acme").await;
    for tokens in [
        [acme.as_str(), "junk"],
        ["junk", acme.as_str()],
        [acme.as_str(), acme.as_str()],
    ] {
        let (status, _, body) = from(&h, "10.0.0.1:1", &tokens).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{tokens:?}: {body}");
        assert_eq!(body["error"]["kind"], "invalid-authorization");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("more than one"),
            "{body}"
        );
    }
    // The operator API too.
    let request = Request::builder()
        .method("POST")
        .uri("/v1/operator/tenants/acme/tokens")
        .header(header::AUTHORIZATION, format!("Bearer {OPERATOR}"))
        .header(header::AUTHORIZATION, "Bearer other")
        .body(Body::empty())
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // One header with the token works.
    let (status, _, _) = from(&h, "10.0.0.1:1", &[&acme]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn failed_tokens_slow_their_source_down_and_only_it() {
    let h = harness();
    let acme = tenant(&h, "acme").await;
    let guesser = "203.0.113.7:4000";
    for i in 0..AUTH_FAILURE_BURST {
        let (status, _, body) = from(&h, guesser, &[&format!("guess-{i}")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
    }
    // Out of attempts: refused before its token is looked at, a good one included (so a
    // guesser learns nothing from the answer), with when to come back.
    for token in ["guess-more", acme.as_str()] {
        let (status, retry, body) = from(&h, guesser, &[token]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["kind"], "too-many-failed-attempts");
        assert!(retry.is_some_and(|s| s >= 1), "{retry:?}");
    }
    // The same host on another port is the same source; an IPv6 host is counted by its /64.
    let (status, _, _) = from(&h, "203.0.113.7:4001", &["guess"]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // Another address is not slowed, and good tokens never spend its budget: after many
    // successes, it still has every failed attempt.
    let client = "[2001:db8::1]:5000";
    for _ in 0..(AUTH_FAILURE_BURST * 3) {
        let (status, _, body) = from(&h, client, &[&acme]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for i in 0..AUTH_FAILURE_BURST {
        let (status, _, _) = from(&h, "[2001:db8::2]:5001", &[&format!("typo-{i}")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // ...and its /64 neighbour shares the budget it just spent.
    let (status, _, _) = from(&h, client, &["typo"]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _, _) = from(&h, "[2001:db9::1]:5000", &["typo"]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
