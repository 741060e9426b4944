//! Wait For Event: parks the run until a named event arrives for its interaction (a
//! disposition, a survey answer), or a timeout passes.

use std::time::Duration;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

/// 30 days: the longest a run waits.
const MAX_SECONDS: u64 = 2_592_000;

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The event to wait for, as delivered for the run's interaction.
    #[schemars(length(min = 1, max = 256))]
    event: String,
    /// How long to wait before taking `timeout`: 1 second to 30 days.
    #[schemars(range(min = 1, max = 2_592_000))]
    timeout_seconds: u64,
}

struct WaitForEvent;

impl Applet for WaitForEvent {
    type Config = Config;

    fn info() -> Info {
        Info::new("wait-for-event", env!("CARGO_PKG_VERSION"))
            .description(
                "Wait For Event: parks the run until the named event arrives for its \
                 interaction (exit `received`, the event's payload in the data source `Event`) \
                 or `timeout_seconds` pass (exit `timeout`).",
            )
            .exits(["received", "timeout"])
    }

    fn run(_cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        if !(1..=MAX_SECONDS).contains(&config.timeout_seconds) {
            return Err(Failure::new(
                "bad-config",
                format!(
                    "timeout_seconds: {} is not between 1 and {MAX_SECONDS} (30 days)",
                    config.timeout_seconds
                ),
            ));
        }
        Ok(Outcome::wait(
            config.event,
            Duration::from_secs(config.timeout_seconds),
            "received",
            "timeout",
        ))
    }
}

coda_sdk::export_applet!(WaitForEvent);
