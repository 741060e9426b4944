//! Hostile: `run` returns an exit whose name is a megabyte of `x` (size set by `bytes`).
//! That exit is of course not among the declared ones: the host must refuse the outcome
//! without choking on its size.

use core::hint::black_box;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The length of the exit name, in bytes.
    #[serde(default = "default_bytes")]
    bytes: u64,
}

fn default_bytes() -> u64 {
    1 << 20
}

struct HugeOutcome;

impl Applet for HugeOutcome {
    type Config = Config;

    fn info() -> Info {
        Info::new("huge-outcome", env!("CARGO_PKG_VERSION"))
            .description("Returns an exit name of a megabyte")
            .exits(["next"])
    }

    fn run(_cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        let bytes = usize::try_from(config.bytes)
            .map_err(|_| Failure::new("bad-config", "`bytes` does not fit in memory"))?;
        Ok(Outcome::exit(black_box("x".repeat(bytes))))
    }
}

coda_sdk::export_applet!(HugeOutcome);
