//! The applets that reach out — sms, db-log, data-connector, send-email, create-follow-up —
//! each run inside a flow by `coda run`, against a real server on loopback, with grants from
//! a settings file. Every check reads what the server received, not what the host says.

use serde_json::{Value, json};

use crate::run::{Files, applets_dir};

/// A tokio runtime for the loopback servers; the `coda` process runs on the test's thread.
pub(crate) fn servers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

const SID: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "test-auth-token";

/// A settings file granting the local tenant what these applets need, loopback included
/// explicitly (it is refused otherwise).
fn grants(files: &Files, smtp_port: u16, database: &str) -> String {
    let text = format!(
        r#"
tenants:
  local:
    ceiling:
      http_hosts: ["127.0.0.1:*"]
      allow_private: ["127.0.0.0/8"]
      email: true
      databases: [calls]
      secrets: [twilio_sid, twilio_token, crm_token]
      interactions: true
    grants:
      sms: {{ http: ["127.0.0.1:*"], secrets: [twilio_sid, twilio_token] }}
      db-log: {{ sql: [calls] }}
      send-email: {{ email: true }}
      data-connector: {{ http: ["127.0.0.1:*"], secrets: [crm_token] }}
      create-follow-up: {{ interactions: true }}
    smtp: {{ host: 127.0.0.1, port: {smtp_port}, tls: none, from: "Acme Support <support@acme.example>" }}
    databases: {{ calls: "{database}" }}
    secrets: {{ twilio_sid: "{SID}", twilio_token: "{TOKEN}", crm_token: "s3cr3t-crm" }}
"#
    );
    files.write("grants.yaml", &text)
}

pub(crate) fn event(files: &Files, interaction: &str, outcome: &str) -> String {
    files.write(
        &format!("{interaction}.json"),
        &json!({
            "interaction": interaction,
            "channel": "voice",
            "outcome": outcome,
            "data": {
                "CLID": "+15550100", "DialedNumber": "+15550199", "Language": "en-US",
                "Duration": 184, "CustomerName": "Ada", "OrderId": "A-17", "Queue": "billing"
            }
        })
        .to_string(),
    )
}

pub(crate) fn run(
    files: &Files,
    plan: &str,
    event: &str,
    grants: Option<&str>,
    extra: &[&str],
) -> (i32, Value) {
    let plan = files.write("plan.yaml", plan);
    let applets = applets_dir();
    let mut args = vec![
        "run",
        plan.as_str(),
        "--event",
        event,
        "--applets",
        applets.to_str().unwrap(),
        "--clock",
        "virtual",
    ];
    if let Some(grants) = grants {
        args.extend(["--grants", grants]);
    }
    args.extend_from_slice(extra);
    crate::coda(&args)
}

fn sms_plan(base_url: &str, to: &str) -> String {
    format!(
        r#"
name: order-sms
type: unattended
start: text
nodes:
  text:
    applet: sms@0.1.0
    config:
      base_url: "{base_url}"
      from: "+15550123"
      to: "{to}"
      body: "Thanks {{{{ CustomerName }}}}, order {{{{ OrderId }}}} is confirmed."
      account_sid_secret: twilio_sid
      auth_token_secret: twilio_token
"#
    )
}

#[test]
fn sms_reaches_a_twilio_gateway_with_the_form_auth_and_key() {
    let rt = servers();
    let gateway = rt
        .block_on(coda_testkit::SmsGateway::start(Default::default()))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, 25, "sqlite:/nonexistent");
    let event = event(&files, "int-sms", "sale");
    let (status, out) = run(
        &files,
        &sms_plan(&gateway.url(), "{{ CLID }}"),
        &event,
        Some(&grants),
        &[],
    );
    assert_eq!(status, 0, "{out:#}");
    let journal = out["journal"].as_array().unwrap();
    assert_eq!(journal[0]["result"], json!({"exit": "sent"}), "{out:#}");

    let deliveries = gateway.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let d = &deliveries[0];
    assert_eq!(d.status, 201);
    assert_eq!(d.to, "+15550100");
    assert_eq!(d.from, "+15550123");
    assert_eq!(d.body, "Thanks Ada, order A-17 is confirmed.");
    // The step's key, stable across retries and re-execution of the step.
    let run_id = out["run"].as_str().unwrap();
    assert_eq!(d.token.as_deref(), Some(format!("{run_id}/0").as_str()));
    assert_eq!(out["data"]["SmsSid"], json!(d.message_sid.clone().unwrap()));
    assert_eq!(out["data"]["SmsStatus"], "queued");
    // The call is in the effect journal, its request as a digest only.
    assert_eq!(out["effects"].as_array().unwrap().len(), 1, "{out:#}");
    assert!(
        !out.to_string().contains(TOKEN),
        "the auth token leaked into the output"
    );
}

