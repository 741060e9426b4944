//! The projection of the journal into deliveries. Each pass looks for runs of tenants with
//! a subscription that committed steps not projected yet, through the `steps_at` index:
//! from a little before where the last pass stopped ([`OVERLAP_MS`], for commits that
//! became visible after a later-stamped one was read), and now and then much further back
//! ([`SWEEP_BACK_MS`], for a commit that took longer; or from the cursor, when a node starts
//! long after the last pass). Each run found is projected from its
//! own cursor on, every step in order, so an event is never skipped and never made twice:
//! the cursor and the deliveries move in one transaction (`Store::project_webhooks`).

use coda_store::{Store, StoreError};

use crate::events;

/// How far before the scan's cursor each pass looks again: a step is stamped before its
/// commit reaches the disk (a group commit's wait, clocks of two nodes a little apart).
pub const OVERLAP_MS: i64 = 5_000;

/// How far back a sweep looks: past the longest a step can take to commit after it is
/// stamped, which its claim bounds (30 s by default: a node paused longer loses the claim,
/// and its commit is refused).
pub const SWEEP_BACK_MS: i64 = 10 * 60_000;

/// How often a sweep runs.
pub const SWEEP_EVERY_MS: i64 = 60_000;

/// The most journal rows one pass looks at; a pass that finds that many ends its scan at the
/// last one's stamp, and the next goes on from there.
pub const SCAN_ROWS: usize = 2_000;

/// Steps of one run projected per write.
pub const STEPS_PER_WRITE: usize = 100;

/// The projection's state on this node: when it last swept, and whether that sweep was
/// cut short by [`SCAN_ROWS`] (then the next pass sweeps again, from where the projected
/// steps now stop it).
#[derive(Default)]
pub struct Projector {
    last_sweep_ms: i64,
    sweep_again: bool,
}

impl Projector {
    /// One pass; returns how many deliveries it wrote.
    pub async fn pass(&mut self, store: &Store, now_ms: i64) -> Result<usize, StoreError> {
        if !store.any_webhooks()? {
            return Ok(0);
        }
        let cursor = store.webhook_scan_cursor()?;
        let sweep =
            cursor == 0 || self.sweep_again || now_ms - self.last_sweep_ms >= SWEEP_EVERY_MS;
        let from = if sweep {
            self.last_sweep_ms = now_ms;
            // Never after the cursor: a node started again after a long stop goes on from
            // where the projection stood, however long ago.
            let back = now_ms - SWEEP_BACK_MS;
            if cursor == 0 {
                back
            } else {
                back.min(cursor - OVERLAP_MS)
            }
        } else {
            cursor - OVERLAP_MS
        };
        let found = store.webhook_unprojected(from, now_ms, SCAN_ROWS)?;
        self.sweep_again = sweep && found.len() == SCAN_ROWS;
        let reached = match found.last() {
            Some((_, at)) if found.len() == SCAN_ROWS => *at,
            _ => now_ms,
        };
        let mut runs: Vec<&str> = Vec::new();
        for (run, _) in &found {
            if !runs.contains(&run.as_str()) {
                runs.push(run);
            }
        }
        let mut written = 0;
        for run in runs {
            written += project_run(store, run, now_ms).await?;
        }
        if reached > cursor {
            store.set_webhook_scan_cursor(reached).await?;
        }
        Ok(written)
    }
}

/// Projects everything run `run_id` committed since its cursor.
pub async fn project_run(store: &Store, run_id: &str, now_ms: i64) -> Result<usize, StoreError> {
    let mut written = 0;
    let mut targets = None;
    loop {
        let Some(news) = store.webhook_run_news(run_id, STEPS_PER_WRITE)? else {
            return Ok(written);
        };
        let Some(last) = news.steps.last() else {
            return Ok(written);
        };
        let next_seq = last.seq + 1;
        let targets = match &targets {
            Some(targets) => targets,
            None => targets.insert(store.webhook_targets(&news.tenant)?),
        };
        let deliveries = events::deliveries(&news, targets);
        written += deliveries.len();
        let full = news.steps.len() == STEPS_PER_WRITE;
        store
            .project_webhooks(&news.tenant, run_id, next_seq, deliveries, now_ms)
            .await?;
        if !full {
            return Ok(written);
        }
    }
}
