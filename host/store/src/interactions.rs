//! Interactions (a call, a chat, an SMS, an email) as the store keeps them: who is present,
//! whether an agent was reached, their data sources, and the post-flow action set on them.

use crate::db::Conn;
use crate::db::{OptionalExtension, params};
use coda_types::Values;
use serde::{Deserialize, Serialize};

use crate::paging::{ListOrder, PageQuery};
use crate::{Result, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    Voice,
    Chat,
    Sms,
    Email,
    /// Work that is not a conversation (a follow-up task for an agent).
    Task,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Party {
    /// The caller or customer.
    Caller,
    Agent,
}

/// Which disconnect fires a post-flow action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PostFlowTarget {
    Agent,
    Caller,
    Any,
}

/// Set during the live flow; fires on the matching disconnect, once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostFlowAction {
    pub target: PostFlowTarget,
    /// What kind of flow it starts (`inbound-call-flow`, `voice-survey-flow`).
    pub action: String,
    pub plan: String,
    /// Seen by the started run as the data source `InvocationData`.
    pub invocation_data: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InteractionStatus {
    Active,
    Completed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionRecord {
    pub id: String,
    pub channel: Channel,
    /// The live plan it runs under; its post-interaction process starts when it ends.
    pub plan: Option<String>,
    pub status: InteractionStatus,
    pub present: Vec<Party>,
    pub agent_reached: bool,
    /// CLID, DialedNumber, Language, InteractionOutcome and custom data sources.
    pub data: Values,
    pub post_flow: Option<PostFlowAction>,
    /// True once the post-flow action fired: the post-interaction process then does not
    /// start as well.
    #[serde(default)]
    pub post_flow_fired: bool,
    /// Set on an outbound follow-up created from a completed interaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUpOf>,
    pub updated_at_ms: i64,
    /// The skill it was routed by (the started event's): which post-contact work follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    /// The agent who last joined it (a party-joined event naming one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The agent it was with when it completed: never edited afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at_ms: Option<i64>,
    /// What people may edit once it is completed (with an audit trail).
    #[serde(default, skip_serializing_if = "InteractionDetails::is_empty")]
    pub details: InteractionDetails,
    /// The post-contact work its skill asked for when it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_contact: Option<PostContactWork>,
    /// The disposition submitted for it, at most one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<SubmittedDisposition>,
}

/// How to reach the customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// The editable details of an interaction: subject, type, result, notes, the customer's
/// contact and custom fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InteractionDetails {
    pub subject: Option<String>,
    #[serde(rename = "type")]
    pub interaction_type: Option<String>,
    pub result: Option<String>,
    pub notes: Option<String>,
    #[serde(default)]
    pub customer: Customer,
    #[serde(default)]
    pub custom_fields: std::collections::BTreeMap<String, serde_json::Value>,
}

impl InteractionDetails {
    pub fn is_empty(&self) -> bool {
        *self == InteractionDetails::default()
    }
}

/// The post-contact work that followed an interaction (its skill's, when it completed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum PostContactWork {
    /// Its agent was unavailable under `unavailable_code` until `until_ms`.
    WrapUp {
        agent: Option<String>,
        unavailable_code: String,
        until_ms: i64,
    },
    /// Its agent owes a disposition (unavailable until one is submitted).
    Dispositions { agent: Option<String> },
}

/// A disposition an agent submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmittedDisposition {
    pub code: String,
    pub label: String,
    pub amount: Option<f64>,
    pub notes: Option<String>,
    /// The API token that submitted it.
    pub by: String,
    pub at_ms: i64,
}

/// Where a follow-up came from and where it waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpOf {
    /// The completed interaction it was cloned from.
    pub source: String,
    pub queue: String,
    pub subject: Option<String>,
    pub assigned_to: Option<String>,
}

/// A follow-up to create from a completed interaction.
#[derive(Debug, Clone)]
pub struct NewFollowUp {
    pub source: String,
    pub channel: Channel,
    pub queue: String,
    pub subject: Option<String>,
    pub assigned_to: Option<String>,
    /// The same key creates one follow-up, however often the call is repeated.
    pub idempotency_key: String,
    pub now_ms: i64,
}

/// Why a follow-up was not created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowUpRefused {
    #[error("interaction `{0}` does not exist")]
    UnknownSource(String),
    #[error("interaction `{0}` is still active: only a completed interaction is cloned")]
    NotCompleted(String),
}

