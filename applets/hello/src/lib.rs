//! The sample applet: reads the caller's name from a data source, writes a greeting back,
//! and counts how often this node ran in this run (in node state).

use coda_sdk::{Applet, Context, Failure, Info, Outcome, log};

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The greeting to put before the name.
    #[serde(default = "default_greeting")]
    greeting: String,
    /// The data source that holds the name.
    #[serde(default = "default_source")]
    name_from: String,
}

fn default_greeting() -> String {
    "Hello".into()
}
fn default_source() -> String {
    "CustomerName".into()
}

struct Hello;

impl Applet for Hello {
    type Config = Config;

    fn info() -> Info {
        Info::new("hello", env!("CARGO_PKG_VERSION"))
            .description("Greets the customer named in a data source")
            .exits(["greeted", "anonymous"])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        let passes: i64 = cx.state("passes")?.unwrap_or(0) + 1;
        cx.set_state("passes", &passes)?;
        let Some(name) = cx.data::<String>(&config.name_from)? else {
            log::info(format!(
                "no `{}` data source: nobody to greet",
                config.name_from
            ));
            return Ok(Outcome::exit("anonymous"));
        };
        let greeting = format!("{}, {name}!", config.greeting);
        log::info(&greeting);
        cx.set_data("Greeting", &greeting)?;
        Ok(Outcome::exit("greeted"))
    }
}

coda_sdk::export_applet!(Hello);
