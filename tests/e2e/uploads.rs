//! A tenant's own applet in a real `coda serve`: uploaded over the API, used by a published
//! plan, run when an interaction ends; retired, it still runs for the plan version that
//! uses it; and after a restart it runs from the database, not from memory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use coda_applet_artifacts as artifacts;
use serde_json::{Value, json};

use crate::serve::{OPERATOR, SMS_AUTH_TOKEN, Server, start};

/// One request with a body of any bytes; (status, body as JSON or Null).
fn send(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Value) {
    let mut stream = TcpStream::connect(&server.address).expect("connecting to coda serve");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"))
    };
    (status, json)
}

pub(crate) fn live() -> String {
    r#"{"name": "live", "type": "default", "start": "greet", "post_interaction": "after",
  "nodes": {"greet": {"applet": "set-data@0.1.0", "config": {"set": [{"name": "Greeted", "value": "yes"}]}}}}"#
        .to_owned()
}

pub(crate) fn after(hello: &str) -> String {
    format!(
        "name: after
type: unattended
start: welcome
nodes:
  welcome:
    applet: {hello}
    config: {{ greeting: Welcome }}
"
    )
}

/// Takes interaction `id` from started to ended; waits for the run its end started to
/// finish and returns it.
pub(crate) fn interaction_runs(server: &Server, token: &str, id: &str) -> Value {
    let started = json!({"type": "started", "interaction": id, "channel": "voice", "plan": "live",
        "data": {"CustomerName": "Ada"}});
    let (status, body) = server.call(
        "POST",
        "/v1/interactions/events",
        Some(token),
        Some(&started.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let ended = json!({"type": "ended", "interaction": id, "outcome": "resolved"});
    let (status, body) = server.call(
        "POST",
        "/v1/interactions/events",
        Some(token),
        Some(&ended.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let run_id = body["runs"][0]
        .as_str()
        .unwrap_or_else(|| panic!("the end started no run: {body}"))
        .to_owned();
    server.finished_run(token, &run_id)
}

#[test]
fn an_uploaded_applet_runs_in_a_published_plan_and_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), Some(OPERATOR));
    let token = server.create_tenant("acme");
    let beta = server.create_tenant("beta");

    let hello = artifacts::read(artifacts::HELLO);
    let (status, uploaded) = send(
        &server,
        "POST",
        "/v1/applets",
        &token,
        "application/wasm",
        &hello,
    );
    assert_eq!(status, 201, "{uploaded}");
    assert_eq!(uploaded["coda_imports"], json!(["data", "log", "state"]));
    let reference = format!("hello@{}", uploaded["version"].as_str().unwrap());

    // Another tenant cannot name it.
    let (status, body) = send(
        &server,
        "PUT",
        "/v1/plans/after",
        &beta,
        "application/yaml",
        after(&reference).as_bytes(),
    );
    assert_eq!(status, 422, "{body}");

    let publish = |server: &Server, name: &str, text: &str| {
        send(
            server,
            "PUT",
            &format!("/v1/plans/{name}"),
            &token,
            "application/yaml",
            text.as_bytes(),
        )
    };
    let (status, body) = publish(&server, "after", &after(&reference));
    assert_eq!(status, 201, "{body}");
    let (status, body) = publish(&server, "live", &live());
    assert_eq!(status, 201, "{body}");

    let run = interaction_runs(&server, &token, "call-1");
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(run["data"]["Greeting"], "Welcome, Ada!", "{run}");
    assert_eq!(run["journal"][0]["applet"], reference.as_str(), "{run}");

    // Retired: no new plan version may use it, but the published one still runs it.
    let (status, body) = server.call(
        "DELETE",
        &format!(
            "/v1/applets/hello/versions/{}",
            uploaded["version"].as_str().unwrap()
        ),
        Some(&token),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = publish(&server, "after", &after(&reference));
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("retired"), "{body}");
    let run = interaction_runs(&server, &token, "call-2");
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(run["data"]["Greeting"], "Welcome, Ada!", "{run}");
    server.stop();

    // A new process has the applet only in its database: it loads it from there.
    let server = start(data.path(), Some(OPERATOR));
    let run = interaction_runs(&server, &token, "call-3");
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(run["data"]["Greeting"], "Welcome, Ada!", "{run}");
    let (status, list) = server.call("GET", "/v1/applets/hello", Some(&token), None);
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["versions"][0]["retired"], true, "{list}");
    server.stop();
}

