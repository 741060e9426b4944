//! The one place a step's commit is scrubbed of the secret values the step held
//! (`coda_types::scrub`): whatever the step's journal entry, note, logs, data changes and
//! the run's next data (its `LastError` included), state and wait came to hold, by whatever
//! route, is written with `[secret:NAME]` in place of each value. The effect journal is
//! scrubbed the same way, call by call, in `effects.rs`, before each record is written.

use coda_store::StepCommit;
use coda_types::scrub::Scrubber;

pub(crate) fn commit(mut commit: StepCommit, scrubber: &Scrubber) -> StepCommit {
    if scrubber.is_empty() {
        return commit;
    }
    let step = &mut commit.step;
    scrubber.json(&mut step.result);
    scrubber.string(&mut step.note);
    scrubber.values(&mut step.data_changes);
    scrubber.apply(&mut step.logs);
    let next = &mut commit.next;
    scrubber.values(&mut next.data);
    for state in next.state.values_mut() {
        scrubber.values(state);
    }
    if let Some(wait) = &mut next.wait {
        scrubber.string(&mut wait.event);
        if let Some(on_event) = &mut wait.on_event {
            scrubber.string(on_event);
        }
    }
    if let Some(input) = &mut commit.input {
        scrubber.values(&mut input.data);
        scrubber.values(&mut input.state);
    }
    commit
}
