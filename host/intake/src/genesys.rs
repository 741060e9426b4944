//! Genesys Cloud conversation detail events (notification topics
//! `v2.detail.events.conversation.{id}.…`; <https://developer.genesys.cloud/notificationsalerts/notifications/available-topics>),
//! as the Amazon EventBridge integration delivers them (an EventBridge event whose
//! `detail` is the notification: `topicName`, `version`, `eventBody`, `metadata`) through
//! an API destination, or as a webhook posts the notification itself. Authenticated by the
//! header the tenant names ([`crate::auth`]).
//!
//! A conversation is an interaction, keyed by its `conversationId`:
//!
//! | topic ends with    | coda                                                           |
//! |--------------------|----------------------------------------------------------------|
//! | `.customer.start`  | started (channel from `mediaType`)                             |
//! | `.user.start`      | party joined: the agent (`userId`)                             |
//! | `.customer.end`    | ended, `disconnectType` as the outcome                         |
//! | `.acw`             | the wrap-up event: `wrapupCode`, `wrapupNotes`, `wrapupDurationMs` |
//!
//! Every other topic is acknowledged and ignored.

use coda_flow::InteractionEvent;
use coda_store::{Channel, Party};
use serde_json::{Value as Json, json};

use crate::mapping::{AGENT, CLID, DIALED_NUMBER, OUTCOME, QUEUE, lookup};
use crate::{Action, ConnectionConfig, Intake, IntakeError, interaction_id, limits};

/// The prefix of every conversation detail topic.
pub const TOPIC_PREFIX: &str = "v2.detail.events.conversation.";

/// Where each data source is by default, in the notification (`ani` and `dnis` with their
/// `tel:` scheme taken off). The detail events carry no language: map one from your own
/// data when you have it.
pub const DEFAULTS: &[(&str, &[&str])] = &[
    (CLID, &["/eventBody/ani"]),
    (DIALED_NUMBER, &["/eventBody/dnis"]),
    (QUEUE, &["/eventBody/queueId"]),
    (AGENT, &["/eventBody/userId"]),
    (OUTCOME, &["/eventBody/disconnectType"]),
];

fn channel(body: &Json, config: &ConnectionConfig) -> Channel {
    let media = body.get("mediaType").and_then(Json::as_str);
    let message = body.get("messageType").and_then(Json::as_str);
    match (media, message) {
        (Some("VOICE" | "CALLBACK"), _) => Channel::Voice,
        (Some("MESSAGE"), Some("SMS")) => Channel::Sms,
        (Some("CHAT" | "MESSAGE"), _) => Channel::Chat,
        (Some("EMAIL"), _) => Channel::Email,
        _ => config.default_channel(Channel::Voice),
    }
}

/// The notification: the EventBridge event's `detail`, or the body itself when a webhook
/// posted it. `ani` and `dnis` lose their `tel:` scheme, so a number reads as a number.
fn notification(mut event: Json) -> Result<Json, IntakeError> {
    let enveloped = event.get("topicName").is_none() && event.get("detail").is_some();
    let mut notification = match event.get_mut("detail") {
        Some(detail) if enveloped => detail.take(),
        _ => event,
    };
    if !notification.get("topicName").is_some_and(Json::is_string) {
        return Err(IntakeError::missing(
            "topicName",
            "a Genesys Cloud notification names its topic (in `detail` when EventBridge \
             delivers it)",
        ));
    }
    let Some(body) = notification
        .get_mut("eventBody")
        .and_then(Json::as_object_mut)
    else {
        return Err(IntakeError::missing("eventBody", "the detail event itself"));
    };
    for field in ["ani", "dnis"] {
        if let Some(Json::String(number)) = body.get_mut(field)
            && let Some(bare) = number.strip_prefix("tel:")
        {
            *number = bare.to_owned();
        }
    }
    Ok(notification)
}

pub(crate) fn interpret(config: &ConnectionConfig, body: &[u8]) -> Result<Intake, IntakeError> {
    let view = notification(limits::json(body, "the Genesys Cloud event")?)?;
    let topic = view
        .get("topicName")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(rest) = topic.strip_prefix(TOPIC_PREFIX) else {
        return Ok(Intake {
            platform_event: topic,
            actions: Vec::new(),
        });
    };
    // `{conversationId}.customer.start`: the id is the first segment (a UUID has no dot).
    let (from_topic, suffix) = rest.split_once('.').unwrap_or((rest, ""));
    let body = view.get("eventBody").cloned().unwrap_or(Json::Null);
    let conversation = || {
        let id = lookup(&body, "/conversationId").cloned();
        interaction_id(
            "eventBody.conversationId",
            Some(&id.unwrap_or_else(|| json!(from_topic))),
        )
    };
    let mapping = config.mapping();
    let actions = match suffix {
        "customer.start" => vec![crate::started(
            config,
            &mapping,
            &view,
            conversation()?,
            channel(&body, config),
        )],
        "user.start" => vec![Action::Event(InteractionEvent::PartyJoined {
            interaction: conversation()?,
            party: Party::Agent,
            agent: mapping.agent(&view),
        })],
        "customer.end" => vec![Action::Event(InteractionEvent::Ended {
            interaction: conversation()?,
            outcome: mapping.text(&view, OUTCOME),
        })],
        "acw" => vec![Action::Named {
            interaction: conversation()?,
            event: config.wrapup_event().to_owned(),
            payload: json!({
                "wrapupCode": body.get("wrapupCode"),
                "wrapupNotes": body.get("wrapupNotes"),
                "wrapupDurationMs": body.get("wrapupDurationMs"),
                "userId": body.get("userId"),
                "queueId": body.get("queueId"),
            }),
            data: mapping.data(&view),
        }],
        _ => Vec::new(),
    };
    Ok(Intake {
        // The topic as Genesys Cloud lists it, without the conversation's id.
        platform_event: format!("{TOPIC_PREFIX}{{id}}.{suffix}"),
        actions,
    })
}
