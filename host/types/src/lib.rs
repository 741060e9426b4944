//! The vocabulary of an applet invocation, as the rest of the host sees it: data-source
//! values, outcomes, failures, what an applet says about itself, and the typed errors of an
//! invocation.
//!
//! **Architecture Invariant:** this crate knows nothing of wasmtime or of any WIT version.
//! `coda-runtime` converts each world version's generated types into these, so the flow
//! engine, the store and the server never see a wasmtime type and keep working when a
//! second world version arrives.

pub mod capabilities;
pub mod files;
pub mod kv;
pub mod names;
pub mod scrub;
pub mod time;
pub mod yaml;

/// The SQLite `application_id` of the host's own store ("coda"): the store writes it into
/// its file, and a tenant's SQL capability refuses to open a file that carries it, so a
/// tenant database configured onto the store's file is never the tenant's to query.
pub const STORE_APPLICATION_ID: i32 = 0x636f_6461;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A data-source value. JSON arrays and objects are carried as [`Value::Json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type", content = "value")]
pub enum Value {
    Null,
    Boolean(bool),
    Integer(i64),
    Number(f64),
    Text(String),
    /// JSON text of an array or an object; always valid JSON once stored.
    Json(String),
}

impl Value {
    /// Converts JSON into a value: scalars to their variant, arrays and objects to `Json`.
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Boolean(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Integer(i),
                // Every JSON number that is not an i64 has an f64 form.
                None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Text(s.clone()),
            other => Value::Json(other.to_string()),
        }
    }

    /// Converts the value to JSON. A `Json` value whose text does not parse (the runtime
    /// never stores one) comes back as a string rather than being lost.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Boolean(b) => (*b).into(),
            Value::Integer(i) => (*i).into(),
            Value::Number(n) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Text(s) => s.clone().into(),
            Value::Json(text) => serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.clone())),
        }
    }

    /// Whether the value is one the host stores: a finite number, and JSON text that parses
    /// to an array or an object. The one rule for data, state and kv writes.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Value::Number(n) if !n.is_finite() => Err(format!("number {n} is not finite")),
            Value::Json(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Array(_) | serde_json::Value::Object(_)) => Ok(()),
                Ok(_) => Err(
                    "a json value must be an array or an object; use the scalar variants for scalars"
                        .into(),
                ),
                Err(e) => Err(format!("json value does not parse: {e}")),
            },
            _ => Ok(()),
        }
    }

    /// Bytes this value occupies when stored: what the data-byte limit counts.
    pub fn stored_len(&self) -> usize {
        match self {
            Value::Null | Value::Boolean(_) => 1,
            Value::Integer(_) | Value::Number(_) => 8,
            Value::Text(s) | Value::Json(s) => s.len(),
        }
    }
}

/// Data sources or node state: names to values, ordered for stable output.
pub type Values = BTreeMap<String, Value>;

/// Values as one plain JSON object (`{"CLID": "+1555…", "Attempts": 2}`), as people read
/// them; the tagged form `Value` serializes to is for storage.
pub fn values_json(values: &Values) -> serde_json::Value {
    serde_json::Value::Object(
        values
            .iter()
            .map(|(name, value)| (name.clone(), value.to_json()))
            .collect(),
    )
}

/// Where an invocation stands in its run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InvocationContext {
    pub tenant: String,
    pub interaction: Option<String>,
    pub run: String,
    pub plan: String,
    pub node: String,
    /// Stable across retries of one step.
    pub idempotency_key: String,
    /// 1 on the first try of the step.
    pub attempt: u32,
    /// The secret values this step holds, to scrub from everything the host writes about it
    /// (`scrub.rs`). Shared by every clone of the context; never serialized.
    #[serde(skip)]
    pub scrubber: scrub::Scrubber,
}

/// What an applet decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Follow the named exit.
    Exit(String),
    /// Park the run, then follow `exit`.
    Pause { millis: u64, exit: String },
    /// Park the run until `event` arrives or the timeout passes.
    Wait {
        event: String,
        timeout_millis: u64,
        on_event: String,
        on_timeout: String,
    },
    /// Continue in another plan.
    Route { plan: String, version: Option<u32> },
}

impl Outcome {
    /// Bytes of text the outcome carries: what the output limit counts.
    pub fn output_len(&self) -> usize {
        match self {
            Outcome::Exit(exit) => exit.len(),
            Outcome::Pause { exit, .. } => exit.len() + 8,
            Outcome::Wait {
                event,
                on_event,
                on_timeout,
                ..
            } => event.len() + on_event.len() + on_timeout.len() + 8,
            Outcome::Route { plan, .. } => plan.len() + 4,
        }
    }
}

/// The applet's own report that it could not do its work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub retryable: bool,
    pub retry_after_millis: Option<u64>,
}

impl Failure {
    pub fn output_len(&self) -> usize {
        self.code.len() + self.message.len() + 9
    }
}

/// A capability an applet may ask the tenant to grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Http,
    Email,
    Sql,
    Secrets,
    Interactions,
    /// The tenant's key-value store (world 0.2.0 on).
    Kv,
}

impl Capability {
    pub const ALL: [Capability; 6] = [
        Capability::Http,
        Capability::Email,
        Capability::Sql,
        Capability::Secrets,
        Capability::Interactions,
        Capability::Kv,
    ];

    /// The name used in WIT, grants and manifests.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Http => "http",
            Capability::Email => "email",
            Capability::Sql => "sql",
            Capability::Secrets => "secrets",
            Capability::Interactions => "interactions",
            Capability::Kv => "kv",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an applet says about itself (its `describe`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppletInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub exits: Vec<String>,
    /// The JSON Schema of the node configuration, parsed.
    pub config_schema: serde_json::Value,
    pub needs_live_party: bool,
    pub capabilities: Vec<Capability>,
}

impl AppletInfo {
    /// The exit entry that means "this applet also takes exits its node config names" (a
    /// Data Router's rules): such an applet may take any exit with a valid name.
    pub const CONFIGURED_EXITS: &'static str = "*";

    /// The keyword a property of the config schema carries to say that the applet uses a
    /// capability only when that property is set: `"x-coda-needs": "secrets"` (or a list of
    /// capability names). JSON Schema ignores keywords it does not know, and the WIT
    /// `describe` already carries the schema, so this needs no new world version.
    pub const NEEDS_KEYWORD: &'static str = "x-coda-needs";

    /// What a node with this `config` needs granted: every declared capability, except one
    /// that the config schema ties to properties ([`Self::NEEDS_KEYWORD`]) none of which the
    /// config sets (absent, null, false, empty text, list or object). A Data Connector with
    /// no `secrets` needs no secrets grant. This decides only what publishing asks for: at
    /// run time every call is still checked against the grant, and refused without one.
    pub fn needs(&self, config: &serde_json::Value) -> Vec<Capability> {
        let properties = self
            .config_schema
            .get("properties")
            .and_then(serde_json::Value::as_object);
        let set = |name: &str| match config.get(name) {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => false,
            Some(serde_json::Value::String(s)) => !s.is_empty(),
            Some(serde_json::Value::Array(a)) => !a.is_empty(),
            Some(serde_json::Value::Object(o)) => !o.is_empty(),
            Some(_) => true,
        };
        self.capabilities
            .iter()
            .copied()
            .filter(|capability| {
                let mut tied = properties
                    .into_iter()
                    .flatten()
                    .filter(|(_, schema)| match schema.get(Self::NEEDS_KEYWORD) {
                        Some(serde_json::Value::String(name)) => name == capability.name(),
                        Some(serde_json::Value::Array(names)) => {
                            names.iter().any(|n| n.as_str() == Some(capability.name()))
                        }
                        _ => false,
                    })
                    .map(|(name, _)| name.as_str())
                    .peekable();
                // Not tied to any property: always needed.
                tied.peek().is_none() || tied.any(set)
            })
            .collect()
    }

    /// Whether the applet may take `exit`: declared by name, or named by its node config
    /// when the applet declares [`Self::CONFIGURED_EXITS`].
    pub fn declares_exit(&self, exit: &str) -> bool {
        self.exits.iter().any(|e| {
            e == exit
                || (e == Self::CONFIGURED_EXITS && names::is_valid_name(exit) && exit != "error")
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// One line an applet logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// The sandbox limits an invocation can hit. Each has a documented default in
/// `coda_runtime::limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitKind {
    Fuel,
    Memory,
    TableElements,
    Instances,
    Deadline,
    Stack,
    Output,
    Data,
    HostCalls,
    Log,
}

impl LimitKind {
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Fuel => "fuel",
            LimitKind::Memory => "memory",
            LimitKind::TableElements => "table-elements",
            LimitKind::Instances => "instances",
            LimitKind::Deadline => "deadline",
            LimitKind::Stack => "stack",
            LimitKind::Output => "output",
            LimitKind::Data => "data",
            LimitKind::HostCalls => "host-calls",
            LimitKind::Log => "log",
        }
    }

    /// The unit `limit` and `used` are counted in.
    pub fn unit(self) -> &'static str {
        match self {
            LimitKind::Fuel => "fuel units",
            LimitKind::Memory | LimitKind::Stack | LimitKind::Output | LimitKind::Data => "bytes",
            LimitKind::Log => "bytes",
            LimitKind::TableElements => "elements",
            LimitKind::Instances => "instances",
            LimitKind::Deadline => "ms",
            LimitKind::HostCalls => "calls",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A sandbox limit that ended an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct LimitExceeded {
    pub kind: LimitKind,
    pub limit: u64,
    /// How much the applet used or asked for, where the host knows it.
    pub used: Option<u64>,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} limit exceeded: limit {} {}",
            self.kind,
            self.limit,
            self.kind.unit()
        )?;
        if let Some(used) = self.used {
            write!(f, ", used {used}")?;
        }
        Ok(())
    }
}

