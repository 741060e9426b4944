//! `coda-intake`: what a contact-center platform sends, turned into coda's interaction
//! events. One module per platform (`twilio`, `connect`, `genesys`, `cloudevents`), each a
//! pure function of the payload and the tenant's connection: no store, no HTTP. The server
//! (`coda-server`'s `intake.rs`) authenticates a delivery with [`authenticate`], reads it
//! with [`interpret`] and hands the [`Action`]s to the engine.
//!
//! Every payload is bounded before it is parsed ([`limits`]): its size, its nesting, its
//! number of form fields; a refusal names what was wrong ([`IntakeError`]).
//!
//! Ids are the platform's own (a Twilio TaskSid, an Amazon Connect contactId, a Genesys
//! conversationId, a CloudEvent's `subject`), taken as they are: the same event delivered
//! twice names the same interaction, and the engine's trigger keys make it start one run.

pub mod auth;
pub mod cloudevents;
pub mod connect;
pub mod connection;
pub mod genesys;
pub mod limits;
pub mod mapping;
pub mod twilio;

use coda_flow::InteractionEvent;
use serde_json::{Map, Value as Json, json};

pub use auth::{AuthError, authenticate};
pub use connection::{AdapterKind, ConnectionConfig, Sources};
pub use mapping::Mapping;

/// What one delivery asks of the engine, in order.
#[derive(Debug, Clone)]
pub enum Action {
    /// An interaction event for [`coda_flow::Engine::on_event`].
    Event(InteractionEvent),
    /// A named event (a wrap-up, a disposition, changed contact data) for the runs of the
    /// interaction waiting for it, with the data sources it sets on them
    /// ([`coda_flow::Engine::deliver_with`]).
    Named {
        interaction: String,
        event: String,
        payload: Json,
        data: Map<String, Json>,
    },
}

impl Action {
    pub fn interaction(&self) -> &str {
        match self {
            Action::Event(event) => event.interaction(),
            Action::Named { interaction, .. } => interaction,
        }
    }

    /// The action in words for an answer and a test: `started`, `party-joined`,
    /// `party-disconnected`, `ended` or `event:NAME`.
    pub fn kind(&self) -> String {
        match self {
            Action::Event(InteractionEvent::Started { .. }) => "started".into(),
            Action::Event(InteractionEvent::PartyJoined { .. }) => "party-joined".into(),
            Action::Event(InteractionEvent::PartyDisconnected { .. }) => {
                "party-disconnected".into()
            }
            Action::Event(InteractionEvent::Ended { .. }) => "ended".into(),
            Action::Named { event, .. } => format!("event:{event}"),
        }
    }

    /// The action as JSON, every field it carries (for tests and logs).
    pub fn to_json(&self) -> Json {
        match self {
            Action::Event(InteractionEvent::Started {
                interaction,
                channel,
                plan,
                data,
                skill,
            }) => json!({"type": "started", "interaction": interaction, "channel": channel,
                "plan": plan, "data": data, "skill": skill}),
            Action::Event(InteractionEvent::PartyJoined {
                interaction,
                party,
                agent,
            }) => json!({"type": "party-joined", "interaction": interaction, "party": party,
                "agent": agent}),
            Action::Event(InteractionEvent::PartyDisconnected { interaction, party }) => {
                json!({"type": "party-disconnected", "interaction": interaction, "party": party})
            }
            Action::Event(InteractionEvent::Ended {
                interaction,
                outcome,
            }) => json!({"type": "ended", "interaction": interaction, "outcome": outcome}),
            Action::Named {
                interaction,
                event,
                payload,
                data,
            } => json!({"type": "event", "interaction": interaction, "event": event,
                "payload": payload, "data": data}),
        }
    }
}

/// A delivery read: the platform's name for what happened, and what coda does with it
/// (nothing, for an event coda has no use for: it is acknowledged so the platform does not
/// send it again).
#[derive(Debug, Clone)]
pub struct Intake {
    pub platform_event: String,
    pub actions: Vec<Action>,
}

