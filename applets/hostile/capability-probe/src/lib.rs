//! Hostile: calls http, email, sql, secrets, interactions and kv although it declares none
//! of them, and records each answer in a data source (`http`, `email`, `sql_query`,
//! `sql_execute`, `secrets`, `interactions`, `kv`): `ok` or the host error's kind.

use coda_sdk::{Applet, Context, Failure, HostError, Info, Outcome};
use coda_sdk::{email, http, interactions, kv, secrets, sql};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

fn answer<T>(result: Result<T, HostError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(HostError::NotGranted(_)) => "not-granted".into(),
        Err(HostError::LimitExceeded(_)) => "limit-exceeded".into(),
        Err(HostError::Invalid(_)) => "invalid".into(),
        Err(HostError::Unavailable(_)) => "unavailable".into(),
        Err(HostError::Rejected(_)) => "rejected".into(),
    }
}

struct CapabilityProbe;

impl Applet for CapabilityProbe {
    type Config = Config;

    fn info() -> Info {
        Info::new("capability-probe", env!("CARGO_PKG_VERSION"))
            .description("Calls every capability and reports what the host answered")
            .exits(["done"])
    }

    fn run(cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        let http = http::send(&http::Request {
            method: "GET".into(),
            url: "http://127.0.0.1:9/".into(),
            headers: vec![],
            body: vec![],
            timeout_millis: Some(100),
        });
        cx.set_data("http", &answer(http))?;
        let email = email::send(&email::Message {
            to: vec!["someone@example.com".into()],
            cc: vec![],
            subject: "probe".into(),
            text: "probe".into(),
            html: None,
            reply_to: None,
        });
        cx.set_data("email", &answer(email))?;
        cx.set_data("sql_query", &answer(sql::query("main", "SELECT 1", &[])))?;
        cx.set_data(
            "sql_execute",
            &answer(sql::execute("main", "DELETE FROM calls", &[])),
        )?;
        cx.set_data("secrets", &answer(secrets::get("twilio-token")))?;
        let follow_up = interactions::clone_interaction(&interactions::FollowUp {
            channel: interactions::Channel::Phone,
            queue: "callbacks".into(),
            subject: None,
            assign_to: None,
        });
        cx.set_data("interactions", &answer(follow_up))?;
        cx.set_data("kv", &answer(kv::increment("probe", 1, None)))?;
        Ok(Outcome::exit("done"))
    }
}

coda_sdk::export_applet!(CapabilityProbe);
