//! Data Connector: one HTTP request built from the run's data sources, and the response's
//! fields mapped back into data sources.
//!
//! ```yaml
//! applet: data-connector@0.1.0
//! config:
//!   method: POST
//!   url: "https://crm.example.com/orders/{{ OrderId | urlencode }}/notes"
//!   headers: { Authorization: "Bearer {{ secrets.crm }}", Content-Type: application/json }
//!   body: '{"caller": {{ CLID | tojson }}, "outcome": {{ InteractionOutcome | tojson }}}'
//!   secrets: { crm: crm-api-token }
//!   response: { OrderStatus: /order/status }
//!   status_into: CrmStatus
//! ```
//!
//! Exits `success` (2xx, mapped fields set) or `failure` (any other status). A request that
//! never got a response is the step's failure: retryable when the host says the downstream
//! was unavailable (refused, timed out), not otherwise.

use std::collections::BTreeMap;

use coda_sdk::{Applet, Capability, Context, Failure, Info, Outcome, http, log};
use coda_template::{Templates, fetch_secrets, header, host_failure};

/// RFC 9110 token characters: what a header name may be made of.
const HEADER_NAME: &str = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$";
/// An RFC 6901 JSON pointer: empty (the whole body) or `/`-separated reference tokens.
const JSON_POINTER: &str = r"^(/.*)?$";

#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Default, Clone, Copy)]
#[serde(rename_all = "UPPERCASE")]
enum Method {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
        }
    }
}

/// The request to send and what to keep from its response.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The HTTP method (default GET).
    #[serde(default)]
    method: Method,
    /// The URL, a template over the data sources: put values through `urlencode`, e.g.
    /// `https://crm.example.com/orders/{{ OrderId | urlencode }}`. The host decides which
    /// hosts this applet may reach.
    #[schemars(length(min = 1, max = 8192))]
    url: String,
    /// Request headers: name to value template, e.g.
    /// `{"Authorization": "Bearer {{ secrets.crm }}"}`. `Idempotency-Key` defaults to the
    /// step's idempotency key (the same on every retry of the step).
    #[serde(default)]
    #[schemars(extend("propertyNames" = {"pattern": HEADER_NAME}, "maxProperties" = 64))]
    headers: BTreeMap<String, String>,
    /// The body, a template (use `tojson` for values in a JSON body). Without a
    /// `Content-Type` header it is sent as `application/json` when it renders to JSON and as
    /// `text/plain; charset=utf-8` otherwise.
    #[serde(default)]
    #[schemars(length(max = 65536))]
    body: Option<String>,
    /// Secrets to fetch, alias to secret name, e.g. `{"crm": "crm-api-token"}`; templates
    /// see each as `secrets.<alias>`. Only the names are in the plan, never the values.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 16, "x-coda-needs" = "secrets"))]
    secrets: BTreeMap<String, String>,
    /// How long to wait for the response, in milliseconds (default: the host's).
    #[serde(default)]
    #[schemars(range(min = 1, max = 60000))]
    timeout_ms: Option<u32>,
    /// On a 2xx: data source to set, to a JSON pointer into the (JSON) response body, e.g.
    /// `{"OrderStatus": "/order/status"}`; `""` is the whole body. A pointer that finds
    /// nothing sets the data source to null.
    #[serde(default)]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "pattern": JSON_POINTER}
    ))]
    response: BTreeMap<String, String>,
    /// Data source to set to the response's status code, on success and on failure.
    #[serde(default)]
    #[schemars(length(min = 1, max = 256))]
    status_into: Option<String>,
}

struct DataConnector;

impl Applet for DataConnector {
    type Config = Config;

