//! Capability calls answered from a fixture's recordings instead of performed, each one
//! recorded as the applet made it.

use std::sync::Mutex;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use coda_types::capabilities::{
    CallKind, Capabilities, CapabilityCall, CapabilityReply, HttpRequest, SqlStatement,
    request_digest,
};
use coda_types::{HostError, InvocationContext, Value};
use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::fixture::{HttpResponseFixture, RecordedCall, SqlRowsFixture};
use crate::matching::subset_mismatch;

/// One call the applet made, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallMade {
    /// `http`, `email`, `sql-query`, `sql-execute`, `interactions` or `secret`.
    pub kind: CallKind,
    /// The request as people read it (`method`, `url`, `headers`, `body`...); a secret read
    /// shows only the name.
    pub request: Json,
    /// The answer the applet got, in the fixture's own form.
    pub answer: Json,
    /// The SHA-256 the effect journal would record for it (not for secret reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Where the answer came from: `recorded`, `missing` (none was recorded), `secret`.
    pub answered: &'static str,
}

/// Answers calls from the recordings, in order, and keeps what was asked.
pub struct FixtureCapabilities {
    recorded: Vec<RecordedCall>,
    secrets: std::collections::BTreeMap<String, String>,
    progress: Mutex<Progress>,
}

#[derive(Default)]
struct Progress {
    next: usize,
    made: Vec<CallMade>,
    mismatches: Vec<String>,
}

impl FixtureCapabilities {
    pub fn new(
        recorded: Vec<RecordedCall>,
        secrets: std::collections::BTreeMap<String, String>,
    ) -> Self {
        FixtureCapabilities {
            recorded,
            secrets,
            progress: Mutex::new(Progress::default()),
        }
    }

    /// The calls made, the mismatches found while answering them, and how many of the
    /// recorded calls were used.
    pub fn finish(&self) -> (Vec<CallMade>, Vec<String>, usize) {
        let progress = self.lock();
        (
            progress.made.clone(),
            progress.mismatches.clone(),
            progress.next,
        )
    }

