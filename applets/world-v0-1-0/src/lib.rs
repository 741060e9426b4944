//! An applet of the first world, `coda:applet@0.1.0`, written against its WIT directly (the
//! SDK now builds 0.2.0): it greets the data source `Name` into `Greeting` and asks for a
//! secret, so its data, capability and handler paths all cross the 0.1.0 bindings.

#[allow(clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "applet",
    });
}

use bindings::coda::applet::types::{AppletInfo, Capability, Failure, Invocation, Outcome, Value};
use bindings::coda::applet::{data, secrets};
use bindings::exports::coda::applet::handler::Guest;

struct WorldV010;

impl Guest for WorldV010 {
    fn describe() -> AppletInfo {
        AppletInfo {
            name: "world-v0-1-0".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Greets Name, built against coda:applet@0.1.0".into(),
            exits: vec!["greeted".into()],
            config_schema: r#"{"type": "object"}"#.into(),
            needs_live_party: false,
            capabilities: vec![Capability::Secrets],
        }
    }

    fn run(_invocation: Invocation) -> Result<Outcome, Failure> {
        let name = match data::get("Name") {
            Some(Value::Text(name)) => name,
            _ => "there".into(),
        };
        let secret = match secrets::get("greeting") {
            Ok(_) => "granted",
            Err(_) => "refused",
        };
        let greeting = Value::Text(format!("Hello, {name}! (secret {secret})"));
        data::set("Greeting", &greeting).map_err(|_| Failure {
            code: "data".into(),
            message: "could not set Greeting".into(),
            retryable: false,
            retry_after_millis: None,
        })?;
        Ok(Outcome::Exit("greeted".into()))
    }
}

bindings::export!(WorldV010 with_types_in bindings);
