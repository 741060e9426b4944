//! Hostile: its `wizer-initialize` fills 96 MiB of memory with non-zero bytes and keeps
//! them, so its snapshot would be a 96 MiB component: within the default memory limit
//! (128 MiB) but past the largest snapshot the host keeps, and past a lower memory limit.

use std::sync::OnceLock;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

/// What the init fills, kept so that the snapshot holds it.
static BALLAST: OnceLock<Vec<u8>> = OnceLock::new();

struct InitMemory;

impl Applet for InitMemory {
    type Config = Config;

    fn info() -> Info {
        Info::new("init-memory", env!("CARGO_PKG_VERSION"))
            .description("Fills 96 MiB of memory in its init")
            .exits(["next"])
    }

    fn run(_cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        Ok(Outcome::exit("next"))
    }
}

fn init() {
    BALLAST.get_or_init(|| vec![0xa5; 96 << 20]);
}

coda_sdk::export_applet!(InitMemory, init = init);
