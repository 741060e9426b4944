//! The `kv` capability's vocabulary: a call to the tenant's key-value store, its answer, and
//! the limits the operator's ceiling sets on the store. The capability decides whether a call
//! may be made (`coda-capabilities`' grants), the store applies it (`coda-store`'s `kv.rs`),
//! the effect journal records it; these types are what they pass each other.

use serde::{Deserialize, Serialize};

use crate::Value;
use crate::scrub::{Scrub, Scrubber};

/// The default longest key, in bytes.
pub const DEFAULT_KV_MAX_KEY_BYTES: u32 = 256;
/// The default largest value, in bytes as [`Value::stored_len`] counts them.
pub const DEFAULT_KV_MAX_VALUE_BYTES: u64 = 64 * 1024;
/// The default number of live keys a tenant's store may hold.
pub const DEFAULT_KV_MAX_KEYS: u64 = 100_000;
/// The default bytes (keys and values) a tenant's store may hold.
pub const DEFAULT_KV_MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

/// One call to the tenant's key-value store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum KvOp {
    /// The key's value and version; none when it is absent or expired.
    Get { key: String },
    /// Writes the value; `ttl_millis` none keeps it until deleted.
    Set {
        key: String,
        value: Value,
        ttl_millis: Option<u64>,
    },
    /// Removes the key.
    Delete { key: String },
    /// Writes the value only while the key's version is `version` (none: while it is
    /// absent).
    CompareAndSet {
        key: String,
        version: Option<u64>,
        value: Value,
        ttl_millis: Option<u64>,
    },
    /// Adds `by` to the integer under the key (an absent key counts from 0). `ttl_millis`
    /// applies only when the increment creates the key, so a counter's window starts at its
    /// first count and is not pushed back by the later ones.
    Increment {
        key: String,
        by: i64,
        ttl_millis: Option<u64>,
    },
}

impl KvOp {
    /// The effect journal's name of the call.
    pub fn name(&self) -> &'static str {
        match self {
            KvOp::Get { .. } => "get",
            KvOp::Set { .. } => "set",
            KvOp::Delete { .. } => "delete",
            KvOp::CompareAndSet { .. } => "compare-and-set",
            KvOp::Increment { .. } => "increment",
        }
    }

    pub fn key(&self) -> &str {
        match self {
            KvOp::Get { key }
            | KvOp::Set { key, .. }
            | KvOp::Delete { key }
            | KvOp::CompareAndSet { key, .. }
            | KvOp::Increment { key, .. } => key,
        }
    }

    /// The value the call writes, if it writes one given by the applet.
    pub fn value(&self) -> Option<&Value> {
        match self {
            KvOp::Set { value, .. } | KvOp::CompareAndSet { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// A key-value call as the capability layers pass it: the call, and where the effect journal
/// wants its record.
#[derive(Debug, Clone, PartialEq)]
pub struct KvCall {
    pub op: KvOp,
    /// Set by the effect journal (none from the sandbox): the store writes the call's record
    /// here in the call's own transaction, so a write and its record commit together, and
    /// says so through [`KvJournal::recorded`]; whatever it did not record (a refusal, an
    /// answer from a fixture or a dry run) the journal records as any other call's.
    pub journal: Option<KvJournal>,
}

impl KvCall {
    pub fn new(op: KvOp) -> Self {
        KvCall { op, journal: None }
    }
}

/// Where a step's key-value call is journaled: its run, step and position, the claim the
/// step runs under, the request's digest, and the step's time (also the time the call's
/// ttl and expiry are counted from, so a virtual clock moves them too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvJournal {
    pub run_id: String,
    pub step_seq: u64,
    pub call_seq: u32,
    pub claim: Option<u64>,
    pub digest: String,
    pub at_ms: i64,
    /// Set by the store once the record is written with the call's answer.
    pub recorded: Recorded,
}

/// Whether a [`KvJournal`]'s record was written, shared by the journal and the store that
/// writes it. Equal to any other: it is the call's outcome, not part of the call.
#[derive(Debug, Clone, Default)]
pub struct Recorded(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Recorded {
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl PartialEq for Recorded {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Recorded {}

/// The tenants' key-value stores, as the `kv` capability reaches them (`coda-store`'s
/// `Store` is the one implementation).
#[async_trait::async_trait]
pub trait KvStore: Send + Sync {
    /// Applies `op` to `tenant`'s store at `now_ms` within `limits`; with `journal`, records
    /// the answer there in the same transaction (scrubbed by `scrubber`), or answers what
    /// was recorded there already without applying anything.
    async fn apply(
        &self,
        tenant: &str,
        op: KvOp,
        limits: KvLimits,
        now_ms: i64,
        journal: Option<KvJournal>,
        scrubber: &Scrubber,
    ) -> Result<KvAnswer, crate::HostError>;
}

/// A key's value as the store holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvEntry {
    pub value: Value,
    /// 1 when the key was written first, one more at each write since.
    pub version: u64,
    /// When the key expires (ms since the epoch); none: never.
    pub expires_at_ms: Option<i64>,
}

/// What a call got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvAnswer {
    /// `get`: the entry, or none.
    Entry(Option<KvEntry>),
    /// `set`: the version written.
    Written(u64),
    /// `delete`: whether the key was there.
    Deleted(bool),
    /// `compare-and-set`: the version written, or none when the key's version was not the
    /// one expected (nothing written).
    Swapped(Option<u64>),
    /// `increment`: the count after it.
    Counted(i64),
}

impl Scrub for KvAnswer {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        if let KvAnswer::Entry(Some(entry)) = self {
            scrubber.value(&mut entry.value);
        }
    }
}

/// What a tenant's store may hold: the operator's ceiling, or these defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvLimits {
    #[serde(default = "default_max_key_bytes")]
    pub max_key_bytes: u32,
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: u64,
    #[serde(default = "default_max_keys")]
    pub max_keys: u64,
    #[serde(default = "default_max_total_bytes")]
    pub max_total_bytes: u64,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_key_bytes: DEFAULT_KV_MAX_KEY_BYTES,
            max_value_bytes: DEFAULT_KV_MAX_VALUE_BYTES,
            max_keys: DEFAULT_KV_MAX_KEYS,
            max_total_bytes: DEFAULT_KV_MAX_TOTAL_BYTES,
        }
    }
}

fn default_max_key_bytes() -> u32 {
    DEFAULT_KV_MAX_KEY_BYTES
}
fn default_max_value_bytes() -> u64 {
    DEFAULT_KV_MAX_VALUE_BYTES
}
fn default_max_keys() -> u64 {
    DEFAULT_KV_MAX_KEYS
}
fn default_max_total_bytes() -> u64 {
    DEFAULT_KV_MAX_TOTAL_BYTES
}

/// The bytes a key and its value take against the tenant's total.
pub fn entry_bytes(key: &str, value: &Value) -> u64 {
    (key.len() + value.stored_len()) as u64
}