#[test]
fn sms_takes_rejected_for_a_bad_number_and_the_error_exit_without_a_grant() {
    let rt = servers();
    let gateway = rt
        .block_on(coda_testkit::SmsGateway::start(Default::default()))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, 25, "sqlite:/nonexistent");
    let event = event(&files, "int-bad", "sale");
    let (status, out) = run(
        &files,
        &sms_plan(&gateway.url(), "555-0100"),
        &event,
        Some(&grants),
        &[],
    );
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(
        out["journal"][0]["result"],
        json!({"exit": "rejected"}),
        "{out:#}"
    );
    assert!(
        out["data"]["SmsError"].to_string().contains("21211"),
        "{:#}",
        out["data"]
    );
    assert_eq!(gateway.messages_created(), 0);

    // Without grants, the call is refused by the host and never reaches the gateway.
    let before = gateway.deliveries().len();
    let (status, out) = run(
        &files,
        &sms_plan(&gateway.url(), "{{ CLID }}"),
        &event,
        None,
        &[],
    );
    assert_eq!(status, 1, "no error exit wired: the run fails {out:#}");
    let text = out.to_string();
    assert!(
        text.contains("not-granted") || text.contains("not granted"),
        "{text}"
    );
    assert_eq!(gateway.deliveries().len(), before);
}

#[test]
fn sms_retries_a_gateway_error_with_the_same_key() {
    let rt = servers();
    let gateway = rt
        .block_on(coda_testkit::SmsGateway::start(
            coda_testkit::SmsGatewayConfig {
                fail_first: 1,
                throttle_first: 1,
                ..Default::default()
            },
        ))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, 25, "sqlite:/nonexistent");
    let event = event(&files, "int-retry", "sale");
    let (status, out) = run(
        &files,
        &sms_plan(&gateway.url(), "{{ CLID }}"),
        &event,
        Some(&grants),
        &[],
    );
    assert_eq!(status, 0, "{out:#}");
    let statuses: Vec<u16> = gateway.deliveries().iter().map(|d| d.status).collect();
    assert_eq!(statuses, [500, 429, 201]);
    let tokens: std::collections::BTreeSet<_> =
        gateway.deliveries().into_iter().map(|d| d.token).collect();
    assert_eq!(
        tokens.len(),
        1,
        "every attempt carried the same key: {tokens:?}"
    );
    assert_eq!(gateway.messages_created(), 1);
    let attempts: Vec<u64> = out["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3], "{out:#}");
}

/// interaction_id, clid, dialed_number, outcome, duration, custom
type CallLogRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    String,
);

const DB_LOG_PLAN: &str = r#"
name: call-figures
type: unattended
start: log
nodes:
  log:
    applet: db-log@0.1.0
    config: { database: calls, custom_fields: [CustomerName, Queue] }
"#;

