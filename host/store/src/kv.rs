//! Each tenant's key-value store (migration 14): the rows behind the `kv` capability.
//!
//! Every call is one write job, so a mutation and the effect journal's record of it commit
//! in one transaction, fenced by the run's step and claim like every journal write: a step
//! killed at any instant has either applied its increment *and* journaled the result (its
//! re-execution gets the result back and applies nothing), or done neither. A read is
//! journaled the same way, so a re-executed step sees what the first execution saw.
//!
//! An expired key reads as absent at once (every query compares `expires_at` with the
//! call's time) and is deleted by the first write that meets it, by [`Store::prune_kv`], or
//! when its tenant's limits would refuse a write. The tenant's keys and bytes are kept in
//! `kv_usage` by every write, so the ceiling's count and total are checked without counting
//! rows. Limits on the call's own sizes (key length, value size) are the grant check's
//! (`coda-capabilities`), made before the call reaches the store.

use coda_types::HostError;
use coda_types::capabilities::CallKind;
use coda_types::kv::{KvAnswer, KvEntry, KvJournal, KvLimits, KvOp, KvStore, entry_bytes};
use coda_types::scrub::Scrubber;

use crate::db::{Conn, OptionalExtension, params};
use crate::effects::{EffectRecord, check_effect_fence, journal_effect};
use crate::{Result, Store, StoreError};

/// How many expired keys one pass of pruning deletes at most (one write job).
pub const KV_PRUNE_BATCH: u32 = 1000;

/// The effect journal's place for one key-value call made by a step: the store writes the
/// record with the call's result in the call's own transaction.
#[derive(Debug, Clone)]
pub struct EffectSlot {
    pub run_id: String,
    /// The claim the step runs under, if any: the write is fenced by it too.
    pub claim: Option<u64>,
    /// The record to write; its `result` is the call's, filled in here.
    pub record: EffectRecord,
    /// The step's secret values, scrubbed from the record (not from the stored value).
    pub scrubber: Scrubber,
}

/// A key's row, read inside the write.
struct Current {
    value: coda_types::Value,
    version: u64,
    bytes: u64,
    expires_at: Option<i64>,
}

/// The applet's answer, or the store's refusal of the call (a limit, a bad request).
pub type KvResult = std::result::Result<KvAnswer, HostError>;

impl Store {
    /// Applies `op` to `tenant`'s store at `now_ms` within `limits`. With `slot`, the call
    /// is a step's: fenced by its run's step and claim ([`crate::StoreError::Conflict`]
    /// otherwise, nothing applied), answered from the record already at the slot if this
    /// very call was journaled (nothing applied again), else applied and journaled in one
    /// transaction. A refusal (`Err` inside) applies and journals nothing.
    pub async fn kv(
        &self,
        tenant: &str,
        op: KvOp,
        limits: KvLimits,
        now_ms: i64,
        slot: Option<EffectSlot>,
    ) -> Result<KvResult> {
        let tenant = tenant.to_owned();
        self.writer
            .write(move |tx| {
                if let Some(slot) = &slot
                    && let Some(done) = journaled(tx, slot)?
                {
                    return Ok(done);
                }
                let result = apply(tx, &tenant, &op, &limits, now_ms)?;
                if let (Ok(answer), Some(slot)) = (&result, slot) {
                    let mut record = slot.record;
                    let mut clean = answer.clone();
                    slot.scrubber.apply(&mut clean);
                    record.result = serde_json::to_value(KvResult::Ok(clean))?;
                    journal_effect(tx, &slot.run_id, &record, slot.claim)?;
                }
                Ok(result)
            })
            .await
    }

    /// Deletes up to `max` keys expired at `now_ms`, across tenants; returns how many.
    pub async fn prune_kv(&self, now_ms: i64, max: u32) -> Result<u64> {
        self.writer
            .write(move |tx| prune(tx, None, now_ms, max))
            .await
    }

    /// The keys and bytes `tenant`'s store holds (expired keys not yet pruned included).
    pub fn kv_usage(&self, tenant: &str) -> Result<(u64, u64)> {
        self.read(|conn| usage(conn, tenant))
    }
}

