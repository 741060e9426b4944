//! The effect journal: every capability call a step makes is journaled with its result
//! before the applet sees that result, so a step re-executed after a crash gets the results
//! of the calls already made instead of making them again.
//!
//! A re-executed call is matched to its journaled result by its position in the step *and*
//! the digest of its request. If the applet took another path the second time (it read the
//! clock, or its data changed), the call at that position is a different call: it is made
//! for real, its record replaces the old one, and the step's journal says the replay
//! diverged.
//!
//! The one call in flight when the host died has no journaled result: it is made again, with
//! the same idempotency key (`{step key}/{call position}`), so a downstream that honours keys
//! sees it once. Secret reads are not effects and are never journaled, and every record is
//! scrubbed of the step's secret values before it is written.
//!
//! A key-value call has no such window: its effect is a write to the run store, so the
//! journal hands the store the call's place ([`KvJournal`]) and the store writes the record
//! in the write's own transaction, fenced like every record, and says so. What the store
//! did not record (a refusal, an answer from a fixture or a dry run) is recorded here, as
//! any call's.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coda_store::{EffectRecord, Store};
use coda_types::capabilities::{
    CallKind, Capabilities, CapabilityCall, CapabilityReply, request_digest,
};
use coda_types::kv::{KvJournal, Recorded};
use coda_types::{HostError, InvocationContext};

use crate::leases::Lease;

/// What replaying a step's calls came to, for its journal entry.
#[derive(Debug, Default, Clone)]
pub struct ReplaySummary {
    /// Calls answered from the journal.
    pub replayed: u32,
    /// Calls made for real.
    pub performed: u32,
    /// Positions where the re-executed call differed from the journaled one.
    pub diverged: Vec<String>,
    /// Results that could not be journaled (the store failed): those calls may repeat.
    pub unjournaled: u32,
}

