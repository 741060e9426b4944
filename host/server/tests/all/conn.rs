//! The connections `coda_server::serve` takes, over real TCP on loopback: a half-sent head,
//! an idle keep-alive connection and a trickled body are each cut after their timeout
//! (small here, set through `ConnLimits`); past the cap a connection is refused at once
//! while the health checks still answer; a request knows its peer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coda_server::ConnLimits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{OPERATOR, harness};

/// Long enough for a loaded machine to serve a request, short enough for a test.
const SHORT: Duration = Duration::from_millis(400);

/// How long a test waits for what should happen before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    _h: super::Harness,
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        tokio::time::timeout(PATIENCE, &mut self.served)
            .await
            .expect("the server stops within its grace")
            .unwrap()
            .unwrap();
    }
}

async fn server(limits: ConnLimits) -> Server {
    let h = harness();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(coda_server::serve(listener, h.app.clone(), limits, async {
        let _ = stopped.await;
    }));
    Server {
        address,
        stop: Some(stop),
        served,
        _h: h,
    }
}

fn limits() -> ConnLimits {
    ConnLimits {
        header_timeout: SHORT,
        body_timeout: SHORT,
        shutdown_grace: Duration::from_secs(1),
        ..ConnLimits::default()
    }
}

/// Reads until the server closes the connection (EOF or a reset); returns what came and
/// how long it took. Fails after [`PATIENCE`].
async fn until_closed(stream: &mut (impl AsyncRead + Unpin)) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buffer)).await {
            Err(_) => panic!(
                "the connection was still open after {PATIENCE:?}: {}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buffer[..n]),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

/// Reads one response whose body has a Content-Length; returns its head and body.
async fn one_response(stream: &mut TcpStream) -> (String, String) {
    let mut got = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + length]).into_owned();
                return (head, body);
            }
        }
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("a response within the patience")
            .unwrap();
        assert!(n > 0, "closed before a whole response: {text}");
        got.extend_from_slice(&buffer[..n]);
    }
}

async fn get(stream: &mut TcpStream, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nhost: coda\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    one_response(stream).await
}

#[tokio::test]
async fn a_half_sent_head_is_closed_after_the_header_timeout() {
    let s = server(limits()).await;
    let mut stream = TcpStream::connect(s.address).await.unwrap();
    // The request line and a header, never the blank line that ends the head.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: coda\r\n")
        .await
        .unwrap();
    let (_, took) = until_closed(&mut stream).await;
    assert!(
        took >= SHORT - Duration::from_millis(50),
        "closed after {took:?}"
    );

    // A connection that sends nothing at all is closed the same way.
    let mut silent = TcpStream::connect(s.address).await.unwrap();
    let (got, took) = until_closed(&mut silent).await;
    assert!(
        took >= SHORT - Duration::from_millis(50),
        "closed after {took:?}: {got}"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let s = server(limits()).await;
    let mut stream = TcpStream::connect(s.address).await.unwrap();
    // Two requests on one connection: it is kept alive between them...
    for _ in 0..2 {
        let (head, _) = get(&mut stream, "/healthz").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    // ...and closed once it has been idle for the header timeout.
    let (got, took) = until_closed(&mut stream).await;
    assert!(got.is_empty(), "{got}");
    assert!(
        took >= SHORT - Duration::from_millis(50),
        "closed after {took:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_trickled_body_is_cut_with_a_408_at_the_body_timeout() {
    let s = server(limits()).await;
    let mut stream = TcpStream::connect(s.address).await.unwrap();
    let body = br#"{"id": "acme"}"#;
    let head = format!(
        "POST /v1/operator/tenants HTTP/1.1\r\nhost: coda\r\nauthorization: Bearer {OPERATOR}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut read, mut write) = stream.split();
    // A byte at a time, each well within the timeout, the whole far past it (the deadline
    // is for the body, not for each read); never the last byte.
    let trickle = async {
        for byte in &body[..body.len() - 1] {
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(SHORT / 4).await;
        }
        std::future::pending::<()>().await
    };
    let (got, took) = tokio::select! {
        got = until_closed(&mut read) => got,
        () = trickle => unreachable!(),
    };
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("body-timeout"), "{got}");
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );
    assert!(took < SHORT * 3, "cut after {took:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_its_responses_gives_its_place_back_at_the_write_timeout() {
    let s = server(ConnLimits {
        max_connections: 1,
        reserved_connections: 0,
        header_timeout: PATIENCE * 3,
        write_timeout: SHORT,
        ..limits()
    })
    .await;
    // A small receive buffer, and far more response bytes asked for (pipelined) than it
    // and the server's send buffer hold: the server's writes stall.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(s.address).await.unwrap();
    let (head, document) = get(&mut stalled, "/openapi.json").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let requests = (64 << 20) / document.len() + 1;
    let pipelined = "GET /openapi.json HTTP/1.1\r\nhost: coda\r\n\r\n".repeat(requests);
    let _ = tokio::time::timeout(SHORT, stalled.write_all(pipelined.as_bytes())).await;

    // The only place is held by the stalled connection; before the write timeout it was
    // held forever and every new connection got a 503.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut stream = TcpStream::connect(s.address).await.unwrap();
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: coda\r\n\r\n")
            .await;
        let mut buffer = vec![0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap_or(0);
        if buffer[..n].starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled connection kept the place: {}",
            String::from_utf8_lossy(&buffer[..n])
        );
        tokio::time::sleep(SHORT / 4).await;
    }
    drop(stalled);
    s.stop().await;
}

#[tokio::test]
async fn past_the_cap_a_connection_is_refused_at_once_and_the_health_checks_still_answer() {
    let s = server(ConnLimits {
        max_connections: 2,
        reserved_connections: 1,
        header_timeout: PATIENCE * 3,
        ..limits()
    })
    .await;
    // Two connections take the cap; a request on each shows the server holds them.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(s.address).await.unwrap();
        let (head, _) = get(&mut stream, "/healthz").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(stream);
    }
    // The next one is served from the reserve: a health check answers, once.
    let mut probe = TcpStream::connect(s.address).await.unwrap();
    let (head, _) = get(&mut probe, "/healthz").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let (rest, _) = until_closed(&mut probe).await;
    assert!(rest.is_empty(), "one request only: {rest}");

    // Anything but a health check on a connection past the cap is a 503.
    let mut other = TcpStream::connect(s.address).await.unwrap();
    let (head, body) = get(&mut other, "/v1/plans").await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert!(body.contains("server-full"), "{body}");
    drop(other);

    // With the reserve taken too, a new connection is answered 503 and closed before it
    // sends anything: nothing of it is read, and no task waits on it.
    let mut reserve = TcpStream::connect(s.address).await.unwrap();
    let mut refused = TcpStream::connect(s.address).await.unwrap();
    let (got, took) = until_closed(&mut refused).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("server-full"), "{got}");
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    // A reserved connection that sends nothing cannot hold the reserve for the (long)
    // header timeout of the others: it has a second.
    let (_, took) = until_closed(&mut reserve).await;
    assert!(took < PATIENCE, "the reserve was held for {took:?}");

    // A connection closed gives its place back: a new one is served in full again (kept
    // alive, which a reserved connection is not).
    drop(held.pop());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut stream = TcpStream::connect(s.address).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: coda\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = vec![0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&buffer[..n]).to_ascii_lowercase();
        if text.starts_with("http/1.1 200") && !text.contains("connection: close") {
            break;
        }
        assert!(Instant::now() < deadline, "no place came back: {text}");
        tokio::task::yield_now().await;
    }
    drop(held);
    s.stop().await;
}