/// The store behind the `kv` capability: a refusal of the store's own (a limit, a bad
/// increment) is the applet's answer; a store failure is `unavailable`, and a step that lost
/// its run (moved on, or claimed by another node) applies nothing.
#[async_trait::async_trait]
impl KvStore for Store {
    async fn apply(
        &self,
        tenant: &str,
        op: KvOp,
        limits: KvLimits,
        now_ms: i64,
        journal: Option<KvJournal>,
        scrubber: &Scrubber,
    ) -> std::result::Result<KvAnswer, HostError> {
        let recorded = journal.as_ref().map(|j| j.recorded.clone());
        let slot = journal.map(|j| EffectSlot {
            run_id: j.run_id,
            claim: j.claim,
            record: EffectRecord {
                step_seq: j.step_seq,
                call_seq: j.call_seq,
                kind: CallKind::Kv.as_str().to_owned(),
                digest: j.digest,
                result: serde_json::Value::Null,
                at_ms: j.at_ms,
            },
            scrubber: scrubber.clone(),
        });
        match self.kv(tenant, op, limits, now_ms, slot).await {
            Ok(result) => {
                // An answer to a step's call was journaled with it (or was the journal's).
                if let (Ok(_), Some(recorded)) = (&result, recorded) {
                    recorded.set();
                }
                result
            }
            Err(StoreError::Conflict { .. }) => Err(HostError::Unavailable(
                "the kv call was not made: the run moved on or is claimed elsewhere (the step is abandoned)".into(),
            )),
            Err(e) => Err(HostError::Unavailable(format!(
                "the key-value store failed: {e}"
            ))),
        }
    }
}

/// The result this call already journaled at its slot, fenced like the write would be.
fn journaled(tx: &Conn<'_>, slot: &EffectSlot) -> Result<Option<KvResult>> {
    check_effect_fence(tx, &slot.run_id, slot.record.step_seq, slot.claim)?;
    let found: Option<(String, String, String)> = tx
        .prepare_cached(
            "SELECT kind, digest, result FROM effects
             WHERE run_id = ?1 AND step_seq = ?2 AND call_seq = ?3",
        )?
        .query_row(
            params![slot.run_id, slot.record.step_seq, slot.record.call_seq],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(found.and_then(|(kind, digest, result)| {
        (kind == slot.record.kind && digest == slot.record.digest)
            .then(|| serde_json::from_str(&result).ok())
            .flatten()
    }))
}

fn apply(
    tx: &Conn<'_>,
    tenant: &str,
    op: &KvOp,
    limits: &KvLimits,
    now_ms: i64,
) -> Result<KvResult> {
    let key = op.key();
    lock_key(tx, tenant, key)?;
    let current = live(tx, tenant, key, now_ms)?;
    let expiry = |ttl: Option<u64>| -> std::result::Result<Option<i64>, HostError> {
        match ttl {
            None => Ok(None),
            Some(0) => Err(HostError::Invalid(format!(
                "kv key '{}': a ttl must be at least 1 ms",
                key.escape_debug()
            ))),
            Some(ms) => Ok(Some(
                now_ms.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)),
            )),
        }
    };
    Ok(match op {
        KvOp::Get { .. } => Ok(KvAnswer::Entry(current.map(|c| KvEntry {
            value: c.value,
            version: c.version,
            expires_at_ms: c.expires_at,
        }))),
        KvOp::Set {
            value, ttl_millis, ..
        } => match expiry(*ttl_millis) {
            Err(e) => Err(e),
            Ok(expires_at) => put(
                tx,
                tenant,
                key,
                value,
                expires_at,
                current.as_ref(),
                limits,
                now_ms,
            )?
            .map(KvAnswer::Written),
        },
        KvOp::Delete { .. } => match current {
            None => Ok(KvAnswer::Deleted(false)),
            Some(c) => {
                remove(tx, tenant, key, c.bytes)?;
                Ok(KvAnswer::Deleted(true))
            }
        },
        KvOp::CompareAndSet {
            version,
            value,
            ttl_millis,
            ..
        } => {
            if current.as_ref().map(|c| c.version) != *version {
                Ok(KvAnswer::Swapped(None))
            } else {
                match expiry(*ttl_millis) {
                    Err(e) => Err(e),
                    Ok(expires_at) => put(
                        tx,
                        tenant,
                        key,
                        value,
                        expires_at,
                        current.as_ref(),
                        limits,
                        now_ms,
                    )?
                    .map(|v| KvAnswer::Swapped(Some(v))),
                }
            }
        }
        KvOp::Increment { by, ttl_millis, .. } => {
            let (count, expires_at) = match &current {
                None => (Some(*by), expiry(*ttl_millis)),
                Some(Current {
                    value: coda_types::Value::Integer(n),
                    expires_at,
                    ..
                }) => (n.checked_add(*by), Ok(*expires_at)),
                Some(c) => {
                    return Ok(Err(HostError::Invalid(format!(
                        "kv key '{}' holds {}, not an integer: it cannot be incremented",
                        key.escape_debug(),
                        kind_of(&c.value)
                    ))));
                }
            };
            match (count, expires_at) {
                (_, Err(e)) => Err(e),
                (None, _) => Err(HostError::Invalid(format!(
                    "kv key '{}': incrementing by {by} overflows a 64-bit integer",
                    key.escape_debug()
                ))),
                (Some(count), Ok(expires_at)) => {
                    let value = coda_types::Value::Integer(count);
                    put(
                        tx,
                        tenant,
                        key,
                        &value,
                        expires_at,
                        current.as_ref(),
                        limits,
                        now_ms,
                    )?
                    .map(|_| KvAnswer::Counted(count))
                }
            }
        }
    })
}

