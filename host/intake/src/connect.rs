//! Amazon Connect contact events, as an EventBridge rule delivers them to an API
//! destination: the EventBridge envelope (`detail-type: "Amazon Connect Contact Event"`)
//! around the contact (`detail`: `eventType`, `contactId`, `channel`, `queueInfo`,
//! `agentInfo`, `tags`…; <https://docs.aws.amazon.com/connect/latest/adminguide/contact-events.html>).
//! Authenticated by the header of the API destination's connection ([`crate::auth`]).
//!
//! A contact is an interaction, keyed by its `contactId` (a transfer is a contact of its
//! own, whose `initialContactId` names the first):
//!
//! | `detail.eventType`      | coda                                                       |
//! |-------------------------|------------------------------------------------------------|
//! | `INITIATED`             | started                                                    |
//! | `CONNECTED_TO_AGENT`    | party joined: the agent (`agentInfo.agentArn`'s id)        |
//! | `DISCONNECTED`          | ended (`disconnectReason` as the outcome, when present)    |
//! | `CONTACT_DATA_UPDATED`  | the named event `contact-data-updated`, the mapped data    |
//!
//! Every other event type (`QUEUED`, `CONNECTED_TO_SYSTEM`, `COMPLETED`…) is acknowledged
//! and ignored. Field names are matched ignoring case: the published samples spell
//! `agentInfo` and `AgentInfo` both.

use coda_flow::InteractionEvent;
use coda_store::{Channel, Party};
use serde_json::Value as Json;

use crate::mapping::{AGENT, CLID, DIALED_NUMBER, LANGUAGE, OUTCOME, QUEUE, lookup};
use crate::{Action, ConnectionConfig, Intake, IntakeError, interaction_id, limits};

/// The EventBridge `detail-type` of a contact event.
pub const DETAIL_TYPE: &str = "Amazon Connect Contact Event";

/// The named event a `CONTACT_DATA_UPDATED` is delivered as.
pub const DATA_UPDATED_EVENT: &str = "contact-data-updated";

/// Where each data source is by default: the customer's and the system's endpoints of the
/// data model, the number dialed as the `aws:connect:systemEndpoint` tag of the samples,
/// the Contact Lens language, the queue and agent ARNs.
pub const DEFAULTS: &[(&str, &[&str])] = &[
    (CLID, &["/detail/customerEndpoint/address"]),
    (
        DIALED_NUMBER,
        &[
            "/detail/systemEndpoint/address",
            "/detail/tags/aws:connect:systemEndpoint",
        ],
    ),
    (
        LANGUAGE,
        &["/detail/contactLens/conversationalAnalytics/configuration/languageLocale"],
    ),
    (QUEUE, &["/detail/queueInfo/queueArn"]),
    (AGENT, &["/detail/agentInfo/agentArn"]),
    (OUTCOME, &["/detail/disconnectReason"]),
];

fn channel(event: &Json, config: &ConnectionConfig) -> Channel {
    let named = lookup(event, "/detail/channel").and_then(Json::as_str);
    match named.map(str::to_ascii_uppercase).as_deref() {
        Some("VOICE") => Channel::Voice,
        Some("CHAT") => Channel::Chat,
        Some("TASK") => Channel::Task,
        Some("EMAIL") => Channel::Email,
        _ => config.default_channel(Channel::Voice),
    }
}

pub(crate) fn interpret(config: &ConnectionConfig, body: &[u8]) -> Result<Intake, IntakeError> {
    let event = limits::json(body, "the EventBridge event")?;
    match event.get("detail-type").and_then(Json::as_str) {
        Some(DETAIL_TYPE) => {}
        Some(other) => {
            return Err(IntakeError::invalid(
                "detail-type",
                format!(
                    "`{other}` is not a contact event; the EventBridge rule should match \
                     detail-type `{DETAIL_TYPE}` only"
                ),
            ));
        }
        None => {
            return Err(IntakeError::missing(
                "detail-type",
                format!("an EventBridge event of detail-type `{DETAIL_TYPE}` is expected"),
            ));
        }
    }
    if !event.get("detail").is_some_and(Json::is_object) {
        return Err(IntakeError::missing(
            "detail",
            "the contact event's detail object",
        ));
    }
    let Some(event_type) = lookup(&event, "/detail/eventType").and_then(Json::as_str) else {
        return Err(IntakeError::missing(
            "detail.eventType",
            "a contact event names its event",
        ));
    };
    let platform_event = event_type.to_owned();
    let mapping = config.mapping();
    let contact = || interaction_id("detail.contactId", lookup(&event, "/detail/contactId"));
    let actions = match event_type {
        "INITIATED" => vec![crate::started(
            config,
            &mapping,
            &event,
            contact()?,
            channel(&event, config),
        )],
        "CONNECTED_TO_AGENT" => vec![Action::Event(InteractionEvent::PartyJoined {
            interaction: contact()?,
            party: Party::Agent,
            agent: mapping.agent(&event),
        })],
        "DISCONNECTED" => vec![Action::Event(InteractionEvent::Ended {
            interaction: contact()?,
            outcome: mapping.text(&event, OUTCOME),
        })],
        "CONTACT_DATA_UPDATED" => vec![Action::Named {
            interaction: contact()?,
            event: DATA_UPDATED_EVENT.into(),
            payload: event.get("detail").cloned().unwrap_or(Json::Null),
            data: mapping.data(&event),
        }],
        _ => Vec::new(),
    };
    Ok(Intake {
        platform_event,
        actions,
    })
}
