//! What each step was given, kept without a copy of the run's data at every step: a run's
//! first step keeps its data sources in full (`steps.input`), and every step keeps how its
//! commit changed them (`steps.data_delta`), so the data any step began with is the first
//! step's, changed by each step before it. An applet step keeps its node's state too.
//!
//! Every write of a run's data journals its step in the same transaction (a step's commit,
//! an event waking it; a cancel or a retry changes no data), and each is fenced by the
//! run's step sequence, so the deltas of a run's journal chain without a gap.

use coda_types::Values;
use serde::{Deserialize, Serialize};

use crate::db::{Conn, OptionalExtension, params};
use crate::journal::StepInput;
use crate::{Result, Store};

/// `steps.data_delta` of a step whose change of the data is exactly its `data_changes`
/// (the common case: an applet's step with nothing added by the host).
pub(crate) const SAME_AS_CHANGES: &str = "=";

/// `steps.input` as stored. Steps journaled before migration 18 kept `data` at every
/// applet step, and no delta.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct StoredInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Values>,
    #[serde(default, skip_serializing_if = "Values::is_empty")]
    pub state: Values,
}

/// How a commit changed the run's data, when that is not its `data_changes`: what it set
/// and what it removed.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DataDelta {
    #[serde(default, skip_serializing_if = "Values::is_empty")]
    pub set: Values,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// `steps.data_delta` of a commit that changes the run's data from `before` to `after`:
/// [`SAME_AS_CHANGES`] when setting the step's `changes` is all it does, else the
/// [`DataDelta`].
pub(crate) fn delta_column(before: &Values, after: &Values, changes: &Values) -> Result<String> {
    let changed_alone = before.keys().all(|name| after.contains_key(name))
        && changes
            .iter()
            .all(|(name, value)| after.get(name) == Some(value))
        && after
            .iter()
            .all(|(name, value)| changes.contains_key(name) || before.get(name) == Some(value));
    if changed_alone {
        return Ok(SAME_AS_CHANGES.to_owned());
    }
    let delta = DataDelta {
        set: after
            .iter()
            .filter(|(name, value)| before.get(*name) != Some(value))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
        removed: before
            .keys()
            .filter(|name| !after.contains_key(*name))
            .cloned()
            .collect(),
    };
    Ok(serde_json::to_string(&delta)?)
}

impl DataDelta {
    fn apply(self, data: &mut Values) {
        for name in self.removed {
            data.remove(&name);
        }
        data.extend(self.set);
    }
}

/// The run's data as it is in the store now, before a commit changes it: for a step that
/// carries no input (the host took it), whose change of the data is journaled all the same.
/// None for a run that is not there (its commit then fails on its fence).
pub(crate) fn current_data(tx: &Conn<'_>, run_id: &str) -> Result<Option<Values>> {
    let text: Option<String> = tx
        .prepare_cached("SELECT data FROM runs WHERE id = ?1")?
        .query_row(params![run_id], |r| r.get(0))
        .optional()?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

/// A step row as `step_input` reads it: seq, applet, input, data_changes, data_delta.
type JournalRow = (u64, String, Option<String>, String, Option<String>);

impl Store {
    /// What step `seq` of the tenant's run was given, if it was an applet step and its
    /// input can be rebuilt (a run journaled partly before migration 18 may not).
    /// `Ok(None)` also for a run or step that does not exist, or belongs to another tenant.
    pub fn step_input(&self, tenant: &str, run_id: &str, seq: u64) -> Result<Option<StepInput>> {
        let rows: Vec<JournalRow> = self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT s.seq, s.applet, s.input, s.data_changes, s.data_delta
                     FROM steps s JOIN runs r ON r.id = s.run_id
                     WHERE r.tenant = ?1 AND s.run_id = ?2 AND s.seq <= ?3 ORDER BY s.seq",
            )?;
            let rows = stmt
                .query_map(params![tenant, run_id, seq], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<_>>()?;
            Ok(rows)
        })?;
        // The data as the row at hand began, while it is known.
        let mut data: Option<Values> = None;
        for (at, applet, input, changes, delta) in rows {
            let input: Option<StoredInput> =
                input.map(|text| serde_json::from_str(&text)).transpose()?;
            let kept = input.is_some();
            let (input_data, state) = match input {
                Some(StoredInput { data, state }) => (data, state),
                None => (None, Values::new()),
            };
            if input_data.is_some() {
                data = input_data;
            }
            if at == seq {
                // A step the host took (whose first-step row may keep the data all the
                // same), or one journaled without its input.
                if applet.is_empty() || !kept {
                    return Ok(None);
                }
                return Ok(data.map(|data| StepInput { data, state }));
            }
            data = match (data, delta.as_deref()) {
                (Some(mut data), Some(SAME_AS_CHANGES)) => {
                    data.extend(serde_json::from_str::<Values>(&changes)?);
                    Some(data)
                }
                (Some(mut data), Some(delta)) => {
                    serde_json::from_str::<DataDelta>(delta)?.apply(&mut data);
                    Some(data)
                }
                // A step journaled before deltas were: what it changed is not known whole.
                (_, None) | (None, _) => None,
            };
        }
        Ok(None)
    }
}
