//! A test applet for the flow engine: its node config scripts the outcome, so one component
//! drives every path of a plan (exits, pauses, waits, routes, retryable failures).

use std::time::Duration;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Fail retryably while the attempt is at most this (0: never).
    #[serde(default)]
    fail_attempts: u32,
    /// Fail for good (not retryable) with this code.
    #[serde(default)]
    fail_code: Option<String>,
    /// Add one to this integer data source.
    #[serde(default)]
    count_into: Option<String>,
    /// Park for this many milliseconds, then take `exit`.
    #[serde(default)]
    pause_ms: Option<u64>,
    /// Wait for this event up to `timeout_ms`: exits `received` or `timeout`.
    #[serde(default)]
    wait_for: Option<String>,
    #[serde(default)]
    timeout_ms: u64,
    /// Continue in this plan.
    #[serde(default)]
    route_to: Option<String>,
    /// The exit to take.
    #[serde(default = "next")]
    exit: String,
}

fn next() -> String {
    "next".into()
}

struct Scripted;

impl Applet for Scripted {
    type Config = Config;

    fn info() -> Info {
        Info::new("scripted", env!("CARGO_PKG_VERSION"))
            .description("Does what its node config says")
            .exits(["next", "other", "received", "timeout"])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        if let Some(name) = &config.count_into {
            let count: i64 = cx.data(name)?.unwrap_or(0);
            cx.set_data(name, &(count + 1))?;
        }
        if cx.attempt() <= config.fail_attempts {
            return Err(Failure::retryable(
                "flaky",
                format!("failing attempt {} on purpose", cx.attempt()),
                None,
            ));
        }
        if let Some(code) = config.fail_code {
            return Err(Failure::new(code, "failing for good on purpose"));
        }
        if let Some(plan) = config.route_to {
            return Ok(Outcome::route(plan, None));
        }
        if let Some(event) = config.wait_for {
            return Ok(Outcome::wait(
                event,
                Duration::from_millis(config.timeout_ms),
                "received",
                "timeout",
            ));
        }
        if let Some(ms) = config.pause_ms {
            return Ok(Outcome::pause(Duration::from_millis(ms), config.exit));
        }
        Ok(Outcome::exit(config.exit))
    }
}

coda_sdk::export_applet!(Scripted);