    pub fn recorded(&self) -> &[RecordedCall] {
        &self.recorded
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers the next effectful call from the recording at its position.
    fn answer(&self, call: CapabilityCall) -> Result<CapabilityReply, HostError> {
        let kind = call.kind();
        let shown = request_json(&call);
        let digest = request_digest(&call);
        let mut progress = self.lock();
        let position = progress.next;
        progress.next += 1;
        let Some(recorded) = self.recorded.get(position) else {
            let error = HostError::Unavailable(format!(
                "the fixture has no recorded answer for call #{position} ({kind})"
            ));
            progress.mismatches.push(format!(
                "call #{position}: the applet made a {kind} call the fixture does not record: {shown}"
            ));
            progress.made.push(CallMade {
                kind,
                request: shown,
                answer: error_json(&error),
                digest: Some(digest),
                answered: "missing",
            });
            return Err(error);
        };
        if recorded.kind() != kind {
            let error = HostError::Unavailable(format!(
                "the fixture records call #{position} as {}, not {kind}",
                recorded.kind()
            ));
            progress.mismatches.push(format!(
                "call #{position}: the applet made a {kind} call where the fixture records {}: {shown}",
                recorded.kind()
            ));
            progress.made.push(CallMade {
                kind,
                request: shown,
                answer: error_json(&error),
                digest: Some(digest),
                answered: "missing",
            });
            return Err(error);
        }
        let result = recorded.reply();
        let (expected, expected_digest) = recorded.request();
        if let Some(expected) = expected
            && let Some(why) = subset_mismatch(expected, &shown, "request")
        {
            progress
                .mismatches
                .push(format!("call #{position} ({kind}): {why}"));
        }
        if let Some(expected_digest) = expected_digest
            && expected_digest != digest
        {
            progress.mismatches.push(format!(
                "call #{position} ({kind}): the request differs from the recorded one \
                 (digest {digest}, recorded {expected_digest}): {shown}"
            ));
        }
        progress.made.push(CallMade {
            kind,
            request: shown,
            answer: answer_json(&result),
            digest: Some(digest),
            answered: "recorded",
        });
        result
    }

    /// Secrets come from the fixture's `secrets`; their values never appear in the report.
    fn secret(&self, name: String) -> Result<CapabilityReply, HostError> {
        let result = self.secrets.get(&name).cloned().ok_or_else(|| {
            HostError::NotGranted(format!(
                "the secret `{name}` is not in the fixture's secrets"
            ))
        });
        self.lock().made.push(CallMade {
            kind: CallKind::Secret,
            request: json!({ "name": name }),
            answer: match &result {
                Ok(_) => json!({ "response": "(redacted)" }),
                Err(error) => error_json(error),
            },
            digest: None,
            answered: "secret",
        });
        result.map(CapabilityReply::Secret)
    }
}

fn error_json(error: &HostError) -> Json {
    json!({ "error": error })
}

/// A request body as people read it: text when it is UTF-8 (JSON bodies stay text), base64
/// otherwise.
fn body_json(body: &[u8]) -> (&'static str, Json) {
    match std::str::from_utf8(body) {
        Ok(text) => ("body", Json::String(text.to_owned())),
        Err(_) => ("body_base64", Json::String(BASE64.encode(body))),
    }
}

/// Headers whose values are credentials: shown as `(redacted)` wherever a request is
/// printed, since they are made of secrets.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// The request of an http call as the report shows it and fixtures match it (credential
/// headers redacted).
pub fn http_request_json(request: &HttpRequest) -> Json {
    let headers: serde_json::Map<String, Json> = request
        .headers
        .iter()
        .map(|(n, v)| {
            let name = n.to_ascii_lowercase();
            let value = if CREDENTIAL_HEADERS.contains(&name.as_str()) {
                "(redacted)".to_owned()
            } else {
                v.clone()
            };
            (name, Json::String(value))
        })
        .collect();
    let mut shown = json!({
        "method": request.method,
        "url": request.url,
        "headers": headers,
    });
    if !request.body.is_empty() {
        let (field, body) = body_json(&request.body);
        shown[field] = body;
    }
    if let Some(timeout) = request.timeout {
        shown["timeout_ms"] = json!(timeout.as_millis() as u64);
    }
    shown
}

/// The request of a call as the report shows it and fixtures match it (`method`, `url`,
/// `headers`, `body`... for http; the name only for a secret).
pub fn request_json(call: &CapabilityCall) -> Json {
    match call {
        CapabilityCall::Http(request) => http_request_json(request),
        CapabilityCall::Email(message) => serde_json::to_value(message).unwrap_or(Json::Null),
        CapabilityCall::SqlQuery(statement) | CapabilityCall::SqlExecute(statement) => {
            sql_request_json(statement)
        }
        CapabilityCall::Secret { name } => json!({ "name": name }),
        CapabilityCall::Interactions(follow_up) => {
            serde_json::to_value(follow_up).unwrap_or(Json::Null)
        }
        // `{"op": "set", "key": …, "value": …, "ttl_millis": …}`, the value as plain JSON.
        CapabilityCall::Kv(call) => {
            let mut shown = serde_json::to_value(&call.op).unwrap_or(Json::Null);
            if let Some(value) = call.op.value() {
                shown["value"] = value.to_json();
            }
            shown
        }
    }
}

fn sql_request_json(statement: &SqlStatement) -> Json {
    json!({
        "database": statement.database,
        "statement": statement.statement,
        "params": statement.params.iter().map(Value::to_json).collect::<Vec<_>>(),
    })
}

/// The answer a call got as the report shows it, in the fixture's own form: `{"response":
/// ...}` or `{"error": ...}`. A secret's value is never shown.
pub fn answer_json(result: &Result<CapabilityReply, HostError>) -> Json {
    let response = match result {
        Err(error) => return error_json(error),
        Ok(CapabilityReply::Http(response)) => {
            json!(HttpResponseFixture::from_response(response))
        }
        Ok(CapabilityReply::SqlQuery(rows)) => json!(SqlRowsFixture::from_rows(rows)),
        Ok(CapabilityReply::Secret(_)) => json!("(redacted)"),
        Ok(
            reply @ (CapabilityReply::Email(_)
            | CapabilityReply::SqlExecute(_)
            | CapabilityReply::Interactions(_)
            | CapabilityReply::Kv(_)),
        ) => json!(reply),
    };
    json!({ "response": response })
}

#[async_trait]
impl Capabilities for FixtureCapabilities {
    async fn call(
        &self,
        _cx: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        match call {
            CapabilityCall::Http(_)
            | CapabilityCall::Email(_)
            | CapabilityCall::SqlQuery(_)
            | CapabilityCall::SqlExecute(_)
            | CapabilityCall::Interactions(_)
            | CapabilityCall::Kv(_) => self.answer(call),
            CapabilityCall::Secret { name } => self.secret(name),
        }
    }
}
