//! The benchmark's baseline applet: `run` takes the exit `next` and does nothing else. It
//! makes no data, state or log call, so the component imports no coda interface, only what
//! Rust's wasip2 standard library pulls in; invoking it measures the host's own cost.

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

/// No settings.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {}

struct Noop;

impl Applet for Noop {
    type Config = Config;

    fn info() -> Info {
        Info::new("noop", env!("CARGO_PKG_VERSION"))
            .description("Takes the exit `next` and does nothing else")
            .exits(["next"])
    }

    fn run(_cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        Ok(Outcome::exit("next"))
    }
}

coda_sdk::export_applet!(Noop);
