//! `coda serve --log-format json` as an operator runs it: every log line on stderr is one
//! JSON object, the request log names method, path and status and never a token, and
//! `/metrics` answers without a token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{cache_dir, coda_bin};

const OPERATOR: &str = "coda_op_e2e_ops_0123456789abcdef";

/// One request over a fresh connection; (status, body).
fn get(address: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connecting to coda serve");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{auth}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

#[test]
fn serve_logs_json_lines_and_serves_metrics_without_a_token() {
    let data = tempfile::tempdir().unwrap();
    let stderr_path = data.path().join("stderr.log");
    let mut child = Command::new(coda_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("CODA_CACHE_DIR", cache_dir())
        .env("CODA_DATA_DIR", data.path())
        .env("CODA_OPERATOR_TOKEN", OPERATOR)
        .env("CODA_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("starting coda serve");
    let deadline = Instant::now() + Duration::from_secs(120);
    let address = loop {
        let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if let Some(rest) = text.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("coda serve never said where it listens: {text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    let (status, metrics) = get(&address, "/metrics", None);
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.contains("# TYPE coda_runs gauge"), "{metrics}");
    assert!(metrics.contains("coda_step_duration_seconds"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    let (status, _) = get(&address, "/v1/plans", Some(OPERATOR));
    assert_eq!(status, 401);
    let (status, usage) = get(&address, "/v1/usage?since=nonsense", Some(OPERATOR));
    assert_eq!(status, 401, "{usage}");

    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}");

    // Every line but the banners (plain text on purpose: a person reads them) is JSON.
    let text = std::fs::read_to_string(&stderr_path).unwrap();
    let logs: Vec<Value> = text
        .lines()
        .filter(|line| !line.starts_with("coda serve:"))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let requests: Vec<&Value> = logs.iter().filter(|l| l["message"] == "request").collect();
    assert_eq!(requests.len(), 3, "{text}");
    assert_eq!(requests[0]["path"], "/metrics");
    assert_eq!(requests[0]["status"], 200);
    assert_eq!(requests[1]["status"], 401);
    assert!(requests.iter().all(|r| r["level"] == "INFO"), "{text}");
    assert!(!text.contains(OPERATOR), "a token reached the log: {text}");
}
