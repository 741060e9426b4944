//! Route To Interaction Plan: the run goes on in another plan, with the data it has.

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The plan to continue in.
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z0-9][a-z0-9._-]*$"))]
    plan: String,
    /// A published version of that plan; without it, its latest version when the run gets
    /// there.
    #[serde(default)]
    #[schemars(range(min = 1))]
    version: Option<u32>,
}

struct RouteToPlan;

impl Applet for RouteToPlan {
    type Config = Config;

    fn info() -> Info {
        Info::new("route-to-plan", env!("CARGO_PKG_VERSION")).description(
            "Route To Interaction Plan: the run continues at the start of another plan (its \
                 latest version, or the one given), keeping its data sources. Only the error \
                 exit, taken when the plan does not exist or routes nest too deep.",
        )
        // No exits of its own: the run leaves this plan.
    }

    fn run(_cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        Ok(Outcome::route(config.plan, config.version))
    }
}

coda_sdk::export_applet!(RouteToPlan);
