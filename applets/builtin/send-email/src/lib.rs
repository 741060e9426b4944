//! Send Email: one email whose recipients, subject and bodies are templates over the run's
//! data sources, sent through the host's email capability.
//!
//! ```yaml
//! applet: send-email@0.1.0
//! config:
//!   to: ["{{ CustomerEmail }}"]
//!   subject: "Your call about order {{ OrderId }}"
//!   text: "Hello {{ CustomerName | default('there') }}, …"
//!   html: "<p>Hello {{ CustomerName | default('there') }}, …</p>"
//! ```
//!
//! Sets `EmailMessageId` and exits `sent`. A refused send is the step's failure, with the
//! host error's kind as its code: only `unavailable` is retryable.

use coda_sdk::{Applet, Capability, Context, Failure, Info, Outcome, email, log};
use coda_template::{Mode, Templates, host_failure};

/// The data source set to the id the host gives the sent message.
const MESSAGE_ID: &str = "EmailMessageId";

/// The message, every field a template over the data sources.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Recipients, each a template rendering to one address, e.g. `{{ CustomerEmail }}`.
    /// One that renders empty is left out; at least one must remain.
    #[schemars(length(min = 1, max = 50), inner(length(min = 1, max = 1024)))]
    to: Vec<String>,
    /// Copy recipients, as `to` (may all render empty).
    #[serde(default)]
    #[schemars(length(max = 50), inner(length(min = 1, max = 1024)))]
    cc: Vec<String>,
    /// The subject, a template; line breaks in it become spaces.
    #[schemars(length(min = 1, max = 2048))]
    subject: String,
    /// The plain-text body, a template.
    #[schemars(length(max = 262144))]
    text: String,
    /// An HTML body, a template whose values are HTML-escaped (`| safe` opts out).
    #[serde(default)]
    #[schemars(length(max = 262144))]
    html: Option<String>,
    /// The Reply-To address, a template.
    #[serde(default)]
    #[schemars(length(min = 1, max = 1024))]
    reply_to: Option<String>,
}

struct SendEmail;

impl Applet for SendEmail {
    type Config = Config;

    fn info() -> Info {
        Info::new("send-email", env!("CARGO_PKG_VERSION"))
            .description("Send Email: sends an email built from data sources")
            .exits(["sent"])
            .capabilities([Capability::Email])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        let templates = Templates::from_run(cx, Vec::new());
        let to = addresses(&templates, "to", &config.to)?;
        if to.is_empty() {
            return Err(Failure::new(
                "no-recipient",
                "to: every recipient rendered empty",
            ));
        }
        let cc = addresses(&templates, "cc", &config.cc)?;
        let reply_to = match &config.reply_to {
            Some(template) => {
                Some(address(&templates, "reply_to", template)?).filter(|a| !a.is_empty())
            }
            None => None,
        };
        // A subject is one header line: a line break from the data must not start another.
        let subject = templates
            .render("subject", &config.subject)?
            .replace("\r\n", " ")
            .replace(['\r', '\n'], " ");
        let text = templates.render("text", &config.text)?;
        let html = match &config.html {
            Some(template) => Some(templates.render_as("html", template, Mode::Html)?),
            None => None,
        };

        let recipients = to.len() + cc.len();
        let id = email::send(&email::Message {
            to,
            cc,
            subject,
            text,
            html,
            reply_to,
        })
        .map_err(|e| host_failure("email", e))?;
        log::info(format!("sent email {id} to {recipients} recipient(s)"));
        cx.set_data(MESSAGE_ID, &id)?;
        Ok(Outcome::exit("sent"))
    }
}

/// Renders a list of address templates, leaving out the ones that render empty.
fn addresses(templates: &Templates, field: &str, list: &[String]) -> Result<Vec<String>, Failure> {
    let mut out = Vec::with_capacity(list.len());
    for (i, template) in list.iter().enumerate() {
        let address = address(templates, &format!("{field}[{i}]"), template)?;
        if !address.is_empty() {
            out.push(address);
        }
    }
    Ok(out)
}

/// One address, trimmed. The host checks its syntax; here only what would break the
/// message's headers is refused.
fn address(templates: &Templates, field: &str, template: &str) -> Result<String, Failure> {
    let address = templates.render(field, template)?.trim().to_string();
    if address.contains(['\r', '\n']) {
        return Err(Failure::new(
            "template",
            format!("template `{field}` renders to an address with a line break"),
        ));
    }
    Ok(address)
}

// The template engine is set up at load, not in every step (`coda_template::init`).
coda_sdk::export_applet!(SendEmail, init = coda_template::init);
