//! The tenant CLI's side of the wire: the service's address and token (flags or
//! environment), one HTTP client (reqwest on rustls and ring, as `coda-capabilities` uses,
//! so nothing more compiles), the API's error shape turned into what the user reads, and
//! the tables and JSON the commands print.
//!
//! Exit statuses, as for the local commands: 0 done; 1 the service refused the request or
//! could not be reached; 2 a usage error, an unreadable file, or a plan that does not
//! validate.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use comfy_table::{Table, presets};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value as Json, json};
use url::Url;

/// Where a tenant's service is when neither `--server` nor `$CODA_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// How long a request may take to connect, and to be answered (a tail has no answer
/// timeout: it lasts as long as the run).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The service and the tenant: flattened into every command that talks to a service.
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// The coda service [default: http://127.0.0.1:8080]
    #[arg(long, env = "CODA_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The tenant's API token; prefer $CODA_TOKEN, since other users can read a process's
    /// arguments
    #[arg(long, env = "CODA_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Print the API's JSON instead of tables
    #[arg(long)]
    pub json: bool,
}

/// A command that did not do what was asked: what to tell the user, and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub status: u8,
    pub kind: String,
    pub message: String,
    /// A plan's problems, as the server listed them (node, field, message).
    pub problems: Vec<Json>,
    /// The server's error body, printed as it is with `--json`.
    pub body: Option<Json>,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(2, "usage", message)
    }

    pub fn new(status: u8, kind: &str, message: impl Into<String>) -> Self {
        Failure {
            status,
            kind: kind.to_owned(),
            message: message.into(),
            problems: Vec::new(),
            body: None,
        }
    }

    /// A file the user named that cannot be read.
    pub fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        Failure::new(2, "io", format!("cannot read {}: {e}", path.display()))
    }
}

/// Prints the outcome of a tenant command and gives its exit status. With `--json` an error
/// is the server's own body on stdout (`{"error": {...}}`), as the local commands print
/// theirs; otherwise it is a line on stderr, then one line per problem.
pub fn report(json_mode: bool, result: Result<(), Failure>) -> ExitCode {
    let Err(failure) = result else {
        return ExitCode::SUCCESS;
    };
    if json_mode {
        let body = failure.body.clone().unwrap_or_else(
            || json!({ "error": { "kind": failure.kind, "message": failure.message } }),
        );
        println!("{body:#}");
    } else {
        eprintln!("error: {}: {}", failure.kind, failure.message);
        for problem in &failure.problems {
            eprintln!("  {}", problem_line(problem));
        }
    }
    ExitCode::from(failure.status)
}

/// One problem of a plan on one line: `node `x`, field `y`: message`.
pub fn problem_line(problem: &Json) -> String {
    let text = |key: &str| problem.get(key).and_then(Json::as_str).unwrap_or("");
    let mut at = Vec::new();
    if !text("node").is_empty() {
        at.push(format!("node `{}`", text("node")));
    }
    if !text("field").is_empty() {
        at.push(format!("field `{}`", text("field")));
    }
    if at.is_empty() {
        text("message").to_owned()
    } else {
        format!("{}: {}", at.join(", "), text("message"))
    }
}

/// A request body.
pub enum Body {
    None,
    Json(Json),
    Bytes(Vec<u8>, &'static str),
}

/// The service, for one tenant.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: HeaderValue,
    /// `--json`: print the API's JSON rather than tables.
    pub json: bool,
}

