//! The fixture format: what an applet is given (config, data, state, secrets, the recorded
//! answers to its capability calls) and what it is expected to do. YAML or JSON.
//!
//! ```yaml
//! config: {url: "https://hooks.example/notify"}
//! data: {CustomerName: Ada}
//! state: {}
//! secrets: {api-token: t0ken}
//! calls:
//!   - http:
//!       request: {method: POST, url: "https://hooks.example/notify"}
//!       response: {status: 200, headers: {content-type: application/json}, body: '{"ok": true}'}
//!   - email: {error: {kind: unavailable, message: "451 try later"}}
//! expect:
//!   outcome: {exit: sent}
//!   data: {WebhookStatus: 200}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use coda_types::capabilities::{CallKind, CapabilityReply, HttpResponse, SqlRows};
use coda_types::kv::KvAnswer;
use coda_types::{HostError, Value, Values};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// The largest fixture file read: fixtures are hand-written or taken from one step.
pub const MAX_FIXTURE_BYTES: u64 = 16 * 1024 * 1024;

/// One offline test of an applet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// What this fixture checks, for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The applet it is for, `name` or `name@version`: the name must match, the version is
    /// information (a fixed version of the applet runs its predecessor's fixtures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applet: Option<String>,
    /// The node's configuration.
    #[serde(default = "empty_object")]
    pub config: Json,
    /// The data sources the applet sees, as plain JSON values.
    #[serde(default)]
    pub data: Map<String, Json>,
    /// This node's state in the run.
    #[serde(default)]
    pub state: Map<String, Json>,
    /// Secret values the applet may read by name; any other name is not granted.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Where the invocation stands (run, node, idempotency key...); defaults are fixed, so a
    /// fixture gives the same keys every time.
    #[serde(default)]
    pub context: ContextFixture,
    /// The applet's wall clock at the start (RFC 3339); the host's time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The answers to the applet's capability calls, in the order it makes them. Each is a
    /// one-key map (`- http: {...}`), in YAML as in JSON.
    #[serde(default, with = "serde_yaml_ng::with::singleton_map_recursive")]
    pub calls: Vec<RecordedCall>,
    #[serde(default)]
    pub expect: Expect,
    #[serde(default)]
    pub limits: LimitsFixture,
}

fn empty_object() -> Json {
    Json::Object(Map::new())
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextFixture {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// Limits for the invocation; the host's defaults where absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFixture {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_calls: Option<u64>,
}

/// What the applet must do. Every part is optional: only what is given is checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The outcome, as `coda applet invoke` prints it: `{exit: sent}`,
    /// `{pause: {millis: 1000, exit: next}}`. Fields left out are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Json>,
    /// An error instead of an outcome: `{kind: failure, code: bad-score}`,
    /// `{kind: limit-exceeded}`. Fields left out are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Json>,
    /// The data sources the applet set, all of them: one it set that is not listed fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Json>>,
    /// The state it set, all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Map<String, Json>>,
    /// Text that some log line must contain, one entry per line looked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// Every recorded call must be made (default true): a recorded answer the applet never
    /// asked for usually means it took another path.
    #[serde(default = "yes")]
    pub all_calls_made: bool,
    /// Fail when the invocation used more fuel than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fuel: Option<u64>,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            outcome: None,
            error: None,
            data: None,
            state: None,
            logs: Vec::new(),
            all_calls_made: true,
            max_fuel: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// One recorded capability call: the kind's wire name is the key (`http`, `email`,
/// `sql-query`, `sql-execute`, `interactions`, `kv`; a test checks each against [`CallKind`]).
/// Secret reads are not recorded: a fixture's `secrets` answer them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum RecordedCall {
    Http(Recorded<HttpResponseFixture>),
    Email(Recorded<String>),
    SqlQuery(Recorded<SqlRowsFixture>),
    SqlExecute(Recorded<u64>),
    Interactions(Recorded<String>),
    /// A key-value call's answer: `{counted: 2}`, `{written: 1}`, `{entry: null}`…
    Kv(Recorded<KvAnswer>),
}

impl RecordedCall {
    pub fn kind(&self) -> CallKind {
        match self {
            RecordedCall::Http(_) => CallKind::Http,
            RecordedCall::Email(_) => CallKind::Email,
            RecordedCall::SqlQuery(_) => CallKind::SqlQuery,
            RecordedCall::SqlExecute(_) => CallKind::SqlExecute,
            RecordedCall::Interactions(_) => CallKind::Interactions,
            RecordedCall::Kv(_) => CallKind::Kv,
        }
    }

