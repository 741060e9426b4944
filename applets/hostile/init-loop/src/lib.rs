//! Hostile: its `wizer-initialize` spins forever, so an upload would hold the host's load
//! for good if the init ran unbounded. `run` is harmless: a host that does not
//! pre-initialize runs it fine.

use core::hint::black_box;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

struct InitLoop;

impl Applet for InitLoop {
    type Config = Config;

    fn info() -> Info {
        Info::new("init-loop", env!("CARGO_PKG_VERSION"))
            .description("Loops forever in its init")
            .exits(["next"])
    }

    fn run(_cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        Ok(Outcome::exit("next"))
    }
}

fn init() {
    let mut spins = 0u64;
    loop {
        spins = black_box(spins.wrapping_add(1));
    }
}

coda_sdk::export_applet!(InitLoop, init = init);
