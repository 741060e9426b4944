//! Outbound webhooks against a real receiver: `coda serve` sends a tenant's run events to
//! `tests/webhooks/receiver.py`, which verifies each with the Standard Webhooks reference
//! library from PyPI (an implementation independent of coda's), answers 500, times out and
//! closes the connection on chosen requests, and reports what it received. Every event
//! must arrive, in order per run; a rotation's two secrets both verify during its window;
//! redeliveries arrive again; another tenant's webhook is a 404; a `coda serve` killed
//! with SIGKILL mid-delivery, and again right after acknowledging events, loses none; and two
//! nodes on one PostgreSQL database send each delivery once, one taking over the claims of
//! the other when it is killed.
//!
//! `./dev test` installs the library into `target/tools/webhooks` (a venv, pinned by
//! `tests/webhooks/requirements.txt`); a missing one fails these tests, it does not skip
//! them. The kill test lives here rather than in `crash.rs`, whose hosts are `coda resume`
//! processes: deliveries are `coda serve`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{AFTER, LIVE, OPERATOR, Server, start_with};

const RECEIVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/webhooks/receiver.py"
);
const VERIFIER_PYTHON: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../target/tools/webhooks/bin/python"
);

/// The events a run of `AFTER` (three steps, done) makes, in order.
const RUN_EVENTS: [&str; 5] = [
    "coda.run.started",
    "coda.step.finished",
    "coda.step.finished",
    "coda.step.finished",
    "coda.run.done",
];

const ALL_EVENTS: [&str; 6] = [
    "run.started",
    "step.finished",
    "step.limit_hit",
    "run.done",
    "run.failed",
    "run.cancelled",
];

/// The receiver, a Python process of the test's own on a free loopback port.
struct Receiver {
    child: Child,
    address: String,
}

