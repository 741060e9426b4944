//! What the engine counts as it steps, for the operator's metrics: steps committed, how long
//! their applets ran, the fuel they burnt, and the errors and sandbox limits that ended
//! them. Plain atomics and one small map, no metrics library: the server renders a
//! [`FlowMetrics::snapshot`] in whatever format it serves.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use coda_store::StepRecord;
use coda_types::LimitKind;

/// Upper bounds of the step-duration histogram, in seconds: from a trivial applet's tens
/// of microseconds to the 15 s deadline.
pub const STEP_DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 15.0,
];

#[derive(Default)]
pub(crate) struct FlowMetrics {
    steps: AtomicU64,
    invocations: AtomicU64,
    /// Per bucket (not cumulative); the last one is above every bound.
    duration_buckets: [AtomicU64; STEP_DURATION_BUCKETS.len() + 1],
    duration_sum_us: AtomicU64,
    fuel_used: AtomicU64,
    picks: AtomicU64,
    continued: AtomicU64,
    errors: Mutex<Errors>,
}

#[derive(Default)]
struct Errors {
    by_kind: BTreeMap<String, u64>,
    limits: BTreeMap<&'static str, u64>,
}

/// The engine's counters since it started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Steps committed (host-taken ones included: timeouts, ends).
    pub steps: u64,
    /// Steps that ran an applet.
    pub invocations: u64,
    /// Applet run time: count per bucket of [`STEP_DURATION_BUCKETS`] (not cumulative), the
    /// last entry counting those above every bound.
    pub duration_buckets: Vec<u64>,
    pub duration_sum_secs: f64,
    pub fuel_used: u64,
    /// Steps that ended in an error, by its kind (`failure`, `trap`, `fuel`, `unavailable`…).
    pub errors: BTreeMap<String, u64>,
    /// Steps that a sandbox limit ended, by the limit (`fuel`, `memory`, `deadline`…).
    pub limit_hits: BTreeMap<String, u64>,
    /// Times the scheduler read the queue and claimed due runs (one store write each).
    pub picks: u64,
    /// Steps started under the claim of their run's previous step (no pick, no claim's
    /// write of their own: `continuation.rs`).
    pub continued: u64,
}

/// What a committed step says about itself, taken before the commit consumes it.
pub(crate) struct StepSample {
    invoked: bool,
    duration_us: u64,
    fuel_used: u64,
    error: Option<String>,
}

impl StepSample {
    pub(crate) fn of(step: &StepRecord) -> Self {
        StepSample {
            invoked: !step.applet.is_empty(),
            duration_us: step.duration_us,
            fuel_used: step.fuel_used,
            error: step
                .result
                .get("error")
                .and_then(|e| e.get("kind"))
                .and_then(|k| k.as_str())
                .map(str::to_owned),
        }
    }
}

impl FlowMetrics {
    pub(crate) fn record(&self, sample: StepSample) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        if sample.invoked {
            self.invocations.fetch_add(1, Ordering::Relaxed);
            let secs = sample.duration_us as f64 / 1e6;
            let bucket = STEP_DURATION_BUCKETS
                .iter()
                .position(|bound| secs <= *bound)
                .unwrap_or(STEP_DURATION_BUCKETS.len());
            self.duration_buckets[bucket].fetch_add(1, Ordering::Relaxed);
            self.duration_sum_us
                .fetch_add(sample.duration_us, Ordering::Relaxed);
            self.fuel_used
                .fetch_add(sample.fuel_used, Ordering::Relaxed);
        }
        if let Some(kind) = sample.error {
            let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
            // A limit's kind is its name: the journal records `LimitKind::name`.
            if let Ok(limit) = serde_json::from_value::<LimitKind>(kind.clone().into()) {
                *errors.limits.entry(limit.name()).or_insert(0) += 1;
            }
            // Kinds come from the engine and the runtime, a short fixed set: the map stays
            // small whatever the applets do.
            *errors.by_kind.entry(kind).or_insert(0) += 1;
        }
    }

    pub(crate) fn picked(&self) {
        self.picks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn continued(&self) {
        self.continued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        MetricsSnapshot {
            steps: self.steps.load(Ordering::Relaxed),
            invocations: self.invocations.load(Ordering::Relaxed),
            duration_buckets: self
                .duration_buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            duration_sum_secs: self.duration_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            fuel_used: self.fuel_used.load(Ordering::Relaxed),
            errors: errors.by_kind.clone(),
            limit_hits: errors
                .limits
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            picks: self.picks.load(Ordering::Relaxed),
            continued: self.continued.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(applet: &str, result: serde_json::Value, duration_us: u64) -> StepRecord {
        StepRecord {
            seq: 0,
            plan: "p".into(),
            plan_version: 1,
            node: "a".into(),
            applet: applet.into(),
            attempt: 1,
            result,
            note: String::new(),
            fuel_used: 7,
            duration_us,
            data_changes: Default::default(),
            at_ms: 0,
            logs: Vec::new(),
        }
    }

    #[test]
    fn limits_are_counted_by_kind_and_durations_by_bucket() {
        let metrics = FlowMetrics::default();
        let error = |kind: &str| serde_json::json!({ "error": { "kind": kind } });
        metrics.record(StepSample::of(&step("x@1.0.0", error("fuel"), 50)));
        metrics.record(StepSample::of(&step(
            "x@1.0.0",
            error("deadline"),
            15_000_000,
        )));
        metrics.record(StepSample::of(&step("x@1.0.0", error("trap"), 2_000)));
        metrics.record(StepSample::of(&step(
            "x@1.0.0",
            serde_json::json!({"exit": "next"}),
            20_000_000,
        )));
        // A step the host took itself (a timeout): counted as a step, not an invocation.
        metrics.record(StepSample::of(&step(
            "",
            serde_json::json!({"timeout": "e"}),
            0,
        )));
        let m = metrics.snapshot();
        assert_eq!((m.steps, m.invocations, m.fuel_used), (5, 4, 28));
        assert_eq!(
            m.limit_hits,
            [("deadline".to_string(), 1), ("fuel".to_string(), 1)].into()
        );
        assert_eq!(m.errors.len(), 3);
        assert_eq!(m.errors["trap"], 1);
        // 50 µs in the first bucket, 2 ms in `0.0025`, 15 s in the last bound, 20 s above.
        assert_eq!(m.duration_buckets[0], 1);
        assert_eq!(m.duration_buckets[4], 1);
        assert_eq!(m.duration_buckets[STEP_DURATION_BUCKETS.len() - 1], 1);
        assert_eq!(m.duration_buckets[STEP_DURATION_BUCKETS.len()], 1);
        assert_eq!(m.duration_buckets.iter().sum::<u64>(), 4);
    }
}
