//! Platform intake through a real `coda serve`: a Twilio TaskRouter Workspace's callbacks,
//! signed over the URL the server is reached at, start an interaction and, at its wrap-up,
//! the post-interaction run of its live plan, once however often the callback comes; an
//! unsigned one stores nothing. The payloads are coda-intake's documented test data.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use crate::serve::{self, OPERATOR};

fn testdata(name: &str) -> String {
    let path = format!(
        "{}/../intake/testdata/twilio/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A form POST as Twilio sends it: (status, answer).
fn post_form(address: &str, path: &str, body: &str, signature: Option<&str>) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).expect("connecting to coda serve");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(signature) = signature {
        request.push_str(&format!("X-Twilio-Signature: {signature}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn twilio_callbacks_start_one_run_through_a_real_server() {
    let data = tempfile::tempdir().unwrap();
    let server = serve::start(data.path(), Some(OPERATOR));
    let token = server.create_tenant("acme");
    let (status, body) = server.call(
        "PUT",
        "/v1/operator/tenants/acme/ceiling",
        Some(OPERATOR),
        Some(&json!({ "ceiling": { "max_secrets": 2 } }).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.call(
        "PUT",
        "/v1/secrets/twilio-token",
        Some(&token),
        Some(&json!({ "value": "workspace-auth-token" }).to_string()),
    );
    assert_eq!(status, 204, "{body}");
    let set = |name: &str| json!({"applet": "set-data@0.1.0", "config": {"set": [{"name": name, "value": "yes"}]}});
    for plan in [
        json!({"name": "after", "type": "unattended", "start": "a", "nodes": {"a": set("Thanked")}}),
        json!({"name": "live", "type": "default", "start": "a", "post_interaction": "after",
            "nodes": {"a": set("Greeted")}}),
    ] {
        let name = plan["name"].as_str().unwrap().to_owned();
        let (status, body) = server.call(
            "PUT",
            &format!("/v1/plans/{name}"),
            Some(&token),
            Some(&plan.to_string()),
        );
        assert_eq!(status, 201, "{body}");
    }
    let (status, connection) = server.call(
        "PUT",
        "/v1/intake/connections/flex",
        Some(&token),
        Some(&json!({"adapter": "twilio", "secret": "twilio-token", "plan": "live"}).to_string()),
    );
    assert_eq!(status, 200, "{connection}");
    let path = connection["path"].as_str().unwrap().to_owned();
    let url = format!("http://{}{path}", server.address);
    let sign = |body: &str| {
        coda_intake::auth::sign_twilio_form(&url, body.as_bytes(), "workspace-auth-token").unwrap()
    };

    let created = testdata("task-created.txt");
    let (status, body) = post_form(&server.address, &path, &created, None);
    assert_eq!(status, 403, "{body}");
    let (status, body) = post_form(&server.address, &path, &created, Some(&sign("EventType=x")));
    assert_eq!(status, 403, "{body}");
    let (status, _) = server.call("GET", "/v1/interactions", Some(&token), None);
    assert_eq!(status, 200);

    let (status, body) = post_form(&server.address, &path, &created, Some(&sign(&created)));
    assert_eq!(status, 200, "{body}");
    let wrapup = testdata("task-wrapup.txt");
    let (status, first) = post_form(&server.address, &path, &wrapup, Some(&sign(&wrapup)));
    assert_eq!(status, 200, "{first}");
    let (status, again) = post_form(&server.address, &path, &wrapup, Some(&sign(&wrapup)));
    assert_eq!(status, 200, "{again}");
    let runs = &first["applied"][0]["runs"];
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{first}");
    assert_eq!(&again["applied"][0]["runs"], runs);
    let run = server.finished_run(&token, runs[0].as_str().unwrap());
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(run["data"]["CLID"], "+15555550100");
    assert_eq!(run["data"]["Thanked"], "yes");
    server.stop();
}