    /// The recorded answer, as the applet gets it.
    pub fn reply(&self) -> Result<CapabilityReply, HostError> {
        match self {
            RecordedCall::Http(r) => r
                .answer(|response| {
                    // Checked when the fixture was read.
                    response.to_response().unwrap_or(HttpResponse {
                        status: 500,
                        headers: Vec::new(),
                        body: Vec::new(),
                    })
                })
                .map(CapabilityReply::Http),
            RecordedCall::Email(r) => r.answer(String::clone).map(CapabilityReply::Email),
            RecordedCall::SqlQuery(r) => r
                .answer(SqlRowsFixture::to_rows)
                .map(CapabilityReply::SqlQuery),
            RecordedCall::SqlExecute(r) => r.answer(|n| *n).map(CapabilityReply::SqlExecute),
            RecordedCall::Interactions(r) => {
                r.answer(String::clone).map(CapabilityReply::Interactions)
            }
            RecordedCall::Kv(r) => r.answer(KvAnswer::clone).map(CapabilityReply::Kv),
        }
    }

    /// What the call is checked against: the request fields given and the digest.
    pub fn request(&self) -> (Option<&Json>, Option<&str>) {
        let (request, digest) = match self {
            RecordedCall::Http(r) => (&r.request, &r.digest),
            RecordedCall::Email(r) => (&r.request, &r.digest),
            RecordedCall::SqlQuery(r) => (&r.request, &r.digest),
            RecordedCall::SqlExecute(r) => (&r.request, &r.digest),
            RecordedCall::Interactions(r) => (&r.request, &r.digest),
            RecordedCall::Kv(r) => (&r.request, &r.digest),
        };
        (request.as_ref(), digest.as_deref())
    }
}

/// A recorded answer: a response or a host error (exactly one), and optionally what the
/// request must look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(serialize = "R: Serialize", deserialize = "R: Deserialize<'de>")
)]
pub struct Recorded<R> {
    /// Fields the request must have (a subset of what `coda applet test` prints as the
    /// call's request); fields left out are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Json>,
    /// The SHA-256 the effect journal recorded for this call (fixtures taken from a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<R>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<HostError>,
}

impl<R> Recorded<R> {
    pub fn response(response: R) -> Self {
        Recorded {
            request: None,
            digest: None,
            response: Some(response),
            error: None,
        }
    }

    pub fn error(error: HostError) -> Self {
        Recorded {
            request: None,
            digest: None,
            response: None,
            error: Some(error),
        }
    }

    /// The answer, converted; a fixture with neither or both is refused when read.
    /// The recorded answer: the response converted, or the error.
    pub fn answer<T>(&self, convert: impl FnOnce(&R) -> T) -> Result<T, HostError> {
        match (&self.response, &self.error) {
            (_, Some(error)) => Err(error.clone()),
            (Some(response), None) => Ok(convert(response)),
            (None, None) => Err(HostError::Invalid(
                "the fixture's recorded call has no response".into(),
            )),
        }
    }

    fn check(&self, position: usize, kind: CallKind) -> Result<(), String> {
        match (&self.response, &self.error) {
            (Some(_), Some(_)) => Err(format!(
                "calls[{position}] ({kind}): give a response or an error, not both"
            )),
            (None, None) => Err(format!(
                "calls[{position}] ({kind}): needs a `response` or an `error`"
            )),
            _ => Ok(()),
        }
    }
}

/// An HTTP response as people write it: headers as a map, the body as text (or base64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpResponseFixture {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body as text; JSON may be written as a YAML/JSON value and is sent as its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Json>,
    /// The body as base64, for bytes that are not text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

fn ok() -> u16 {
    200
}

impl HttpResponseFixture {
    /// The response the applet gets; an error for a body that is not what it claims.
    pub fn to_response(&self) -> Result<HttpResponse, String> {
        let body = match (&self.body, &self.body_base64) {
            (Some(_), Some(_)) => return Err("give `body` or `body_base64`, not both".into()),
            (Some(Json::String(text)), None) => text.clone().into_bytes(),
            (Some(json), None) => json.to_string().into_bytes(),
            (None, Some(encoded)) => BASE64
                .decode(encoded)
                .map_err(|e| format!("`body_base64` is not base64: {e}"))?,
            (None, None) => Vec::new(),
        };
        Ok(HttpResponse {
            status: self.status,
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            body,
        })
    }

    /// The fixture form of a response (a journaled one): text bodies as text.
    pub fn from_response(response: &HttpResponse) -> Self {
        let (body, body_base64) = match std::str::from_utf8(&response.body) {
            Ok("") => (None, None),
            Ok(text) => (Some(Json::String(text.to_owned())), None),
            Err(_) => (None, Some(BASE64.encode(&response.body))),
        };
        HttpResponseFixture {
            status: response.status,
            headers: response
                .headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect(),
            body,
            body_base64,
        }
    }
}

/// Rows as plain JSON values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRowsFixture {
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub rows: Vec<Vec<Json>>,
}

impl SqlRowsFixture {
    pub fn to_rows(&self) -> SqlRows {
        SqlRows {
            columns: self.columns.clone(),
            rows: self
                .rows
                .iter()
                .map(|row| row.iter().map(Value::from_json).collect())
                .collect(),
        }
    }