impl Client {
    pub fn new(args: &ClientArgs) -> Result<Client, Failure> {
        let server = args
            .server
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SERVER);
        let base = Url::parse(server)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                Failure::usage(format!(
                    "--server (or $CODA_SERVER) `{server}` is not an http(s) URL like {DEFAULT_SERVER}"
                ))
            })?;
        let token = args
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::usage(
                    "no API token: set $CODA_TOKEN to the tenant's token (or pass --token)",
                )
            })?;
        // Never echoed, even in an error: the token is a secret.
        let mut token = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            Failure::usage(
                "the API token ($CODA_TOKEN or --token) holds characters a header cannot carry",
            )
        })?;
        token.set_sensitive(true);
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("coda/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Failure::new(
                    1,
                    "internal",
                    format!("cannot start the HTTP client: {}", chain(&e)),
                )
            })?;
        Ok(Client {
            http,
            base,
            token,
            json: args.json,
        })
    }

    /// The address of the service as the user may see it (no credentials in it).
    pub fn server(&self) -> String {
        let mut shown = self.base.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.to_string()
    }

    /// The URL of an endpoint: each segment percent-encoded, so an id with a `/` or `?`
    /// stays one segment; query pairs only for the values given.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        url
    }

    fn request(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(segments, query))
            .header(AUTHORIZATION, self.token.clone())
    }

    /// One request; the answer's JSON (Null for an empty body), or the server's error.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Body,
    ) -> Result<Json, Failure> {
        let mut request = self
            .request(method, segments, query)
            .timeout(REQUEST_TIMEOUT);
        request = match body {
            Body::None => request,
            Body::Json(json) => request
                .header(CONTENT_TYPE, "application/json")
                .body(json.to_string()),
            Body::Bytes(bytes, content_type) => {
                request.header(CONTENT_TYPE, content_type).body(bytes)
            }
        };
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Json::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Failure::new(
                1,
                "invalid-response",
                format!(
                    "{} answered {status} with a body that is not JSON: {e}",
                    self.server()
                ),
            )
        })
    }

    pub async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Json, Failure> {
        self.call(Method::GET, segments, query, Body::None).await
    }

    /// A long-lived GET (server-sent events): the response once its status is a success.
    pub async fn open_stream(&self, segments: &[&str]) -> Result<reqwest::Response, Failure> {
        let response = self
            .request(Method::GET, segments, &[])
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        Err(api_error(status, &bytes))
    }

    /// A request that never got an answer: says which address was tried.
    pub fn transport(&self, e: reqwest::Error) -> Failure {
        if e.is_connect() {
            Failure::new(
                1,
                "unreachable",
                format!(
                    "cannot reach the coda service at {} ({}); set --server or $CODA_SERVER",
                    self.server(),
                    root_cause(&e)
                ),
            )
        } else if e.is_timeout() {
            Failure::new(
                1,
                "timeout",
                format!(
                    "the coda service at {} did not answer in time",
                    self.server()
                ),
            )
        } else {
            Failure::new(
                1,
                "http",
                format!(
                    "talking to the coda service at {}: {}",
                    self.server(),
                    chain(&e)
                ),
            )
        }
    }
}

/// The API's error shape (`{"error": {"kind", "message", "problems"?}}`), or whatever else
/// answered (a proxy's page, say) by its status.
fn api_error(status: StatusCode, bytes: &[u8]) -> Failure {
    let body: Option<Json> = serde_json::from_slice(bytes).ok();
    let error = body
        .as_ref()
        .and_then(|b| b.get("error"))
        .filter(|e| e.is_object());
    let Some(error) = error else {
        let text = String::from_utf8_lossy(bytes);
        let text: String = text.trim().chars().take(200).collect();
        return Failure::new(
            1,
            &format!("http-{}", status.as_u16()),
            if text.is_empty() {
                status.to_string()
            } else {
                format!("{status}: {text}")
            },
        );
    };
    let kind = error
        .get("kind")
        .and_then(Json::as_str)
        .unwrap_or("error")
        .to_owned();
    let mut message = error
        .get("message")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_owned();
    if kind == "no-route" {
        // Endpoints arrive with server versions; say so rather than leave a bare 404.
        message.push_str(" (the server does not have this endpoint: is it an older coda?)");
    }
    Failure {
        // A plan that does not validate exits 2, as `coda plan validate` does locally.
        status: if kind == "invalid-plan" { 2 } else { 1 },
        kind,
        message,
        problems: error
            .get("problems")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default(),
        body,
    }
}

