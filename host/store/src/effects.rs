//! The effect journal: each capability call's result, recorded durably before the applet
//! sees it, so that a step run again after a crash gets the results back instead of acting
//! twice.

use crate::db::{Conn, OptionalExtension, Value, params};
use serde::{Deserialize, Serialize};

use crate::{Result, Store, StoreError};

/// One capability call's journaled result: the effect journal. A re-executed step (after a
/// crash) finds its calls here by position and request digest, and gets their results back
/// instead of acting twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectRecord {
    pub step_seq: u64,
    /// The call's position in the step, from 0.
    pub call_seq: u32,
    /// `http`, `email`, `sql-query`, `sql-execute`, `interactions`.
    pub kind: String,
    /// SHA-256 of the request, so a replay matches the same call, not only the same position.
    pub digest: String,
    /// The call's result as the applet got it (a response, or a host error).
    pub result: serde_json::Value,
    pub at_ms: i64,
}

impl Store {
    /// Journals one capability call's result, durably: the call counts as done once this
    /// returns. Fenced like a step commit: it applies only while the run is still at
    /// `step_seq` (a step already committed cannot gain effects). A record at the same
    /// position with another digest replaces the old one (a replay that diverged made a
    /// different call there); one with the same digest leaves the first result in place.
    pub async fn record_effect(&self, run_id: &str, effect: EffectRecord) -> Result<()> {
        self.record_effect_fenced(run_id, effect, None).await
    }

    /// [`Store::record_effect`], fenced by the claim too when `claim` is a claim's number.
    pub(crate) async fn record_effect_fenced(
        &self,
        run_id: &str,
        effect: EffectRecord,
        claim: Option<u64>,
    ) -> Result<()> {
        let params = effect_params(run_id, &effect, claim)?;
        let rows = self
            .writer
            .write_one(JOURNAL_EFFECT.to_owned(), params, false)
            .await?;
        fenced(rows.len(), run_id, effect.step_seq)
    }

    /// The journaled capability calls of a run, in step and call order; `step_seq` narrows
    /// them to one step.
    pub fn effects(&self, run_id: &str, step_seq: Option<u64>) -> Result<Vec<EffectRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT step_seq, call_seq, kind, digest, result, at FROM effects
                 WHERE run_id = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR step_seq = ?2)
                 ORDER BY step_seq, call_seq",
            )?;
            let rows = stmt.query_map(params![run_id, step_seq], |r| {
                Ok((
                    EffectRecord {
                        step_seq: r.get(0)?,
                        call_seq: r.get(1)?,
                        kind: r.get(2)?,
                        digest: r.get(3)?,
                        result: serde_json::Value::Null,
                        at_ms: r.get(5)?,
                    },
                    r.get::<String>(4)?,
                ))
            })?;
            rows.map(|row| {
                let (mut effect, result) = row?;
                effect.result = serde_json::from_str(&result)?;
                Ok(effect)
            })
            .collect()
        })
    }
}

/// Fails with [`StoreError::Conflict`] unless the run is still at `step_seq` (and, when
/// `claim` is a claim's number, under that claim): the fence of every write a step makes
/// before its commit.
pub(crate) fn check_effect_fence(
    tx: &Conn<'_>,
    run_id: &str,
    step_seq: u64,
    claim: Option<u64>,
) -> Result<()> {
    let current: Option<(u64, u64)> = tx
        .prepare_cached("SELECT step_seq, claim_seq FROM runs WHERE id = ?1")?
        .query_row(params![run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let fenced =
        current.is_some_and(|(seq, claimed)| seq == step_seq && claim.is_none_or(|c| c == claimed));
    if fenced {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            run: run_id.to_owned(),
            expected: step_seq,
        })
    }
}

/// One effect record, fenced (see [`Store::record_effect`]) in the statement itself: the
/// row is taken from the run only while it is at the step (`?2`) and, when `?8` is a
/// claim's number, under that claim. A different call at this position (a diverged replay)
/// replaces the record; the same call never does: its first journaled result is the truth
/// (the row is still returned, so that a fenced write always answers one row).
const JOURNAL_EFFECT: &str = "INSERT INTO effects (run_id, step_seq, call_seq, kind, digest, result, at)
     SELECT id, step_seq, ?3, ?4, ?5, ?6, ?7 FROM runs
     WHERE id = ?1 AND step_seq = ?2 AND (CAST(?8 AS BIGINT) IS NULL OR claim_seq = ?8)
     ON CONFLICT (run_id, step_seq, call_seq) DO UPDATE SET
        kind = CASE WHEN effects.digest <> excluded.digest THEN excluded.kind ELSE effects.kind END,
        result = CASE WHEN effects.digest <> excluded.digest THEN excluded.result ELSE effects.result END,
        at = CASE WHEN effects.digest <> excluded.digest THEN excluded.at ELSE effects.at END,
        digest = excluded.digest
     RETURNING run_id";

fn effect_params(run_id: &str, effect: &EffectRecord, claim: Option<u64>) -> Result<Vec<Value>> {
    let result = serde_json::to_string(&effect.result)?;
    Ok(params![
        run_id,
        effect.step_seq,
        effect.call_seq,
        effect.kind.clone(),
        effect.digest.clone(),
        result,
        effect.at_ms,
        claim
    ]
    .to_vec())
}

/// The fence's verdict from the rows the record's statement answered.
fn fenced(rows: usize, run_id: &str, step_seq: u64) -> Result<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            run: run_id.to_owned(),
            expected: step_seq,
        })
    }
}

/// Writes one effect record inside `tx`, fenced (see [`Store::record_effect`]).
pub(crate) fn journal_effect(
    tx: &Conn<'_>,
    run_id: &str,
    effect: &EffectRecord,
    claim: Option<u64>,
) -> Result<()> {
    let rows = tx.query(JOURNAL_EFFECT, &effect_params(run_id, effect, claim)?)?;
    fenced(rows.len(), run_id, effect.step_seq)
}
