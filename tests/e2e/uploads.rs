//! A tenant's own applet in a real `coda serve`: uploaded over the API, used by a published
//! plan, run when an interaction ends; retired, it still runs for the plan version that
//! uses it; and after a restart it runs from the database, not from memory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use coda_applet_artifacts as artifacts;
use serde_json::{Value, json};

use crate::serve::{OPERATOR, Server, start};

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

fn live() -> String {
    r#"{"name": "live", "type": "default", "start": "greet", "post_interaction": "after",
  "nodes": {"greet": {"applet": "set-data@0.1.0", "config": {"set": [{"name": "Greeted", "value": "yes"}]}}}}"#
        .to_owned()
}

fn after(hello: &str) -> String {
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
fn interaction_runs(server: &Server, token: &str, id: &str) -> Value {
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
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, run) = server.call("GET", &format!("/v1/runs/{run_id}"), Some(token), None);
        assert_eq!(status, 200, "{run}");
        if run["status"] == "done" || run["status"] == "failed" {
            return run;
        }
        assert!(Instant::now() < deadline, "the run did not finish: {run}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_uploaded_applet_runs_in_a_published_plan_and_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), Some(OPERATOR));
    let (status, tenant) = server.call(
        "POST",
        "/v1/operator/tenants",
        Some(OPERATOR),
        Some(r#"{"id": "acme"}"#),
    );
    assert_eq!(status, 201, "{tenant}");
    let token = tenant["token"].as_str().unwrap().to_owned();
    let (status, beta) = server.call(
        "POST",
        "/v1/operator/tenants",
        Some(OPERATOR),
        Some(r#"{"id": "beta"}"#),
    );
    assert_eq!(status, 201, "{beta}");
    let beta = beta["token"].as_str().unwrap().to_owned();

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