impl Receiver {
    fn start() -> Receiver {
        let python = std::env::var("CODA_WEBHOOK_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(VERIFIER_PYTHON));
        assert!(
            python.is_file(),
            "{} is missing: run `./dev test`, which installs the Standard Webhooks reference \
             library (tests/webhooks/requirements.txt) into target/tools/webhooks",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(RECEIVER)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the receiver said {line:?}"))
            .trim()
            .to_owned();
        Receiver {
            child,
            address: format!("127.0.0.1:{port}"),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/coda", self.address)
    }

    fn control(&self, body: Value) {
        let (status, answer) = http(&self.address, "POST", "/control", None, Some(&body));
        assert_eq!(status, 200, "{answer}");
    }

    fn state(&self) -> Value {
        http(&self.address, "GET", "/received", None, None).1
    }

    /// Waits (up to two minutes) until `done` holds of what the receiver reports.
    fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let state = self.state();
            if done(&state) {
                return state;
            }
            assert!(Instant::now() < deadline, "never {what}: {state:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request over a fresh connection; (status, body as JSON or Null).
fn http(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).expect("connecting");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"))
    };
    (status, body)
}

/// A config file for `coda serve`: quick retries and short timeouts, so a test sees the
/// faults retried and a failed delivery given up within seconds.
fn config(dir: &Path, give_up_after_ms: u64) -> String {
    let path = dir.join("serve.yaml");
    std::fs::write(
        &path,
        format!(
            "webhooks:\n  connect_timeout_ms: 1000\n  response_timeout_ms: 1000\n  \
             retry_first_ms: 200\n  retry_max_ms: 800\n  give_up_after_ms: {give_up_after_ms}\n  \
             poll_ms: 50\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn serve(data: &Path, config: &str) -> Server {
    start_with(data, Some(OPERATOR), &["--config", config])
}

/// A tenant whose ceiling lets its webhooks reach loopback, with the two plans published.
fn tenant(server: &Server, id: &str, loopback: bool) -> String {
    let token = server.create_tenant(id);
    if loopback {
        let (status, body) = server.call(
            "PUT",
            &format!("/v1/operator/tenants/{id}/ceiling"),
            Some(OPERATOR),
            Some(&json!({"ceiling": {"allow_private": ["127.0.0.0/8"]}}).to_string()),
        );
        assert_eq!(status, 200, "{body}");
    }
    for (name, text) in [("after", AFTER), ("live", LIVE)] {
        let mut stream = TcpStream::connect(&server.address).unwrap();
        let request = format!(
            "PUT /v1/plans/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/yaml\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    }
    token
}

/// Starts and ends interaction `id`; returns the run its end started.
fn call(server: &Server, token: &str, id: &str) -> String {
    for event in [
        json!({"type": "started", "interaction": id, "channel": "voice", "plan": "live"}),
        json!({"type": "ended", "interaction": id, "outcome": "resolved"}),
    ] {
        let (status, body) = server.call(
            "POST",
            "/v1/interactions/events",
            Some(token),
            Some(&event.to_string()),
        );
        assert_eq!(status, 200, "{body}");
        if let Some(run) = body["runs"][0].as_str() {
            return run.to_owned();
        }
    }
    panic!("the end of {id} started no run");
}

/// Subscribes `url` to `events`; (id, secret).
fn subscribe(server: &Server, token: &str, url: &str, events: &[&str]) -> (String, String) {
    let (status, body) = server.call(
        "POST",
        "/v1/webhooks",
        Some(token),
        Some(&json!({"url": url, "events": events}).to_string()),
    );
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (body["webhook"]["id"].as_str().unwrap().to_owned(), secret)
}

/// The receipts of `run`'s events, in the order they arrived.
fn receipts<'a>(state: &'a Value, run: &str) -> Vec<&'a Value> {
    state["received"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"]["subject"] == run)
        .collect()
}

/// Every event of each run arrived, none before an earlier one of its run: in the order
/// of arrival each run's positions never go back (a repeat of the latest is at least
/// once), and the distinct ones are the run's events in order.
fn check_in_order(state: &Value, runs: &[String]) {
    for run in runs {
        let got = receipts(state, run);
        let positions: Vec<u64> = got
            .iter()
            .map(|r| {
                let id = r["event"]["id"].as_str().unwrap();
                id.rsplit(':').next().unwrap().parse().unwrap()
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] <= w[1]),
            "run {run}'s events arrived out of order: {positions:?}"
        );
        let mut seen = BTreeSet::new();
        let types: Vec<&str> = got
            .iter()
            .filter(|r| seen.insert(r["event"]["id"].as_str().unwrap().to_owned()))
            .map(|r| r["event"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, RUN_EVENTS, "run {run}");
    }
}

/// Whether every run's distinct events have all arrived.
fn all_arrived(state: &Value, runs: &[String]) -> bool {
    runs.iter().all(|run| {
        let ids: BTreeSet<&str> = receipts(state, run)
            .iter()
            .map(|r| r["event"]["id"].as_str().unwrap())
            .collect();
        ids.len() == RUN_EVENTS.len()
    })
}

fn deliveries(server: &Server, token: &str, webhook: &str) -> Vec<Value> {
    let (status, body) = server.call(
        "GET",
        &format!("/v1/webhooks/{webhook}/deliveries?limit=1000"),
        Some(token),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

#[test]
fn webhooks_arrive_signed_in_order_through_faults_rotation_and_redelivery() {
    let data = tempfile::tempdir().unwrap();
    let config = config(data.path(), 3_000);
    let server = serve(data.path(), &config);
    let receiver = Receiver::start();
    let acme = tenant(&server, "acme", true);
    let globex = tenant(&server, "globex", false);

    // The address rule is the http capability's: a tenant whose ceiling allows no private
    // range may not name a loopback address, and a name that resolves to one is refused
    // at each delivery.
    let (status, body) = server.call(
        "POST",
        "/v1/webhooks",
        Some(&globex),
        Some(&json!({"url": receiver.url(), "events": ["run.done"]}).to_string()),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["kind"], "address-not-allowed", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("loopback"),
        "{body}"
    );
    let by_name = format!(
        "http://localhost:{}/",
        receiver.address.rsplit(':').next().unwrap()
    );
    let (globex_hook, _) = subscribe(&server, &globex, &by_name, &["run.done"]);

    let (hook, first_secret) = subscribe(&server, &acme, &receiver.url(), &ALL_EVENTS);
    receiver.control(
        json!({"secrets": [first_secret], "faults": {"1": "500", "2": "timeout", "4": "close"}}),
    );
    let runs: Vec<String> = (1..=3)
        .map(|n| call(&server, &acme, &format!("call-{n}")))
        .collect();
    call(&server, &globex, "globex-1");

    let state = receiver.wait_for("every event of three runs", |s| all_arrived(s, &runs));
    check_in_order(&state, &runs);
    for receipt in state["received"].as_array().unwrap() {
        assert_eq!(receipt["verified_by"], json!([0]), "{receipt}");
        assert_eq!(
            receipt["content_type"],
            "application/cloudevents+json; charset=utf-8"
        );
        let event = &receipt["event"];
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "/tenants/acme/plans/after");
        assert!(event["time"].as_str().unwrap().ends_with('Z'), "{event}");
        assert_eq!(event["data"]["run"], event["subject"]);
    }
    assert_eq!(state["rejected"], 0, "{state:#}");
    // The log: every delivery delivered, each fault costing one more attempt, and every
    // request the receiver saw counted as an attempt.
    let log = deliveries(&server, &acme, &hook);
    assert_eq!(log.len(), 15, "{log:#?}");
    assert!(log.iter().all(|d| d["status"] == "delivered"), "{log:#?}");
    let attempts: u64 = log.iter().map(|d| d["attempts"].as_u64().unwrap()).sum();
    assert_eq!(attempts, state["requests"].as_u64().unwrap(), "{log:#?}");
    assert!(
        attempts >= 18,
        "three faults, three more attempts: {log:#?}"
    );
    assert!(
        log.iter()
            .any(|d| d["attempts"].as_u64() > Some(1) && d["last_status"] == 200),
        "{log:#?}"
    );

    // The other tenant's delivery to a name resolving to loopback is refused by the rule.
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let log = deliveries(&server, &globex, &globex_hook);
        if let Some(d) = log.iter().find(|d| d["attempts"].as_u64() > Some(0)) {
            break d.clone();
        }
        assert!(Instant::now() < deadline, "never attempted: {log:#?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        refused["last_error"].as_str().unwrap().contains("loopback"),
        "{refused:#}"
    );

    // Rotation: during the window both secrets verify every delivery; a rotation with no
    // window leaves only the newest.
    let rotate = |window: u64| {
        let (status, body) = server.call(
            "POST",
            &format!("/v1/webhooks/{hook}/rotate"),
            Some(&acme),
            Some(&json!({"previous_valid_for_ms": window}).to_string()),
        );
        assert_eq!(status, 200, "{body}");
        body
    };
    let rotated = rotate(600_000);
    assert!(
        rotated["webhook"]["previous_secret_until_ms"].is_i64(),
        "{rotated}"
    );
    let second_secret = rotated["secret"].as_str().unwrap().to_owned();
    receiver.control(json!({"secrets": [first_secret, second_secret], "faults": {}}));
    let during = vec![call(&server, &acme, "call-4")];
    let state = receiver.wait_for("the run during the rotation", |s| all_arrived(s, &during));
    for receipt in receipts(&state, &during[0]) {
        assert_eq!(receipt["verified_by"], json!([0, 1]), "{receipt}");
    }
    let third_secret = rotate(0)["secret"].as_str().unwrap().to_owned();
    receiver.control(json!({"secrets": [first_secret, second_secret, third_secret]}));
    let after = vec![call(&server, &acme, "call-5")];
    let state = receiver.wait_for("the run after the rotation", |s| all_arrived(s, &after));
    for receipt in receipts(&state, &after[0]) {
        assert_eq!(receipt["verified_by"], json!([2]), "{receipt}");
    }

    // Redelivery of one event: it arrives again, under the same webhook-id.
    let done = log
        .iter()
        .find(|d| d["run_id"] == runs[0] && d["event_type"] == "coda.run.done")
        .unwrap();
    let id = done["id"].as_str().unwrap();
    let (status, body) = server.call(
        "POST",
        &format!("/v1/webhooks/{hook}/deliveries/{id}/redeliver"),
        Some(&acme),
        None,
    );
    assert_eq!(status, 202, "{body}");
    receiver.wait_for("the redelivered event", |s| {
        s["received"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["webhook_id"] == id)
            .count()
            == 2
    });

    // A receiver that is down: the delivery is given up after the window, then sent again
    // with every failed one since a time, once the URL is right.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let (late_hook, late_secret) = subscribe(&server, &acme, &down, &["run.done"]);
    receiver.control(json!({"secrets": [third_secret, late_secret]}));
    let late = call(&server, &acme, "call-6");
    let deadline = Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let log = deliveries(&server, &acme, &late_hook);
        if let Some(d) = log.iter().find(|d| d["status"] == "failed") {
            break d.clone();
        }
        assert!(Instant::now() < deadline, "never failed: {log:#?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(failed["attempts"].as_u64() > Some(2), "{failed:#}");
    assert!(failed["last_error"].is_string(), "{failed:#}");
    let (status, body) = server.call(
        "PUT",
        &format!("/v1/webhooks/{late_hook}"),
        Some(&acme),
        Some(&json!({"url": receiver.url(), "events": ["run.done"]}).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.call(
        "POST",
        &format!("/v1/webhooks/{late_hook}/redeliver"),
        Some(&acme),
        Some(&json!({"since": "1h"}).to_string()),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["queued"], 1, "{body}");
    let state = receiver.wait_for("the failed delivery, redelivered", |s| {
        s["received"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"]["subject"] == late && r["verified_by"] == json!([1]))
    });
    assert_eq!(state["rejected"], 0, "{state:#}");

    // Another tenant's webhook is not there for it, whatever it asks.
    for (method, path, body) in [
        ("GET", format!("/v1/webhooks/{hook}"), None),
        (
            "PUT",
            format!("/v1/webhooks/{hook}"),
            Some(json!({"url": "https://example.com/", "events": ["run.done"]})),
        ),
        ("DELETE", format!("/v1/webhooks/{hook}"), None),
        ("GET", format!("/v1/webhooks/{hook}/deliveries"), None),
        (
            "POST",
            format!("/v1/webhooks/{hook}/rotate"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/v1/webhooks/{hook}/deliveries/{id}/redeliver"),
            None,
        ),
        (
            "POST",
            format!("/v1/webhooks/{hook}/redeliver"),
            Some(json!({"since": "1h"})),
        ),
    ] {
        let (status, answer) = server.call(
            method,
            &path,
            Some(&globex),
            body.map(|b| b.to_string()).as_deref(),
        );
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    let (_, listed) = server.call("GET", "/v1/webhooks", Some(&globex), None);
    let ids: Vec<&Value> = listed["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["id"])
        .collect();
    assert_eq!(ids, [&json!(globex_hook)], "{listed}");

    let (status, _) = server.call("DELETE", &format!("/v1/webhooks/{hook}"), Some(&acme), None);
    assert_eq!(status, 204);
    let (status, _) = server.call("GET", &format!("/v1/webhooks/{hook}"), Some(&acme), None);
    assert_eq!(status, 404);
    server.stop();
}

#[test]
fn webhook_deliveries_survive_sigkill_mid_delivery_and_after_acknowledged_events() {
    let data = tempfile::tempdir().unwrap();
    let config = config(data.path(), 300_000);
    let mut server = serve(data.path(), &config);
    let receiver = Receiver::start();
    let acme = tenant(&server, "acme", true);
    let (_, secret) = subscribe(&server, &acme, &receiver.url(), &ALL_EVENTS);
    // The third request is held unanswered: coda is killed while it waits for the answer.
    receiver.control(json!({"secrets": [secret], "faults": {"3": "hang"}}));
    let mut runs: Vec<String> = (1..=4)
        .map(|n| call(&server, &acme, &format!("call-{n}")))
        .collect();
    receiver.wait_for("a delivery in flight", |s| s["holding"] == 1);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    http(&receiver.address, "POST", "/release", None, None);

    // Again, right after the service acknowledged two more interactions' ends: their runs
    // may not have stepped, or their events been projected, when it dies.
    let mut server = serve(data.path(), &config);
    runs.extend((5..=6).map(|n| call(&server, &acme, &format!("call-{n}"))));
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let server = serve(data.path(), &config);
    let state = receiver.wait_for("every event of six runs", |s| all_arrived(s, &runs));
    check_in_order(&state, &runs);
    assert_eq!(state["rejected"], 0, "{state:#}");
    let per_run: BTreeMap<&str, usize> = runs
        .iter()
        .map(|run| (run.as_str(), receipts(&state, run).len()))
        .collect();
    eprintln!("webhooks across two SIGKILLs: receipts per run {per_run:?}");
    server.stop();
}

/// Two nodes on one PostgreSQL database: each delivery is sent by one node at a time (every
/// request the receiver saw is an attempt one node wrote, but for the one whose node was
/// killed mid-request), and a node killed with SIGKILL mid-delivery loses nothing: the other
/// takes its claims over once they run out.
#[test]
fn webhooks_on_two_nodes_sharing_postgresql_are_sent_once_each_and_survive_a_killed_node() {
    let db = crate::nodes::PgDatabase::create("coda_webhooks");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let config = config(dirs[0].path(), 300_000);
    let node = |i: usize| {
        let mut command = Command::new(crate::coda_bin());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--db", &db.url])
            .args(["--config", &config])
            .env("CODA_DATA_DIR", dirs[i].path())
            .env("CODA_NODE_ID", format!("node-{i}"));
        crate::serve::start_command(command, Some(OPERATOR))
    };
    let mut first = node(0);
    // One secrets key for both: the second opens the secrets the first sealed.
    std::fs::copy(
        dirs[0].path().join("secrets.key"),
        dirs[1].path().join("secrets.key"),
    )
    .unwrap();
    let second = node(1);
    let receiver = Receiver::start();
    let acme = tenant(&first, "acme", true);
    let (_, secret) = subscribe(&first, &acme, &receiver.url(), &ALL_EVENTS);
    receiver.control(json!({"secrets": [secret], "faults": {"2": "hang"}}));
    let runs: Vec<String> = (1..=6)
        .map(|n| {
            let via = if n % 2 == 0 { &first } else { &second };
            call(via, &acme, &format!("call-{n}"))
        })
        .collect();
    receiver.wait_for("a delivery in flight", |s| s["holding"] == 1);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    http(&receiver.address, "POST", "/release", None, None);

    let state = receiver.wait_for("every event of six runs", |s| all_arrived(s, &runs));
    check_in_order(&state, &runs);
    assert_eq!(state["rejected"], 0, "{state:#}");
    // Settled: every delivery delivered, each attempt written but the killed node's.
    let deadline = Instant::now() + Duration::from_secs(60);
    let hook = {
        let (_, listed) = second.call("GET", "/v1/webhooks", Some(&acme), None);
        listed["webhooks"][0]["id"].as_str().unwrap().to_owned()
    };
    let log = loop {
        let log = deliveries(&second, &acme, &hook);
        if log.len() == 30 && log.iter().all(|d| d["status"] == "delivered") {
            break log;
        }
        assert!(Instant::now() < deadline, "not all delivered: {log:#?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let attempts: u64 = log.iter().map(|d| d["attempts"].as_u64().unwrap()).sum();
    let requests = receiver.state()["requests"].as_u64().unwrap();
    assert!(
        requests == attempts || requests == attempts + 1,
        "{requests} requests for {attempts} attempts written"
    );
    second.stop();
}
