//! The capability calls an applet may make (http, email, sql, secrets, interactions, kv): a
//! closed set of kinds ([`CallKind`]), one call type ([`CapabilityCall`]) and its reply
//! ([`CapabilityReply`]), and one trait with one method ([`Capabilities::call`]).
//!
//! The sandbox (`coda-runtime`) turns every capability import into a [`CapabilityCall`] and
//! hands it to the invocation's [`Capabilities`]. [`DenyAll`] answers every call
//! `not-granted`, so an applet reaches nothing unless the embedder wires capabilities that
//! grant it something.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::kv::{KvAnswer, KvCall, KvOp};
use crate::{Capability, HostError, InvocationContext, Value};
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

/// The kind of a capability call: the closed set every layer (the sandbox, the grant
/// checks, the effect journal, the offline fixtures, the dry run) handles, each by an
/// exhaustive `match`, so a new kind does not compile until every layer says what it does
/// with it.
///
/// Its wire name ([`CallKind::as_str`]) is written in effect journals, fixtures, usage
/// figures and digests; it is spelled here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallKind {
    Http,
    Email,
    SqlQuery,
    SqlExecute,
    Secret,
    Interactions,
    Kv,
}

impl CallKind {
    pub const ALL: [CallKind; 7] = [
        CallKind::Http,
        CallKind::Email,
        CallKind::SqlQuery,
        CallKind::SqlExecute,
        CallKind::Secret,
        CallKind::Interactions,
        CallKind::Kv,
    ];

    /// The wire name: `http`, `email`, `sql-query`, `sql-execute`, `secret`, `interactions`,
    /// `kv`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CallKind::Http => "http",
            CallKind::Email => "email",
            CallKind::SqlQuery => "sql-query",
            CallKind::SqlExecute => "sql-execute",
            CallKind::Secret => "secret",
            CallKind::Interactions => "interactions",
            CallKind::Kv => "kv",
        }
    }

    /// The capability a tenant grants for calls of this kind.
    pub const fn capability(self) -> Capability {
        match self {
            CallKind::Http => Capability::Http,
            CallKind::Email => Capability::Email,
            CallKind::SqlQuery | CallKind::SqlExecute => Capability::Sql,
            CallKind::Secret => Capability::Secrets,
            CallKind::Interactions => Capability::Interactions,
            CallKind::Kv => Capability::Kv,
        }
    }
}

impl fmt::Display for CallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CallKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        CallKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("`{text}` is not a capability call kind"))
    }
}

impl Serialize for CallKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CallKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A SQL statement on one of the tenant's databases, with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlStatement {
    pub database: String,
    pub statement: String,
    pub params: Vec<Value>,
}

impl SqlStatement {
    /// The statement as its digest covers it: `[database, statement, params]`.
    fn digest_json(&self) -> serde_json::Value {
        serde_json::to_value((&self.database, &self.statement, &self.params)).unwrap_or_default()
    }
}

/// One capability call an applet makes, as every layer between the sandbox and the world
/// sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum CapabilityCall {
    Http(HttpRequest),
    Email(EmailMessage),
    SqlQuery(SqlStatement),
    SqlExecute(SqlStatement),
    Secret { name: String },
    Interactions(FollowUp),
    Kv(KvCall),
}

impl CapabilityCall {
    pub fn kind(&self) -> CallKind {
        match self {
            CapabilityCall::Http(_) => CallKind::Http,
            CapabilityCall::Email(_) => CallKind::Email,
            CapabilityCall::SqlQuery(_) => CallKind::SqlQuery,
            CapabilityCall::SqlExecute(_) => CallKind::SqlExecute,
            CapabilityCall::Secret { .. } => CallKind::Secret,
            CapabilityCall::Interactions(_) => CallKind::Interactions,
            CapabilityCall::Kv(_) => CallKind::Kv,
        }
    }

    /// The answer to a call nothing grants.
    pub fn not_granted(&self) -> HostError {
        HostError::NotGranted(format!(
            "the {} capability is not granted to this applet",
            self.kind().capability()
        ))
    }
}