/// Why a payload was refused; each names the field or limit. Nothing is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    #[error("the payload is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("{what} has more than {limit} fields")]
    TooManyFields { what: String, limit: usize },
    #[error("{what} nests deeper than {limit} levels")]
    TooDeep { what: String, limit: usize },
    #[error("{what} is not valid {format}: {why}")]
    Malformed {
        what: String,
        format: &'static str,
        why: String,
    },
    #[error("`{field}` is missing: {why}")]
    Missing { field: String, why: String },
    #[error("`{field}`: {why}")]
    Invalid { field: String, why: String },
}

impl IntakeError {
    /// A stable kind for the API's error shape.
    pub fn kind(&self) -> &'static str {
        match self {
            IntakeError::TooLarge { .. } => "payload-too-large",
            IntakeError::TooManyFields { .. } => "too-many-fields",
            IntakeError::TooDeep { .. } => "payload-too-deep",
            IntakeError::Malformed { .. } => "malformed-payload",
            IntakeError::Missing { .. } => "missing-field",
            IntakeError::Invalid { .. } => "invalid-field",
        }
    }

    pub(crate) fn missing(field: &str, why: impl Into<String>) -> Self {
        IntakeError::Missing {
            field: field.into(),
            why: why.into(),
        }
    }

    pub(crate) fn invalid(field: &str, why: impl Into<String>) -> Self {
        IntakeError::Invalid {
            field: field.into(),
            why: why.into(),
        }
    }
}

/// An interaction's start as every adapter makes it: under the connection's live plan,
/// with the mapped data sources, routed by the mapped queue as its skill.
pub(crate) fn started(
    config: &ConnectionConfig,
    mapping: &Mapping,
    view: &Json,
    interaction: String,
    channel: coda_store::Channel,
) -> Action {
    Action::Event(InteractionEvent::Started {
        interaction,
        channel,
        plan: Some(config.plan.clone()),
        data: mapping.data(view),
        skill: mapping.skill(view),
    })
}

/// Reads a delivery's body with its connection's adapter: what coda does with it. The
/// delivery must have passed [`authenticate`] first.
pub fn interpret(config: &ConnectionConfig, body: &[u8]) -> Result<Intake, IntakeError> {
    limits::check_size(body)?;
    match config.adapter {
        AdapterKind::Twilio => twilio::interpret(config, body),
        AdapterKind::AmazonConnect => connect::interpret(config, body),
        AdapterKind::Genesys => genesys::interpret(config, body),
        AdapterKind::Cloudevents => cloudevents::interpret(config, body),
    }
}

/// The text of a scalar JSON value (a string as it is, a number or a boolean written out);
/// none for null, an array or an object.
pub(crate) fn text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A platform's id or name made into a label coda can key by (an agent, a skill): the
/// resource id at the end of an ARN, else the value itself; none when it breaks the
/// label rule of `kind` (it still reaches the data sources whole).
pub(crate) fn label(kind: coda_types::names::NameKind, value: &str) -> Option<String> {
    let value = if value.starts_with("arn:") {
        value.rsplit('/').next().unwrap_or(value)
    } else {
        value
    };
    coda_types::names::check_name(kind, value)
        .ok()
        .map(|()| value.to_owned())
}

/// An interaction id from the platform, checked by the interaction id rule.
pub(crate) fn interaction_id(field: &str, value: Option<&Json>) -> Result<String, IntakeError> {
    let Some(id) = value.and_then(text) else {
        return Err(IntakeError::missing(
            field,
            "it names the interaction the event is about",
        ));
    };
    coda_types::names::check_name(coda_types::names::NameKind::Interaction, &id)
        .map_err(|e| IntakeError::invalid(field, e.to_string()))?;
    Ok(id)
}