/// An error and its causes on one line (reqwest's top-level message omits the cause).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// The innermost cause ("Connection refused (os error 111)"): for a connection that failed,
/// the rest repeats the URL and reqwest's layers.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// rustls needs a process-wide crypto provider when reqwest is built without one: ring, as
/// in `coda-capabilities`. Installing fails only when one is installed already: as good.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---- What the commands print ----

/// Pretty JSON on stdout.
pub fn print_json(json: &Json) {
    println!("{json:#}");
}

/// A table without borders: columns two spaces apart, no space at either end of a line
/// (as `kubectl get` prints), so it reads well and `grep`s and `awk`s as well.
pub struct Grid(Table);

impl Grid {
    fn new() -> Self {
        let mut table = Table::new();
        table.load_style(presets::NOTHING);
        Grid(table)
    }
}

impl std::ops::Deref for Grid {
    type Target = Table;
    fn deref(&self) -> &Table {
        &self.0
    }
}

impl std::ops::DerefMut for Grid {
    fn deref_mut(&mut self) -> &mut Table {
        &mut self.0
    }
}

impl std::fmt::Display for Grid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Padding applies to the columns that exist, which appear with the rows.
        let mut table = self.0.clone();
        for column in table.column_iter_mut() {
            column.set_padding((0, 2));
        }
        f.write_str(&table.trim_fmt())
    }
}

/// A table with a header.
pub fn table(header: &[&str]) -> Grid {
    let mut table = Grid::new();
    table.set_header(header.iter().map(|h| h.to_ascii_uppercase()));
    table
}

/// One value as a table cell: text as is, times (`*_at_ms`) as UTC, nothing as `-`, lists
/// of plain values joined, anything else as compact JSON.
pub fn cell(key: &str, value: Option<&Json>) -> String {
    match value {
        None | Some(Json::Null) => "-".into(),
        Some(Json::String(s)) => s.clone(),
        Some(Json::Number(n)) if key.ends_with("_at_ms") || key == "at_ms" => {
            n.as_i64().map(format_ms).unwrap_or_else(|| n.to_string())
        }
        Some(Json::Array(items)) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            if items.is_empty() {
                "-".into()
            } else {
                items
                    .iter()
                    .map(|i| cell("", Some(i)))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }
        Some(other) => other.to_string(),
    }
}

/// Milliseconds since the epoch as an RFC 3339 time in UTC, to the second.
pub fn format_ms(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => {
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
                .to_string()
        }
        Err(_) => ms.to_string(),
    }
}

/// A list of objects as a table: the `preferred` columns that any item has, in that order,
/// else every key of the first item. The API's lists grow fields; the table shows the ones
/// a person scans for, and `--json` has them all.
pub fn list_table(items: &[Json], preferred: &[&str]) -> Grid {
    let mut columns: Vec<String> = preferred
        .iter()
        .filter(|c| items.iter().any(|i| i.get(**c).is_some()))
        .map(|c| (*c).to_owned())
        .collect();
    if columns.is_empty()
        && let Some(Json::Object(first)) = items.first()
    {
        columns = first.keys().cloned().collect();
    }
    let header: Vec<&str> = columns.iter().map(|c| header_name(c)).collect();
    let mut table = table(&header);
    for item in items {
        table.add_row(columns.iter().map(|c| cell(c, item.get(c))));
    }
    table
}

/// A column's header: `created_at_ms` reads `created`.
fn header_name(key: &str) -> &str {
    key.strip_suffix("_at_ms").unwrap_or(key)
}

