//! Contact Frequency: lets at most `limit` contacts through per key in a window, counting
//! them in the tenant's key-value store. The key is a template over the data sources, so a
//! plan counts per customer number, per email address, per anything the run carries.
//!
//! ```yaml
//! applet: contact-frequency@0.1.0
//! config:
//!   key: "contact-frequency/sms/{{ CLID }}"
//!   limit: 1
//!   window_seconds: 86400
//! ```
//!
//! Each pass counts one contact (`kv.increment` on the key, the window starting at the
//! key's first count) and exits `allowed` while the count is within `limit`, `limited` past
//! it; the count is set in `ContactCount`. The window is fixed: it starts with the first
//! contact counted and ends `window_seconds` later, when the key expires and counting starts
//! over. A refused kv call (the key outside the grant, a limit of the tenant's store) is the
//! step's failure with the host error's kind as its code.

use std::time::Duration;

use coda_sdk::{Applet, Capability, Context, Failure, Info, Outcome, kv, log};
use coda_template::{Templates, host_failure};

/// The data source set to the number of contacts counted in the current window.
const CONTACT_COUNT: &str = "ContactCount";

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The key counted, a template over the data sources, e.g.
    /// `contact-frequency/sms/{{ CLID }}`. The tenant grants this applet a prefix of it.
    #[schemars(length(min = 1, max = 1024))]
    key: String,
    /// Contacts allowed per key in a window.
    #[schemars(range(min = 1))]
    limit: u32,
    /// The window, in seconds from the first contact counted (86400: a day).
    #[schemars(range(min = 1, max = 31_622_400))]
    window_seconds: u64,
}

struct ContactFrequency;

impl Applet for ContactFrequency {
    type Config = Config;

    fn info() -> Info {
        Info::new("contact-frequency", env!("CARGO_PKG_VERSION"))
            .description("Contact Frequency: at most N contacts per key in a window")
            .exits(["allowed", "limited"])
            .capabilities([Capability::Kv])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        let key = Templates::from_run(cx, Vec::new()).render("key", &config.key)?;
        if key.trim().is_empty() {
            return Err(Failure::new("no-key", "key: the template renders empty"));
        }
        let window = Duration::from_secs(config.window_seconds);
        let ttl = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let count = kv::increment(&key, 1, Some(ttl)).map_err(|e| host_failure("kv", e))?;
        cx.set_data(CONTACT_COUNT, &count)?;
        if count <= i64::from(config.limit) {
            log::info(format!("contact {count} of {} for {key}", config.limit));
            Ok(Outcome::exit("allowed"))
        } else {
            log::info(format!(
                "{key} was contacted {} time(s) in this window already: limited",
                count - 1
            ));
            Ok(Outcome::exit("limited"))
        }
    }
}

// The template engine is set up at load, not in every step (`coda_template::init`).
coda_sdk::export_applet!(ContactFrequency, init = coda_template::init);