impl ReplaySummary {
    /// A sentence for the step's journal note, or nothing when there is nothing to say.
    pub fn note(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.replayed > 0 {
            parts.push(format!(
                "{} capability call(s) replayed from the effect journal",
                self.replayed
            ));
        }
        if !self.diverged.is_empty() {
            parts.push(format!("replay diverged: {}", self.diverged.join("; ")));
        }
        if self.unjournaled > 0 {
            parts.push(format!(
                "{} call result(s) could not be journaled",
                self.unjournaled
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Wraps a step's capabilities with the effect journal.
pub struct JournaledCapabilities {
    inner: Arc<dyn Capabilities>,
    store: Arc<Store>,
    run_id: String,
    step_seq: u64,
    now_ms: i64,
    /// The claim the step runs under, if any: the journal's writes are fenced by it too.
    claim: Option<u64>,
    /// This node's hold on that claim: no call is made once it cannot be sure of it.
    lease: Option<Arc<Lease>>,
    /// What this step already journaled, read at its first effectful call: most steps
    /// make none, and a read is a round trip on PostgreSQL.
    journaled: std::sync::OnceLock<Vec<EffectRecord>>,
    progress: Mutex<Progress>,
}

#[derive(Default)]
struct Progress {
    next_call: u32,
    summary: ReplaySummary,
}

impl JournaledCapabilities {
    /// The journal of this step's calls; what it already journaled (nothing on a first
    /// execution) is read at its first effectful call.
    pub fn new(
        inner: Arc<dyn Capabilities>,
        store: Arc<Store>,
        run_id: &str,
        step_seq: u64,
        now_ms: i64,
    ) -> coda_store::Result<Self> {
        let journaled = std::sync::OnceLock::new();
        Ok(JournaledCapabilities {
            inner,
            store,
            run_id: run_id.to_owned(),
            step_seq,
            now_ms,
            claim: None,
            lease: None,
            journaled,
            progress: Mutex::new(Progress::default()),
        })
    }

    /// Fences the journal's writes by this claim too (the step runs under it).
    pub fn under_claim(mut self, claim: Option<u64>) -> Self {
        self.claim = claim;
        self
    }

    /// Runs the step under this node's hold on its claim: its writes are fenced by the
    /// claim, and no call is made once the node cannot be sure it still holds it.
    pub(crate) fn under_lease(self, lease: Option<Arc<Lease>>) -> Self {
        let claim = lease.as_ref().map(|l| l.seq());
        Self { lease, ..self }.under_claim(claim)
    }

    pub fn summary(&self) -> ReplaySummary {
        self.lock().summary.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one effectful call through the journal.
    async fn effect(
        &self,
        cx: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        let kind = call.kind();
        let call_seq = {
            let mut progress = self.lock();
            let seq = progress.next_call;
            progress.next_call += 1;
            seq
        };
        let digest = request_digest(&call);
        let journaled = match self.journaled.get() {
            Some(journaled) => journaled,
            None => {
                // Unread, the journal cannot say whether this call was made: it is not made.
                let read = self
                    .store
                    .effects(&self.run_id, Some(self.step_seq))
                    .map_err(|e| {
                        HostError::Unavailable(format!(
                            "the {kind} call was not made: the step's effect journal could not be read ({e})"
                        ))
                    })?;
                self.journaled.get_or_init(|| read)
            }
        };
        if let Some(done) = journaled.iter().find(|e| e.call_seq == call_seq) {
            if done.kind == kind.as_str() && done.digest == digest {
                match journaled_result(kind, done.result.clone()) {
                    Ok(result) => {
                        self.lock().summary.replayed += 1;
                        return result;
                    }
                    Err(e) => tracing::warn!(
                        run = %self.run_id, step = self.step_seq, call = call_seq,
                        "journaled result does not parse ({e}); making the call again"
                    ),
                }
            } else {
                self.lock().summary.diverged.push(format!(
                    "call {call_seq} was {} and is now {kind} with another request",
                    done.kind
                ));
            }
        }

        // A node paused past its lease (or cut off from the database) may have lost the run
        // to another node, which may already have made this very call: it must not be
        // made again. Asked after the replay, as a journaled result repeats nothing.
        if let Some(lease) = &self.lease
            && !lease.is_held()
        {
            tracing::warn!(
                run = %self.run_id, step = self.step_seq, call = call_seq,
                "this node can no longer be sure it holds the run's claim: the call is not made"
            );
            return Err(HostError::Unavailable(format!(
                "the {kind} call was not made: this node's claim on the run ran out (the step is abandoned and the run goes on where it is claimed)"
            )));
        }

        // The key a downstream sees: stable for this call position across re-executions
        // and retries of the step.
        let mut call_cx = cx.clone();
        call_cx.idempotency_key = crate::decide::call_key(&cx.idempotency_key, call_seq);
        // A key-value call's effect is the run store's own: told where, the store writes the
        // record in the write's transaction, so no kill can leave one without the other.
        let mut call = call;
        let recorded = Recorded::default();
        if let CapabilityCall::Kv(kv) = &mut call {
            kv.journal = Some(KvJournal {
                run_id: self.run_id.clone(),
                step_seq: self.step_seq,
                call_seq,
                claim: self.claim,
                digest: digest.clone(),
                at_ms: self.now_ms,
                recorded: recorded.clone(),
            });
        }
        let result = self.inner.call(&call_cx, call).await;
        if recorded.get() {
            self.lock().summary.performed += 1;
            return result;
        }

        // The record is scrubbed of the step's secret values (a response echoing a token, an
        // error echoing a URL); the applet gets the result as it came. A replay after a
        // crash therefore answers with the scrubbed result.
        let mut journaled_result = serde_json::to_value(&result).unwrap_or(serde_json::Value::Null);
        if !cx.scrubber.is_empty() {
            let mut clean = result.clone();
            cx.scrubber.apply(&mut clean);
            journaled_result = serde_json::to_value(&clean).unwrap_or(serde_json::Value::Null);
        }
        let record = EffectRecord {
            step_seq: self.step_seq,
            call_seq,
            kind: kind.as_str().to_owned(),
            digest,
            result: journaled_result,
            at_ms: self.now_ms,
        };
        let journaled = match self.claim {
            Some(claim) => {
                self.store
                    .record_claimed_effect(&self.run_id, record, claim)
                    .await
            }
            None => self.store.record_effect(&self.run_id, record).await,
        };
        let mut progress = self.lock();
        progress.summary.performed += 1;
        if let Err(e) = journaled {
            // The call happened; only its record is missing. The step goes on (its commit
            // will most likely fail the same way), and a re-execution repeats this call
            // with the same key: the at-least-once window, widened to this call.
            tracing::error!(run = %self.run_id, step = self.step_seq, call = call_seq, "effect not journaled: {e}");
            progress.summary.unjournaled += 1;
        }
        result
    }
}

/// A journaled result as it was written: `{"Ok": reply}` or `{"Err": host error}`.
fn journaled_result(
    kind: CallKind,
    json: serde_json::Value,
) -> serde_json::Result<Result<CapabilityReply, HostError>> {
    match serde_json::from_value::<Result<serde_json::Value, HostError>>(json)? {
        Ok(reply) => CapabilityReply::from_json(kind, reply).map(Ok),
        Err(error) => Ok(Err(error)),
    }
}

#[async_trait]
impl Capabilities for JournaledCapabilities {
    async fn call(
        &self,
        cx: &InvocationContext,
        call: CapabilityCall,
    ) -> Result<CapabilityReply, HostError> {
        match call.kind() {
            CallKind::Http
            | CallKind::Email
            | CallKind::SqlQuery
            | CallKind::SqlExecute
            | CallKind::Interactions
            | CallKind::Kv => self.effect(cx, call).await,
            // Secrets are read, not acted on, and their values must never reach the journal.
            CallKind::Secret => self.inner.call(cx, call).await,
        }
    }
}