#[test]
fn db_log_writes_one_row_per_interaction_to_sqlite() {
    let files = Files::new();
    let database = files.path("calls.db");
    let grants = grants(&files, 25, &format!("sqlite:{database}"));
    let event = event(&files, "int-db", "resolved");
    let (status, out) = run(&files, DB_LOG_PLAN, &event, Some(&grants), &[]);
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(
        out["journal"][0]["result"],
        json!({"exit": "logged"}),
        "{out:#}"
    );
    // The same interaction again: a duplicate, not a second row.
    let (status, out) = run(&files, DB_LOG_PLAN, &event, Some(&grants), &[]);
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(
        out["journal"][0]["result"],
        json!({"exit": "duplicate"}),
        "{out:#}"
    );

    let conn = rusqlite::Connection::open(&database).unwrap();
    let rows: Vec<CallLogRow> = conn
        .prepare(
            "SELECT interaction_id, clid, dialed_number, outcome, duration, custom FROM call_log",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (id, clid, dialed, outcome, duration, custom) = &rows[0];
    assert_eq!(id, "int-db");
    assert_eq!(clid.as_deref(), Some("+15550100"));
    assert_eq!(dialed.as_deref(), Some("+15550199"));
    assert_eq!(outcome.as_deref(), Some("resolved"));
    assert_eq!(*duration, Some(184));
    let custom: Value = serde_json::from_str(custom).unwrap();
    assert_eq!(custom, json!({"CustomerName": "Ada", "Queue": "billing"}));
}

#[test]
fn db_log_writes_one_row_per_interaction_to_postgresql() {
    let url = std::env::var("CODA_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!("CODA_TEST_POSTGRES is not set: run the suite with `./dev test`, which starts a PostgreSQL server, or point it at one (postgres://USER@HOST:PORT/postgres)")
    });
    let rt = servers();
    let name = format!("coda_e2e_{}", std::process::id());
    let (admin, connection) = rt
        .block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
        .unwrap();
    rt.spawn(connection);
    rt.block_on(admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")))
        .unwrap();
    rt.block_on(admin.batch_execute(&format!("CREATE DATABASE {name}")))
        .unwrap();
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.dbname(&name);
    let db_url = {
        // Same server and user, the test's own database.
        let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
        format!("{base}/{name}")
    };

    let files = Files::new();
    let grants = grants(&files, 25, &db_url);
    let event = event(&files, "int-pg", "resolved");
    let (status, out) = run(&files, DB_LOG_PLAN, &event, Some(&grants), &[]);
    let (status2, out2) = run(&files, DB_LOG_PLAN, &event, Some(&grants), &[]);

    let (client, connection) = rt.block_on(config.connect(tokio_postgres::NoTls)).unwrap();
    rt.spawn(connection);
    let rows = rt
        .block_on(client.query(
            "SELECT interaction_id, clid, outcome, duration, custom FROM call_log",
            &[],
        ))
        .unwrap();
    drop(client);
    rt.block_on(admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")))
        .unwrap();

    assert_eq!(status, 0, "{out:#}");
    assert_eq!(
        out["journal"][0]["result"],
        json!({"exit": "logged"}),
        "{out:#}"
    );
    assert_eq!(status2, 0, "{out2:#}");
    assert_eq!(
        out2["journal"][0]["result"],
        json!({"exit": "duplicate"}),
        "{out2:#}"
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "int-pg");
    assert_eq!(
        rows[0].get::<_, Option<String>>(1).as_deref(),
        Some("+15550100")
    );
    assert_eq!(
        rows[0].get::<_, Option<String>>(2).as_deref(),
        Some("resolved")
    );
    assert_eq!(rows[0].get::<_, Option<i64>>(3), Some(184));
}

#[test]
fn send_email_is_received_by_a_real_smtp_server() {
    let rt = servers();
    let smtp = rt
        .block_on(coda_testkit::SmtpServer::start(
            coda_testkit::SmtpMode::Accept,
            None,
        ))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, smtp.port(), "sqlite:/nonexistent");
    let event = event(&files, "int-mail", "resolved");
    let plan = r#"
name: survey
type: unattended
start: resolved
nodes:
  resolved:
    applet: data-router@0.1.0
    config:
      rules:
        - { when: 'InteractionOutcome == "resolved"', exit: resolved }
    exits: { resolved: mail }
  mail:
    applet: send-email@0.1.0
    config:
      to: ["ada@example.com"]
      subject: "How did we do, {{ CustomerName }}?"
      text: "Your call about order {{ OrderId }} was resolved. Rate us: https://survey.example/{{ InteractionId }}"
"#;
    let (status, out) = run(&files, plan, &event, Some(&grants), &[]);
    assert_eq!(status, 0, "{out:#}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{out:#}");
    let mail = &mails[0];
    assert_eq!(mail.to, ["ada@example.com"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("How did we do, Ada?")
    );
    assert!(
        mail.header("From")
            .unwrap()
            .contains("support@acme.example")
    );
    let body = mail.body();
    assert!(body.contains("order A-17 was resolved"), "{body}");
    assert!(body.contains("https://survey.example/int-mail"), "{body}");
    let message_id = mail.header("Message-ID").unwrap();
    assert_eq!(
        out["data"]["EmailMessageId"]
            .as_str()
            .map(|s| s.trim_matches(['<', '>'])),
        Some(message_id.trim_matches(['<', '>']))
    );

    // A permanent refusal (550) is not retried: the run fails through the error path.
    let refusing = rt
        .block_on(coda_testkit::SmtpServer::start(
            coda_testkit::SmtpMode::RejectRecipients,
            None,
        ))
        .unwrap();
    let grants = grants_with_port(&files, refusing.port());
    let (status, out) = run(&files, plan, &event, Some(&grants), &[]);
    assert_eq!(status, 1, "{out:#}");
    assert!(out.to_string().contains("rejected"), "{out:#}");
    assert!(refusing.mails().is_empty());
}

fn grants_with_port(files: &Files, port: u16) -> String {
    grants(files, port, "sqlite:/nonexistent")
}

#[test]
fn data_connector_sends_from_data_and_maps_the_response() {
    let rt = servers();
    let crm = rt
        .block_on(coda_testkit::Recorder::start(
            200,
            json!({"order": {"status": "shipped", "eta": "2026-11-24"}}),
        ))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, 25, "sqlite:/nonexistent");
    let event = event(&files, "int-crm", "resolved");
    let plan = format!(
        r#"
name: crm-lookup
type: unattended
start: lookup
nodes:
  lookup:
    applet: data-connector@0.1.0
    config:
      method: POST
      url: "{}/orders/{{{{ OrderId | urlencode }}}}/notes"
      headers: {{ Authorization: "Bearer {{{{ secrets.crm }}}}" }}
      body: '{{"caller": {{{{ CLID | tojson }}}}}}'
      secrets: {{ crm: crm_token }}
      response: {{ OrderStatus: /order/status }}
"#,
        crm.url()
    );
    let (status, out) = run(&files, &plan, &event, Some(&grants), &[]);
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(
        out["journal"][0]["result"],
        json!({"exit": "success"}),
        "{out:#}"
    );
    assert_eq!(out["data"]["OrderStatus"], "shipped");
    let requests = crm.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/orders/A-17/notes");
    assert_eq!(r.header("authorization"), Some("Bearer s3cr3t-crm"));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, json!({"caller": "+15550100"}));
    assert!(r.header("idempotency-key").is_some());
    assert!(
        !out.to_string().contains("s3cr3t-crm"),
        "a secret reached the journal"
    );
}

#[test]
fn data_connector_takes_failure_on_a_non_2xx() {
    let rt = servers();
    let crm = rt
        .block_on(coda_testkit::Recorder::start(
            404,
            json!({"error": "no such order"}),
        ))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, 25, "sqlite:/nonexistent");
    let event = event(&files, "int-404", "resolved");
    let plan = format!(
        "name: crm\ntype: unattended\nstart: lookup\nnodes:\n  lookup:\n    applet: data-connector@0.1.0\n    config: {{ url: \"{}/orders/x\", status_into: CrmStatus }}\n",
        crm.url()
    );
    let (status, out) = run(&files, &plan, &event, Some(&grants), &[]);
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(
        out["journal"][0]["result"],
        json!({"exit": "failure"}),
        "{out:#}"
    );
    assert_eq!(out["data"]["CrmStatus"], 404);
}

