//! A well-behaved applet for the host's tests: copies every data source it sees into the
//! data source `Echo` (one JSON object), logs one line and takes the configured exit.

use coda_sdk::{Applet, Context, Failure, Info, Outcome, log};

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The exit to take.
    #[serde(default = "default_exit")]
    exit: String,
}

fn default_exit() -> String {
    "next".into()
}

struct Echo;

impl Applet for Echo {
    type Config = Config;

    fn info() -> Info {
        Info::new("echo", env!("CARGO_PKG_VERSION"))
            .description("Copies the data sources it sees into `Echo`")
            .exits(["next", "other"])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        let seen = serde_json::Value::Object(cx.all_data());
        cx.set_data("Echo", &seen)?;
        log::info("echo");
        Ok(Outcome::exit(config.exit))
    }
}

coda_sdk::export_applet!(Echo);
