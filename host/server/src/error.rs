//! The one error shape of the API, `{"error": {"kind", "message"}}`, and the extractors that
//! turn every way a request can be malformed into it: axum's own rejections answer in plain
//! text, and a client should not have to parse two kinds of error.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use coda_plan::Problem;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};

/// A refused or failed request: its status, a stable `kind` for programs and a message for
/// people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// Every problem of a plan that does not validate.
    pub problems: Vec<Problem>,
    /// Sent as `Retry-After` (a 429 or 503): when the request may succeed.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            problems: Vec::new(),
            retry_after_secs: None,
        }
    }

    /// 429: the tenant's queue is full; the message names the limit, `Retry-After` says
    /// when to send again.
    pub fn queue_full(full: &coda_flow::QueueFull) -> Self {
        ApiError {
            retry_after_secs: Some(full.retry_after_secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue-full",
                full.to_string(),
            )
        }
    }

    pub fn bad_request(kind: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, kind, message)
    }

    pub fn not_found(kind: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, kind, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A plan that does not parse or validate: 422 with every problem.
    pub fn invalid_plan(problems: Vec<Problem>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "invalid-plan",
            message: format!("{} problem(s)", problems.len()),
            problems,
            retry_after_secs: None,
        }
    }

    /// The host's own failure (the database), never the request's: logged with its cause,
    /// answered without it.
    pub fn internal(why: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {why}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not complete the request",
        )
    }

    /// 503: the database cannot be reached or is busy right now — the host's state, not
    /// the request's fault, and worth sending again after `Retry-After`.
    pub fn database_unavailable(why: impl std::fmt::Display) -> Self {
        tracing::warn!("database unavailable: {why}");
        ApiError {
            retry_after_secs: Some(DATABASE_RETRY_AFTER_SECS),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                format!(
                    "the database is unavailable right now; send the request again in \
                     {DATABASE_RETRY_AFTER_SECS} s"
                ),
            )
        }
    }
}

/// What a 503 for an unavailable database asks the client to wait.
pub const DATABASE_RETRY_AFTER_SECS: u64 = 2;

impl From<coda_store::StoreError> for ApiError {
    fn from(e: coda_store::StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::database_unavailable(e)
        } else {
            ApiError::internal(e)
        }
    }
}

impl From<coda_flow::FlowError> for ApiError {
    fn from(e: coda_flow::FlowError) -> Self {
        match e {
            coda_flow::FlowError::Store(e) => ApiError::from(e),
            e => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "kind": self.kind, "message": self.message });
        if !self.problems.is_empty() {
            error["problems"] = self
                .problems
                .iter()
                .map(|p| json!({ "node": p.node, "field": p.field, "message": p.message }))
                .collect();
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The body as bytes, refused with 413 past the router's body limit.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!(
                    "the body is larger than the limit of {} bytes",
                    crate::MAX_BODY_BYTES
                ),
            )
        } else {
            ApiError::bad_request("invalid-body", rejection.body_text())
        }
    })
}

/// The body, refused with `too_large` as soon as it is known to pass `limit`: from its
/// Content-Length before reading anything, else when the bytes read so far pass it. What
/// is past the limit is never read; a body that cannot be read (the client went away, a
/// broken chunk) is a 400 saying so, not a size.
pub(crate) async fn read_limited(
    headers: &axum::http::HeaderMap,
    mut body: axum::body::Body,
    limit: usize,
    too_large: impl Fn() -> ApiError,
) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    // Reserved up to 1 MiB only: a Content-Length is a claim, not bytes sent.
    let mut bytes = Vec::with_capacity(declared.map_or(0, |l| l as usize).min(1 << 20));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request("invalid-body", format!("the body could not be read: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// A JSON body deserialized into `T`; a syntax error, an unknown field or a wrong type is a
/// 400 naming the field path and what was wrong.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    parse_json_exactly(bytes).or_else(|refused| integers_written_as_floats(bytes).ok_or(refused))
}

/// A body whose integers are written as floats (`30.0`), which JSON Schema counts as
/// integers and serde does not: read again with those numbers as the integers they are.
/// Only tried on a body refused as written, so a body that reads as written is unchanged.
fn integers_written_as_floats<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    fn integral(value: &mut Json) -> bool {
        match value {
            Json::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    *value = Json::from(f as i64);
                    true
                }
                _ => false,
            },
            Json::Array(items) => items.iter_mut().fold(false, |any, v| integral(v) | any),
            Json::Object(map) => map.values_mut().fold(false, |any, v| integral(v) | any),
            _ => false,
        }
    }
    let mut value: Json = serde_json::from_slice(bytes).ok()?;
    if !integral(&mut value) {
        return None;
    }
    serde_json::from_value(value).ok()
}