/// The service's whole path, as a tenant lives it: the operator creates the tenant and sets
/// its ceiling (an SMTP server and the gateway's host); the tenant uploads its own `sms`
/// applet, is refused publishing until it grants what the applet declares it needs, stores
/// the gateway's credentials as secrets, grants them, publishes, and sends a call's events;
/// the run texts the caller through a gateway speaking the Twilio API and emails them
/// through a real SMTP server, both on loopback.
#[test]
fn a_tenant_uploads_grants_publishes_and_its_run_texts_and_emails_the_caller() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let gateway = rt
        .block_on(coda_testkit::SmsGateway::start(Default::default()))
        .unwrap();
    let smtp = rt
        .block_on(coda_testkit::SmtpServer::start(
            coda_testkit::SmtpMode::Accept,
            None,
        ))
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), Some(OPERATOR));
    let token = server.create_tenant("acme");
    let call = |method: &str, path: &str, body: Value| {
        let body = (!body.is_null()).then(|| body.to_string());
        server.call(method, path, Some(&token), body.as_deref())
    };

    let (status, uploaded) = send(
        &server,
        "POST",
        "/v1/applets",
        &token,
        "application/wasm",
        &artifacts::read(artifacts::SMS),
    );
    assert_eq!(status, 201, "{uploaded}");
    let declared = uploaded["capabilities"].to_string();
    assert!(
        declared.contains("http") && declared.contains("secret"),
        "the upload answers what it asks to be granted: {uploaded:#}"
    );
    let sms = format!("sms@{}", uploaded["version"].as_str().unwrap());

    let after = json!({
        "name": "after", "type": "unattended", "start": "text",
        "nodes": {
            "text": {"applet": sms, "config": {
                "base_url": gateway.url(), "from": "+15550123", "to": "{{ CLID }}",
                "body": "Thanks {{ CustomerName }}, order {{ OrderId }} is confirmed.",
                "account_sid_secret": "twilio-sid", "auth_token_secret": "twilio-token"},
                "exits": {"sent": "mail"}},
            "mail": {"applet": "send-email@0.1.0", "config": {
                "to": ["ada@example.com"],
                "subject": "Your order {{ OrderId }}",
                "text": "Thanks {{ CustomerName }}: order {{ OrderId }} is confirmed."}}
        }
    });
    let live = json!({
        "name": "live", "type": "default", "start": "greet", "post_interaction": "after",
        "nodes": {"greet": {"applet": "set-data@0.1.0",
            "config": {"set": [{"name": "Greeted", "value": "yes"}]}}}
    });
    // Nothing granted yet: refused, naming the node, the applet and what to grant.
    let (status, body) = call("PUT", "/v1/plans/after", after.clone());
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("node `text`") && message.contains("PUT /v1/grants/sms"),
        "{body}"
    );

    let (status, body) = server.call(
        "PUT",
        "/v1/operator/tenants/acme/ceiling",
        Some(OPERATOR),
        Some(
            &json!({
                "ceiling": {"http_hosts": ["127.0.0.1:*"], "allow_private": ["127.0.0.0/8"],
                    "email": true, "max_secrets": 5},
                "smtp": {"host": "127.0.0.1", "port": smtp.port(), "tls": "none",
                    "from": "Acme <support@acme.example>"}
            })
            .to_string(),
        ),
    );
    assert_eq!(status, 200, "{body}");
    server.grant_sms(&token);
    let (status, body) = call("PUT", "/v1/grants/send-email", json!({"email": true}));
    assert_eq!(status, 200, "{body}");
    let (status, body) = call("PUT", "/v1/plans/after", after);
    assert_eq!(status, 201, "{body}");
    let (status, body) = call("PUT", "/v1/plans/live", live);
    assert_eq!(status, 201, "{body}");

    let (status, body) = call(
        "POST",
        "/v1/interactions/events",
        json!({"type": "started", "interaction": "call-1", "channel": "voice", "plan": "live",
            "data": {"CLID": "+15550100", "CustomerName": "Ada", "OrderId": "A-17"}}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        "POST",
        "/v1/interactions/events",
        json!({"type": "ended", "interaction": "call-1", "outcome": "sale"}),
    );
    assert_eq!(status, 200, "{body}");
    let run_id = body["runs"][0].as_str().expect("a run").to_owned();
    let run = server.finished_run(&token, &run_id);
    assert_eq!(run["status"], "done", "{run:#}");
    let deliveries = gateway.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0].to, "+15550100");
    assert_eq!(deliveries[0].body, "Thanks Ada, order A-17 is confirmed.");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{run:#}");
    assert_eq!(mails[0].to, ["ada@example.com"]);
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("Your order A-17")
    );
    assert!(
        mails[0]
            .body()
            .contains("Thanks Ada: order A-17 is confirmed."),
        "{}",
        mails[0].data
    );
    // The secrets went to the gateway, never into the run's record.
    assert!(!run.to_string().contains(SMS_AUTH_TOKEN), "{run}");
    server.stop();
    rt.block_on(async move {
        gateway.server.stop().await;
        drop(smtp);
    });
}

/// The operator's ceiling bounds each invocation of the tenant's applets: with a fuel cap
/// far below what a step needs, the step is stopped by the fuel limit and the journal says
/// so; another tenant, without that cap, runs the same plan to the end.
#[test]
fn a_tenants_fuel_cap_from_its_ceiling_stops_its_steps_and_only_its_own() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), Some(OPERATOR));
    let tokens = ["capped", "free"].map(|id| server.create_tenant(id));
    let (status, body) = server.call(
        "PUT",
        "/v1/operator/tenants/capped/ceiling",
        Some(OPERATOR),
        Some(r#"{"ceiling": {"fuel": 1000}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let after = r#"{"name": "after", "type": "unattended", "start": "mark",
        "nodes": {"mark": {"applet": "set-data@0.1.0",
            "config": {"set": [{"name": "Marked", "value": "yes"}]}}}}"#;
    let mut runs = Vec::new();
    for token in &tokens {
        for (name, plan) in [("after", after.to_owned()), ("live", live())] {
            let (status, body) = server.call(
                "PUT",
                &format!("/v1/plans/{name}"),
                Some(token),
                Some(&plan),
            );
            assert_eq!(status, 201, "{body}");
        }
        runs.push(interaction_runs(&server, token, "call-1"));
    }
    let capped = &runs[0];
    let step = capped["journal"][0].to_string();
    assert!(
        capped["status"] == "failed" && step.contains("fuel"),
        "the capped tenant's step stops at its fuel cap: {capped:#}"
    );
    assert_eq!(runs[1]["status"], "done", "{:#}", runs[1]);
    assert_eq!(runs[1]["data"]["Marked"], "yes", "{:#}", runs[1]);
    server.stop();
}
