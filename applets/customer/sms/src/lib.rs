//! Example applet: send an SMS through an HTTP gateway that speaks the Twilio Messages API
//! (Twilio itself, or a gateway with the same API).
//!
//! Copy this crate to write your own applet that calls an HTTP API. It shows:
//! - a typed node config whose JSON Schema (derived) is what the plan editor validates;
//! - credentials kept out of the plan: the config names secrets, the applet fetches them;
//! - templates over the run's data sources (`coda-template`, the engine the built-ins use);
//! - passing the step's idempotency key, so a retried step does not send twice;
//! - telling a retryable failure (429, 5xx, network) from a final answer (other 4xx), which
//!   the plan routes on as an exit.
//!
//! ```yaml
//! applet: sms@0.1.0
//! config:
//!   from: "+15550100"
//!   body: "Thanks for calling! Your order {{ OrderId }} is {{ OrderStatus }}."
//!   account_sid_secret: twilio-account-sid
//!   auth_token_secret: twilio-auth-token
//! ```
//!
//! Exits `sent` (data sources `SmsSid`, `SmsStatus`) or `rejected` (`SmsError`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use coda_sdk::{Applet, Capability, Context, Failure, Info, Outcome, http, log, secrets};
use coda_template::{Templates, host_failure, retry_after};

/// The node configuration. Doc comments become the schema's descriptions, which the plan
/// editor shows; `deny_unknown_fields` turns a misspelt field into a validation error
/// instead of a silently ignored one.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The gateway's base URL, without the API path.
    #[serde(default = "default_base_url")]
    #[schemars(
        regex(pattern = r"^https?://[^/?#\s]+(/[^?#\s]*)?$"),
        length(max = 2048)
    )]
    base_url: String,
    /// The sender: a phone number in E.164 form (`+15550100`), a short code or an
    /// alphanumeric sender id, as the gateway allows.
    #[schemars(length(min = 1, max = 64))]
    from: String,
    /// The recipient, a template over the data sources (default: the caller's number).
    #[serde(default = "default_to")]
    #[schemars(length(min = 1, max = 1024))]
    to: String,
    /// The message text, a template over the data sources.
    #[schemars(length(min = 1, max = 4096))]
    body: String,
    /// Name of the secret holding the account SID (the basic-auth user, and part of the
    /// URL).
    #[schemars(length(min = 1, max = 256))]
    account_sid_secret: String,
    /// Name of the secret holding the auth token (the basic-auth password).
    #[schemars(length(min = 1, max = 256))]
    auth_token_secret: String,
}

fn default_base_url() -> String {
    "https://api.twilio.com".into()
}

fn default_to() -> String {
    "{{ CLID }}".into()
}

/// Twilio's own limit on a message body, in characters.
const MAX_BODY_CHARS: usize = 1600;

struct Sms;

impl Applet for Sms {
    type Config = Config;

    fn info() -> Info {
        Info::new("sms", env!("CARGO_PKG_VERSION"))
            .description("Sends an SMS through a gateway speaking the Twilio Messages API")
            .exits(["sent", "rejected"])
            // What the tenant is asked to grant: the HTTP call and the two secrets.
            .capabilities([Capability::Http, Capability::Secrets])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        // 1. Build the message from the run's data sources.
        let templates = Templates::from_run(cx, Vec::new());
        let to = templates.render("to", &config.to)?.trim().to_string();
        if to.is_empty() {
            return Err(Failure::new("no-recipient", "to: renders empty"));
        }
        let body = templates.render("body", &config.body)?;
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(Failure::new(
                "bad-data",
                format!("body: longer than {MAX_BODY_CHARS} characters"),
            ));
        }

        // 2. Credentials: fetched by name, never written in the plan. A refusal (the tenant
        //    did not grant the secret) becomes the step's failure, naming the secret.
        let account_sid = secrets::get(&config.account_sid_secret)
            .map_err(|e| host_failure(&format!("secret `{}`", config.account_sid_secret), e))?;
        let auth_token = secrets::get(&config.auth_token_secret)
            .map_err(|e| host_failure(&format!("secret `{}`", config.auth_token_secret), e))?;
        let url = messages_url(&config.base_url, &account_sid)?;