/// Why an invocation gave no outcome. Three kinds kept apart: the applet's own failure, a
/// sandbox limit, and a trap.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvokeError {
    /// The applet returned its own `failure`.
    #[error("applet failed ({}): {}", .0.code, .0.message)]
    Failure(Failure),
    #[error(transparent)]
    LimitExceeded(LimitExceeded),
    /// The applet trapped (`unreachable`, out-of-bounds access, a panic, an exit call).
    #[error("applet trapped: {message}")]
    Trap { message: String },
    /// The applet returned something the host refuses (an exit name that is empty, say).
    #[error("applet returned an invalid result: {message}")]
    InvalidResult { message: String },
}

impl InvokeError {
    /// The stable name of this error's kind, as printed by the CLI and journaled.
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::Failure(_) => "failure",
            InvokeError::LimitExceeded(l) => l.kind.name(),
            InvokeError::Trap { .. } => "trap",
            InvokeError::InvalidResult { .. } => "invalid-result",
        }
    }

    /// The error as a JSON object: `{"kind", "message", ...}` plus `limit`/`used` or the
    /// failure's fields.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::json!({ "kind": self.kind(), "message": self.to_string() });
        match self {
            InvokeError::Failure(f) => {
                object["code"] = f.code.clone().into();
                object["retryable"] = f.retryable.into();
                if let Some(after) = f.retry_after_millis {
                    object["retry_after_millis"] = after.into();
                }
            }
            InvokeError::LimitExceeded(l) => {
                object["limit"] = l.limit.into();
                object["used"] = l.used.into();
            }
            _ => {}
        }
        object
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_checked() {
        assert!(Value::Json(r#"{"a":1}"#.into()).check().is_ok());
        assert!(Value::Json("[1,2]".into()).check().is_ok());
        let refused = |v: Value| v.check().unwrap_err();
        assert!(refused(Value::Json("{not json".into())).contains("does not parse"));
        assert!(refused(Value::Json("3".into())).contains("array or an object"));
        assert!(refused(Value::Number(f64::NAN)).contains("not finite"));
        assert!(Value::Number(f64::INFINITY).check().is_err());
        assert!(Value::Text("anything \u{0} goes".into()).check().is_ok());
    }

    use super::*;

    #[test]
    fn json_round_trips_through_values() {
        for text in [
            "null",
            "true",
            "42",
            "-7",
            "1.5",
            "\"hi\"",
            "[1,2]",
            "{\"a\":{\"b\":1}}",
        ] {
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(Value::from_json(&json).to_json(), json, "{text}");
        }
        assert_eq!(
            Value::from_json(&serde_json::json!([1])),
            Value::Json("[1]".into())
        );
    }

    #[test]
    fn a_need_tied_to_a_config_property_is_needed_only_when_it_is_set() {
        let info = AppletInfo {
            name: "data-connector".into(),
            version: "0.1.0".into(),
            description: String::new(),
            exits: vec![],
            config_schema: serde_json::json!({"properties": {
                "url": {"type": "string"},
                "secrets": {"type": "object", "x-coda-needs": "secrets"},
                "database": {"type": "string", "x-coda-needs": ["sql"]},
            }}),
            needs_live_party: false,
            capabilities: vec![
                Capability::Http,
                Capability::Secrets,
                Capability::Sql,
                Capability::Email,
            ],
        };
        let needs = |config| info.needs(&config);
        use Capability::*;
        assert_eq!(needs(serde_json::json!({"url": "x"})), [Http, Email]);
        assert_eq!(needs(serde_json::json!({"secrets": {}})), [Http, Email]);
        assert_eq!(needs(serde_json::json!({"secrets": null})), [Http, Email]);
        assert_eq!(
            needs(serde_json::json!({"secrets": {"k": "crm"}, "database": "crm"})),
            [Http, Secrets, Sql, Email]
        );
        // A schema that says nothing keeps every declared need.
        let plain = AppletInfo {
            config_schema: serde_json::json!({}),
            ..info.clone()
        };
        assert_eq!(plain.needs(&serde_json::json!({})), plain.capabilities);
    }

    #[test]
    fn limit_message_names_kind_limit_and_use() {
        let e = InvokeError::LimitExceeded(LimitExceeded {
            kind: LimitKind::HostCalls,
            limit: 10,
            used: Some(11),
        });
        assert_eq!(
            e.to_string(),
            "host-calls limit exceeded: limit 10 calls, used 11"
        );
        assert_eq!(e.to_json()["kind"], "host-calls");
        assert_eq!(e.to_json()["used"], 11);
    }
}

/// What one invocation of an applet's `run` did.
#[derive(Debug, Clone)]
pub struct InvocationReport {
    pub result: Result<Outcome, InvokeError>,
    /// Data sources the applet set. Empty unless `result` is an outcome: a step that did not
    /// finish leaves the run's data as it was.
    pub data_changes: Values,
    /// Node state the applet set; empty unless `result` is an outcome.
    pub state_changes: Values,
    /// Lines logged, kept whatever the result, for diagnosis.
    pub logs: Vec<LogLine>,
    pub fuel_used: u64,
    pub host_calls: u64,
    pub elapsed: std::time::Duration,
}

/// Why the host refused or could not complete a capability call. The applet receives it as a
/// value (WIT `host-error`) and decides what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "message")]
pub enum HostError {
    #[error("not granted: {0}")]
    NotGranted(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("rejected: {0}")]
    Rejected(String),
}