    fn info() -> Info {
        Info::new("data-connector", env!("CARGO_PKG_VERSION"))
            .description(
                "Data Connector: sends an HTTP request built from data sources and maps the \
                 response into data sources",
            )
            .exits(["success", "failure"])
            // Secrets only when the node's config names some (`secrets` carries
            // `x-coda-needs`): a plan without them needs no secrets grant.
            .capabilities([Capability::Http, Capability::Secrets])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        check(&config)?;
        let secrets = fetch_secrets(&config.secrets)?;
        let templates = Templates::from_run(cx, secrets);
        let request = build_request(cx, &config, &templates)?;
        let method = request.method.clone();
        let host = host_of(&request.url).to_string();

        let response = http::send(&request).map_err(|e| host_failure("http", e))?;
        // Not the URL: its query may carry a secret.
        log::info(format!("{method} {host}: HTTP {}", response.status));

        if let Some(name) = &config.status_into {
            cx.set_data(name, &response.status)?;
        }
        if !(200..300).contains(&response.status) {
            return Ok(Outcome::exit("failure"));
        }
        if !config.response.is_empty() {
            let body: serde_json::Value = serde_json::from_slice(&response.body).map_err(|e| {
                Failure::new(
                    "bad-response",
                    format!(
                        "HTTP {} from {host}: the body is not JSON ({e}), so `response` cannot \
                         be mapped",
                        response.status
                    ),
                )
            })?;
            for (name, pointer) in &config.response {
                let value = body.pointer(pointer).cloned().unwrap_or_else(|| {
                    log::warn(format!(
                        "response: `{pointer}` is not in the body; {name} = null"
                    ));
                    serde_json::Value::Null
                });
                cx.set_data(name, &value)?;
            }
        }
        Ok(Outcome::exit("success"))
    }
}

/// What the schema says, checked again: `coda applet invoke` and older plans run a config
/// the host did not validate, and a bad one must be a failure naming the field.
fn check(config: &Config) -> Result<(), Failure> {
    for name in config.headers.keys() {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(Failure::new(
                "bad-config",
                format!("headers: {name:?} is not a valid header name"),
            ));
        }
    }
    for (name, pointer) in &config.response {
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(Failure::new(
                "bad-config",
                format!(
                    "response.{name}: {pointer:?} is not a JSON pointer (it starts with `/`, \
                     e.g. `/order/status`)"
                ),
            ));
        }
    }
    Ok(())
}

fn build_request(
    cx: &Context,
    config: &Config,
    templates: &Templates,
) -> Result<http::Request, Failure> {
    let url = templates.render("url", &config.url)?;
    let mut headers = Vec::with_capacity(config.headers.len() + 2);
    for (name, template) in &config.headers {
        let field = format!("headers.{name}");
        let value = templates.render(&field, template)?;
        // A line break in a header value would let data write headers of its own.
        if value.contains(['\r', '\n']) {
            return Err(Failure::new(
                "template",
                format!("template `{field}` renders to a value with a line break"),
            ));
        }
        headers.push(http::Header {
            name: name.clone(),
            value,
        });
    }
    // The key is the same on every attempt of this step, so a downstream that honours it
    // applies a retried request once.
    if header(&headers, "idempotency-key").is_none() {
        headers.push(http::Header {
            name: "Idempotency-Key".into(),
            value: cx.idempotency_key().into(),
        });
    }
    let body = match &config.body {
        Some(template) => templates.render("body", template)?,
        None => String::new(),
    };
    if config.body.is_some() && header(&headers, "content-type").is_none() {
        let is_json = serde_json::from_str::<serde::de::IgnoredAny>(&body).is_ok();
        headers.push(http::Header {
            name: "Content-Type".into(),
            value: if is_json {
                "application/json".into()
            } else {
                "text/plain; charset=utf-8".into()
            },
        });
    }
    Ok(http::Request {
        method: config.method.as_str().into(),
        url,
        headers,
        body: body.into_bytes(),
        timeout_millis: config.timeout_ms,
    })
}

/// The host part of a URL, for logs: `https://user:pw@api.example.com:8443/x?k=v` →
/// `api.example.com:8443`. Not a URL parser: the host parses the URL it is given.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.rsplit('@').next().unwrap_or_default()
}

// The template engine is set up at load, not in every step (`coda_template::init`).
coda_sdk::export_applet!(DataConnector, init = coda_template::init);