/// An object as two columns, field and value, in the order given, then the rest.
pub fn record_table(record: &Json, order: &[&str], skip: &[&str]) -> Grid {
    let mut table = Grid::new();
    let Some(object) = record.as_object() else {
        table.add_row(vec![cell("", Some(record))]);
        return table;
    };
    let keys = order
        .iter()
        .map(|k| (*k).to_owned())
        .filter(|k| object.contains_key(k))
        .chain(
            object
                .keys()
                .filter(|k| !order.contains(&k.as_str()))
                .cloned(),
        )
        .filter(|k| !skip.contains(&k.as_str()));
    for key in keys {
        // `retired_at_ms` beside `retired` keeps its `_at`: two rows both named `retired`
        // would leave the reader guessing which is which.
        let name = match header_name(&key) {
            short if short != key && object.contains_key(short) => {
                key.strip_suffix("_ms").unwrap_or(&key)
            }
            short => short,
        };
        table.add_row(vec![format!("{name}:"), cell(&key, object.get(&key))]);
    }
    table
}

/// The items of a list answer: the array under `key`, or the answer itself if it is one.
pub fn items<'a>(answer: &'a Json, key: &str) -> &'a [Json] {
    answer
        .get(key)
        .and_then(Json::as_array)
        .or_else(|| answer.as_array())
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_named_like_another_field_keeps_its_at() {
        let record =
            serde_json::json!({"retired": false, "retired_at_ms": null, "uploaded_at_ms": null});
        let text = record_table(&record, &["retired"], &[]).to_string();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(names, ["retired:", "retired_at:", "uploaded:"], "{text}");
    }

    fn args(server: Option<&str>, token: Option<&str>) -> ClientArgs {
        ClientArgs {
            server: server.map(str::to_owned),
            token: token.map(str::to_owned),
            json: false,
        }
    }

    #[test]
    fn a_missing_token_names_the_variable() {
        let e = Client::new(&args(None, None)).err().unwrap();
        assert_eq!(e.status, 2);
        assert!(e.message.contains("CODA_TOKEN"), "{}", e.message);
        let e = Client::new(&args(None, Some("  "))).err().unwrap();
        assert!(e.message.contains("CODA_TOKEN"), "{}", e.message);
    }

    #[test]
    fn a_bad_server_is_a_usage_error_and_the_token_is_never_shown() {
        let e = Client::new(&args(Some("ftp://x"), Some("coda_secret")))
            .err()
            .unwrap();
        assert_eq!(e.status, 2);
        assert!(e.message.contains("ftp://x"));
        assert!(!e.message.contains("coda_secret"));
        let e = Client::new(&args(None, Some("bad\ntoken"))).err().unwrap();
        assert!(!e.message.contains("bad"), "{}", e.message);
    }

    #[test]
    fn segments_are_encoded_and_a_base_path_is_kept() {
        let client = Client::new(&args(Some("http://h:1/coda/"), Some("t"))).unwrap();
        let url = client.url(&["v1", "runs", "a/b?c"], &[("plan", "p q".into())]);
        assert_eq!(url.as_str(), "http://h:1/coda/v1/runs/a%2Fb%3Fc?plan=p+q");
        let client = Client::new(&args(Some("http://u:pw@h:1"), Some("t"))).unwrap();
        assert_eq!(client.server(), "http://h:1/");
    }

    #[test]
    fn the_api_error_shape_becomes_kind_message_and_problems() {
        let body = br#"{"error": {"kind": "invalid-plan", "message": "2 problem(s)",
            "problems": [{"node": "a", "field": "applet", "message": "unknown"},
                         {"node": null, "field": "start", "message": "dangling"}]}}"#;
        let e = api_error(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!((e.status, e.kind.as_str()), (2, "invalid-plan"));
        assert_eq!(
            problem_line(&e.problems[0]),
            "node `a`, field `applet`: unknown"
        );
        assert_eq!(problem_line(&e.problems[1]), "field `start`: dangling");
        let e = api_error(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert_eq!((e.status, e.kind.as_str()), (1, "http-502"));
        assert!(e.message.contains("bad gateway"));
    }

    #[test]
    fn cells_format_times_lists_and_nothing() {
        assert_eq!(
            cell("created_at_ms", Some(&json!(0))),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(cell("x", Some(&json!(["a", 1]))), "a, 1");
        assert_eq!(cell("x", None), "-");
        assert_eq!(cell("x", Some(&json!({"a": 1}))), r#"{"a":1}"#);
    }
}
