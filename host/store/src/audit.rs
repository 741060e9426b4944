//! Changes to an interaction that are kept: an edit's field changes go to its audit trail,
//! and an agent's unavailability (post-contact work) to `agent_states`, in the same
//! transaction as the interaction itself, so neither can be stored without the other.

use crate::db::params;
use serde::{Deserialize, Serialize};

use crate::events::{Delivery, EventLimits, NamedEvent, deliver_in, release_held_in};
use crate::interactions::InteractionRecord;
use crate::interactions::{read_interaction, write_interaction};
use crate::post_contact::{AgentState, write_agent_state};
use crate::runs::{NewRun, StartedRun, insert_run};
use crate::{Result, Store};

/// One field's change, as the trail keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its place in the interaction's trail, from 1.
    pub seq: u64,
    pub at_ms: i64,
    /// Who made it: the id of the API token.
    pub by: String,
    /// The field's path: `subject`, `customer.email`, `custom_fields.tier`, `disposition`.
    pub field: String,
    /// `null` when the field had no value.
    pub before: serde_json::Value,
    /// `null` when the change cleared it.
    pub after: serde_json::Value,
}

/// A field change to record (the store numbers it).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// What a change writes: the interaction, the audited field changes made by `by` at
/// `at_ms`, an agent's new state, and the run its completion starts.
#[derive(Debug, Clone)]
pub struct InteractionChange {
    pub record: InteractionRecord,
    pub by: String,
    pub at_ms: i64,
    pub audit: Vec<FieldChange>,
    /// The agent and their new state.
    pub agent_state: Option<(String, AgentState)>,
    /// A run to start in the same write (a unique insert on its trigger key, as
    /// [`Store::start_run`]): the interaction's end and its post-interaction run are
    /// stored together, in one commit rather than two in sequence.
    pub start: Option<NewRun>,
    /// A named event delivered in the same write ([`Store::deliver_event`]'s path): a
    /// submitted disposition is stored on the interaction and kept as its event, waking the
    /// runs waiting for it, together or not at all.
    pub event: Option<(NamedEvent, EventLimits)>,
    /// The held early event this change applies (`events.rs`): released in the same write,
    /// so no later start or scheduler's pass applies it again.
    pub release_held: Option<u64>,
}

/// What [`Store::change_interaction`] wrote: the change, the audit entries it added, the
/// run it started (or found started by the same trigger) and its event's delivery.
#[derive(Debug, Clone)]
pub struct InteractionChanged {
    pub change: InteractionChange,
    pub audit: Vec<AuditEntry>,
    pub started: Option<StartedRun>,
    pub delivered: Option<Delivery>,
}

impl InteractionChange {
    /// A change with nothing audited and no agent touched.
    pub fn record(record: InteractionRecord) -> Self {
        InteractionChange {
            at_ms: record.updated_at_ms,
            record,
            by: String::new(),
            audit: Vec::new(),
            agent_state: None,
            start: None,
            event: None,
            release_held: None,
        }
    }
}

impl Store {
    /// Reads, changes and writes an interaction with its audit entries, agent state and the
    /// run it starts, in one transaction. `change` gets the current record (none if there is
    /// none) and returns the change, or an error that leaves everything untouched. An event
    /// the change delivers past its bounds fails the write whole
    /// ([`crate::StoreError::EventsFull`]).
    pub async fn change_interaction<E: Send + 'static>(
        &self,
        tenant: &str,
        id: &str,
        change: impl FnOnce(Option<InteractionRecord>) -> std::result::Result<InteractionChange, E>
        + Send
        + 'static,
    ) -> Result<std::result::Result<InteractionChanged, E>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let changed = self
            .writer
            .write(move |conn| {
                let current = read_interaction(conn, &tenant, &id)?;
                let new = current.is_none();
                let change = match change(current) {
                    Ok(change) => change,
                    Err(refused) => return Ok(Err(refused)),
                };
                if new {
                    // Ordered with an early event being held for it (`events.rs`): either
                    // the hold sees it started, or its start's reconcile sees the hold.
                    crate::events::lock_interaction(conn, &tenant, &id)?;
                }
                let record = &change.record;
                write_interaction(conn, &tenant, record)?;
                let mut entries = Vec::with_capacity(change.audit.len());
                if !change.audit.is_empty() {
                    // The writer is the only writer: the next number cannot be taken meanwhile.
                    let last: u64 = conn
                        .prepare_cached(
                            "SELECT COALESCE(MAX(seq), 0) FROM interaction_audit
                             WHERE tenant = ?1 AND interaction = ?2",
                        )?
                        .query_row(params![tenant, id], |r| r.get(0))?;
                    for (n, field) in change.audit.iter().enumerate() {
                        let entry = AuditEntry {
                            seq: last + 1 + n as u64,
                            at_ms: change.at_ms,
                            by: change.by.clone(),
                            field: field.field.clone(),
                            before: field.before.clone(),
                            after: field.after.clone(),
                        };
                        conn.prepare_cached(
                            "INSERT INTO interaction_audit (tenant, interaction, seq, at, by, field, before, after)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        )?
                        .execute(params![
                            tenant,
                            id,
                            entry.seq,
                            entry.at_ms,
                            entry.by,
                            entry.field,
                            entry.before.to_string(),
                            entry.after.to_string()
                        ])?;
                        entries.push(entry);
                    }
                }
                if let Some((agent, state)) = &change.agent_state {
                    write_agent_state(conn, &tenant, agent, state, change.at_ms)?;
                }
                let started = match &change.start {
                    Some(new) => Some(insert_run(conn, new)?),
                    None => None,
                };
                if let Some(seq) = change.release_held {
                    // Gone already when a start applied it meanwhile (two starts at once):
                    // the event is applied again, which starts nothing twice (trigger keys).
                    release_held_in(conn, &tenant, &id, seq)?;
                }
                let delivered = match &change.event {
                    Some((event, limits)) => {
                        Some(deliver_in(conn, event, limits, change.at_ms)?)
                    }
                    None => None,
                };
                Ok(Ok((change, entries, started, delivered)))
            })
            .await?;
        Ok(
            changed.map(|(change, audit, started, delivered)| InteractionChanged {
                change,
                audit,
                started,
                delivered: delivered.map(|d| d.announce(self)),
            }),
        )
    }

    /// The audit trail of an interaction of this tenant, oldest first (another tenant's
    /// interaction has none).
    pub fn interaction_audit(&self, tenant: &str, id: &str) -> Result<Vec<AuditEntry>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, at, by, field, before, after FROM interaction_audit
                 WHERE tenant = ?1 AND interaction = ?2 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![tenant, id], |r| {
                Ok((
                    r.get::<u64>(0)?,
                    r.get::<i64>(1)?,
                    r.get::<String>(2)?,
                    r.get::<String>(3)?,
                    r.get::<String>(4)?,
                    r.get::<String>(5)?,
                ))
            })?;
            rows.map(|row| {
                let (seq, at_ms, by, field, before, after) = row?;
                Ok(AuditEntry {
                    seq,
                    at_ms,
                    by,
                    field,
                    before: serde_json::from_str(&before)?,
                    after: serde_json::from_str(&after)?,
                })
            })
            .collect()
        })
    }
}

impl Store {
    /// The tenant and id of the live (unrevoked) token with this hash: who made a change.
    pub fn token_caller(&self, hash: &str) -> Result<Option<(String, String)>> {
        use crate::db::OptionalExtension;
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT tenant, id FROM tokens WHERE hash = ?1 AND revoked_at IS NULL",
            )?
            .query_row(params![hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
        })
    }
}