/// The answer to a [`CapabilityCall`], one variant per kind. It serializes as its content
/// alone (an HTTP response, a message id, rows...): the effect journal's format, which
/// [`CapabilityReply::from_json`] reads back given the call's kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CapabilityReply {
    Http(HttpResponse),
    /// The message id of the mail sent.
    Email(String),
    SqlQuery(SqlRows),
    /// The number of rows the statement changed.
    SqlExecute(u64),
    /// The secret's value.
    Secret(String),
    /// The id of the follow-up interaction created.
    Interactions(String),
    /// What the tenant's key-value store answered.
    Kv(KvAnswer),
}

impl CapabilityReply {
    pub fn kind(&self) -> CallKind {
        match self {
            CapabilityReply::Http(_) => CallKind::Http,
            CapabilityReply::Email(_) => CallKind::Email,
            CapabilityReply::SqlQuery(_) => CallKind::SqlQuery,
            CapabilityReply::SqlExecute(_) => CallKind::SqlExecute,
            CapabilityReply::Secret(_) => CallKind::Secret,
            CapabilityReply::Interactions(_) => CallKind::Interactions,
            CapabilityReply::Kv(_) => CallKind::Kv,
        }
    }

    /// Reads a reply of `kind` from its serialized content.
    pub fn from_json(kind: CallKind, json: serde_json::Value) -> serde_json::Result<Self> {
        use serde_json::from_value;
        Ok(match kind {
            CallKind::Http => CapabilityReply::Http(from_value(json)?),
            CallKind::Email => CapabilityReply::Email(from_value(json)?),
            CallKind::SqlQuery => CapabilityReply::SqlQuery(from_value(json)?),
            CallKind::SqlExecute => CapabilityReply::SqlExecute(from_value(json)?),
            CallKind::Secret => CapabilityReply::Secret(from_value(json)?),
            CallKind::Interactions => CapabilityReply::Interactions(from_value(json)?),
            CallKind::Kv => CapabilityReply::Kv(from_value(json)?),
        })
    }

    /// A reply of another kind than the call's is the host's mistake, not the applet's.
    fn mismatch(self, wanted: CallKind) -> HostError {
        HostError::Unavailable(format!(
            "the host answered a {wanted} call with a {} reply",
            self.kind()
        ))
    }

    pub fn into_http(self) -> Result<HttpResponse, HostError> {
        match self {
            CapabilityReply::Http(response) => Ok(response),
            other => Err(other.mismatch(CallKind::Http)),
        }
    }

    pub fn into_email(self) -> Result<String, HostError> {
        match self {
            CapabilityReply::Email(id) => Ok(id),
            other => Err(other.mismatch(CallKind::Email)),
        }
    }

    pub fn into_sql_query(self) -> Result<SqlRows, HostError> {
        match self {
            CapabilityReply::SqlQuery(rows) => Ok(rows),
            other => Err(other.mismatch(CallKind::SqlQuery)),
        }
    }

    pub fn into_sql_execute(self) -> Result<u64, HostError> {
        match self {
            CapabilityReply::SqlExecute(changed) => Ok(changed),
            other => Err(other.mismatch(CallKind::SqlExecute)),
        }
    }

    pub fn into_secret(self) -> Result<String, HostError> {
        match self {
            CapabilityReply::Secret(value) => Ok(value),
            other => Err(other.mismatch(CallKind::Secret)),
        }
    }

    pub fn into_interactions(self) -> Result<String, HostError> {
        match self {
            CapabilityReply::Interactions(id) => Ok(id),
            other => Err(other.mismatch(CallKind::Interactions)),
        }
    }

    pub fn into_kv(self) -> Result<KvAnswer, HostError> {
        match self {
            CapabilityReply::Kv(answer) => Ok(answer),
            other => Err(other.mismatch(CallKind::Kv)),
        }
    }
}

/// The host side of the capability imports: one method, one call at a time. Each call gets
/// the invocation's context (tenant, run, node, idempotency key) so an implementation can
/// check grants and pass keys on.
///
/// The layers that wrap another `Capabilities` (the effect journal, the offline fixtures,
/// the dry run) and the one that performs calls (`coda-capabilities`) match on the call
/// exhaustively: a new [`CallKind`] is a compile error in each until it is handled there.
#[async_trait]
pub trait Capabilities: Send + Sync {
    async fn call(
        &self,
        cx: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError>;
}

/// Typed calls over [`Capabilities::call`], for embedders and tests: each builds its call
/// and unwraps its reply.
#[async_trait]
pub trait CapabilitiesExt: Capabilities {
    async fn http_send(
        &self,
        cx: &InvocationContext,
        request: HttpRequest,
    ) -> Result<HttpResponse, HostError> {
        self.call(cx, CapabilityCall::Http(request))
            .await?
            .into_http()
    }

