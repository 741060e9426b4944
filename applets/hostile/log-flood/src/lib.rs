//! Hostile: `run` logs a 1 KiB line in an endless loop, until the log-byte limit (or
//! another limit) ends the invocation.

use core::hint::black_box;

use coda_sdk::{Applet, Context, Failure, Info, Outcome, log};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

struct LogFlood;

impl Applet for LogFlood {
    type Config = Config;

    fn info() -> Info {
        Info::new("log-flood", env!("CARGO_PKG_VERSION"))
            .description("Logs without end")
            .exits(["next"])
    }

    fn run(_cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        let line = "x".repeat(1024);
        loop {
            log::info(black_box(&line));
        }
    }
}

coda_sdk::export_applet!(LogFlood);
