//! The fault suite's single-node cases for the applets that reach out: an SMTP server that is
//! down, answers "try later" (4xx) or refuses for good (5xx); an HTTP gateway that is slow,
//! failing (500) or throttling (429 with Retry-After). Each runs `coda run` with the real
//! applets against a testkit server told how to misbehave, and counts at that server: every
//! attempt of a step carries the same idempotency key (the SMS token, the mail's
//! Message-ID), a retryable failure is retried with backoff up to the attempt limit, and then
//! dead-lettered: the run takes the node's error exit, the reason in `LastError` and in the
//! step journal naming the cause and the attempts.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::run::{Files, applets_dir, notes};

/// A tokio runtime for the loopback servers; the `coda` process runs on the test's thread.
fn servers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

const SID: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "test-auth-token";
/// The attempt limit `coda run` applies (`FlowLimits::default().max_attempts`).
const ATTEMPTS: usize = 3;

/// Grants for send-email (SMTP on `smtp_port`) and sms, the http capability's timeout at
/// `http_timeout_ms`.
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
    smtp: {{ host: 127.0.0.1, port: {smtp_port}, tls: none, timeout_ms: 5000, from: "Acme Support <support@acme.example>" }}
    secrets: {{ twilio_sid: "{SID}", twilio_token: "{TOKEN}" }}
"#
        ),
    )
}

fn event(files: &Files) -> String {
    files.write(
        "event.json",
        &json!({
            "interaction": "int-fault",
            "channel": "voice",
            "outcome": "resolved",
            "data": { "CLID": "+15550100", "CustomerName": "Ada", "OrderId": "A-17" }
        })
        .to_string(),
    )
}

/// The plan: one sending node whose error exit goes to `dead` (the dead letter), which
/// echoes.
fn plan(node: &str) -> String {
    format!(
        "name: fault\ntype: unattended\nstart: send\nnodes:\n  send:\n{node}    error: dead\n  dead:\n    applet: echo@0.1.0\n"
    )
}

fn mail_node() -> String {
    "    applet: send-email@0.1.0\n    config:\n      to: [\"ada@example.com\"]\n      subject: \"Order {{ OrderId }}\"\n      text: \"Hello {{ CustomerName }}\"\n".into()
}

fn sms_node(base_url: &str) -> String {
    format!(
        "    applet: sms@0.1.0\n    config:\n      base_url: \"{base_url}\"\n      from: \"+15550123\"\n      to: \"{{{{ CLID }}}}\"\n      body: \"Order {{{{ OrderId }}}} confirmed\"\n      account_sid_secret: twilio_sid\n      auth_token_secret: twilio_token\n"
    )
}

/// `coda run` on the virtual clock (backoff waits cost no wall time).
fn run(files: &Files, plan: &str, grants: &str, extra: &[&str]) -> (i32, Value) {
    let plan = files.write("plan.yaml", plan);
    let event = event(files);
    let applets = applets_dir();
    let mut args = vec![
        "run",
        plan.as_str(),
        "--event",
        event.as_str(),
        "--applets",
        applets.to_str().unwrap(),
        "--grants",
        grants,
    ];
    if !extra.contains(&"--clock") {
        args.extend(["--clock", "virtual"]);
    }
    args.extend_from_slice(extra);
    crate::coda(&args)
}

