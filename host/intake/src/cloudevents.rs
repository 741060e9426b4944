//! CloudEvents 1.0 in the structured JSON format
//! (<https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md>),
//! for any platform without an adapter of its own: `specversion`, `id`, `source` and
//! `type` required, the interaction's id in `subject`, the rest in `data`. Authenticated
//! by the header the tenant names ([`crate::auth`]).
//!
//! What coda does is read from the last dot-separated word of `type`:
//!
//! | `type` ends with        | coda                                                      |
//! |-------------------------|-----------------------------------------------------------|
//! | `.started`              | started (`data.channel`, or the connection's channel)     |
//! | `.party-joined`         | party joined (`data.party`: `caller` or `agent`)          |
//! | `.party-disconnected`   | party disconnected (`data.party`)                         |
//! | `.ended`                | ended, the mapped `Outcome` as its outcome                |
//! | any other word, `NAME`  | the named event `NAME`, `data` as its payload             |

use coda_flow::InteractionEvent;
use coda_store::{Channel, Party};
use coda_types::names::{NameKind, check_name};
use serde_json::Value as Json;

use crate::mapping::{AGENT, CLID, DIALED_NUMBER, LANGUAGE, OUTCOME, QUEUE};
use crate::{Action, ConnectionConfig, Intake, IntakeError, interaction_id, limits};

/// Where each data source is by default: in `data`, under coda's own names.
pub const DEFAULTS: &[(&str, &[&str])] = &[
    (CLID, &["/data/CLID"]),
    (DIALED_NUMBER, &["/data/DialedNumber"]),
    (LANGUAGE, &["/data/Language"]),
    (QUEUE, &["/data/queue"]),
    (AGENT, &["/data/agent"]),
    (OUTCOME, &["/data/outcome"]),
];

/// The attributes every CloudEvent has (the spec's REQUIRED ones).
const REQUIRED: &[&str] = &["id", "source", "type"];

fn party(event: &Json) -> Result<Party, IntakeError> {
    match event.pointer("/data/party").and_then(Json::as_str) {
        Some("caller") => Ok(Party::Caller),
        Some("agent") => Ok(Party::Agent),
        Some(other) => Err(IntakeError::invalid(
            "data.party",
            format!("`{other}` is not a party: `caller` or `agent`"),
        )),
        None => Err(IntakeError::missing(
            "data.party",
            "a party event names the party: `caller` or `agent`",
        )),
    }
}

fn channel(event: &Json, config: &ConnectionConfig) -> Result<Channel, IntakeError> {
    match event.pointer("/data/channel") {
        None | Some(Json::Null) => Ok(config.default_channel(Channel::Voice)),
        Some(named) => serde_json::from_value(named.clone()).map_err(|_| {
            IntakeError::invalid(
                "data.channel",
                format!("{named} is not a channel: voice, chat, sms, email or task"),
            )
        }),
    }
}

pub(crate) fn interpret(config: &ConnectionConfig, body: &[u8]) -> Result<Intake, IntakeError> {
    let event = limits::json(body, "the CloudEvent")?;
    if !event.is_object() {
        return Err(IntakeError::Malformed {
            what: "the CloudEvent".into(),
            format: "CloudEvents JSON",
            why: "a structured CloudEvent is a JSON object".into(),
        });
    }
    match event.get("specversion").and_then(Json::as_str) {
        Some("1.0") => {}
        Some(other) => {
            return Err(IntakeError::invalid(
                "specversion",
                format!("`{other}` is not supported: CloudEvents 1.0 only"),
            ));
        }
        None => {
            return Err(IntakeError::missing(
                "specversion",
                "a CloudEvent says its version (`1.0`)",
            ));
        }
    }
    for attribute in REQUIRED {
        if event
            .get(*attribute)
            .and_then(Json::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(IntakeError::missing(
                attribute,
                "a CloudEvent's required attributes are id, source, type and specversion",
            ));
        }
    }
    let kind = event.get("type").and_then(Json::as_str).unwrap_or_default();
    let platform_event = kind.to_owned();
    let interaction = interaction_id("subject", event.get("subject"))?;
    let mapping = config.mapping();
    let action = match kind.rsplit('.').next().unwrap_or(kind) {
        "started" => crate::started(
            config,
            &mapping,
            &event,
            interaction,
            channel(&event, config)?,
        ),
        "party-joined" => Action::Event(InteractionEvent::PartyJoined {
            interaction,
            party: party(&event)?,
            agent: mapping.agent(&event),
        }),
        "party-disconnected" => Action::Event(InteractionEvent::PartyDisconnected {
            interaction,
            party: party(&event)?,
        }),
        "ended" => Action::Event(InteractionEvent::Ended {
            interaction,
            outcome: mapping.text(&event, OUTCOME),
        }),
        name => {
            check_name(NameKind::Event, name).map_err(|e| {
                IntakeError::invalid("type", format!("its last word names the event: {e}"))
            })?;
            Action::Named {
                interaction,
                event: name.to_owned(),
                payload: event.get("data").cloned().unwrap_or(Json::Null),
                data: mapping.data(&event),
            }
        }
    };
    Ok(Intake {
        platform_event,
        actions: vec![action],
    })
}
