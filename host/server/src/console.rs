//! The console: the web UI `coda serve` serves at `/`, on the API's own origin (so it needs
//! no CORS, and its token travels as the bearer header: no cookies, no CSRF).
//!
//! Its files are `console/dist`, built from `console/src` by Vite and committed, embedded
//! here at compile time: a release build stays one file and `cargo build` needs no Node.js.
//! The build writes a Brotli and a gzip copy beside each file; the best one the client
//! accepts is sent as it is, never compressed per request.
//!
//! The console routes by the URL's fragment (`/#/runs/…`), so the server answers only `/`
//! and `/assets/…`: every other path stays the API's, with its JSON 404.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};

use crate::ApiError;

static DIST: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../../console/dist");

/// What the console's pages may do: its own scripts and styles only (no inline script, no
/// `eval`), requests to its own origin, never framed. Tenant data is shown as text by the
/// console itself; this is the second wall if that ever failed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; \
    manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Asset names carry their content's hash (Vite's `[name]-[hash]`): a name never changes
/// meaning, so a browser keeps it for a year without asking again.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", axum::routing::get(index))
        .route("/assets/{*file}", axum::routing::get(asset))
}

/// The page: asked again on every load (`no-cache`, answered 304 while its ETag holds), so a
/// new build's asset names reach the browser at once.
async fn index(headers: HeaderMap) -> Response {
    serve(&headers, "index.html", "no-cache")
}

async fn asset(headers: HeaderMap, Path(file): Path<String>) -> Response {
    serve(&headers, &format!("assets/{file}"), IMMUTABLE)
}

fn serve(headers: &HeaderMap, path: &str, cache: &'static str) -> Response {
    let Some(file) = DIST.get_file(path) else {
        return ApiError::not_found("no-route", format!("no console file /{path}")).into_response();
    };
    let etag = etag(file.contents());
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let (body, encoding) = encoded(headers, path, file.contents());
        let mut response = body.into_response();
        if let Some(encoding) = encoding {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        response
    };
    let h = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, etag);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    for (name, value) in security_headers() {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Sent with every console file (and the page above all).
fn security_headers() -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ]
}

/// The bytes to send: the precompressed copy the client accepts (Brotli first), or the file.
fn encoded(
    headers: &HeaderMap,
    path: &str,
    plain: &'static [u8],
) -> (&'static [u8], Option<&'static str>) {
    let accepted = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next()?;
            // `br;q=0` refuses it.
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (!refused).then(|| coding.to_ascii_lowercase())
        })
        .collect::<Vec<_>>();
    for (coding, suffix) in [("br", "br"), ("gzip", "gz")] {
        if accepted.iter().any(|a| a == coding)
            && let Some(file) = DIST.get_file(format!("{path}.{suffix}"))
        {
            return (file.contents(), Some(coding));
        }
    }
    (plain, None)
}

/// A weak ETag (the same for every encoding of the file): the first 16 bytes of the
/// uncompressed file's SHA-256.
fn etag(contents: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(contents);
    format!("W/\"{}\"", hex::encode(&digest[..16]))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}