fn parse_json_exactly<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json classes some shape errors as syntax (an enum given `{}`: it wanted a
        // variant's name where the object closed). The body is JSON all the same: say what
        // was wrong with its shape, at its path, not that it is not JSON.
        if inner.is_syntax() && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            return shape_error(&inner, &path);
        }
        json_error(&inner, &path)
    })?;
    // Trailing bytes after the value are malformed too, not ignored.
    de.end().map_err(|e| json_error(&e, "."))?;
    Ok(value)
}

/// A body that is JSON but not of the expected shape; `e` says where in the text.
fn shape_error(e: &serde_json::Error, path: &str) -> ApiError {
    let at = if path == "." || path.is_empty() {
        String::new()
    } else {
        format!("at `{path}`: ")
    };
    ApiError::bad_request(
        "invalid-body",
        format!(
            "{at}the value is not of the expected shape (line {} column {}; an object of one \
             key names one of several forms, as `{{\"json\": …}}`)",
            e.line(),
            e.column()
        ),
    )
}

fn json_error(e: &serde_json::Error, path: &str) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request("malformed-json", format!("the body is not JSON: {e}"))
        }
        Category::Data if path == "." || path.is_empty() => {
            ApiError::bad_request("invalid-body", e.to_string())
        }
        Category::Data => ApiError::bad_request("invalid-body", format!("at `{path}`: {e}")),
    }
}

/// A name (an id, a skill, a secret…) checked by the rule of its kind, the one rule every
/// entry uses (`coda_types::names`): 400 `invalid-name` naming the kind and the rule.
pub fn check_name(kind: coda_types::names::NameKind, name: &str) -> Result<(), ApiError> {
    coda_types::names::check_name(kind, name)
        .map_err(|e| ApiError::bad_request("invalid-name", e.to_string()))
}

/// Path parameters, refused as a 400 in the API's error shape.
pub struct PathArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathArgs(t))
            .map_err(|e| ApiError::bad_request("invalid-path", e.body_text()))
    }
}

/// Query parameters, refused as a 400 in the API's error shape.
pub struct QueryArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| QueryArgs(t))
            .map_err(|e| ApiError::bad_request("invalid-query", e.body_text()))
    }
}

/// The window `[since, until)` of a query, each in ms when given, read by the one time
/// parser (`coda_types::time`) with durations counted back from the same `now_ms`. A value
/// that is not a time is a 400 naming the parameter and the forms it takes; a window that
/// ends before it starts, a 400 naming both.
pub(crate) fn time_window(
    since: Option<&str>,
    until: Option<&str>,
    now_ms: i64,
) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let read = |parameter: &str, text: Option<&str>| {
        text.map(|text| {
            coda_types::time::parse_time(parameter, text, now_ms)
                .map_err(|e| ApiError::bad_request("invalid-query", e.to_string()))
        })
        .transpose()
    };
    let (since, until) = (read("since", since)?, read("until", until)?);
    if let (Some(since), Some(until)) = (since, until) {
        check_window(since, until)?;
    }
    Ok((since, until))
}

/// Refuses a window `[since, until)` that is empty or ends before it starts.
pub(crate) fn check_window(since: i64, until: i64) -> Result<(), ApiError> {
    use coda_types::time::format_time;
    // Each time is well-formed: it is their order that is refused, 422 as every rule the
    // API's document cannot state.
    if until <= since {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-query",
            format!(
                "`until` ({}) must be later than `since` ({})",
                format_time(until),
                format_time(since)
            ),
        ));
    }
    Ok(())
}

/// The answer to a path no route serves.
pub(crate) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found("no-route", format!("no endpoint {method} {}", uri.path()))
}

/// The answer to a method a route does not take.
pub(crate) async fn no_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{} does not take {method}", uri.path()),
    )
}