pub(crate) fn read_interaction(
    conn: &Conn<'_>,
    tenant: &str,
    id: &str,
) -> Result<Option<InteractionRecord>> {
    let body: Option<String> = conn
        .query_row(
            "SELECT body FROM interactions WHERE tenant = ?1 AND id = ?2",
            params![tenant, id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
}

/// Writes an interaction: its body, and beside it the columns its list filters and pages on
/// (`status`, `channel`, `skill`, and `created_at`, the time of its first write, kept by
/// every later one). The one place an interaction row is written, so they never disagree.
pub(crate) fn write_interaction(
    conn: &Conn<'_>,
    tenant: &str,
    record: &InteractionRecord,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO interactions (tenant, id, body, updated_at, created_at, status, channel, skill)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7)
         ON CONFLICT (tenant, id) DO UPDATE SET body = excluded.body,
             updated_at = excluded.updated_at, status = excluded.status,
             channel = excluded.channel, skill = excluded.skill",
    )?
    .execute(params![
        tenant,
        record.id,
        serde_json::to_string(record)?,
        record.updated_at_ms,
        serde_name(&record.status)?,
        serde_name(&record.channel)?,
        record.skill
    ])?;
    Ok(())
}

/// A unit variant's name as it is serialized (`completed`, `sms`): the one spelling.
fn serde_name(value: &impl Serialize) -> Result<String> {
    match serde_json::to_value(value)? {
        serde_json::Value::String(name) => Ok(name),
        other => Ok(other.to_string()),
    }
}

/// What `GET /v1/interactions` filters on; every field left out matches every interaction.
#[derive(Debug, Clone, Default)]
pub struct InteractionFilter {
    pub status: Option<InteractionStatus>,
    pub channel: Option<Channel>,
    pub skill: Option<String>,
    /// First seen at or after (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// First seen before.
    pub until_ms: Option<i64>,
}

/// An interaction as its list shows it: the record, when it was first seen, and how many
/// runs it started and edits it had.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionSummary {
    pub record: InteractionRecord,
    pub created_at_ms: i64,
    pub runs: u64,
    pub edits: u64,
}

/// The id of the follow-up a key creates: derived from the key, so a repeated call (a step
/// re-executed after a crash, a retry) finds the one it created instead of making another.
fn follow_up_id(tenant: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(tenant.as_bytes());
    hasher.update([0]);
    hasher.update(key.as_bytes());
    format!("fu-{}", &hex::encode(hasher.finalize())[..24])
}

/// Changes to a customer's contact, as a JSON merge patch: `None` keeps a field,
/// `Some(None)` clears it, `Some(Some(v))` sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerPatch {
    pub name: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub email: Option<Option<String>>,
}

impl CustomerPatch {
    pub fn apply(&self, customer: &mut Customer) {
        for (field, change) in [
            (&mut customer.name, &self.name),
            (&mut customer.phone, &self.phone),
            (&mut customer.email, &self.email),
        ] {
            if let Some(value) = change {
                *field = value.clone();
            }
        }
    }
}

/// The customer a follow-up starts with: the original's contact as saved, its phone
/// falling back to the caller's number (`CLID`) on a call or a text.
fn prefilled_customer(source: &InteractionRecord) -> Customer {
    let mut customer = source.details.customer.clone();
    if customer.phone.is_none()
        && matches!(source.channel, Channel::Voice | Channel::Sms)
        && let Some(coda_types::Value::Text(clid)) = source.data.get("CLID")
    {
        customer.phone = Some(clid.clone());
    }
    customer
}

impl Store {
    /// Clones a completed interaction into a new active outbound one, with the source's
    /// customer and data sources, in `queue`. Idempotent on the key.
    pub async fn clone_interaction(
        &self,
        tenant: &str,
        follow_up: NewFollowUp,
    ) -> Result<std::result::Result<InteractionRecord, FollowUpRefused>> {
        self.clone_interaction_with(tenant, follow_up, CustomerPatch::default())
            .await
    }

