//! The console's files (`console.rs`): served at `/` and `/assets/…` with the security
//! headers, the precompressed copy the client accepts, and caching by content; every other
//! path stays the API's.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::harness;

async fn get(
    h: &super::Harness,
    path: &str,
    headers: &[(header::HeaderName, &str)],
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method("GET").uri(path);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = h
        .app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn the_page_is_served_with_its_security_headers_and_revalidated() {
    let h = harness();
    let (status, headers, body) = get(&h, "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    let csp = header(&headers, "content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(&headers, "referrer-policy"), "no-referrer");
    assert_eq!(header(&headers, "x-frame-options"), "DENY");
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<div id=\"app\">"), "{page}");
    // No inline script: the page only names its files.
    assert!(
        !page.contains("<script>") && page.contains("src=\"/assets/"),
        "{page}"
    );

    // Asked again with its ETag: nothing to send.
    let etag = header(&headers, "etag").to_owned();
    assert!(etag.starts_with("W/\""), "{etag}");
    let (status, headers, body) = get(&h, "/", &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "content-security-policy"), csp);
}

#[tokio::test]
async fn assets_are_immutable_and_sent_precompressed_when_accepted() {
    let h = harness();
    let (_, _, page) = get(&h, "/", &[]).await;
    let page = String::from_utf8(page).unwrap();
    let script = page
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    assert!(
        script.starts_with("/assets/") && script.ends_with(".js"),
        "{script}"
    );

    let (status, headers, plain) = get(&h, &script, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        header(&headers, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&headers, "content-encoding"), "");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");

    let (_, headers, br) = get(&h, &script, &[(header::ACCEPT_ENCODING, "gzip, br")]).await;
    assert_eq!(header(&headers, "content-encoding"), "br");
    assert_eq!(header(&headers, "vary"), "accept-encoding");
    assert!(
        br.len() < plain.len() / 2,
        "{} of {}",
        br.len(),
        plain.len()
    );

    let (_, headers, gz) = get(&h, &script, &[(header::ACCEPT_ENCODING, "gzip, br;q=0")]).await;
    assert_eq!(header(&headers, "content-encoding"), "gzip");
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
}

#[tokio::test]
async fn other_paths_stay_the_apis() {
    let h = harness();
    for path in [
        "/assets/nothing.js",
        "/assets/../Cargo.toml",
        "/index.html",
        "/plans",
    ] {
        let (status, _, body) = get(&h, path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["kind"], "no-route", "{path}");
    }
}
