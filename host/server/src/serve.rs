//! Serving the API on a TCP listener with every connection bounded: how long a client may
//! take to send a request's head and its body, how long a write to a client that does not
//! read may wait, how long an idle keep-alive connection is kept, and how many connections
//! are open at once. `axum::serve` has none of these knobs
//! (a client that sends half a head and goes quiet was held forever, and enough of them
//! ran the process out of file descriptors), so the accept loop is ours: hyper's HTTP/1
//! connection with its header timer, a semaphore for the connections, and a small reserve
//! past the cap that answers only the health checks.
//!
//! HTTP/1 only, as before: the API has no use for HTTP/2, and each protocol a server speaks
//! is one more set of limits to get right.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::ApiError;

/// The most connections served at once, health checks' reserve aside
/// ([`ConnLimits::max_connections`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Connections kept past the cap for `/healthz` and `/readyz` only
/// ([`ConnLimits::reserved_connections`]).
pub const DEFAULT_RESERVED_CONNECTIONS: usize = 32;

/// The longest wait for a request's head ([`ConnLimits::header_timeout`]).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a request's body may take to arrive ([`ConnLimits::body_timeout`]).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest a response write may make no progress ([`ConnLimits::write_timeout`]).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stop waits for requests in flight ([`ConnLimits::shutdown_grace`]).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The longest wait for the head of a request on a reserved connection: a health probe
/// sends its request at once, and a client that does not cannot hold the reserve for long.
const RESERVED_HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// What `Retry-After` says when the server is full.
const FULL_RETRY_AFTER_SECS: u64 = 1;

/// How long the accept loop waits after the listener fails (out of file descriptors, say)
/// before it tries again: the error is the machine's state, and retrying at once spins.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The bounds on the connections `coda serve` takes. Every one is named here, with its
/// default in a constant above; an operator sets them in the `http` section of the serve
/// config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLimits {
    /// The most connections served at once. Past it (and past the reserve) a new connection
    /// gets a `503` with `Retry-After` and is closed at once, before anything is read.
    pub max_connections: usize,
    /// Connections taken past `max_connections` for the health checks only: one request
    /// each, `/healthz` or `/readyz`, whose head must come within a second; anything else is
    /// answered `503`. So a full server still tells its supervisor that it is alive.
    pub reserved_connections: usize,
    /// The longest wait for a request's head (its request line and headers), from the
    /// connection's start or from the end of the previous response. It is also the
    /// keep-alive idle timeout: a connection that sends no next request within it is closed.
    pub header_timeout: Duration,
    /// The longest a request's body may take, from the handler's first read to its last
    /// byte, however the bytes trickle in: past it the request is answered `408` and the
    /// connection closed.
    pub body_timeout: Duration,
    /// The longest a write to the client may wait without progress: a client that stops
    /// reading (a large page, a live tail) while its socket's buffer is full has its
    /// connection closed after it, however long the response. A slow reader that keeps
    /// taking bytes is not cut.
    pub write_timeout: Duration,
    /// After a stop, how long requests in flight (and live tails) are given to finish before
    /// their connections are dropped.
    pub shutdown_grace: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            reserved_connections: DEFAULT_RESERVED_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl ConnLimits {
    /// These limits with the connections fitted to `fd_limit`, the process's open-file
    /// limit: the connections (reserve included) take at most half of it, so that the
    /// database, the applets' files and their outgoing connections always have the other
    /// half and `/healthz` keeps answering. Returns whether the cap was lowered.
    pub fn fit_to_fd_limit(&mut self, fd_limit: u64) -> bool {
        let half = usize::try_from(fd_limit / 2).unwrap_or(usize::MAX);
        let wanted = self
            .max_connections
            .saturating_add(self.reserved_connections);
        if wanted <= half {
            return false;
        }
        self.reserved_connections = self.reserved_connections.min(half / 8);
        self.max_connections = half.saturating_sub(self.reserved_connections);
        true
    }

    /// A refusal of limits that cannot serve: no connection at all, or a zero timeout.
    pub fn check(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("max_connections is 0: no connection could be served".into());
        }
        for (name, value) in [
            ("header_timeout_ms", self.header_timeout),
            ("body_timeout_ms", self.body_timeout),
            ("write_timeout_ms", self.write_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("{name} is 0: every request would time out"));
            }
        }
        Ok(())
    }
}

/// Raises this process's soft limit on open files to its hard limit, and returns the limit
/// now in force (none where there is no such limit, or it cannot be read). A service that
/// takes thousands of connections needs more than the usual soft limit of 1,024.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(e) => {
                tracing::warn!("cannot raise the open-files limit: {e}");
                rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .ok()
                    .map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes; then takes no new
/// connection, lets requests in flight finish for [`ConnLimits::shutdown_grace`], and
/// returns. Each request carries its peer's address (`ConnectInfo<SocketAddr>`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    accept_loop(listener, app, limits, shutdown, false).await
}

