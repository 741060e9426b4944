//! `coda-webhooks`: a tenant's run events sent to the URLs it subscribed, as CloudEvents
//! 1.0 (structured JSON) signed the Standard Webhooks way, at least once, in order per run.
//!
//! ```text
//! journal (steps, committed by the engine)
//!   → project.rs   runs with steps not projected yet → one delivery row per event and
//!                  subscription, the run's cursor moved in the same write (events.rs)
//!   → deliver.rs   claim due deliveries (one node at a time, the earliest pending of each
//!                  run first) → send.rs (signing.rs) → the result, fenced by the claim
//! ```
//!
//! **Invariant:** an event is a committed step. Nothing here runs in a step's commit: a
//! tenant without subscriptions pays nothing, and a kill at any instant after a commit
//! loses no event, since the projection reads the journal itself.

pub mod deliver;
pub mod events;
pub mod project;
pub mod send;
pub mod signing;

pub use deliver::{Webhooks, allowed_ranges};
pub use events::EventKind;

use coda_store::AttemptOutcome;

/// The most subscriptions a tenant may have.
pub const MAX_SUBSCRIPTIONS_PER_TENANT: u32 = 25;

/// How long the secret replaced by a rotation keeps signing, unless the rotation says.
pub const DEFAULT_ROTATION_WINDOW_MS: i64 = 24 * 3_600_000;

/// The longest rotation window taken.
pub const MAX_ROTATION_WINDOW_MS: i64 = 7 * 24 * 3_600_000;

/// The delivery loop's bounds and timings (`coda serve`'s config, `webhooks:`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The longest a connection to a receiver may take to open.
    pub connect_timeout_ms: u64,
    /// Added to the connect timeout, the longest a whole attempt may take (connecting,
    /// sending, the answer): a receiver that connects at once has all of both to answer.
    pub response_timeout_ms: u64,
    /// The wait after a first failed attempt; each further failure doubles it...
    pub retry_first_ms: u64,
    /// ... up to this.
    pub retry_max_ms: u64,
    /// A delivery not delivered this long after it was made (or redelivered) is failed.
    pub give_up_after_ms: u64,
    /// Attempts in flight on this node at once.
    pub max_in_flight: usize,
    /// Attempts in flight for one tenant at once, across the nodes: a slow receiver holds
    /// its own tenant's places, not the others'.
    pub max_in_flight_per_tenant: usize,
    /// How often the loop looks for new events and due deliveries when idle.
    pub poll_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            connect_timeout_ms: 5_000,
            response_timeout_ms: 10_000,
            retry_first_ms: 5_000,
            retry_max_ms: 3_600_000,
            give_up_after_ms: 24 * 3_600_000,
            max_in_flight: 64,
            max_in_flight_per_tenant: 8,
            poll_ms: 200,
        }
    }
}

impl WebhookSettings {
    /// What follows a failed attempt: another after an exponential wait (never past the
    /// end of the window, so the last try is at its end), or failed once the window is
    /// spent. `attempts` is how many were made before this one.
    pub fn after_failure(&self, attempts: u32, first_at_ms: i64, now_ms: i64) -> AttemptOutcome {
        let window = i64::try_from(self.give_up_after_ms).unwrap_or(i64::MAX);
        let end = first_at_ms.saturating_add(window);
        if now_ms >= end {
            return AttemptOutcome::Failed;
        }
        let wait = coda_types::time::backoff_ms(self.retry_first_ms, attempts, self.retry_max_ms);
        let next = now_ms.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX));
        AttemptOutcome::Retry {
            next_at_ms: next.min(end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_within_the_day_then_fail() {
        let s = WebhookSettings::default();
        let retry = |attempts, now| match s.after_failure(attempts, 0, now) {
            AttemptOutcome::Retry { next_at_ms } => next_at_ms - now,
            other => panic!("{other:?}"),
        };
        assert_eq!(retry(0, 0), 5_000);
        assert_eq!(retry(1, 0), 10_000);
        assert_eq!(retry(3, 0), 40_000);
        assert_eq!(retry(20, 0), 3_600_000);
        // The last try is at the window's end, and after it the delivery is failed.
        let day = 24 * 3_600_000;
        assert_eq!(retry(20, day - 1_000), 1_000);
        assert_eq!(s.after_failure(21, 0, day), AttemptOutcome::Failed);
    }
}
