//! Runs stopped and restarted from outside: cancel and retry, as the API asks for them.
//!
//! Both are store writes journaled as steps, fenced like a step commit: a cancel moves the
//! run's step sequence on, so a step of it in flight loses its commit (the engine sees a
//! conflict and drops the step's result) and the run stays cancelled.

use coda_store::{Control, RunWatch};

use crate::{Engine, Result};

/// The journal note of a run cancelled through the API.
pub const CANCELLED_BY_API: &str = "cancelled by API";

impl Engine {
    /// Cancels a run that has not finished; a finished one is refused with its status.
    pub async fn cancel(&self, tenant: &str, run_id: &str) -> Result<Control> {
        Ok(self
            .store
            .cancel_run(tenant, run_id, CANCELLED_BY_API, self.clock.now_ms())
            .await?)
    }

    /// Retries a failed run from its failed node, as a further attempt of that step; a run
    /// that is not failed is refused with its status.
    pub async fn retry(&self, tenant: &str, run_id: &str) -> Result<Control> {
        let control = self
            .store
            .retry_run(tenant, run_id, self.clock.now_ms())
            .await?;
        if matches!(control, Control::Applied(_)) {
            // The run is due now: an idle scheduler takes it at once.
            self.wake();
        }
        Ok(control)
    }

    /// A notice of each journal commit of run `run_id` from now on (steps, events,
    /// cancels, retries): what a live tail of the run waits on.
    pub fn watch_run(&self, run_id: &str) -> RunWatch {
        self.store.watch_run(run_id)
    }
}
