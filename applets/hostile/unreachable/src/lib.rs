//! Hostile: `run` executes the wasm `unreachable` instruction: a trap in the middle of an
//! invocation.

use core::hint::black_box;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

struct Unreachable;

impl Applet for Unreachable {
    type Config = Config;

    fn info() -> Info {
        Info::new("unreachable", env!("CARGO_PKG_VERSION"))
            .description("Traps with `unreachable`")
            .exits(["next"])
    }

    fn run(_cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        if black_box(true) {
            core::arch::wasm32::unreachable();
        }
        Ok(Outcome::exit("next"))
    }
}

coda_sdk::export_applet!(Unreachable);
