//! Hostile (mildly): `run` fails on purpose with a retryable failure.

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

struct GuestFailure;

impl Applet for GuestFailure {
    type Config = Config;

    fn info() -> Info {
        Info::new("guest-failure", env!("CARGO_PKG_VERSION"))
            .description("Fails on purpose")
            .exits(["next"])
    }

    fn run(_cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        Err(Failure::retryable(
            "boom",
            "the applet failed on purpose",
            None,
        ))
    }
}

coda_sdk::export_applet!(GuestFailure);
