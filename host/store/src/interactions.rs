//! Interactions (a call, a chat, an SMS, an email) as the store keeps them: who is present,
//! whether an agent was reached, their data sources, and the post-flow action set on them.

use coda_types::Values;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Result, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    Voice,
    Chat,
    Sms,
    Email,
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
    pub updated_at_ms: i64,
}

fn read_interaction(
    conn: &rusqlite::Connection,
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

impl Store {
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
                conn.execute(
                    "INSERT INTO interactions (tenant, id, body, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                    params![tenant, id, serde_json::to_string(&updated)?, updated.updated_at_ms],
                )?;
                Ok(Ok(updated))
            })
            .await
    }
}