fn attempts(run: &Value) -> Vec<u64> {
    run["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["attempt"].as_u64().unwrap())
        .collect()
}

/// The dead letter: the sending node tried `ATTEMPTS` times, then the error exit was taken
/// with `LastError` naming `cause` and the attempts, and the journal saying the same.
fn assert_dead_lettered(run: &Value, cause: &str) {
    assert_eq!(run["status"], "done", "{run:#}");
    let nodes: Vec<&str> = run["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["send", "send", "send", "dead"], "{run:#}");
    assert_eq!(attempts(run), [1, 2, 3, 1], "{run:#}");
    let last_error = &run["data"]["LastError"];
    assert_eq!(last_error["node"], "send", "{run:#}");
    let message = last_error["message"].as_str().unwrap();
    assert!(message.contains(cause), "{message}");
    assert!(
        message.ends_with(&format!("gave up after {ATTEMPTS} attempts")),
        "{message}"
    );
    let notes = notes(run);
    for note in &notes[..ATTEMPTS - 1] {
        assert!(note.starts_with("retryable failure"), "{notes:?}");
    }
    assert!(
        notes[ATTEMPTS - 1].contains(cause) && notes[ATTEMPTS - 1].ends_with("→ error exit dead"),
        "{notes:?}"
    );
}

/// The retry delays the journal announces ("retry N of M in D ms").
fn delays(run: &Value) -> Vec<u64> {
    notes(run)
        .iter()
        .filter_map(|n| n.split(" in ").nth(1)?.strip_suffix(" ms")?.parse().ok())
        .collect()
}

#[test]
fn smtp_answering_4xx_is_retried_with_the_same_message_id_until_it_accepts() {
    let rt = servers();
    let smtp = rt
        .block_on(coda_testkit::SmtpServer::start_scripted(
            0,
            coda_testkit::SmtpMode::Accept,
            None,
            vec![451, 452],
        ))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, smtp.port(), 2_000);
    let (status, out) = run(&files, &plan(&mail_node()), &grants, &[]);
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(attempts(&out), [1, 2, 3], "{out:#}");
    assert_eq!(out["journal"][2]["result"], json!({"exit": "sent"}));
    // Backoff: 1 s, then 2 s.
    assert_eq!(delays(&out), [1_000, 2_000], "{out:#}");
    assert!(
        out["journal"][0]["result"].to_string().contains("451"),
        "{out:#}"
    );

    let seen = smtp.attempts();
    let codes: Vec<u16> = seen.iter().map(|a| a.code).collect();
    assert_eq!(codes, [451, 452, 250]);
    let ids: BTreeSet<_> = seen.iter().map(|a| a.message_id.clone()).collect();
    assert_eq!(ids.len(), 1, "one Message-ID for every attempt: {ids:?}");
    assert!(ids.iter().all(Option::is_some));
    assert_eq!(smtp.mails().len(), 1);
}

#[test]
fn smtp_answering_4xx_every_time_is_dead_lettered_after_the_attempt_limit() {
    let rt = servers();
    let smtp = rt
        .block_on(coda_testkit::SmtpServer::start_scripted(
            0,
            coda_testkit::SmtpMode::Accept,
            None,
            vec![451; ATTEMPTS],
        ))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, smtp.port(), 2_000);
    let (status, out) = run(&files, &plan(&mail_node()), &grants, &[]);
    assert_eq!(status, 0, "{out:#}");
    assert_dead_lettered(&out, "451");
    let seen = smtp.attempts();
    assert_eq!(seen.len(), ATTEMPTS);
    let ids: BTreeSet<_> = seen.iter().map(|a| a.message_id.clone()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(smtp.mails().is_empty());
}

#[test]
fn smtp_answering_5xx_is_not_retried() {
    let rt = servers();
    let smtp = rt
        .block_on(coda_testkit::SmtpServer::start_scripted(
            0,
            coda_testkit::SmtpMode::Accept,
            None,
            vec![554],
        ))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files, smtp.port(), 2_000);
    let (status, out) = run(&files, &plan(&mail_node()), &grants, &[]);
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(
        attempts(&out),
        [1, 1],
        "one attempt, then the error exit {out:#}"
    );
    let message = out["data"]["LastError"]["message"].as_str().unwrap();
    assert!(
        message.contains("rejected") && message.contains("554"),
        "{message}"
    );
    assert!(!message.contains("gave up"), "{message}");
    assert_eq!(smtp.attempts().len(), 1);
    assert!(smtp.mails().is_empty());
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn smtp_down_is_retried_and_dead_lettered_naming_the_connection() {
    let port = free_port();
    let files = Files::new();
    let grants = grants(&files, port, 2_000);
    let (status, out) = run(&files, &plan(&mail_node()), &grants, &[]);
    assert_eq!(status, 0, "{out:#}");
    assert_dead_lettered(&out, &format!("cannot send through 127.0.0.1:{port}"));
}

#[test]
fn smtp_down_then_started_on_the_same_port_gets_the_mail_once() {
    let port = free_port();
    let files = Files::new();
    let grants = grants(&files, port, 2_000);
    let plan = files.write("plan.yaml", &plan(&mail_node()));
    let event = event(&files);
    let db = files.path("runs.db");
    let applets = applets_dir();
    // The wall clock: the retry comes a real second after the first attempt, and the server
    // is started in between, on the port the first attempt found closed.
    let child = std::process::Command::new(crate::coda_bin())
        .args(["run", &plan, "--event", &event, "--applets"])
        .arg(&applets)
        .args(["--grants", &grants, "--db", &db, "--clock", "wall"])
        .env("CODA_CACHE_DIR", crate::cache_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let journaled = || -> i64 {
        let Ok(conn) =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            return 0;
        };
        conn.query_row("SELECT count(*) FROM steps", [], |r| r.get(0))
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while journaled() == 0 {
        assert!(std::time::Instant::now() < deadline, "no first attempt");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let rt = servers();
    let smtp = rt
        .block_on(coda_testkit::SmtpServer::start_on(
            port,
            coda_testkit::SmtpMode::Accept,
            None,
        ))
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let out: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(output.status.code(), Some(0), "{out:#}");
    assert_eq!(attempts(&out), [1, 2], "{out:#}");
    assert!(
        notes(&out)[0].starts_with("retryable failure (unavailable): retry 2 of 3"),
        "{:?}",
        notes(&out)
    );
    assert!(
        out["journal"][0]["result"]
            .to_string()
            .contains("cannot send through"),
        "{out:#}"
    );
    assert_eq!(out["journal"][1]["result"], json!({"exit": "sent"}));
    assert_eq!(smtp.mails().len(), 1);
    assert_eq!(smtp.attempts().len(), 1);
}

fn gateway(
    rt: &tokio::runtime::Runtime,
    script: Vec<coda_testkit::GatewayAnswer>,
) -> coda_testkit::SmsGateway {
    rt.block_on(coda_testkit::SmsGateway::start(
        coda_testkit::SmsGatewayConfig {
            script,
            ..Default::default()
        },
    ))
    .unwrap()
}

/// Every request the gateway saw carried the run's one key for the step.
fn assert_one_key(gateway: &coda_testkit::SmsGateway, run: &Value) {
    let keys: BTreeSet<_> = gateway.deliveries().into_iter().map(|d| d.token).collect();
    let expected = format!("{}/0", run["run"].as_str().unwrap());
    assert_eq!(keys, BTreeSet::from([Some(expected)]), "{run:#}");
}

#[test]
fn gateway_500_then_429_with_retry_after_is_dead_lettered_with_the_same_key() {
    use coda_testkit::GatewayAnswer::{Error, Throttle};
    let rt = servers();
    let gateway = gateway(
        &rt,
        vec![
            Error(500),
            Throttle {
                retry_after_secs: 30,
            },
            Throttle {
                retry_after_secs: 30,
            },
        ],
    );
    let files = Files::new();
    let grants = grants(&files, 25, 2_000);
    let (status, out) = run(&files, &plan(&sms_node(&gateway.url())), &grants, &[]);
    assert_eq!(status, 0, "{out:#}");
    assert_dead_lettered(&out, "HTTP 429");
    // 1 s of backoff after the 500; after the 429 the gateway's 30 s, longer than the 2 s
    // of backoff due.
    assert_eq!(delays(&out), [1_000, 30_000], "{out:#}");
    let statuses: Vec<u16> = gateway.deliveries().iter().map(|d| d.status).collect();
    assert_eq!(statuses, [500, 429, 429]);
    assert_one_key(&gateway, &out);
    assert_eq!(gateway.messages_created(), 0);
}

#[test]
fn gateway_slower_than_the_http_timeout_is_unavailable_and_retried_with_the_same_key() {
    use coda_testkit::GatewayAnswer::Slow;
    let rt = servers();
    let gateway = gateway(&rt, vec![Slow { millis: 1_500 }]);
    let files = Files::new();
    let grants = grants(&files, 25, 300);
    let (status, out) = run(&files, &plan(&sms_node(&gateway.url())), &grants, &[]);
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(attempts(&out), [1, 2], "{out:#}");
    assert!(
        out["journal"][0]["result"]
            .to_string()
            .contains("did not complete within 300 ms"),
        "{out:#}"
    );
    assert_eq!(out["journal"][1]["result"], json!({"exit": "sent"}));
    // The slow request is processed to its end after the host gave up on it: it finds the
    // key already answered, and creates nothing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gateway.deliveries().len() < 2 || gateway.in_flight() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow request never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_one_key(&gateway, &out);
    assert_eq!(gateway.messages_created(), 1);
    let replayed: Vec<bool> = gateway.deliveries().iter().map(|d| d.replayed).collect();
    assert_eq!(replayed, [false, true]);
    assert_eq!(
        out["data"]["SmsSid"].as_str(),
        gateway.deliveries()[0].message_sid.as_deref()
    );
}

#[test]
fn gateway_slow_every_time_is_dead_lettered_and_sends_once() {
    use coda_testkit::GatewayAnswer::Slow;
    let rt = servers();
    let gateway = gateway(&rt, vec![Slow { millis: 600 }; ATTEMPTS]);
    let files = Files::new();
    let grants = grants(&files, 25, 200);
    let (status, out) = run(&files, &plan(&sms_node(&gateway.url())), &grants, &[]);
    assert_eq!(status, 0, "{out:#}");
    assert_dead_lettered(&out, "did not complete within 200 ms");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gateway.deliveries().len() < ATTEMPTS || gateway.in_flight() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "slow requests never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_one_key(&gateway, &out);
    // The gateway did send it (the host never heard back): once, however often it was tried.
    assert_eq!(gateway.messages_created(), 1);
}
