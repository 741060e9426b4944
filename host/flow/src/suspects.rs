//! Telling a step that takes its host down apart from the steps that were only beside it.
//!
//! Every step in flight when a host dies is claimed again after it, so its claim count
//! (`Claimed::step_claims`) grows whether it killed the host or merely ran next to the one
//! that did. With hundreds of steps in flight, parking by that count alone would park the
//! innocent with the culprit, or (the crash suite's 50 kills) an innocent on its own.
//!
//! So a step claimed [`SUSPECT_CLAIMS`] times (in flight at two ends of its host without a
//! commit) is a suspect: it runs alone in its host, with no other step beside it, and
//! that start is recorded before it runs (`Store::start_alone`). A host that dies while a
//! step runs alone died in that step, so only those starts count toward
//! `FlowLimits::max_step_starts`. Suspects are rare (only after a host died), and while
//! one waits for its turn, new steps wait behind it: the gate is fair, so neither starves.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Claims of one step after which it runs alone: the claim that found it unfinished after
/// one end of a host is taken as bad luck, the one after a second as suspicion.
pub(crate) const SUSPECT_CLAIMS: u32 = 3;

/// The host's steps take it shared; a suspect takes it alone.
#[derive(Default)]
pub(crate) struct Gate(RwLock<()>);

/// A step's turn to run: held until the step (not its continuation) is over.
pub(crate) struct Turn<'a> {
    _beside: Option<RwLockReadGuard<'a, ()>>,
    _alone: Option<RwLockWriteGuard<'a, ()>>,
}

impl Turn<'_> {
    pub(crate) fn alone(&self) -> bool {
        self._alone.is_some()
    }
}

impl Gate {
    /// Waits for the turn of a step claimed `step_claims` times.
    pub(crate) async fn enter(&self, step_claims: u32) -> Turn<'_> {
        if step_claims >= SUSPECT_CLAIMS {
            Turn {
                _beside: None,
                _alone: Some(self.0.write().await),
            }
        } else {
            Turn {
                _beside: Some(self.0.read().await),
                _alone: None,
            }
        }
    }
}
