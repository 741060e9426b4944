//! Hostile: besides the applet world, the component imports `acme:missing/thing@1.0.0`,
//! which no coda host provides. The host must refuse it when loading, not trap at run time.

use core::hint::black_box;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

/// Bindings for the missing interface, kept apart from the SDK's: import only, no exports.
#[allow(clippy::all)]
mod missing {
    wit_bindgen::generate!({
        inline: "
            package acme:missing@1.0.0;

            interface thing {
                poke: func() -> u32;
            }

            world missing {
                import thing;
            }
        ",
        world: "acme:missing/missing",
    });
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

struct UnknownImport;

impl Applet for UnknownImport {
    type Config = Config;

    fn info() -> Info {
        Info::new("unknown-import", env!("CARGO_PKG_VERSION"))
            .description("Imports an interface no host provides")
            .exits(["next"])
    }

    fn run(_cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        black_box(missing::acme::missing::thing::poke());
        Ok(Outcome::exit("next"))
    }
}

coda_sdk::export_applet!(UnknownImport);