#[test]
fn create_follow_up_clones_the_interaction_into_a_queue() {
    let files = Files::new();
    let grants = grants(&files, 25, "sqlite:/nonexistent");
    let event = event(&files, "int-cb", "unresolved");
    let db = files.path("coda.db");
    let plan = r#"
name: callback
type: unattended
start: follow
nodes:
  follow:
    applet: create-follow-up@0.1.0
    config: { channel: phone, queue: callbacks, subject: "Call back {{ CustomerName }}" }
"#;
    let (status, out) = run(&files, plan, &event, Some(&grants), &["--db", &db]);
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(
        out["journal"][0]["result"],
        json!({"exit": "created"}),
        "{out:#}"
    );
    let id = out["data"]["FollowUpInteraction"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = coda_store::Store::open(std::path::Path::new(&db)).unwrap();
    let follow_up = store
        .interaction("local", &id)
        .unwrap()
        .expect("the follow-up exists");
    assert_eq!(follow_up.status, coda_store::InteractionStatus::Active);
    assert_eq!(follow_up.channel, coda_store::Channel::Voice);
    let of = follow_up.follow_up.unwrap();
    assert_eq!(of.source, "int-cb");
    assert_eq!(of.queue, "callbacks");
    assert_eq!(of.subject.as_deref(), Some("Call back Ada"));
    assert_eq!(
        follow_up.data["CLID"],
        coda_types::Value::Text("+15550100".into())
    );
    // Another tenant does not see it.
    assert!(store.interaction("other", &id).unwrap().is_none());
}

#[test]
fn a_bad_grants_file_is_refused_naming_the_field() {
    let files = Files::new();
    let grants = files.write(
        "grants.yaml",
        "tenants:\n  local:\n    ceiling: { http_hosts: [\"127.0.0.1:*\"], alow_private: [127.0.0.0/8] }\n",
    );
    let event = event(&files, "int-grants", "sale");
    let (status, out) = run(&files, DB_LOG_PLAN, &event, Some(&grants), &[]);
    assert_eq!(status, 2, "{out:#}");
    assert_eq!(out["error"]["kind"], "invalid-grants", "{out:#}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(message.contains("alow_private"), "{message}");
    assert!(message.contains("tenants.local.ceiling"), "{message}");
}

/// examples/plans/sms-once-a-day.yaml as written (its gateway on this test's port), run by
/// `coda run` on one database with examples/grants.yaml: the first call of a number is
/// texted, a second within 24 hours is not, one past the window is again, and another
/// number is its own.
#[test]
fn the_sms_once_a_day_example_texts_a_number_once_in_24_hours() {
    let rt = servers();
    let gateway = rt
        .block_on(coda_testkit::SmsGateway::start(Default::default()))
        .unwrap();
    let files = Files::new();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let example = std::fs::read_to_string(format!("{root}/examples/plans/sms-once-a-day.yaml"))
        .unwrap()
        .replace("http://127.0.0.1:8025", &gateway.url());
    let grants = format!("{root}/examples/grants.yaml");
    let db = files.path("coda.db");
    let call = |interaction: &str, clid: &str, at: &str| {
        let event = files.write(
            &format!("{interaction}.json"),
            &json!({"interaction": interaction, "outcome": "completed", "data": {"CLID": clid}})
                .to_string(),
        );
        let (status, out) = run(
            &files,
            &example,
            &event,
            Some(&grants),
            &["--db", &db, "--at", at],
        );
        assert_eq!(status, 0, "{out:#}");
        out
    };
    let first = call("int-1", "+15550100", "2026-11-02T09:00:00Z");
    assert_eq!(
        first["journal"][0]["result"],
        json!({"exit": "allowed"}),
        "{first:#}"
    );
    assert_eq!(
        first["journal"][1]["result"],
        json!({"exit": "sent"}),
        "{first:#}"
    );
    assert_eq!(first["data"]["ContactCount"], 1);
    // The count is the kv capability's, journaled as an effect of its step.
    assert_eq!(first["effects"][0]["kind"], "kv", "{first:#}");

    let second = call("int-2", "+15550100", "2026-11-03T08:59:00Z");
    assert_eq!(
        second["journal"][0]["result"],
        json!({"exit": "limited"}),
        "{second:#}"
    );
    assert_eq!(
        second["data"]["SmsSkipped"],
        "texted within the last 24 hours"
    );
    let other = call("int-3", "+15550111", "2026-11-03T08:59:00Z");
    assert_eq!(
        other["journal"][0]["result"],
        json!({"exit": "allowed"}),
        "{other:#}"
    );
    let next_day = call("int-4", "+15550100", "2026-11-03T09:00:00Z");
    assert_eq!(
        next_day["journal"][0]["result"],
        json!({"exit": "allowed"}),
        "{next_day:#}"
    );

    let texted: Vec<String> = gateway.deliveries().into_iter().map(|d| d.to).collect();
    assert_eq!(texted, ["+15550100", "+15550111", "+15550100"]);
}