    async fn email_send(
        &self,
        cx: &InvocationContext,
        message: EmailMessage,
    ) -> Result<String, HostError> {
        self.call(cx, CapabilityCall::Email(message))
            .await?
            .into_email()
    }

    async fn sql_query(
        &self,
        cx: &InvocationContext,
        database: String,
        statement: String,
        params: Vec<Value>,
    ) -> Result<SqlRows, HostError> {
        let statement = SqlStatement {
            database,
            statement,
            params,
        };
        self.call(cx, CapabilityCall::SqlQuery(statement))
            .await?
            .into_sql_query()
    }

    async fn sql_execute(
        &self,
        cx: &InvocationContext,
        database: String,
        statement: String,
        params: Vec<Value>,
    ) -> Result<u64, HostError> {
        let statement = SqlStatement {
            database,
            statement,
            params,
        };
        self.call(cx, CapabilityCall::SqlExecute(statement))
            .await?
            .into_sql_execute()
    }

    async fn secret_get(&self, cx: &InvocationContext, name: String) -> Result<String, HostError> {
        self.call(cx, CapabilityCall::Secret { name })
            .await?
            .into_secret()
    }

    async fn clone_interaction(
        &self,
        cx: &InvocationContext,
        follow_up: FollowUp,
    ) -> Result<String, HostError> {
        self.call(cx, CapabilityCall::Interactions(follow_up))
            .await?
            .into_interactions()
    }

