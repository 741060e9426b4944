//! Post-contact work, set per skill: automatic wrap-up (the agent is unavailable for a
//! while under an unavailable code) or dispositions (the agent submits one). And each
//! agent's latest unavailability, which that work causes.

use crate::db::{Conn, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Result, Store};

/// What follows a contact of a skill when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum PostContact {
    /// The agent is unavailable for `seconds` under `unavailable_code`.
    WrapUp {
        seconds: u32,
        unavailable_code: String,
    },
    /// The agent submits one of these (and is unavailable until then).
    Dispositions {
        dispositions: Vec<DispositionOption>,
    },
}

/// One disposition an agent may submit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispositionOption {
    pub code: String,
    pub label: String,
    /// Whether it takes an amount (a committed purchase, a pledge).
    #[serde(default)]
    pub amount: bool,
}

/// Why an agent is unavailable, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// The wrap-up's unavailable code, or `disposition` while a disposition is owed.
    pub unavailable_code: String,
    /// The interaction whose post-contact work it is.
    pub interaction: String,
    pub since_ms: i64,
    /// When the agent is available again; `None` until a disposition is submitted.
    pub until_ms: Option<i64>,
}

impl AgentState {
    pub fn unavailable_at(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }
}

/// Writes an agent's state unless a newer one (a later `since_ms`: another interaction's
/// post-contact work that began since) is stored: a disposition submitted late for an
/// older interaction does not end the wrap-up of a newer one.
pub(crate) fn write_agent_state(
    conn: &Conn<'_>,
    tenant: &str,
    agent: &str,
    state: &AgentState,
    now_ms: i64,
) -> Result<()> {
    if read_agent_state(conn, tenant, agent)?.is_some_and(|stored| stored.since_ms > state.since_ms)
    {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO agent_states (tenant, agent, state, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant, agent) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
    )?
    .execute(params![tenant, agent, serde_json::to_string(state)?, now_ms])?;
    Ok(())
}

pub(crate) fn read_agent_state(
    conn: &Conn<'_>,
    tenant: &str,
    agent: &str,
) -> Result<Option<AgentState>> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM agent_states WHERE tenant = ?1 AND agent = ?2")?
        .query_row(params![tenant, agent], |r| r.get(0))
        .optional()?;
    Ok(state.map(|s| serde_json::from_str(&s)).transpose()?)
}

impl Store {
    /// Sets (or replaces) a skill's post-contact work.
    pub async fn set_post_contact(
        &self,
        tenant: &str,
        skill: &str,
        config: &PostContact,
        now_ms: i64,
    ) -> Result<()> {
        let (tenant, skill) = (tenant.to_owned(), skill.to_owned());
        let config = serde_json::to_string(config)?;
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO skill_post_contact (tenant, skill, config, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant, skill) DO UPDATE SET config = excluded.config,
                        updated_at = excluded.updated_at",
                )?
                .execute(params![tenant, skill, config, now_ms])?;
                Ok(())
            })
            .await
    }

    /// A skill's post-contact work; none when this tenant set none for it.
    pub fn post_contact(&self, tenant: &str, skill: &str) -> Result<Option<PostContact>> {
        self.read(|conn| {
            let config: Option<String> = conn
                .prepare_cached(
                    "SELECT config FROM skill_post_contact WHERE tenant = ?1 AND skill = ?2",
                )?
                .query_row(params![tenant, skill], |r| r.get(0))
                .optional()?;
            Ok(config.map(|c| serde_json::from_str(&c)).transpose()?)
        })
    }

    /// An agent's latest unavailability; none when this tenant's interactions never made
    /// them unavailable.
    pub fn agent_state(&self, tenant: &str, agent: &str) -> Result<Option<AgentState>> {
        self.read(|conn| read_agent_state(conn, tenant, agent))
    }
}
