//! Outbound HTTP against an axum server on 127.0.0.1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get as route_get};
use coda_types::HostError;
use coda_types::capabilities::CapabilitiesExt as _;
use coda_types::capabilities::{Capabilities, HttpRequest, HttpResponse};
use tokio::sync::oneshot;

use crate::support::*;

/// An HTTP server on an ephemeral loopback port, stopped when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

#[derive(serde::Deserialize)]
struct To {
    to: String,
}

async fn start() -> Server {
    let app = Router::new()
        .route(
            "/ok",
            any(|headers: HeaderMap, body: String| async move {
                let key = headers
                    .get("idempotency-key")
                    .map(|v| v.to_str().unwrap_or("?").to_string())
                    .unwrap_or_default();
                let keys = headers
                    .get_all("idempotency-key")
                    .iter()
                    .count()
                    .to_string();
                (
                    [("x-seen-key", key), ("x-key-count", keys)],
                    format!("hello {body}"),
                )
            }),
        )
        .route(
            "/fail",
            route_get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/big", route_get(|| async { vec![b'x'; 2 * 1024 * 1024] }))
        .route(
            "/stream",
            // Chunked, no Content-Length: the cap must hold while the body streams.
            route_get(|| async {
                let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 64 * 1024]));
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/slow",
            route_get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/redirect",
            any(|Query(q): Query<To>| async move {
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::LOCATION, q.to)
                    .body(Body::empty())
                    .unwrap()
                    .into_response()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

fn settings(port: u16) -> String {
    format!(
        r#"
http:
  max_timeout_ms: 2000
  resolve:
    sms.example.test: 127.0.0.1
    other.example.test: 127.0.0.1
    evil.test: 127.0.0.1
tenants:
  acme:
    ceiling:
      http_hosts: ["*.example.test:*", "127.0.0.1:*", "localhost:*", "evil.test:*", "*.invalid:*"]
      allow_private: ["127.0.0.0/8"]
    grants:
      sms:
        http: ["*.example.test:{port}", "127.0.0.1:{port}", "localhost:{port}", "*.invalid:*"]
  strict:
    ceiling:
      http_hosts: ["localhost:*", "127.0.0.1:*", "[::ffff:127.0.0.1]:*"]
    grants:
      sms:
        http: ["localhost:*", "127.0.0.1:*", "[::ffff:127.0.0.1]:*"]
  narrow:
    ceiling:
      http_hosts: ["127.0.0.1:*", "127.0.0.2:*"]
      allow_private: ["127.0.0.1/32"]
    grants:
      sms:
        http: ["127.0.0.1:*", "127.0.0.2:*"]
"#
    )
}

fn get(url: String) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        url,
        headers: vec![],
        body: vec![],
        timeout: None,
    }
}

async fn send(caps: &dyn Capabilities, request: HttpRequest) -> Result<HttpResponse, HostError> {
    caps.http_send(&cx(), request).await
}

fn header<'a>(response: &'a HttpResponse, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn granted_request_gets_the_response_with_an_idempotency_key() {
    let server = start().await;
    let host = host(&settings(server.addr.port()));
    let sms = applet(&host, "acme", "sms");
    let mut request = get(format!("http://127.0.0.1:{}/ok", server.addr.port()));
    request.method = "POST".into();
    request.body = b"world".to_vec();
    let response = send(&*sms, request.clone()).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello world");
    assert_eq!(header(&response, "x-seen-key"), Some(KEY));

    // An applet's own key is kept, not doubled.
    request.headers = vec![("Idempotency-Key".into(), "mine".into())];
    let response = send(&*sms, request).await.unwrap();
    assert_eq!(header(&response, "x-seen-key"), Some("mine"));
    assert_eq!(header(&response, "x-key-count"), Some("1"));
}

#[tokio::test]
async fn ungranted_hosts_applets_and_tenants_are_refused() {
    let server = start().await;
    let port = server.addr.port();
    let host = host(&settings(port));
    let sms = applet(&host, "acme", "sms");
    let m = expect_err(
        send(&*sms, get("https://api.example.org/".into())).await,
        not_granted,
        "not-granted",
    );
    assert!(m.contains("api.example.org:443"), "{m}");
    // Granted host, other port.
    let m = expect_err(
        send(&*sms, get(format!("http://127.0.0.1:{}/ok", port + 1))).await,
        not_granted,
        "not-granted",
    );
    assert!(m.contains(&format!("127.0.0.1:{}", port + 1)), "{m}");
    let stranger = applet(&host, "acme", "stranger");
    let m = expect_err(
        send(&*stranger, get(format!("http://127.0.0.1:{port}/ok"))).await,
        not_granted,
        "not-granted",
    );
    assert!(m.contains("stranger@1.0.0"), "{m}");
    let other_tenant = applet(&host, "initech", "sms");
    expect_err(
        send(&*other_tenant, get(format!("http://127.0.0.1:{port}/ok"))).await,
        not_granted,
        "not-granted",
    );
}

#[tokio::test]
async fn wildcard_grant_reaches_a_host_through_the_resolve_override() {
    let server = start().await;
    let port = server.addr.port();
    let host = host(&settings(port));
    let sms = applet(&host, "acme", "sms");
    let response = send(&*sms, get(format!("http://sms.example.test:{port}/ok")))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    // `*.example.test` does not grant `example.test` itself.
    expect_err(
        send(&*sms, get(format!("http://example.test:{port}/ok"))).await,
        not_granted,
        "not-granted",
    );
}

#[tokio::test]
async fn localhost_needs_the_loopback_range_allowed() {
    let server = start().await;
    let port = server.addr.port();
    let host = host(&settings(port));
    let strict = applet(&host, "strict", "sms");
    let m = expect_err(
        send(&*strict, get(format!("http://localhost:{port}/ok"))).await,
        not_granted,
        "not-granted",
    );
    assert!(m.contains("localhost") && m.contains("loopback"), "{m}");
    // The IP literal never reaches the resolver: it is checked directly.
    let m = expect_err(
        send(&*strict, get(format!("http://127.0.0.1:{port}/ok"))).await,
        not_granted,
        "not-granted",
    );
    assert!(m.contains("127.0.0.1") && m.contains("loopback"), "{m}");
    let m = expect_err(
        send(
            &*strict,
            get(format!("http://[::ffff:127.0.0.1]:{port}/ok")),
        )
        .await,
        not_granted,
        "not-granted",
    );
    assert!(m.contains("loopback"), "{m}");

    let acme = applet(&host, "acme", "sms");
    let response = send(&*acme, get(format!("http://localhost:{port}/ok")))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn redirects_are_checked_hop_by_hop() {
    let server = start().await;
    let port = server.addr.port();
    let host = host(&settings(port));
    let sms = applet(&host, "acme", "sms");
    let base = format!("http://127.0.0.1:{port}");

    // A granted redirect is followed.
    let response = send(&*sms, get(format!("{base}/redirect?to=/ok")))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello ");

    // To a host the applet was not granted (it resolves to loopback, which acme allows:
    // only the grant refuses it).
    let m = expect_err(
        send(
            &*sms,
            get(format!("{base}/redirect?to=http://evil.test:{port}/ok")),
        )
        .await,
        not_granted,
        "not-granted",
    );
    assert!(m.contains("evil.test"), "{m}");

    // To an IP literal in a range the tenant does not allow: narrow allows 127.0.0.1/32
    // only, so 127.0.0.2 is refused before any connection.
    let narrow = applet(&host, "narrow", "sms");
    let m = expect_err(
        send(
            &*narrow,
            get(format!("{base}/redirect?to=http://127.0.0.2:{port}/ok")),
        )
        .await,
        not_granted,
        "not-granted",
    );
    assert!(m.contains("127.0.0.2") && m.contains("loopback"), "{m}");
}

#[tokio::test]
async fn more_than_five_redirects_hit_the_limit() {
    let server = start().await;
    let port = server.addr.port();
    let host = host(&settings(port));
    let sms = applet(&host, "acme", "sms");
    // A chain of six redirects, each to the next, ending at /ok.
    let mut target = "/ok".to_string();
    for _ in 0..6 {
        target = format!("/redirect?to={}", urlencode(&target));
    }
    let m = expect_err(
        send(&*sms, get(format!("http://127.0.0.1:{port}{target}"))).await,
        limit,
        "limit-exceeded",
    );
    assert!(m.contains("more than 5 redirects"), "{m}");
    // Five hops are fine.
    let mut target = "/ok".to_string();
    for _ in 0..5 {
        target = format!("/redirect?to={}", urlencode(&target));
    }
    let response = send(&*sms, get(format!("http://127.0.0.1:{port}{target}")))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn response_size_is_capped_with_and_without_content_length() {
    let server = start().await;
    let port = server.addr.port();
    let host = host(&settings(port));
    let sms = applet(&host, "acme", "sms");
    for path in ["big", "stream"] {
        let m = expect_err(
            send(&*sms, get(format!("http://127.0.0.1:{port}/{path}"))).await,
            limit,
            "limit-exceeded",
        );
        assert!(m.contains("1048576 bytes"), "{path}: {m}");
    }
}

#[tokio::test]
async fn slow_server_times_out_within_the_applets_and_the_hosts_limit() {
    let server = start().await;
    let port = server.addr.port();
    let host = host(&settings(port));
    let sms = applet(&host, "acme", "sms");
    let mut request = get(format!("http://127.0.0.1:{port}/slow"));
    request.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let m = expect_err(
        send(&*sms, request.clone()).await,
        unavailable,
        "unavailable",
    );
    assert!(m.contains("300 ms"), "{m}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Asking for more than the host's maximum (2 s here) gets the maximum.
    request.timeout = Some(Duration::from_secs(60));
    let started = Instant::now();
    let m = expect_err(send(&*sms, request).await, unavailable, "unavailable");
    assert!(m.contains("2000 ms"), "{m}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn server_errors_are_responses_and_network_failures_unavailable() {
    let server = start().await;
    let port = server.addr.port();
    let host = host(&settings(port));
    let sms = applet(&host, "acme", "sms");
    let response = send(&*sms, get(format!("http://127.0.0.1:{port}/fail")))
        .await
        .unwrap();
    assert_eq!(response.status, 500);
    assert_eq!(response.body, b"boom");

    // A port nobody listens on (granted, loopback allowed) is unavailable.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let other = super::support::host(&settings(closed));
    let sms = applet(&other, "acme", "sms");
    let m = expect_err(
        send(&*sms, get(format!("http://127.0.0.1:{closed}/ok"))).await,
        unavailable,
        "unavailable",
    );
    assert!(m.contains("connect"), "{m}");
}

#[tokio::test]
async fn malformed_requests_are_invalid() {
    let host = host(&settings(8080));
    let sms = applet(&host, "acme", "sms");
    for url in ["file:///etc/passwd", "not a url", "ftp://127.0.0.1:8080/"] {
        expect_err(send(&*sms, get(url.into())).await, invalid, "invalid");
    }
    let mut request = get("http://127.0.0.1:8080/ok".into());
    request.method = "GE T".into();
    expect_err(send(&*sms, request).await, invalid, "invalid");
    let mut request = get("http://127.0.0.1:8080/ok".into());
    request.headers = vec![("Host".into(), "elsewhere".into())];
    expect_err(send(&*sms, request).await, invalid, "invalid");
    let mut request = get("http://127.0.0.1:8080/ok".into());
    request.body = vec![0; 2 * 1024 * 1024];
    expect_err(send(&*sms, request).await, limit, "limit-exceeded");
}

#[tokio::test]
async fn https_to_a_plain_server_fails_the_handshake_as_unavailable() {
    // Exercises the rustls client (ring provider) for real: the server speaks plain HTTP.
    let server = start().await;
    let port = server.addr.port();
    let host = host(&settings(port));
    let sms = applet(&host, "acme", "sms");
    expect_err(
        send(&*sms, get(format!("https://127.0.0.1:{port}/ok"))).await,
        unavailable,
        "unavailable",
    );
}

/// A token an applet put in a URL (user info, path, query, fragment): what finding 2 of
/// issue 14 saw echoed by reqwest's error text into the journal.
const TOKEN: &str = "tok3nZq9xK2w";

/// Asserts an error names the origin and nothing of the URL after it.
#[track_caller]
fn names_only_the_origin(message: &str, origin: &str) {
    assert!(!message.contains(TOKEN), "the token is echoed: {message}");
    assert!(
        message.contains(origin),
        "the origin is not named: {message}"
    );
}

#[tokio::test]
async fn failed_requests_never_echo_user_info_path_or_query() {
    let server = start().await;
    let port = server.addr.port();
    let host = host(&settings(port));
    let sms = applet(&host, "acme", "sms");
    let secret_parts = format!("/k/{TOKEN}/x?key={TOKEN}&b=1#{TOKEN}");

    // A host that does not resolve (the issue's case).
    let m = expect_err(
        send(
            &*sms,
            get(format!("https://bot:{TOKEN}@api.invalid{secret_parts}")),
        )
        .await,
        unavailable,
        "unavailable",
    );
    names_only_the_origin(&m, "https://api.invalid");

    // A port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let other = super::support::host(&settings(closed));
    let refused = applet(&other, "acme", "sms");
    let m = expect_err(
        send(
            &*refused,
            get(format!(
                "http://bot:{TOKEN}@127.0.0.1:{closed}{secret_parts}"
            )),
        )
        .await,
        unavailable,
        "unavailable",
    );
    names_only_the_origin(&m, &format!("http://127.0.0.1:{closed}"));

    // The TLS handshake failing, the body over the cap, the time running out.
    let base = format!("127.0.0.1:{port}");
    let m = expect_err(
        send(&*sms, get(format!("https://{base}/ok{secret_parts}"))).await,
        unavailable,
        "unavailable",
    );
    names_only_the_origin(&m, &format!("https://{base}"));
    let m = expect_err(
        send(&*sms, get(format!("http://{base}/big?key={TOKEN}"))).await,
        limit,
        "limit-exceeded",
    );
    names_only_the_origin(&m, &format!("http://{base}"));
    let mut slow = get(format!("http://{base}/slow?key={TOKEN}"));
    slow.timeout = Some(Duration::from_millis(100));
    let m = expect_err(send(&*sms, slow).await, unavailable, "unavailable");
    names_only_the_origin(&m, &format!("http://{base}"));

    // A Location that is not a URL, and one too many redirects.
    let bad = urlencode(&format!("http://[{TOKEN}/x"));
    let m = expect_err(
        send(&*sms, get(format!("http://{base}/redirect?to={bad}"))).await,
        unavailable,
        "unavailable",
    );
    names_only_the_origin(&m, &format!("http://{base}"));
    let mut target = format!("/ok?key={TOKEN}");
    for _ in 0..6 {
        target = format!("/redirect?to={}", urlencode(&target));
    }
    let m = expect_err(
        send(&*sms, get(format!("http://{base}{target}"))).await,
        limit,
        "limit-exceeded",
    );
    names_only_the_origin(&m, &format!("http://{base}"));

    // A text that is not a URL, a scheme refused, a host not granted.
    let m = expect_err(
        send(&*sms, get(format!("not a url {TOKEN}"))).await,
        invalid,
        "invalid",
    );
    assert!(!m.contains(TOKEN), "{m}");
    let m = expect_err(
        send(&*sms, get(format!("ftp://bot:{TOKEN}@127.0.0.1/{TOKEN}"))).await,
        invalid,
        "invalid",
    );
    assert!(!m.contains(TOKEN), "{m}");
    let m = expect_err(
        send(&*sms, get(format!("https://other.test/{TOKEN}?k={TOKEN}"))).await,
        not_granted,
        "not-granted",
    );
    assert!(!m.contains(TOKEN), "{m}");
}
