//! The capabilities an applet may be granted (http, email, sql, secrets, interactions), as one
//! policy trait with deny-all defaults.
//!
//! The sandbox (`coda-runtime`) forwards every capability import to the invocation's [`Capabilities`]. What is
//! not overridden answers `not-granted`, so an applet reaches nothing unless the embedder
//! wires a capability and grants it: deny by default is the default implementation, not a
//! check that could be forgotten.

use std::time::Duration;

use crate::{HostError, InvocationContext, Value};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailMessage {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub reply_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FollowUpChannel {
    Phone,
    TextMessage,
    Email,
    Task,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    pub channel: FollowUpChannel,
    pub queue: String,
    pub subject: Option<String>,
    pub assign_to: Option<String>,
}

fn not_granted(what: &str) -> HostError {
    HostError::NotGranted(format!(
        "the {what} capability is not granted to this applet"
    ))
}

/// The host side of the capability imports. Each call gets the invocation's context (tenant,
/// run, node, idempotency key) so an implementation can check grants and pass keys on.
#[async_trait]
pub trait Capabilities: Send + Sync {
    async fn http_send(
        &self,
        _cx: &InvocationContext,
        _request: HttpRequest,
    ) -> Result<HttpResponse, HostError> {
        Err(not_granted("http"))
    }

    async fn email_send(
        &self,
        _cx: &InvocationContext,
        _message: EmailMessage,
    ) -> Result<String, HostError> {
        Err(not_granted("email"))
    }

    async fn sql_query(
        &self,
        _cx: &InvocationContext,
        _database: String,
        _statement: String,
        _params: Vec<Value>,
    ) -> Result<SqlRows, HostError> {
        Err(not_granted("sql"))
    }

    async fn sql_execute(
        &self,
        _cx: &InvocationContext,
        _database: String,
        _statement: String,
        _params: Vec<Value>,
    ) -> Result<u64, HostError> {
        Err(not_granted("sql"))
    }

    async fn secret_get(
        &self,
        _cx: &InvocationContext,
        _name: String,
    ) -> Result<String, HostError> {
        Err(not_granted("secrets"))
    }

    async fn clone_interaction(
        &self,
        _cx: &InvocationContext,
        _follow_up: FollowUp,
    ) -> Result<String, HostError> {
        Err(not_granted("interactions"))
    }
}

/// The digest of one capability call: SHA-256 over its kind (`http`, `email`, `sql-query`,
/// `sql-execute`, `interactions`) and its request as JSON. The effect journal stores it to
/// match a re-executed call to its journaled result; a test fixture taken from a journal
/// carries it, so the harness can tell whether an applet still makes the same call.
pub fn request_digest(kind: &str, request: &impl Serialize) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    hasher.update([0]);
    // Serializing our own request types cannot fail (no maps with non-string keys).
    hasher.update(serde_json::to_vec(request).unwrap_or_default());
    hex::encode(hasher.finalize())
}

/// The request of a SQL call as its digest covers it: database, statement, parameters.
pub fn sql_request(database: &str, statement: &str, params: &[Value]) -> serde_json::Value {
    serde_json::to_value((database, statement, params)).unwrap_or_default()
}

/// Grants nothing: every capability call answers `not-granted`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DenyAll;

impl Capabilities for DenyAll {}

/// Bodies travel as base64 text in JSON (the effect journal), not as arrays of numbers.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
