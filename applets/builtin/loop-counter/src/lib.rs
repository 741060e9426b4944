//! Loop Counter: what makes a loop in a plan end. It counts the passes through its node in
//! the node's state (kept per run and node, across pauses and retries).

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// How many passes take `next` before one takes `exhausted`.
    #[schemars(range(min = 1, max = 10000))]
    times: u32,
}

/// The state key of the passes counted so far.
const PASSES: &str = "passes";

struct LoopCounter;

impl Applet for LoopCounter {
    type Config = Config;

    fn info() -> Info {
        Info::new("loop-counter", env!("CARGO_PKG_VERSION"))
            .description(
                "Loop Counter: counts the passes through its node in this run. Passes 1 to \
                 `times` take `next`; the pass after them takes `exhausted` and resets the count \
                 to 0, so a loop entered again later counts afresh.",
            )
            .exits(["next", "exhausted"])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        if !(1..=10_000).contains(&config.times) {
            return Err(Failure::new(
                "bad-config",
                format!("times: {} is not between 1 and 10000", config.times),
            ));
        }
        let passes = cx.state::<u32>(PASSES)?.unwrap_or(0).saturating_add(1);
        if passes <= config.times {
            cx.set_state(PASSES, &passes)?;
            Ok(Outcome::exit("next"))
        } else {
            cx.set_state(PASSES, &0u32)?;
            Ok(Outcome::exit("exhausted"))
        }
    }
}

coda_sdk::export_applet!(LoopCounter);
