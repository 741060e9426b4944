//! Completed interactions: editing their details (every change kept in an audit trail),
//! cloning one into a new outbound interaction, and the post-contact work of their skill
//! (automatic wrap-up, or a disposition the agent submits, which becomes data sources and
//! the event `disposition` for a run waiting for it).
//!
//! What is editable follows the contact center's rule: the subject, type, result, notes,
//! the customer's contact and custom fields. Who completed it and its activity (channel,
//! parties, timestamps, data sources, runs) are kept as they happened.

use std::collections::{BTreeMap, BTreeSet};

use coda_store::{
    AgentState, AuditEntry, Channel, CustomerPatch, FieldChange, FollowUpRefused,
    InteractionChange, InteractionDetails, InteractionRecord, InteractionStatus, NamedEvent,
    NewFollowUp, PostContact, PostContactWork, StoreError, SubmittedDisposition,
};
use coda_types::{Value, Values};
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

use crate::{Engine, Result};

/// The unavailable code of an agent who owes a disposition.
pub const DISPOSITION_PENDING: &str = "disposition";

/// The fields of an interaction that an edit may not touch, with why. Any other unknown
/// field is simply unknown.
pub const NOT_EDITABLE: &[&str] = &[
    "id",
    "agent",
    "completed_by",
    "completed_at_ms",
    "channel",
    "plan",
    "skill",
    "status",
    "present",
    "parties",
    "agent_reached",
    "events",
    "data",
    "post_flow",
    "post_flow_fired",
    "follow_up",
    "post_contact",
    "disposition",
    "updated_at_ms",
    "created_at_ms",
];

/// A JSON merge patch of the editable details: a field left out is kept, `null` clears
/// it, a value sets it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailsPatch {
    #[serde(default, deserialize_with = "present")]
    pub subject: Option<Option<String>>,
    #[serde(default, rename = "type", deserialize_with = "present")]
    pub interaction_type: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub result: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub notes: Option<Option<String>>,
    /// `null` clears the whole contact.
    #[serde(default, deserialize_with = "present")]
    pub customer: Option<Option<CustomerFields>>,
    /// By name; a `null` value removes that field, `null` for the whole map removes all.
    #[serde(default, deserialize_with = "present")]
    pub custom_fields: Option<Option<BTreeMap<String, Json>>>,
}

/// The customer's contact in a patch or a clone request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerFields {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub email: Option<Option<String>>,
}

/// A field that is present is `Some`, even when it is `null` (`Some(None)`); a missing one
/// stays `None` through `#[serde(default)]`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl CustomerFields {
    fn patch(&self) -> CustomerPatch {
        CustomerPatch {
            name: self.name.clone(),
            phone: self.phone.clone(),
            email: self.email.clone(),
        }
    }

    /// Each contact value that is set must look like one.
    fn validate(&self, prefix: &str) -> std::result::Result<(), WorkError> {
        if let Some(Some(phone)) = &self.phone {
            let allowed = |c: char| c.is_ascii_digit() || " +-().".contains(c);
            if !phone.chars().all(allowed)
                || !phone.chars().any(|c| c.is_ascii_digit())
                || phone.len() > 32
            {
                return Err(WorkError::invalid(
                    format!("{prefix}phone"),
                    format!(
                        "`{phone}` is not a phone number (digits, spaces and + - ( ) ., at most 32)"
                    ),
                ));
            }
        }
        if let Some(Some(email)) = &self.email {
            let valid = email.len() <= 254
                && !email.chars().any(char::is_whitespace)
                && email.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty()
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                });
            if !valid {
                return Err(WorkError::invalid(
                    format!("{prefix}email"),
                    format!("`{email}` is not an email address"),
                ));
            }
        }
        for (field, value) in [
            ("name", &self.name),
            ("phone", &self.phone),
            ("email", &self.email),
        ] {
            if let Some(Some(value)) = value
                && value.trim().is_empty()
            {
                return Err(WorkError::invalid(
                    format!("{prefix}{field}"),
                    "must not be empty (send null to clear it)",
                ));
            }
        }
        Ok(())
    }
}

/// The longest name of a custom field.
const MAX_CUSTOM_FIELD_NAME: usize = 64;