#[tokio::test]
async fn failed_tokens_from_one_address_are_slowed_down_over_tcp() {
    let s = server(limits()).await;
    let mut stream = TcpStream::connect(s.address).await.unwrap();
    let mut statuses = Vec::new();
    for i in 0..(coda_server::AUTH_FAILURE_BURST + 1) {
        let request = format!(
            "GET /v1/plans HTTP/1.1\r\nhost: coda\r\nauthorization: Bearer guess-{i}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let (head, _) = one_response(&mut stream).await;
        statuses.push(head[9..12].to_owned());
    }
    let (last, first) = statuses.split_last().unwrap();
    assert!(first.iter().all(|s| s == "401"), "{statuses:?}");
    assert_eq!(last, "429", "{statuses:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_health_listener_answers_while_the_api_is_full() {
    let h = harness();
    let limits = ConnLimits {
        max_connections: 1,
        reserved_connections: 1,
        header_timeout: PATIENCE * 3,
        ..limits()
    };
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (api_address, health_address) = (api.local_addr().unwrap(), health.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_health, health_stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(coda_server::serve(
        api,
        h.app.clone(),
        limits.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let health_served = tokio::spawn(coda_server::serve_health(
        health,
        h.app.clone(),
        limits,
        async {
            let _ = health_stopped.await;
        },
    ));
    // The API full: its place and its reserve held by connections that say nothing...
    let mut held = TcpStream::connect(api_address).await.unwrap();
    let (head, _) = get(&mut held, "/healthz").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let _reserve = TcpStream::connect(api_address).await.unwrap();
    let mut refused = TcpStream::connect(api_address).await.unwrap();
    let (got, _) = until_closed(&mut refused).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    // ...the health listener still answers, every probe, and nothing else.
    for path in ["/healthz", "/readyz", "/healthz"] {
        let mut probe = TcpStream::connect(health_address).await.unwrap();
        let (head, _) = get(&mut probe, path).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    }
    let mut probe = TcpStream::connect(health_address).await.unwrap();
    let (head, body) = get(&mut probe, "/v1/plans").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(body.contains("health-checks-only"), "{body}");
    drop(held);
    let _ = (stop.send(()), stop_health.send(()));
    served.await.unwrap().unwrap();
    health_served.await.unwrap().unwrap();
}
