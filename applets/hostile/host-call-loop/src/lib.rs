//! Hostile: `run` calls a host import (`data.get`) in an endless loop, so the guest spends
//! its time on the host side of the boundary.

use core::hint::black_box;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

struct HostCallLoop;

impl Applet for HostCallLoop {
    type Config = Config;

    fn info() -> Info {
        Info::new("host-call-loop", env!("CARGO_PKG_VERSION"))
            .description("Calls a host import in an endless loop")
            .exits(["next"])
    }

    fn run(cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        loop {
            black_box(cx.data_value(black_box("x")));
        }
    }
}

coda_sdk::export_applet!(HostCallLoop);