impl DetailsPatch {
    /// Checks the values (a wrong type is the parser's to refuse): 422 material, naming the
    /// field.
    pub fn validate(&self) -> std::result::Result<(), WorkError> {
        if let Some(Some(customer)) = &self.customer {
            customer.validate("customer.")?;
        }
        if let Some(Some(fields)) = &self.custom_fields {
            for (name, value) in fields {
                if name.is_empty()
                    || name.len() > MAX_CUSTOM_FIELD_NAME
                    || name.chars().any(|c| c.is_control() || c == '.')
                {
                    return Err(WorkError::invalid(
                        format!("custom_fields.{name}"),
                        format!(
                            "a custom field's name is 1 to {MAX_CUSTOM_FIELD_NAME} characters, with no `.` or control characters"
                        ),
                    ));
                }
                if value.is_array() || value.is_object() {
                    return Err(WorkError::invalid(
                        format!("custom_fields.{name}"),
                        "a custom field holds text, a number or true/false (null removes it)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The details after the patch.
    fn applied(&self, before: &InteractionDetails) -> InteractionDetails {
        let mut after = before.clone();
        for (field, change) in [
            (&mut after.subject, &self.subject),
            (&mut after.interaction_type, &self.interaction_type),
            (&mut after.result, &self.result),
            (&mut after.notes, &self.notes),
        ] {
            if let Some(value) = change {
                *field = value.clone();
            }
        }
        match &self.customer {
            None => {}
            Some(None) => after.customer = Default::default(),
            Some(Some(customer)) => customer.patch().apply(&mut after.customer),
        }
        match &self.custom_fields {
            None => {}
            Some(None) => after.custom_fields.clear(),
            Some(Some(fields)) => {
                for (name, value) in fields {
                    if value.is_null() {
                        after.custom_fields.remove(name);
                    } else {
                        after.custom_fields.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        after
    }
}

/// Every field that differs between two versions of the details, by path.
fn diff(before: &InteractionDetails, after: &InteractionDetails) -> Vec<FieldChange> {
    let text = |v: &Option<String>| v.as_ref().map_or(Json::Null, |s| Json::String(s.clone()));
    let mut changes = Vec::new();
    for (field, b, a) in [
        ("subject", &before.subject, &after.subject),
        ("type", &before.interaction_type, &after.interaction_type),
        ("result", &before.result, &after.result),
        ("notes", &before.notes, &after.notes),
        ("customer.name", &before.customer.name, &after.customer.name),
        (
            "customer.phone",
            &before.customer.phone,
            &after.customer.phone,
        ),
        (
            "customer.email",
            &before.customer.email,
            &after.customer.email,
        ),
    ] {
        if b != a {
            changes.push(FieldChange {
                field: field.into(),
                before: text(b),
                after: text(a),
            });
        }
    }
    let names: BTreeSet<&String> = before
        .custom_fields
        .keys()
        .chain(after.custom_fields.keys())
        .collect();
    for name in names {
        let (b, a) = (
            before.custom_fields.get(name),
            after.custom_fields.get(name),
        );
        if b != a {
            changes.push(FieldChange {
                field: format!("custom_fields.{name}"),
                before: b.cloned().unwrap_or(Json::Null),
                after: a.cloned().unwrap_or(Json::Null),
            });
        }
    }
    changes
}

/// Why a change to a completed interaction, a clone or a disposition was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkError {
    #[error("interaction `{0}` not found")]
    Unknown(String),
    #[error(
        "interaction `{0}` is still active: it is being worked, and only a completed interaction is edited, cloned or dispositioned"
    )]
    Active(String),
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("interaction `{interaction}` takes no disposition: {why}")]
    NoDispositions { interaction: String, why: String },
    #[error("disposition `{code}` is not one of skill `{skill}`'s: {}", .valid.join(", "))]
    UnknownDisposition {
        code: String,
        skill: String,
        valid: Vec<String>,
    },
    #[error(
        "interaction `{interaction}` has its disposition already (`{code}`); its result stays editable"
    )]
    AlreadyDispositioned { interaction: String, code: String },
    /// Its event would be kept past a bound of the tenant or the interaction: nothing was
    /// stored.
    #[error(transparent)]
    EventsFull(#[from] coda_store::EventsFull),
}

impl WorkError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        WorkError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What a clone of a completed interaction is to be: the Clone Interaction form.
#[derive(Debug, Clone)]
pub struct CloneRequest {
    pub channel: Channel,
    pub queue: String,
    /// The original's when `None`.
    pub subject: Option<String>,
    /// Changes to the customer prefilled from the original.
    pub customer: Option<CustomerFields>,
    /// The same key makes one clone, however often it is sent.
    pub idempotency_key: String,
}

/// A disposition an agent submits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispositionSubmission {
    pub code: String,
    #[serde(default)]
    pub amount: Option<f64>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// Starts the post-contact work of an interaction that has just completed: recorded on the
/// interaction, and its agent (if one completed it) made unavailable — for the wrap-up's
/// time, or until a disposition is submitted.
pub(crate) fn begin_post_contact(
    change: &mut InteractionChange,
    config: &PostContact,
    now_ms: i64,
) {
    let record = &mut change.record;
    let agent = record.completed_by.clone();
    let (work, state) = match config {
        PostContact::WrapUp {
            seconds,
            unavailable_code,
        } => {
            let until_ms = now_ms.saturating_add(i64::from(*seconds) * 1000);
            (
                PostContactWork::WrapUp {
                    agent: agent.clone(),
                    unavailable_code: unavailable_code.clone(),
                    until_ms,
                },
                AgentState {
                    unavailable_code: unavailable_code.clone(),
                    interaction: record.id.clone(),
                    since_ms: now_ms,
                    until_ms: Some(until_ms),
                },
            )
        }
        PostContact::Dispositions { .. } => (
            PostContactWork::Dispositions {
                agent: agent.clone(),
            },
            AgentState {
                unavailable_code: DISPOSITION_PENDING.into(),
                interaction: record.id.clone(),
                since_ms: now_ms,
                until_ms: None,
            },
        ),
    };
    record.post_contact = Some(work);
    change.agent_state = agent.map(|agent| (agent, state));
}

/// An agent's state as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentView {
    pub unavailable: bool,
    /// The latest unavailability (current or past).
    pub state: AgentState,
}

impl Engine {
    /// The time on the engine's clock, in ms since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Edits the details of a completed interaction; every field it changes is kept in the
    /// audit trail as made by `by` (an API token's id). A patch that changes nothing writes
    /// nothing.
    pub async fn edit_interaction(
        &self,
        tenant: &str,
        interaction: &str,
        by: &str,
        patch: DetailsPatch,
    ) -> Result<std::result::Result<(InteractionRecord, Vec<AuditEntry>), WorkError>> {
        if let Err(refused) = patch.validate() {
            return Ok(Err(refused));
        }
        // An unchanged record is not written: nothing for the trail, no new `updated_at`.
        let current = match self.completed(tenant, interaction)? {
            Ok(record) => record,
            Err(refused) => return Ok(Err(refused)),
        };
        if diff(&current.details, &patch.applied(&current.details)).is_empty() {
            return Ok(Ok((current, Vec::new())));
        }
        let (now, by, id) = (self.clock.now_ms(), by.to_owned(), interaction.to_owned());
        Ok(self
            .store
            .change_interaction(tenant, interaction, move |current| {
                let mut record = match current {
                    None => return Err(WorkError::Unknown(id)),
                    Some(r) if r.status != InteractionStatus::Completed => {
                        return Err(WorkError::Active(id));
                    }
                    Some(r) => r,
                };
                let after = patch.applied(&record.details);
                let audit = diff(&record.details, &after);
                record.details = after;
                if !audit.is_empty() {
                    record.updated_at_ms = now;
                }
                Ok(InteractionChange {
                    record,
                    by,
                    at_ms: now,
                    audit,
                    agent_state: None,
                    start: None,
                    event: None,
                    release_held: None,
                })
            })
            .await?
            .map(|changed| (changed.change.record, changed.audit)))
    }

    /// The interaction if it is this tenant's and completed.
    fn completed(
        &self,
        tenant: &str,
        interaction: &str,
    ) -> Result<std::result::Result<InteractionRecord, WorkError>> {
        Ok(match self.store.interaction(tenant, interaction)? {
            None => Err(WorkError::Unknown(interaction.to_owned())),
            Some(r) if r.status != InteractionStatus::Completed => {
                Err(WorkError::Active(interaction.to_owned()))
            }
            Some(r) => Ok(r),
        })
    }

    /// Clones a completed interaction into a new active outbound one assigned to `by` (the
    /// caller), its customer prefilled from the original and changed as asked, linked back
    /// to the original. The same path as the create-follow-up applet's
    /// ([`coda_store::Store::clone_interaction_with`]).
    pub async fn clone_interaction(
        &self,
        tenant: &str,
        interaction: &str,
        by: &str,
        request: CloneRequest,
    ) -> Result<std::result::Result<InteractionRecord, WorkError>> {
        if request.channel == Channel::Chat {
            return Ok(Err(WorkError::invalid(
                "channel",
                "`chat` is not an outbound channel: voice, sms, email or task",
            )));
        }
        if request.queue.trim().is_empty() {
            return Ok(Err(WorkError::invalid("queue", "must not be empty")));
        }
        if let Some(Err(refused)) = request.customer.as_ref().map(|c| c.validate("customer.")) {
            return Ok(Err(refused));
        }
        let customer = request
            .customer
            .as_ref()
            .map(CustomerFields::patch)
            .unwrap_or_default();
        let created = self
            .store
            .clone_interaction_with(
                tenant,
                NewFollowUp {
                    source: interaction.to_owned(),
                    channel: request.channel,
                    queue: request.queue,
                    subject: request.subject,
                    assigned_to: Some(by.to_owned()),
                    idempotency_key: request.idempotency_key,
                    now_ms: self.clock.now_ms(),
                },
                customer,
            )
            .await?;
        Ok(created.map_err(|refused| match refused {
            FollowUpRefused::UnknownSource(id) => WorkError::Unknown(id),
            FollowUpRefused::NotCompleted(id) => WorkError::Active(id),
        }))
    }

    /// Takes an agent's disposition for a completed interaction whose skill asks for one:
    /// it becomes the data sources `Disposition` (its code), `DispositionLabel`,
    /// `DispositionAmount` and `DispositionNotes` of the interaction, is kept in the audit
    /// trail, frees the agent, and is delivered as the event `disposition` (the store's
    /// path of [`Engine::deliver`], in the same write as the disposition itself) to the
    /// interaction's runs waiting for it, which get those data sources too, or kept for the
    /// first run that waits for it later. One per interaction. Answers the interaction and
    /// the runs woken (none: kept for a later wait).
    pub async fn submit_disposition(
        &self,
        tenant: &str,
        interaction: &str,
        by: &str,
        submission: DispositionSubmission,
    ) -> Result<std::result::Result<(InteractionRecord, Vec<String>), WorkError>> {
        let record = match self.completed(tenant, interaction)? {
            Ok(record) => record,
            Err(refused) => return Ok(Err(refused)),
        };
        let refuse = |why: String| {
            Ok(Err(WorkError::NoDispositions {
                interaction: interaction.to_owned(),
                why,
            }))
        };
        let Some(skill) = record.skill.clone() else {
            return refuse("it has no skill, so no post-contact work".into());
        };
        let options = match self.store.post_contact(tenant, &skill)? {
            None => return refuse(format!("skill `{skill}` has no post-contact work set")),
            Some(PostContact::WrapUp { .. }) => {
                return refuse(format!(
                    "skill `{skill}`'s post-contact work is automatic wrap-up, not dispositions"
                ));
            }
            Some(PostContact::Dispositions { dispositions }) => dispositions,
        };
        let Some(option) = options.iter().find(|o| o.code == submission.code).cloned() else {
            return Ok(Err(WorkError::UnknownDisposition {
                code: submission.code,
                skill,
                valid: options.into_iter().map(|o| o.code).collect(),
            }));
        };
        if let Some(amount) = submission.amount {
            if !option.amount {
                return Ok(Err(WorkError::invalid(
                    "amount",
                    format!("disposition `{}` takes no amount", option.code),
                )));
            }
            if !amount.is_finite() || amount < 0.0 {
                return Ok(Err(WorkError::invalid(
                    "amount",
                    format!("{amount} is not an amount (a number, 0 or more)"),
                )));
            }
        }
        let now = self.clock.now_ms();
        let submitted = SubmittedDisposition {
            code: option.code.clone(),
            label: option.label.clone(),
            amount: submission.amount,
            notes: submission.notes.filter(|n| !n.trim().is_empty()),
            by: by.to_owned(),
            at_ms: now,
        };
        let mut data = Values::new();
        data.insert("Disposition".into(), Value::Text(submitted.code.clone()));
        data.insert(
            "DispositionLabel".into(),
            Value::Text(submitted.label.clone()),
        );
        if let Some(amount) = submitted.amount {
            data.insert("DispositionAmount".into(), Value::Number(amount));
        }
        if let Some(notes) = &submitted.notes {
            data.insert("DispositionNotes".into(), Value::Text(notes.clone()));
        }
        let payload = serde_json::json!({
            "code": submitted.code,
            "label": submitted.label,
            "amount": submitted.amount,
            "notes": submitted.notes,
        });
        let (id, by, sources) = (interaction.to_owned(), by.to_owned(), data.clone());
        let event = NamedEvent {
            tenant: tenant.to_owned(),
            interaction: interaction.to_owned(),
            name: "disposition".into(),
            payload: Value::from_json(&payload),
            data,
        };
        let limits = self.limits.event_limits();
        let stored = self
            .store
            .change_interaction(tenant, interaction, move |current| {
                let mut record = match current {
                    None => return Err(WorkError::Unknown(id)),
                    Some(r) if r.status != InteractionStatus::Completed => {
                        return Err(WorkError::Active(id));
                    }
                    Some(r) => r,
                };
                // One disposition: the run that waited for it has gone on with the first.
                if let Some(existing) = &record.disposition {
                    return Err(WorkError::AlreadyDispositioned {
                        interaction: id,
                        code: existing.code.clone(),
                    });
                }
                let audit = vec![FieldChange {
                    field: "disposition".into(),
                    before: Json::Null,
                    after: serde_json::to_value(&submitted).unwrap_or(Json::Null),
                }];
                // The agent who owed it is available again.
                let agent_state = match &record.post_contact {
                    Some(PostContactWork::Dispositions { agent: Some(agent) }) => Some((
                        agent.clone(),
                        AgentState {
                            unavailable_code: DISPOSITION_PENDING.into(),
                            interaction: id.clone(),
                            since_ms: record.completed_at_ms.unwrap_or(now),
                            until_ms: Some(now),
                        },
                    )),
                    _ => None,
                };
                record.data.extend(sources);
                record.disposition = Some(submitted);
                record.updated_at_ms = now;
                Ok(InteractionChange {
                    record,
                    by,
                    at_ms: now,
                    audit,
                    agent_state,
                    start: None,
                    event: Some((event, limits)),
                    release_held: None,
                })
            })
            .await;
        let changed = match stored {
            Ok(Ok(changed)) => changed,
            Ok(Err(refused)) => return Ok(Err(refused)),
            Err(StoreError::EventsFull(full)) => return Ok(Err(WorkError::EventsFull(full))),
            Err(e) => return Err(e.into()),
        };
        let woken = changed.delivered.map(|d| d.woken).unwrap_or_default();
        if !woken.is_empty() {
            self.wake();
        }
        Ok(Ok((changed.change.record, woken)))
    }

    /// An agent's latest unavailability and whether it holds now; none when this tenant's
    /// interactions never made the agent unavailable.
    pub fn agent(&self, tenant: &str, agent: &str) -> Result<Option<AgentView>> {
        let now = self.clock.now_ms();
        Ok(self
            .store
            .agent_state(tenant, agent)?
            .map(|state| AgentView {
                unavailable: state.unavailable_at(now),
                state,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(json: Json) -> DetailsPatch {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_patch_merges_and_the_diff_names_each_changed_field() {
        let before = InteractionDetails {
            subject: Some("Billing".into()),
            notes: Some("call back".into()),
            custom_fields: [("tier".to_string(), Json::from("gold"))].into(),
            ..Default::default()
        };
        let p = patch(serde_json::json!({
            "subject": "Billing dispute", "notes": null,
            "customer": { "email": "ada@example.com" },
            "custom_fields": { "tier": null, "region": "EU" }
        }));
        p.validate().unwrap();
        let after = p.applied(&before);
        let fields: Vec<String> = diff(&before, &after).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "subject",
                "notes",
                "customer.email",
                "custom_fields.region",
                "custom_fields.tier"
            ]
        );
        // The same patch again changes nothing.
        assert!(diff(&after, &p.applied(&after)).is_empty());
    }

    #[test]
    fn contact_values_are_checked_by_field() {
        let bad = patch(serde_json::json!({ "customer": { "email": "not-an-address" } }));
        assert!(
            matches!(bad.validate(), Err(WorkError::Invalid { field, .. }) if field == "customer.email")
        );
        let bad = patch(serde_json::json!({ "customer": { "phone": "call me" } }));
        assert!(
            matches!(bad.validate(), Err(WorkError::Invalid { field, .. }) if field == "customer.phone")
        );
        let bad = patch(serde_json::json!({ "custom_fields": { "x": [1] } }));
        assert!(
            matches!(bad.validate(), Err(WorkError::Invalid { field, .. }) if field == "custom_fields.x")
        );
        let ok = patch(
            serde_json::json!({ "customer": { "phone": "+1 (555) 010-0100", "email": null } }),
        );
        ok.validate().unwrap();
    }
}