/// The key's lock for the rest of the transaction (`Conn::lock_name`): a read-modify-write
/// (an increment, a compare-and-set, a write counted against the limits) must not
/// interleave with another node's on the same key, absent keys included.
fn lock_key(tx: &Conn<'_>, tenant: &str, key: &str) -> Result<()> {
    tx.lock_name("kv", tenant, key)
}

fn kind_of(value: &coda_types::Value) -> &'static str {
    match value {
        coda_types::Value::Null => "null",
        coda_types::Value::Boolean(_) => "a boolean",
        coda_types::Value::Integer(_) => "an integer",
        coda_types::Value::Number(_) => "a number",
        coda_types::Value::Text(_) => "text",
        coda_types::Value::Json(_) => "JSON",
    }
}

/// The key's row if it is live at `now_ms`. An expired row is deleted here, so the write
/// that follows starts from an absent key and the tenant's usage stops counting it.
fn live(tx: &Conn<'_>, tenant: &str, key: &str, now_ms: i64) -> Result<Option<Current>> {
    let row: Option<(String, u64, u64, Option<i64>)> = tx
        .prepare_cached(
            "SELECT value, version, bytes, expires_at FROM kv WHERE tenant = ?1 AND key = ?2",
        )?
        .query_row(params![tenant, key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((value, version, bytes, expires_at)) = row else {
        return Ok(None);
    };
    if expires_at.is_some_and(|at| at <= now_ms) {
        remove(tx, tenant, key, bytes)?;
        return Ok(None);
    }
    Ok(Some(Current {
        value: serde_json::from_str(&value)?,
        version,
        bytes,
        expires_at,
    }))
}

/// Writes the key, counting it against the tenant's limits; the version written, or the
/// limit it would pass.
#[allow(clippy::too_many_arguments)]
fn put(
    tx: &Conn<'_>,
    tenant: &str,
    key: &str,
    value: &coda_types::Value,
    expires_at: Option<i64>,
    current: Option<&Current>,
    limits: &KvLimits,
    now_ms: i64,
) -> Result<std::result::Result<u64, HostError>> {
    let bytes = entry_bytes(key, value);
    let added_keys = u64::from(current.is_none());
    let old_bytes = current.map_or(0, |c| c.bytes);
    if let Err(refused) = within_limits(tx, tenant, added_keys, bytes, old_bytes, limits)? {
        // Keys that expired but were never pruned still count: drop them, then look again.
        prune(tx, Some(tenant), now_ms, KV_PRUNE_BATCH)?;
        if within_limits(tx, tenant, added_keys, bytes, old_bytes, limits)?.is_err() {
            return Ok(Err(refused));
        }
    }
    let version = current.map_or(1, |c| c.version + 1);
    tx.prepare_cached(
        "INSERT INTO kv (tenant, key, value, version, bytes, expires_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (tenant, key) DO UPDATE SET
            value = excluded.value, version = excluded.version, bytes = excluded.bytes,
            expires_at = excluded.expires_at, updated_at = excluded.updated_at",
    )?
    .execute(params![
        tenant,
        key,
        serde_json::to_string(value)?,
        version,
        bytes,
        expires_at,
        now_ms
    ])?;
    add_usage(
        tx,
        tenant,
        added_keys as i64,
        bytes as i64 - old_bytes as i64,
    )?;
    Ok(Ok(version))
}

/// Whether the tenant's store can take `added_keys` more keys and `bytes` in place of
/// `old_bytes`; the refusal names the limit. A write that grows nothing always passes.
fn within_limits(
    tx: &Conn<'_>,
    tenant: &str,
    added_keys: u64,
    bytes: u64,
    old_bytes: u64,
    limits: &KvLimits,
) -> Result<std::result::Result<(), HostError>> {
    let (keys, total) = usage(tx, tenant)?;
    if added_keys > 0 && keys + added_keys > limits.max_keys {
        return Ok(Err(HostError::LimitExceeded(format!(
            "the tenant's key-value store holds {keys} keys, its limit (max_keys {})",
            limits.max_keys
        ))));
    }
    if bytes > old_bytes && total - old_bytes.min(total) + bytes > limits.max_total_bytes {
        return Ok(Err(HostError::LimitExceeded(format!(
            "the tenant's key-value store holds {total} bytes: {bytes} more would pass its limit (max_total_bytes {})",
            limits.max_total_bytes
        ))));
    }
    Ok(Ok(()))
}

fn remove(tx: &Conn<'_>, tenant: &str, key: &str, bytes: u64) -> Result<()> {
    tx.prepare_cached("DELETE FROM kv WHERE tenant = ?1 AND key = ?2")?
        .execute(params![tenant, key])?;
    add_usage(tx, tenant, -1, -(bytes as i64))
}

fn usage(conn: &Conn<'_>, tenant: &str) -> Result<(u64, u64)> {
    Ok(conn
        .prepare_cached("SELECT keys, bytes FROM kv_usage WHERE tenant = ?1")?
        .query_row(params![tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, 0)))
}

fn add_usage(tx: &Conn<'_>, tenant: &str, keys: i64, bytes: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO kv_usage (tenant, keys, bytes) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant) DO UPDATE SET
            keys = kv_usage.keys + excluded.keys, bytes = kv_usage.bytes + excluded.bytes",
    )?
    .execute(params![tenant, keys, bytes])?;
    Ok(())
}

/// Deletes up to `max` keys expired at `now_ms` (of one tenant, or of all), keeping each
/// tenant's usage right; returns how many.
fn prune(tx: &Conn<'_>, tenant: Option<&str>, now_ms: i64, max: u32) -> Result<u64> {
    let expired: Vec<(String, String, u64)> = tx
        .prepare_cached(
            "SELECT tenant, key, bytes FROM kv
             WHERE expires_at <= ?1 AND (CAST(?2 AS TEXT) IS NULL OR tenant = ?2)
             ORDER BY expires_at LIMIT ?3",
        )?
        .query_map(params![now_ms, tenant, max], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_>>()?;
    for (tenant, key, bytes) in &expired {
        remove(tx, tenant, key, *bytes)?;
    }
    Ok(expired.len() as u64)
}