    pub fn from_rows(rows: &SqlRows) -> Self {
        SqlRowsFixture {
            columns: rows.columns.clone(),
            rows: rows
                .rows
                .iter()
                .map(|row| row.iter().map(Value::to_json).collect())
                .collect(),
        }
    }
}

/// Why a fixture could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {size} bytes is more than a fixture may be ({MAX_FIXTURE_BYTES} bytes)")]
    TooLarge { path: String, size: u64 },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Fixture {
    /// Reads a fixture from a `.yaml`, `.yml` or `.json` file (YAML is a superset of JSON:
    /// any of them parses), checking it whole before anything runs.
    pub fn from_file(path: &Path) -> Result<Fixture, FixtureError> {
        let shown = path.display().to_string();
        let io = |source| FixtureError::Io {
            path: shown.clone(),
            source,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_FIXTURE_BYTES {
            return Err(FixtureError::TooLarge { path: shown, size });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Fixture::parse(&text).map_err(|message| FixtureError::Invalid {
            path: shown,
            message,
        })
    }

    /// Parses and checks a fixture; the error names the field that is wrong.
    pub fn parse(text: &str) -> Result<Fixture, String> {
        let deserializer =
            coda_types::yaml::deserializer(text).map_err(|e| format!("the fixture {e}"))?;
        let fixture: Fixture = serde_path_to_error(deserializer)?;
        fixture.check()?;
        Ok(fixture)
    }

    /// Checks what serde cannot: one answer per call, a config that is an object, a time
    /// that parses.
    pub fn check(&self) -> Result<(), String> {
        if !self.config.is_object() {
            return Err("config: must be an object (the node's configuration)".into());
        }
        for (position, call) in self.calls.iter().enumerate() {
            let kind = call.kind();
            match call {
                RecordedCall::Http(r) => {
                    r.check(position, kind)?;
                    if let Some(response) = &r.response {
                        response
                            .to_response()
                            .map_err(|e| format!("calls[{position}] (http): {e}"))?;
                    }
                }
                RecordedCall::Email(r) | RecordedCall::Interactions(r) => {
                    r.check(position, kind)?
                }
                RecordedCall::SqlQuery(r) => r.check(position, kind)?,
                RecordedCall::SqlExecute(r) => r.check(position, kind)?,
                RecordedCall::Kv(r) => r.check(position, kind)?,
            }
        }
        if let Some(at) = &self.at {
            parse_time(at).map_err(|e| format!("at: {e}"))?;
        }
        if self.expect.outcome.is_some() && self.expect.error.is_some() {
            return Err("expect: give an `outcome` or an `error`, not both".into());
        }
        Ok(())
    }

    /// The fixture as YAML, as `coda runs show --as-fixture` writes it.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).unwrap_or_default()
    }

    pub(crate) fn data_values(&self) -> Values {
        to_values(&self.data)
    }

    pub(crate) fn state_values(&self) -> Values {
        to_values(&self.state)
    }

    pub(crate) fn wall_clock(&self) -> Option<std::time::SystemTime> {
        let at = parse_time(self.at.as_deref()?).ok()?;
        Some(std::time::SystemTime::from(at))
    }
}

pub(crate) fn to_values(map: &Map<String, Json>) -> Values {
    map.iter()
        .map(|(name, value)| (name.clone(), Value::from_json(value)))
        .collect()
}

fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse::<jiff::Timestamp>()
        .map_err(|e| format!("`{text}` is not an RFC 3339 time like 2026-03-29T07:30:00Z ({e})"))
}

/// Deserializes, naming the path of the field that is wrong (`calls[1].http.response`).
fn serde_path_to_error<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Fixture, String> {
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(d, &mut track);
    Fixture::deserialize(tracked).map_err(|e| {
        let path = track.path().to_string();
        let message = e.to_string();
        if path == "." || path == "?" || path.is_empty() || message.starts_with(&path) {
            message
        } else {
            format!("{path}: {message}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded call's key in a fixture is its kind's wire name, the one journals and
    /// reports use.
    #[test]
    fn a_recorded_calls_key_is_its_kinds_wire_name() {
        let calls = [
            RecordedCall::Http(Recorded::response(HttpResponseFixture {
                status: 200,
                headers: BTreeMap::new(),
                body: None,
                body_base64: None,
            })),
            RecordedCall::Email(Recorded::response("id".into())),
            RecordedCall::SqlQuery(Recorded::response(SqlRowsFixture {
                columns: vec![],
                rows: vec![],
            })),
            RecordedCall::SqlExecute(Recorded::response(1)),
            RecordedCall::Interactions(Recorded::response("int-1".into())),
            RecordedCall::Kv(Recorded::response(KvAnswer::Counted(2))),
        ];
        for call in calls {
            let json = serde_json::to_value(&call).unwrap();
            let key = json.as_object().and_then(|o| o.keys().next()).unwrap();
            assert_eq!(key, call.kind().as_str());
            assert_eq!(call.reply().unwrap().kind(), call.kind());
        }
    }
}
