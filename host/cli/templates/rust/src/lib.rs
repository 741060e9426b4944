//! {{name}}: greets the customer named in a data source.

use coda_sdk::{Applet, Context, Failure, Info, Outcome, log};

/// The node's configuration in a plan; its JSON Schema is derived and checked by the host.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The greeting to put before the name.
    #[serde(default = "default_greeting")]
    greeting: String,
}

fn default_greeting() -> String {
    "Hello".into()
}

struct Greeter;

impl Applet for Greeter {
    type Config = Config;

    fn info() -> Info {
        Info::new("{{name}}", env!("CARGO_PKG_VERSION"))
            .description("Greets the customer named in the CustomerName data source")
            .exits(["greeted", "anonymous"])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        let Some(name) = cx.data::<String>("CustomerName")? else {
            log::info("no CustomerName: nobody to greet");
            return Ok(Outcome::exit("anonymous"));
        };
        let greeting = format!("{}, {name}!", config.greeting);
        log::info(&greeting);
        cx.set_data("Greeting", &greeting)?;
        Ok(Outcome::exit("greeted"))
    }
}

coda_sdk::export_applet!(Greeter);