    /// [`Store::clone_interaction`], with changes to the prefilled customer (the Clone
    /// Interaction form's name, phone and email). The one way a follow-up is made, for the
    /// create-follow-up applet and the API alike.
    pub async fn clone_interaction_with(
        &self,
        tenant: &str,
        follow_up: NewFollowUp,
        customer: CustomerPatch,
    ) -> Result<std::result::Result<InteractionRecord, FollowUpRefused>> {
        let tenant = tenant.to_owned();
        self.writer
            .write(move |conn| {
                let id = follow_up_id(&tenant, &follow_up.idempotency_key);
                if let Some(existing) = read_interaction(conn, &tenant, &id)? {
                    return Ok(Ok(existing));
                }
                let Some(source) = read_interaction(conn, &tenant, &follow_up.source)? else {
                    return Ok(Err(FollowUpRefused::UnknownSource(follow_up.source)));
                };
                if source.status != InteractionStatus::Completed {
                    return Ok(Err(FollowUpRefused::NotCompleted(follow_up.source)));
                }
                let mut details = InteractionDetails {
                    // The form's subject starts as the original's.
                    subject: follow_up.subject.clone().or(source.details.subject.clone()),
                    customer: prefilled_customer(&source),
                    ..InteractionDetails::default()
                };
                customer.apply(&mut details.customer);
                let mut data = source.data;
                data.insert("InteractionId".into(), coda_types::Value::Text(id.clone()));
                let record = InteractionRecord {
                    id: id.clone(),
                    channel: follow_up.channel,
                    plan: None,
                    status: InteractionStatus::Active,
                    present: Vec::new(),
                    agent_reached: false,
                    data,
                    post_flow: None,
                    post_flow_fired: false,
                    follow_up: Some(FollowUpOf {
                        source: follow_up.source,
                        queue: follow_up.queue,
                        subject: follow_up.subject,
                        assigned_to: follow_up.assigned_to,
                    }),
                    updated_at_ms: follow_up.now_ms,
                    skill: None,
                    agent: None,
                    completed_by: None,
                    completed_at_ms: None,
                    details,
                    post_contact: None,
                    disposition: None,
                };
                write_interaction(conn, &tenant, &record)?;
                Ok(Ok(record))
            })
            .await
    }

    /// A page of this tenant's interactions matching `filter`, in the order they were first
    /// seen (`order`), after the interaction `after`, at most `limit`. An `after` that names
    /// no interaction of this tenant ends the list: an empty page.
    pub fn find_interactions(
        &self,
        tenant: &str,
        filter: &InteractionFilter,
        order: ListOrder,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InteractionSummary>> {
        // The counts are index ranges: runs by (tenant, interaction), edits by the audit
        // trail's key.
        let mut query = PageQuery::new(
            "body, created_at,
             (SELECT COUNT(*) FROM runs
              WHERE runs.tenant = interactions.tenant AND runs.interaction = interactions.id),
             (SELECT COUNT(*) FROM interaction_audit a
              WHERE a.tenant = interactions.tenant AND a.interaction = interactions.id)",
            "interactions",
            tenant,
        );
        if let Some(status) = &filter.status {
            query.condition("status", "=", serde_name(status)?.into());
        }
        if let Some(channel) = &filter.channel {
            query.condition("channel", "=", serde_name(channel)?.into());
        }
        if let Some(skill) = &filter.skill {
            query.condition("skill", "=", skill.clone().into());
        }
        if let Some(since) = filter.since_ms {
            query.condition("created_at", ">=", since.into());
        }
        if let Some(until) = filter.until_ms {
            query.condition("created_at", "<", until.into());
        }
        self.read(|conn| {
            if let Some(after) = after {
                let created_at: Option<i64> = conn
                    .prepare_cached(
                        "SELECT created_at FROM interactions WHERE tenant = ?1 AND id = ?2",
                    )?
                    .query_row(params![tenant, after], |r| r.get(0))
                    .optional()?;
                let Some(created_at) = created_at else {
                    return Ok(Vec::new());
                };
                query.after(order, created_at, after);
            }
            let (sql, args) = query.finish(order, limit);
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(&args, |r| {
                let body: String = r.get(0)?;
                Ok((body, r.get::<i64>(1)?, r.get::<u64>(2)?, r.get::<u64>(3)?))
            })?;
            rows.map(|row| {
                let (body, created_at_ms, runs, edits) = row?;
                Ok(InteractionSummary {
                    record: serde_json::from_str(&body)?,
                    created_at_ms,
                    runs,
                    edits,
                })
            })
            .collect()
        })
    }

    /// An interaction of this tenant; another tenant's is `None`.
    pub fn interaction(&self, tenant: &str, id: &str) -> Result<Option<InteractionRecord>> {
        self.read(|conn| read_interaction(conn, tenant, id))
    }

    /// Reads, changes and writes an interaction in one transaction, so two events for the
    /// same interaction never interleave. `change` gets the current record (none if new) and
    /// returns the new one, or an error that leaves it untouched.
    pub async fn update_interaction<E: Send + 'static>(
        &self,
        tenant: &str,
        id: &str,
        change: impl FnOnce(Option<InteractionRecord>) -> std::result::Result<InteractionRecord, E>
        + Send
        + 'static,
    ) -> Result<std::result::Result<InteractionRecord, E>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.writer
            .write(move |conn| {
                let current = read_interaction(conn, &tenant, &id)?;
                let updated = match change(current) {
                    Ok(updated) => updated,
                    Err(refused) => return Ok(Err(refused)),
                };
                write_interaction(conn, &tenant, &updated)?;
                Ok(Ok(updated))
            })
            .await
    }
}
