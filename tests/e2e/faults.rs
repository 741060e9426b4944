//! The fault suite's downstream cases, each inside a flow run by `coda run` with the real
//! applets against a real server on loopback that misbehaves on purpose: a gateway
//! answering 500, 429 with Retry-After, or too slowly; an SMTP server that is not there,
//! answers 451, or comes up late. A retryable failure is retried with backoff and the same
//! idempotency key (counted where it lands); after the attempt limit (3) the step is
//! dead-lettered: the run takes the node's error exit with the reason in `LastError` and in
//! the journal.

use serde_json::Value;

use crate::capabilities::{run, servers};

fn event(files: &Files, interaction: &str, outcome: &str) -> String {
    crate::capabilities::event(files, interaction, outcome)
}
use crate::run::{Files, applets_dir};

const SID: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "test-auth-token";

/// Grants for sms and send-email, the SMTP server on `smtp_port`, and an operator-wide HTTP
/// timeout of `http_timeout_ms`.
fn grants(files: &Files, smtp_port: u16, http_timeout_ms: u64) -> String {
    files.write(
        "grants.yaml",
        &format!(
            r#"
http: {{ max_timeout_ms: {http_timeout_ms} }}
tenants:
  local:
    ceiling:
      http_hosts: ["127.0.0.1:*"]
      allow_private: ["127.0.0.0/8"]
      email: true
      secrets: [twilio_sid, twilio_token]
    grants:
      sms: {{ http: ["127.0.0.1:*"], secrets: [twilio_sid, twilio_token] }}
      send-email: {{ email: true }}
    smtp: {{ host: 127.0.0.1, port: {smtp_port}, tls: none, from: "Acme <support@acme.example>" }}
    secrets: {{ twilio_sid: "{SID}", twilio_token: "{TOKEN}" }}
"#
        ),
    )
}

/// `step` (an sms or send-email node) with its error exit wired to `dead-letter`.
fn plan(step: &str) -> String {
    format!(
        r#"
name: faulty
type: unattended
start: step
nodes:
  step:
{step}
    error: dead-letter
  dead-letter:
    applet: set-data@0.1.0
    config:
      set:
        - {{ name: DeadLettered, value: "yes" }}
"#
    )
}

fn sms_step(base_url: &str) -> String {
    format!(
        r#"    applet: sms@0.1.0
    config:
      base_url: "{base_url}"
      from: "+15550123"
      body: "Thanks {{{{ CustomerName }}}}."
      account_sid_secret: twilio_sid
      auth_token_secret: twilio_token
    exits: {{ sent: dead-letter, rejected: dead-letter }}"#
    )
}

const MAIL_STEP: &str = r#"    applet: send-email@0.1.0
    config:
      to: ["ada@example.com"]
      subject: "How did we do?"
      text: "Thanks."
    exits: { sent: done }"#;

/// The plan for mail: the error exit dead-letters, a sent mail ends at `done`.
fn mail_plan() -> String {
    plan(MAIL_STEP).replace(
        "  dead-letter:",
        "  done:\n    applet: set-data@0.1.0\n    config: { set: [{ name: Sent, value: \"yes\" }] }\n  dead-letter:",
    )
}