        // 3. Send. The idempotency key is the same on every attempt of this step: a gateway
        //    that honours either header sends the message once however often we retry.
        let request = http::Request {
            method: "POST".into(),
            url,
            headers: vec![
                header("Authorization", basic_auth(&account_sid, &auth_token)),
                header("Content-Type", "application/x-www-form-urlencoded"),
                header("Accept", "application/json"),
                header("I-Twilio-Idempotency-Token", cx.idempotency_key()),
                header("Idempotency-Key", cx.idempotency_key()),
            ],
            body: form_body(&to, &config.from, &body).into_bytes(),
            timeout_millis: None,
        };
        // No response at all (refused, timed out): retryable when the host says the gateway
        // was unavailable, a failure for good otherwise (not granted, invalid URL).
        let response = http::send(&request).map_err(|e| host_failure("http", e))?;

        // 4. Read the answer into data sources the rest of the plan can use.
        match interpret(&response)? {
            Reply::Sent { sid, status } => {
                log::info(format!("sent SMS {sid} ({status})"));
                cx.set_data("SmsSid", &sid)?;
                cx.set_data("SmsStatus", &status)?;
                Ok(Outcome::exit("sent"))
            }
            Reply::Rejected(error) => {
                log::warn(format!("the gateway refused the SMS: {error}"));
                cx.set_data("SmsError", &error)?;
                Ok(Outcome::exit("rejected"))
            }
        }
    }
}

fn header(name: &str, value: impl Into<String>) -> http::Header {
    http::Header {
        name: name.into(),
        value: value.into(),
    }
}

/// `{base_url}/2010-04-01/Accounts/{sid}/Messages.json`. The SID comes from a secret and
/// goes into the path, so it is checked to be what SIDs are (letters and digits) rather
/// than trusted.
fn messages_url(base_url: &str, account_sid: &str) -> Result<String, Failure> {
    let sid = account_sid.trim();
    if sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Failure::new(
            "bad-secret",
            "the account SID secret is not an account SID (letters and digits)",
        ));
    }
    let base = base_url.trim_end_matches('/');
    Ok(format!("{base}/2010-04-01/Accounts/{sid}/Messages.json"))
}

/// HTTP basic authentication: `Basic base64(user:password)`.
fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        BASE64.encode(format!("{}:{password}", user.trim()))
    )
}

/// The form Twilio expects (`application/x-www-form-urlencoded`): `To`, `From`, `Body`.
fn form_body(to: &str, from: &str, body: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("To", to)
        .append_pair("From", from)
        .append_pair("Body", body)
        .finish()
}

/// What the gateway's answer means for the flow.
#[derive(Debug, PartialEq)]
enum Reply {
    /// 2xx: accepted, with the message's SID and status (`queued`, `sent`, …).
    Sent { sid: String, status: String },
    /// 4xx other than 429: refused for good (a bad number, an unverified sender). Carries
    /// `{"status": 400, "code": 21211, "message": "…"}` for the plan to route or report on.
    Rejected(serde_json::Value),
}

/// Turns a response into a [`Reply`], or into the step's failure. Pure, so it is tested
/// without a host.
fn interpret(response: &http::Response) -> Result<Reply, Failure> {
    let status = response.status;
    // Never `unwrap` what a server sent: a body that is not JSON is just `None` here.
    let json: Option<serde_json::Value> = serde_json::from_slice(&response.body).ok();
    let field = |name: &str| json.as_ref().and_then(|j| j.get(name)).cloned();
    match status {
        200..=299 => {
            let Some(serde_json::Value::String(sid)) = field("sid") else {
                // Not retryable: the message may well have gone out, and a retry could send
                // it twice. The flow's error exit decides what to do.
                return Err(Failure::new(
                    "bad-response",
                    format!("HTTP {status}: the response has no message `sid`"),
                ));
            };
            let status = match field("status") {
                Some(serde_json::Value::String(s)) => s,
                _ => "unknown".into(),
            };
            Ok(Reply::Sent { sid, status })
        }
        // Too many requests, or the gateway failing: worth retrying, when it says.
        429 => Err(Failure::retryable(
            "rate-limited",
            format!("HTTP 429: {}", message_or(&field, "too many requests")),
            retry_after(&response.headers),
        )),
        500..=599 => Err(Failure::retryable(
            "unavailable",
            format!("HTTP {status}: {}", message_or(&field, "gateway error")),
            retry_after(&response.headers),
        )),
        400..=499 => Ok(Reply::Rejected(serde_json::json!({
            "status": status,
            "code": field("code").unwrap_or(serde_json::Value::Null),
            "message": message_or(&field, &format!("HTTP {status}")),
        }))),
        // 1xx or 3xx: nothing a Messages API answers; do not guess.
        _ => Err(Failure::new(
            "bad-response",
            format!("HTTP {status}: unexpected status"),
        )),
    }
}

