use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::bindings::coda::applet::types::{AppletInfo, Invocation, Pause, Route, Wait};
use crate::{Capability, Context, Failure, Outcome};

/// One applet: what it is ([`Applet::info`]) and what it does ([`Applet::run`]).
pub trait Applet {
    /// The node configuration. Its JSON Schema is derived and reported by `describe`, and the
    /// host validates a plan's config against it; `run` gets it already parsed.
    type Config: DeserializeOwned + schemars::JsonSchema;

    fn info() -> Info;

    fn run(cx: &mut Context, config: Self::Config) -> Result<Outcome, Failure>;
}

/// How an applet presents itself: everything in `applet-info` except the config schema,
/// which comes from [`Applet::Config`].
#[derive(Debug, Clone)]
pub struct Info {
    name: String,
    version: String,
    description: String,
    exits: Vec<String>,
    needs_live_party: bool,
    capabilities: Vec<Capability>,
}

impl Info {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Info {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            exits: Vec::new(),
            needs_live_party: false,
            capabilities: Vec::new(),
        }
    }
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }
    /// The exits `run` may take (every node also has an error exit).
    pub fn exits<S: Into<String>>(mut self, exits: impl IntoIterator<Item = S>) -> Self {
        self.exits = exits.into_iter().map(Into::into).collect();
        self
    }
    /// Marks a step that needs a live party: refused in unattended plans.
    pub fn needs_live_party(mut self) -> Self {
        self.needs_live_party = true;
        self
    }
    /// The capabilities the tenant is asked to grant.
    pub fn capabilities(mut self, capabilities: impl IntoIterator<Item = Capability>) -> Self {
        self.capabilities = capabilities.into_iter().collect();
        self
    }
}

pub fn describe<A: Applet>() -> AppletInfo {
    let info = A::info();
    let schema = schemars::schema_for!(A::Config);
    AppletInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        exits: info.exits,
        // A derived schema always serializes; "{}" (accept anything) is the safe fallback.
        config_schema: serde_json::to_string(&schema).unwrap_or_else(|_| "{}".into()),
        needs_live_party: info.needs_live_party,
        capabilities: info.capabilities,
    }
}

pub fn run<A: Applet>(invocation: Invocation) -> Result<Outcome, Failure> {
    let text = if invocation.config.trim().is_empty() {
        "{}"
    } else {
        invocation.config.as_str()
    };
    let config: A::Config = serde_json::from_str(text)
        .map_err(|e| Failure::new("bad-config", format!("node config: {e}")))?;
    let mut cx = Context::new(invocation.context);
    A::run(&mut cx, config)
}

impl Outcome {
    /// Follow the named exit.
    pub fn exit(name: impl Into<String>) -> Self {
        Outcome::Exit(name.into())
    }
    /// Park the run for `duration`, then follow `exit`.
    pub fn pause(duration: Duration, exit: impl Into<String>) -> Self {
        Outcome::Pause(Pause {
            millis: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            exit: exit.into(),
        })
    }
    /// Park the run until `event` arrives for its interaction (then `on_event`) or `timeout`
    /// passes (then `on_timeout`).
    pub fn wait(
        event: impl Into<String>,
        timeout: Duration,
        on_event: impl Into<String>,
        on_timeout: impl Into<String>,
    ) -> Self {
        Outcome::Wait(Wait {
            event: event.into(),
            timeout_millis: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            on_event: on_event.into(),
            on_timeout: on_timeout.into(),
        })
    }
    /// Go on in another plan, on its latest version unless `version` pins one.
    pub fn route(plan: impl Into<String>, version: Option<u32>) -> Self {
        Outcome::Route(Route {
            plan: plan.into(),
            version,
        })
    }
}

impl Failure {
    /// A failure that retrying will not fix.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
            retryable: false,
            retry_after_millis: None,
        }
    }
    /// A failure worth retrying, optionally not before `after`.
    pub fn retryable(
        code: impl Into<String>,
        message: impl Into<String>,
        after: Option<Duration>,
    ) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
            retryable: true,
            retry_after_millis: after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

impl From<crate::HostError> for Failure {
    /// A refused capability call becomes the step's failure: retryable only when the
    /// downstream was unavailable.
    fn from(error: crate::HostError) -> Self {
        use crate::HostError::*;
        match error {
            NotGranted(m) => Failure::new("not-granted", m),
            LimitExceeded(m) => Failure::new("limit-exceeded", m),
            Invalid(m) => Failure::new("invalid", m),
            Unavailable(m) => Failure::retryable("unavailable", m, None),
            Rejected(m) => Failure::new("rejected", m),
        }
    }
}