/// Serves only `/healthz` and `/readyz` of `app` on a listener of their own (the serve
/// config's `http.health_listen`): at most [`ConnLimits::reserved_connections`] at once,
/// each as a reserved connection is served. The API's connections, however many a flood
/// holds, never share its places, so a supervisor probing it always gets an answer.
pub async fn serve_health(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    accept_loop(listener, app, limits, shutdown, true).await
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
    health_only: bool,
) -> std::io::Result<()> {
    limits.check().map_err(std::io::Error::other)?;
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.body_timeout,
        body_deadline,
    ));
    // On a health listener every connection is served as a reserved one.
    let (cap, reserved_cap) = if health_only {
        (0, limits.reserved_connections.max(1))
    } else {
        (limits.max_connections, limits.reserved_connections)
    };
    let connections = Arc::new(Semaphore::new(cap));
    let reserve = Arc::new(Semaphore::new(reserved_cap));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A permit per connection, released when its task ends however it ends.
        let (permit, reserved) = match connections.clone().try_acquire_owned() {
            Ok(permit) => (permit, false),
            Err(_) => match reserve.clone().try_acquire_owned() {
                Ok(permit) => (permit, true),
                Err(_) => {
                    refuse(stream);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    if reserved && !is_health_check(request.uri().path()) {
                        let refused = if health_only {
                            ApiError::not_found(
                                "health-checks-only",
                                "this address answers /healthz and /readyz only",
                            )
                        } else {
                            full()
                        };
                        return Ok::<_, std::convert::Infallible>(refused.into_response());
                    }
                    use tower::ServiceExt;
                    app.oneshot(request).await
                }
            });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(if reserved {
                limits.header_timeout.min(RESERVED_HEADER_TIMEOUT)
            } else {
                limits.header_timeout
            })
            // A reserved connection serves one health check and closes: the reserve is
            // for a supervisor's probe, not for a client that found the server full.
            .keep_alive(!reserved);
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_timeout));
        let connection =
            graceful.watch(builder.serve_connection(TokioIo::new(Box::pin(stream)), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Live tails never finish by themselves: the grace bounds the wait for them.
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "connections still open after the shutdown grace are dropped"
        );
    }
    Ok(())
}

fn is_health_check(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// The answer past the cap, in the API's error shape.
fn full() -> ApiError {
    ApiError {
        retry_after_secs: Some(FULL_RETRY_AFTER_SECS),
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server-full",
            "the server has as many connections as it serves; connect again later",
        )
    }
}

/// A connection past the cap and the reserve: a `503` written without waiting (the socket's
/// buffer takes it, or it is not sent) and the connection closed, before anything is read.
fn refuse(stream: TcpStream) {
    const BODY: &str = "{\"error\":{\"kind\":\"server-full\",\"message\":\"the server has as many connections as it serves; connect again later\"}}";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: {FULL_RETRY_AFTER_SECS}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(response.as_bytes());
    // Dropped here: closed without reading.
}

/// Bounds the time to read a request's body: past `timeout` from its first read, the body
/// fails (the handler gets an error reading it), and the answer is `408` with the
/// connection closed, whatever the handler made of the error.
async fn body_deadline(
    State(timeout): State<Duration>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            timeout,
            sleep: None,
            expired: expired.clone(),
        })
    });
    let response = next.run(request).await;
    if !expired.load(Ordering::Relaxed) {
        return response;
    }
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body-timeout",
        format!(
            "the request's body did not arrive within {} ms",
            timeout.as_millis()
        ),
    )
    .into_response();
    // The rest of the body may still be on its way: the connection cannot be reused.
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// A body that fails once its deadline passes. The deadline is set at the first read, not
/// per frame: a client trickling a byte at a time must not keep a request open forever.
struct DeadlineBody {
    inner: Body,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    expired: Arc<AtomicBool>,
}

/// The error a body past its deadline gives its reader.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request's body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let timeout = this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The peer of a request served by [`serve`] (none in-process, as in the tests).
pub(crate) fn peer(parts: &axum::http::request::Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connections_take_at_most_half_the_open_files() {
        let mut limits = ConnLimits::default();
        // A generous limit leaves the defaults as they are.
        assert!(!limits.fit_to_fd_limit(1 << 20));
        assert_eq!(limits, ConnLimits::default());
        // The usual soft limit of 1,024 (not raised): 512 in all, the reserve within it.
        assert!(limits.fit_to_fd_limit(1024));
        assert_eq!(limits.max_connections + limits.reserved_connections, 512);
        assert_eq!(limits.reserved_connections, DEFAULT_RESERVED_CONNECTIONS);
        // A tiny one still serves, with a smaller reserve.
        let mut limits = ConnLimits::default();
        assert!(limits.fit_to_fd_limit(64));
        assert_eq!(limits.max_connections + limits.reserved_connections, 32);
        assert_eq!(limits.reserved_connections, 4);
        assert!(limits.check().is_ok());
    }

    #[test]
    fn limits_that_cannot_serve_are_refused_by_name() {
        let zero = ConnLimits {
            max_connections: 0,
            ..ConnLimits::default()
        };
        assert!(zero.check().unwrap_err().contains("max_connections"));
        let instant = ConnLimits {
            body_timeout: Duration::ZERO,
            ..ConnLimits::default()
        };
        assert!(instant.check().unwrap_err().contains("body_timeout_ms"));
    }
}
