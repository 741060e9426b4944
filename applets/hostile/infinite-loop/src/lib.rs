//! Hostile: `run` spins forever without a single host call. Only fuel or an epoch deadline
//! can stop it.

use core::hint::black_box;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

struct InfiniteLoop;

impl Applet for InfiniteLoop {
    type Config = Config;

    fn info() -> Info {
        Info::new("infinite-loop", env!("CARGO_PKG_VERSION"))
            .description("Loops forever without calling the host")
            .exits(["next"])
    }

    fn run(_cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        let mut spins = 0u64;
        loop {
            spins = black_box(spins.wrapping_add(1));
        }
    }
}

coda_sdk::export_applet!(InfiniteLoop);
