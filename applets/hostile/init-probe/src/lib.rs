//! Hostile: its `wizer-initialize` reads a random number (both generators) and both clocks
//! and keeps what it read; `run` reports those as data sources, with a random number of
//! its own. Shows what a snapshot holds of the moment and the machine it was made on.

use std::sync::OnceLock;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};
use wasip2::clocks::{monotonic_clock, wall_clock};
use wasip2::random::{insecure, insecure_seed, random};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

/// What the init read: (random, insecure random, insecure seed, wall clock seconds,
/// monotonic clock nanoseconds).
static READ_AT_INIT: OnceLock<[String; 5]> = OnceLock::new();

fn read() -> [String; 5] {
    let (seed_a, seed_b) = insecure_seed::insecure_seed();
    [
        random::get_random_u64().to_string(),
        insecure::get_insecure_random_u64().to_string(),
        format!("{seed_a:x}{seed_b:x}"),
        wall_clock::now().seconds.to_string(),
        monotonic_clock::now().to_string(),
    ]
}

struct InitProbe;

impl Applet for InitProbe {
    type Config = Config;

    fn info() -> Info {
        Info::new("init-probe", env!("CARGO_PKG_VERSION"))
            .description("Reports what its init read from random numbers and clocks")
            .exits(["next"])
    }

    fn run(cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        match READ_AT_INIT.get() {
            Some([random, insecure, seed, wall, monotonic]) => {
                cx.set_data("InitRandom", random)?;
                cx.set_data("InitInsecureRandom", insecure)?;
                cx.set_data("InitSeed", seed)?;
                cx.set_data("InitWallSeconds", wall)?;
                cx.set_data("InitMonotonic", monotonic)?;
            }
            None => cx.set_data("InitRandom", "not initialized")?,
        }
        cx.set_data("RunRandom", &random::get_random_u64().to_string())?;
        Ok(Outcome::exit("next"))
    }
}

fn init() {
    READ_AT_INIT.get_or_init(read);
}

coda_sdk::export_applet!(InitProbe, init = init);