/// The response's `message`, or `fallback` when it has none.
fn message_or(field: &dyn Fn(&str) -> Option<serde_json::Value>, fallback: &str) -> String {
    match field("message") {
        Some(serde_json::Value::String(m)) => m,
        _ => fallback.into(),
    }
}

coda_sdk::export_applet!(Sms);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> http::Response {
        http::Response {
            status,
            headers: headers.iter().map(|(n, v)| header(n, *v)).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_form_is_url_encoded() {
        assert_eq!(
            form_body("+15550100", "+15550199", "Hi Zoë & co: 50% off?"),
            "To=%2B15550100&From=%2B15550199&Body=Hi+Zo%C3%AB+%26+co%3A+50%25+off%3F"
        );
    }

    #[test]
    fn basic_auth_encodes_sid_and_token() {
        // base64("AC123:secret")
        assert_eq!(basic_auth("AC123", "secret"), "Basic QUMxMjM6c2VjcmV0");
    }

    #[test]
    fn the_url_holds_the_account_sid() {
        assert_eq!(
            messages_url("https://api.twilio.com/", "AC0123abcd").unwrap(),
            "https://api.twilio.com/2010-04-01/Accounts/AC0123abcd/Messages.json"
        );
        for bad in ["", "AC12/../x", "AC 12", "AC12?x=1"] {
            let failure = messages_url("https://api.twilio.com", bad).unwrap_err();
            assert_eq!(failure.code, "bad-secret");
            assert!(!failure.message.contains(bad) || bad.is_empty());
        }
    }

    #[test]
    fn accepted() {
        let r = response(201, &[], r#"{"sid": "SM123", "status": "queued"}"#);
        assert_eq!(
            interpret(&r).unwrap(),
            Reply::Sent {
                sid: "SM123".into(),
                status: "queued".into()
            }
        );
    }

    #[test]
    fn accepted_without_a_sid_is_a_final_failure() {
        for body in ["", "not json", r#"{"status": "queued"}"#, r#"{"sid": 5}"#] {
            let failure = interpret(&response(200, &[], body)).unwrap_err();
            assert_eq!(failure.code, "bad-response");
            assert!(!failure.retryable);
        }
    }

    #[test]
    fn a_4xx_is_the_rejected_exit() {
        let r = response(
            400,
            &[],
            r#"{"code": 21211, "message": "The 'To' number is not valid.", "status": 400}"#,
        );
        assert_eq!(
            interpret(&r).unwrap(),
            Reply::Rejected(serde_json::json!({
                "status": 400, "code": 21211, "message": "The 'To' number is not valid."
            }))
        );
        assert_eq!(
            interpret(&response(404, &[], "<html>")).unwrap(),
            Reply::Rejected(
                serde_json::json!({"status": 404, "code": null, "message": "HTTP 404"})
            )
        );
    }

    #[test]
    fn a_429_is_retried_after_retry_after() {
        let failure = interpret(&response(429, &[("Retry-After", "30")], "")).unwrap_err();
        assert_eq!(failure.code, "rate-limited");
        assert!(failure.retryable);
        assert_eq!(failure.retry_after_millis, Some(30_000));
        let failure = interpret(&response(429, &[], "")).unwrap_err();
        assert_eq!(failure.retry_after_millis, None);
    }

    #[test]
    fn a_5xx_is_retryable() {
        let failure = interpret(&response(
            503,
            &[("retry-after", "2")],
            r#"{"message": "down"}"#,
        ))
        .unwrap_err();
        assert_eq!(failure.code, "unavailable");
        assert!(failure.retryable);
        assert_eq!(failure.message, "HTTP 503: down");
        assert_eq!(
            failure.retry_after_millis,
            Some(Duration::from_secs(2).as_millis() as u64)
        );
    }

    #[test]
    fn a_redirect_is_not_guessed_at() {
        let failure = interpret(&response(302, &[("Location", "/x")], "")).unwrap_err();
        assert_eq!(failure.code, "bad-response");
        assert!(!failure.retryable);
    }
}