/// The journal's (node, attempt) pairs and the steps as JSON.
fn journal(out: &Value) -> (Vec<(String, u64)>, Vec<Value>) {
    let steps = out["journal"].as_array().cloned().unwrap_or_default();
    let path = steps
        .iter()
        .map(|s| {
            (
                s["node"].as_str().unwrap_or_default().to_owned(),
                s["attempt"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    (path, steps)
}

fn last_error(out: &Value) -> String {
    out["data"]["LastError"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| out["data"]["LastError"].to_string())
}

/// Checks a run that retried `step` three times and then took its error exit; returns the
/// `LastError` text.
fn dead_lettered(status: i32, out: &Value) -> String {
    assert_eq!(status, 0, "the run ends through its error exit: {out:#}");
    let (path, steps) = journal(out);
    assert_eq!(
        path,
        [
            ("step".into(), 1),
            ("step".into(), 2),
            ("step".into(), 3),
            ("dead-letter".into(), 1)
        ],
        "{out:#}"
    );
    for retried in &steps[..2] {
        let note = retried["note"].as_str().unwrap_or_default();
        assert!(
            note.contains("retry"),
            "a retry is journaled as one: {note}"
        );
    }
    assert_eq!(out["data"]["DeadLettered"], "yes", "{out:#}");
    let error = last_error(out);
    let note = steps[2]["note"].as_str().unwrap_or_default();
    assert!(!error.is_empty() && error != "null", "{out:#}");
    assert!(
        note.contains("error"),
        "the dead-letter step says why: {note}"
    );
    error
}

#[test]
fn a_gateway_failing_every_attempt_is_dead_lettered_with_its_reason_and_one_key() {
    let rt = servers();
    let gateway = rt
        .block_on(coda_testkit::SmsGateway::start(
            coda_testkit::SmsGatewayConfig {
                fail_first: 100,
                ..Default::default()
            },
        ))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, 25, 5_000);
    let event = event(&files, "int-500", "sale");
    let (status, out) = run(
        &files,
        &plan(&sms_step(&gateway.url())),
        &event,
        Some(&grants),
        &[],
    );
    let error = dead_lettered(status, &out);
    assert!(
        error.contains("500"),
        "the reason names the gateway's answer: {error}"
    );
    let deliveries = gateway.deliveries();
    let statuses: Vec<u16> = deliveries.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [500, 500, 500]);
    let keys: std::collections::BTreeSet<_> = deliveries.iter().map(|d| d.token.clone()).collect();
    assert_eq!(
        keys.len(),
        1,
        "every attempt carried the step's key: {keys:?}"
    );
    assert_eq!(gateway.messages_created(), 0);
}

#[test]
fn a_gateway_throttling_every_attempt_is_retried_after_its_retry_after_then_dead_lettered() {
    let rt = servers();
    let gateway = rt
        .block_on(coda_testkit::SmsGateway::start(
            coda_testkit::SmsGatewayConfig {
                throttle_first: 100,
                ..Default::default()
            },
        ))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, 25, 5_000);
    let event = event(&files, "int-429", "sale");
    let (status, out) = run(
        &files,
        &plan(&sms_step(&gateway.url())),
        &event,
        Some(&grants),
        &[],
    );
    let error = dead_lettered(status, &out);
    assert!(error.contains("429"), "{error}");
    // Retry-After: 1 is honoured over the 1 s base backoff's first step: each retry waits
    // at least 1000 ms (journaled in the note).
    let (_, steps) = journal(&out);
    for retried in &steps[..2] {
        let note = retried["note"].as_str().unwrap_or_default();
        let delay: u64 = note
            .rsplit(" in ")
            .next()
            .and_then(|d| d.trim_end_matches(" ms").parse().ok())
            .unwrap_or_else(|| panic!("no delay in {note:?}"));
        assert!(delay >= 1_000, "{note}");
    }
    let deliveries = gateway.deliveries();
    assert_eq!(deliveries.len(), 3);
    assert!(deliveries.iter().all(|d| d.status == 429));
    let keys: std::collections::BTreeSet<_> = deliveries.iter().map(|d| d.token.clone()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
}

#[test]
fn a_gateway_slower_than_the_timeout_is_retried_with_its_key_then_dead_lettered() {
    let rt = servers();
    let gateway = rt
        .block_on(coda_testkit::SmsGateway::start(
            coda_testkit::SmsGatewayConfig {
                delay_ms: 1_500,
                ..Default::default()
            },
        ))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, 25, 300);
    let event = event(&files, "int-slow", "sale");
    let (status, out) = run(
        &files,
        &plan(&sms_step(&gateway.url())),
        &event,
        Some(&grants),
        &[],
    );
    let error = dead_lettered(status, &out);
    assert!(
        error.contains("unavailable") || error.contains("timed out") || error.contains("timeout"),
        "{error}"
    );
    // The gateway saw every attempt, under one key; it finishes requests whose client gave
    // up, and creates the message once.
    std::thread::sleep(std::time::Duration::from_millis(1_700));
    let deliveries = gateway.deliveries();
    assert_eq!(deliveries.len(), 3, "{deliveries:?}");
    let keys: std::collections::BTreeSet<_> = deliveries.iter().map(|d| d.token.clone()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(gateway.messages_created(), 1);
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_smtp_server_that_is_down_is_retried_then_dead_lettered_naming_it() {
    let files = Files::new();
    let grants = grants(&files, free_port(), 5_000);
    let event = event(&files, "int-smtp-down", "resolved");
    let (status, out) = run(&files, &mail_plan(), &event, Some(&grants), &[]);
    let error = dead_lettered(status, &out);
    assert!(
        error.contains("unavailable") || error.contains("connect"),
        "{error}"
    );
    assert!(out["data"]["Sent"].is_null(), "{out:#}");
}

#[test]
fn an_smtp_server_answering_451_is_retried_then_dead_lettered_and_550_is_not_retried() {
    let rt = servers();
    let temporary = rt
        .block_on(coda_testkit::SmtpServer::start(
            coda_testkit::SmtpMode::TemporaryFailure,
            None,
        ))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, temporary.port(), 5_000);
    let event = event(&files, "int-451", "resolved");
    let (status, out) = run(&files, &mail_plan(), &event, Some(&grants), &[]);
    let error = dead_lettered(status, &out);
    assert!(
        error.contains("451"),
        "the reason names the server's reply: {error}"
    );
    assert!(temporary.mails().is_empty());

    let permanent = rt
        .block_on(coda_testkit::SmtpServer::start(
            coda_testkit::SmtpMode::RejectRecipients,
            None,
        ))
        .unwrap();
    let files = Files::new();
    let settings = self::grants(&files, permanent.port(), 5_000);
    let ended = self::event(&files, "int-550", "resolved");
    let (status, out) = run(&files, &mail_plan(), &ended, Some(&settings), &[]);
    assert_eq!(status, 0, "{out:#}");
    let (path, _) = journal(&out);
    assert_eq!(
        path,
        [("step".into(), 1), ("dead-letter".into(), 1)],
        "a refusal for good is not retried: {out:#}"
    );
    assert!(last_error(&out).contains("550"), "{out:#}");
}

/// The SMTP server is down at the first attempt and up by the second: the mail is sent
/// once, on the retry, with the Message-ID the step's key gives it.
#[test]
fn an_smtp_server_that_comes_back_gets_the_mail_on_the_retry() {
    let rt = servers();
    let port = free_port();
    let files = Files::new();
    let grants = grants(&files, port, 5_000);
    let event = event(&files, "int-smtp-late", "resolved");
    let plan = files.write("plan.yaml", &mail_plan());
    // The wall clock: the retry comes 1 s after the first attempt.
    let child = std::process::Command::new(crate::coda_bin())
        .args(["run", &plan, "--event", &event, "--grants", &grants])
        .args(["--applets", applets_dir().to_str().unwrap()])
        .env("CODA_CACHE_DIR", crate::cache_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let smtp = rt
        .block_on(coda_testkit::SmtpServer::start_on(
            port,
            coda_testkit::SmtpMode::Accept,
            None,
        ))
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{out:#}");
    let (path, _) = journal(&out);
    assert_eq!(
        path,
        [("step".into(), 1), ("step".into(), 2), ("done".into(), 1)],
        "{out:#}"
    );
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "sent once, on the retry");
    assert!(mails[0].header("Message-ID").is_some());
}