    async fn kv(&self, cx: &InvocationContext, op: KvOp) -> Result<KvAnswer, HostError> {
        self.call(cx, CapabilityCall::Kv(KvCall::new(op)))
            .await?
            .into_kv()
    }
}

impl<T: Capabilities + ?Sized> CapabilitiesExt for T {}

/// The digest of one capability call: SHA-256 over its kind's wire name and its request as
/// JSON. The effect journal stores it to match a re-executed call to its journaled result; a
/// test fixture taken from a journal carries it, so the harness can tell whether an applet
/// still makes the same call. Existing journals hold these digests: the bytes hashed for a
/// kind never change.
pub fn request_digest(call: &CapabilityCall) -> String {
    use sha2::{Digest, Sha256};
    // Serializing our own request types cannot fail (no maps with non-string keys).
    let request = match call {
        CapabilityCall::Http(request) => serde_json::to_vec(request),
        CapabilityCall::Email(message) => serde_json::to_vec(message),
        CapabilityCall::SqlQuery(statement) | CapabilityCall::SqlExecute(statement) => {
            serde_json::to_vec(&statement.digest_json())
        }
        // Never journaled; the name only, never a value.
        CapabilityCall::Secret { name } => serde_json::to_vec(name),
        CapabilityCall::Interactions(follow_up) => serde_json::to_vec(follow_up),
        // The call itself; where the journal records it is no part of it.
        CapabilityCall::Kv(call) => serde_json::to_vec(&call.op),
    };
    let mut hasher = Sha256::new();
    hasher.update(call.kind().as_str().as_bytes());
    hasher.update([0]);
    hasher.update(request.unwrap_or_default());
    hex::encode(hasher.finalize())
}

/// Grants nothing: every capability call answers `not-granted`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DenyAll;

#[async_trait]
impl Capabilities for DenyAll {
    async fn call(
        &self,
        _cx: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        Err(call.not_granted())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The digest as the journal computed it before calls were one type: kind, a zero byte,
    /// the request's JSON. Journals written then must still replay.
    fn digest_as_before(kind: &str, request: &impl Serialize) -> String {
        let mut hasher = Sha256::new();
        hasher.update(kind.as_bytes());
        hasher.update([0]);
        hasher.update(serde_json::to_vec(request).unwrap());
        hex::encode(hasher.finalize())
    }

    fn follow_up() -> FollowUp {
        FollowUp {
            channel: FollowUpChannel::TextMessage,
            queue: "callbacks".into(),
            subject: Some("call back".into()),
            assign_to: None,
        }
    }

    #[test]
    fn digests_hash_the_same_bytes_as_existing_journals() {
        let request = HttpRequest {
            method: "POST".into(),
            url: "https://hooks.example/notify".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{\"ok\":true}".to_vec(),
            timeout: Some(Duration::from_millis(1500)),
        };
        assert_eq!(
            request_digest(&CapabilityCall::Http(request.clone())),
            digest_as_before("http", &request)
        );
        let message = EmailMessage {
            to: vec!["ada@example.com".into()],
            cc: vec![],
            subject: "Your call".into(),
            text: "Thanks".into(),
            html: None,
            reply_to: None,
        };
        assert_eq!(
            request_digest(&CapabilityCall::Email(message.clone())),
            digest_as_before("email", &message)
        );
        let params = vec![
            Value::Integer(7),
            Value::Text("x".into()),
            Value::Number(1.5),
        ];
        let sql = SqlStatement {
            database: "reports".into(),
            statement: "select ?, ?, ?".into(),
            params: params.clone(),
        };
        let before = serde_json::to_value(("reports", "select ?, ?, ?", &params)).unwrap();
        assert_eq!(
            request_digest(&CapabilityCall::SqlQuery(sql.clone())),
            digest_as_before("sql-query", &before)
        );
        assert_eq!(
            request_digest(&CapabilityCall::SqlExecute(sql)),
            digest_as_before("sql-execute", &before)
        );
        assert_eq!(
            request_digest(&CapabilityCall::Interactions(follow_up())),
            digest_as_before("interactions", &follow_up())
        );
    }

    #[test]
    fn a_kind_reads_back_from_its_wire_name() {
        for kind in CallKind::ALL {
            assert_eq!(kind.as_str().parse::<CallKind>(), Ok(kind));
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::json!(kind.as_str()));
            assert_eq!(serde_json::from_value::<CallKind>(json).unwrap(), kind);
        }
        assert_eq!(CallKind::SqlQuery.to_string(), "sql-query");
        assert!("sql".parse::<CallKind>().is_err());
    }

    #[test]
    fn a_reply_serializes_as_its_content_and_reads_back_by_kind() {
        let rows = SqlRows {
            columns: vec!["n".into()],
            rows: vec![vec![Value::Integer(1)]],
        };
        let replies = [
            CapabilityReply::Http(HttpResponse {
                status: 204,
                headers: vec![],
                body: vec![0xff],
            }),
            CapabilityReply::Email("<id@example.com>".into()),
            CapabilityReply::SqlQuery(rows.clone()),
            CapabilityReply::SqlExecute(3),
            CapabilityReply::Secret("s3cret".into()),
            CapabilityReply::Interactions("int-2".into()),
            CapabilityReply::Kv(KvAnswer::Counted(2)),
            CapabilityReply::Kv(KvAnswer::Entry(Some(crate::kv::KvEntry {
                value: Value::Text("promoter".into()),
                version: 3,
                expires_at_ms: None,
            }))),
        ];
        for reply in replies {
            let json = serde_json::to_value(&reply).unwrap();
            assert_eq!(
                CapabilityReply::from_json(reply.kind(), json).unwrap(),
                reply
            );
        }
        // The journal's form of a result: `{"Ok": content}`, as before.
        let result: Result<CapabilityReply, HostError> = Ok(CapabilityReply::SqlExecute(3));
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            serde_json::json!({"Ok": 3})
        );
        assert_eq!(
            serde_json::to_value(CapabilityReply::SqlQuery(rows.clone())).unwrap(),
            serde_json::to_value(&rows).unwrap()
        );
    }

    #[tokio::test]
    async fn deny_all_names_the_capability_and_a_wrong_reply_is_the_hosts_error() {
        let cx = InvocationContext::default();
        let refused = DenyAll.secret_get(&cx, "token".into()).await.unwrap_err();
        assert_eq!(
            refused,
            HostError::NotGranted("the secrets capability is not granted to this applet".into())
        );
        let wrong = CapabilityReply::Email("id".into()).into_http().unwrap_err();
        assert!(
            matches!(&wrong, HostError::Unavailable(m) if m.contains("http call with a email reply")),
            "{wrong:?}"
        );
    }
}
