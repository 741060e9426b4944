//! Twilio TaskRouter event callbacks: a form POST to the Workspace's Event Callback URL
//! for every event (`EventType`, `TaskSid`, `TaskAttributes` as JSON text, `WorkerSid`,
//! `Timestamp`…; <https://www.twilio.com/docs/taskrouter/api/event/reference>), signed
//! with `X-Twilio-Signature` (checked by [`crate::auth`]).
//!
//! A task is an interaction, keyed by its `TaskSid`:
//!
//! | `EventType`            | coda                                                        |
//! |------------------------|-------------------------------------------------------------|
//! | `task.created`         | started (channel from `TaskChannelUniqueName`)              |
//! | `reservation.accepted` | party joined: the agent (`WorkerSid`)                       |
//! | `task.wrapup`          | ended: the conversation is over, the agent wraps up         |
//! | `task.completed`       | ended with `TaskCompletedReason`, then the wrap-up event    |
//! | `task.canceled`        | ended with `TaskCanceledReason`                             |
//!
//! Every other event type is acknowledged and ignored.

use coda_flow::InteractionEvent;
use coda_store::{Channel, Party};
use serde_json::{Map, Value as Json, json};

use crate::mapping::{AGENT, CLID, DIALED_NUMBER, LANGUAGE, OUTCOME, QUEUE};
use crate::{Action, ConnectionConfig, Intake, IntakeError, interaction_id, limits};

/// Where each data source is by default. The call's numbers are the task attributes a
/// voice task carries (`from`, `to`); a task's attributes are the tenant's own otherwise,
/// so `language` is coda's convention, set by the flow that made the task.
pub const DEFAULTS: &[(&str, &[&str])] = &[
    (CLID, &["/TaskAttributes/from"]),
    (DIALED_NUMBER, &["/TaskAttributes/to"]),
    (LANGUAGE, &["/TaskAttributes/language"]),
    (QUEUE, &["/TaskQueueName", "/TaskQueueSid"]),
    (AGENT, &["/WorkerSid"]),
    (OUTCOME, &["/TaskCompletedReason", "/TaskCanceledReason"]),
];

/// The form fields that hold JSON text, read as JSON so a mapping can point into them.
const JSON_FIELDS: &[&str] = &["TaskAttributes", "WorkerAttributes"];

/// The callback's fields as one JSON object (the JSON fields parsed), which mappings read.
fn view(fields: Vec<(String, String)>) -> Result<Json, IntakeError> {
    let mut view = Map::new();
    for (name, value) in fields {
        let value = if JSON_FIELDS.contains(&name.as_str()) && !value.is_empty() {
            limits::json(value.as_bytes(), &name)?
        } else {
            Json::String(value)
        };
        view.insert(name, value);
    }
    Ok(Json::Object(view))
}

fn channel(view: &Json, config: &ConnectionConfig) -> Channel {
    match view.get("TaskChannelUniqueName").and_then(Json::as_str) {
        Some("voice") => Channel::Voice,
        Some("chat") => Channel::Chat,
        Some("sms") => Channel::Sms,
        Some("email") => Channel::Email,
        _ => config.default_channel(Channel::Task),
    }
}

pub(crate) fn interpret(config: &ConnectionConfig, body: &[u8]) -> Result<Intake, IntakeError> {
    let view = view(limits::form(body)?)?;
    let Some(event_type) = view.get("EventType").and_then(Json::as_str) else {
        return Err(IntakeError::missing(
            "EventType",
            "a TaskRouter event callback names its event",
        ));
    };
    let platform_event = event_type.to_owned();
    let mapping = config.mapping();
    let task = || interaction_id("TaskSid", view.get("TaskSid"));
    let actions = match event_type {
        "task.created" => vec![crate::started(
            config,
            &mapping,
            &view,
            task()?,
            channel(&view, config),
        )],
        "reservation.accepted" => vec![Action::Event(InteractionEvent::PartyJoined {
            interaction: task()?,
            party: Party::Agent,
            agent: mapping.agent(&view),
        })],
        "task.wrapup" => vec![Action::Event(InteractionEvent::Ended {
            interaction: task()?,
            outcome: None,
        })],
        "task.canceled" => vec![Action::Event(InteractionEvent::Ended {
            interaction: task()?,
            outcome: mapping.text(&view, OUTCOME).or(Some("canceled".into())),
        })],
        "task.completed" => {
            let interaction = task()?;
            let outcome = mapping.text(&view, OUTCOME);
            // A task may complete without a wrap-up (no agent, or wrap-up turned off):
            // ended first (nothing new when task.wrapup ended it), then the wrap-up.
            vec![
                Action::Event(InteractionEvent::Ended {
                    interaction: interaction.clone(),
                    outcome: outcome.clone(),
                }),
                Action::Named {
                    interaction,
                    event: config.wrapup_event().to_owned(),
                    payload: json!({
                        "reason": outcome,
                        "attributes": view.get("TaskAttributes").cloned().unwrap_or(Json::Null),
                    }),
                    data: mapping.data(&view),
                },
            ]
        }
        _ => Vec::new(),
    };
    Ok(Intake {
        platform_event,
        actions,
    })
}
