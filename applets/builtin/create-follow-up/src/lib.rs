//! Create Follow-up: clones the run's completed interaction into a new, active outbound one
//! (a call back, a text message, an email or a task) in a queue, as an agent does with the
//! Clone button of a completed interaction.
//!
//! ```yaml
//! applet: create-follow-up@0.1.0
//! config:
//!   channel: phone
//!   queue: callbacks
//!   subject: "Call back about {{ InteractionOutcome }}"
//!   assign_to: "{{ AgentId | default('') }}"
//! ```
//!
//! Sets `FollowUpInteraction` to the new interaction's id and exits `created`.

use coda_sdk::interactions::{self, Channel, FollowUp};
use coda_sdk::{Applet, Capability, Context, Failure, Info, Outcome, log};
use coda_template::{Templates, host_failure};

/// The data source set to the new interaction's id.
const FOLLOW_UP: &str = "FollowUpInteraction";

/// How the follow-up reaches the customer.
#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum ChannelConfig {
    Phone,
    TextMessage,
    Email,
    Task,
}

impl From<ChannelConfig> for Channel {
    fn from(channel: ChannelConfig) -> Self {
        match channel {
            ChannelConfig::Phone => Channel::Phone,
            ChannelConfig::TextMessage => Channel::TextMessage,
            ChannelConfig::Email => Channel::Email,
            ChannelConfig::Task => Channel::Task,
        }
    }
}

/// The follow-up to create.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The new interaction's channel.
    channel: ChannelConfig,
    /// The queue that hosts it.
    #[schemars(length(min = 1, max = 256))]
    queue: String,
    /// Its subject, a template; rendering empty (or absent) keeps the original's.
    #[serde(default)]
    #[schemars(length(min = 1, max = 2048))]
    subject: Option<String>,
    /// Who it is assigned to, a template; rendering empty (or absent) leaves it to the
    /// queue.
    #[serde(default)]
    #[schemars(length(min = 1, max = 1024))]
    assign_to: Option<String>,
}

struct CreateFollowUp;

impl Applet for CreateFollowUp {
    type Config = Config;

    fn info() -> Info {
        Info::new("create-follow-up", env!("CARGO_PKG_VERSION"))
            .description(
                "Create Follow-up: clones the completed interaction into a new outbound one",
            )
            .exits(["created"])
            .capabilities([Capability::Interactions])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        // Cloning needs an interaction to clone; say so before asking the host.
        if cx.interaction().is_none() {
            return Err(Failure::new(
                "no-interaction",
                "this run has no interaction to follow up",
            ));
        }
        if config.queue.trim().is_empty() {
            return Err(Failure::new("bad-config", "queue: must not be empty"));
        }
        let templates = Templates::from_run(cx, Vec::new());
        let optional =
            |field: &str, template: &Option<String>| -> Result<_, Failure> {
                match template {
                    Some(t) => Ok(Some(templates.render(field, t)?.trim().to_string())
                        .filter(|s| !s.is_empty())),
                    None => Ok(None),
                }
            };
        let follow_up = FollowUp {
            channel: config.channel.into(),
            queue: config.queue.clone(),
            subject: optional("subject", &config.subject)?,
            assign_to: optional("assign_to", &config.assign_to)?,
        };
        let id = interactions::clone_interaction(&follow_up)
            .map_err(|e| host_failure("interactions", e))?;
        log::info(format!("created follow-up {id} in queue {}", config.queue));
        cx.set_data(FOLLOW_UP, &id)?;
        Ok(Outcome::exit("created"))
    }
}

// The template engine is set up at load, not in every step (`coda_template::init`).
coda_sdk::export_applet!(CreateFollowUp, init = coda_template::init);
