//! `coda serve` as an operator runs it: a real process on a free loopback port with its own
//! data directory, driven over HTTP (by hand, over a TCP stream: the suite needs no HTTP
//! client for a handful of requests), then stopped with SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{cache_dir, coda_bin};

pub(crate) const OPERATOR: &str = "coda_op_e2e_0123456789abcdef";

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) address: String,
    /// What it wrote to stderr up to and including the `listening on` line.
    pub(crate) banner: Vec<String>,
}

/// Starts `coda serve` on a free port with `data` as its data directory; waits until it
/// says where it listens.
pub(crate) fn start(data: &std::path::Path, operator: Option<&str>) -> Server {
    start_with(data, operator, &[])
}

/// [`start`] with more arguments for `coda serve`.
pub(crate) fn start_with(data: &std::path::Path, operator: Option<&str>, extra: &[&str]) -> Server {
    let mut command = Command::new(coda_bin());
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("CODA_DATA_DIR", data);
    start_command(command, operator)
}

/// Starts `command` (a `coda serve` with its arguments) and waits until it says where it
/// listens.
pub(crate) fn start_command(mut command: Command, operator: Option<&str>) -> Server {
    command
        .env_remove("CODA_SECRETS_KEY")
        .env("CODA_CACHE_DIR", cache_dir())
        .env_remove("CODA_OPERATOR_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = operator {
        command.env("CODA_OPERATOR_TOKEN", token);
    }
    let mut child = command.spawn().expect("starting coda serve");
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        // After the banner, the server's log goes to the test's stderr when
        // CODA_E2E_LOGS is set (for a failure to be read), else nowhere; it is read to the
        // end either way, since a server whose stderr pipe closed would fail to log.
        let show = std::env::var_os("CODA_E2E_LOGS").is_some();
        let mut listening = true;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if listening && lines.send(line.clone()).is_err() {
                listening = false;
            }
            if !listening && show {
                eprintln!("[coda serve] {line}");
            }
        }
    });
    let mut banner = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match received.recv_timeout(left) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // A start that failed says why on stdout (a JSON error).
                let mut stdout = String::new();
                if let Some(mut out) = child.stdout.take() {
                    let _ = out.read_to_string(&mut stdout);
                }
                panic!(
                    "coda serve never said where it listens; stderr: {banner:#?}; stdout: {stdout}"
                );
            }
        };
        banner.push(line.clone());
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let address = rest.split_whitespace().next().unwrap().to_owned();
            return Server {
                child,
                address,
                banner,
            };
        }
    }
}

/// The loopback gateway's credentials (coda-testkit's defaults), stored as secrets by
/// [`Server::grant_sms`].
pub(crate) const SMS_ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
pub(crate) const SMS_AUTH_TOKEN: &str = "test-auth-token";

impl Server {
    /// The tenant of `token` stores the loopback gateway's credentials as the secrets
    /// `twilio-sid` and `twilio-token` and grants the `sms` applet loopback HTTP and those
    /// secrets (its ceiling must allow them).
    pub(crate) fn grant_sms(&self, token: &str) {
        for (name, value) in [
            ("twilio-sid", SMS_ACCOUNT_SID),
            ("twilio-token", SMS_AUTH_TOKEN),
        ] {
            let (status, body) = self.call(
                "PUT",
                &format!("/v1/secrets/{name}"),
                Some(token),
                Some(&json!({ "value": value }).to_string()),
            );
            assert_eq!(status, 204, "{body}");
        }
        let (status, body) = self.call(
            "PUT",
            "/v1/grants/sms",
            Some(token),
            Some(
                &json!({"http": ["127.0.0.1:*"], "secrets": ["twilio-sid", "twilio-token"]})
                    .to_string(),
            ),
        );
        assert_eq!(status, 200, "{body}");
    }

    /// Creates tenant `id` through the operator API (the test's operator token) and
    /// returns its first token.
    pub(crate) fn create_tenant(&self, id: &str) -> String {
        let (status, body) = self.call(
            "POST",
            "/v1/operator/tenants",
            Some(OPERATOR),
            Some(&json!({ "id": id }).to_string()),
        );
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("a token").to_owned()
    }

    /// Waits (up to a minute) until run `id` of the token's tenant is done or failed, and
    /// returns it as `GET /v1/runs/{id}` shows it.
    pub(crate) fn finished_run(&self, token: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, run) = self.call("GET", &format!("/v1/runs/{id}"), Some(token), None);
            assert_eq!(status, 200, "{run}");
            if run["status"] == "done" || run["status"] == "failed" {
                return run;
            }
            assert!(Instant::now() < deadline, "the run did not finish: {run}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id, for signals.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One request; (status, body as JSON or Null).
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (status, _, body) = self.call_with_headers(method, path, token, body);
        (status, body)
    }

    /// One request; (status, headers, body as JSON or Null).
    pub(crate) fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Vec<(String, String)>, Value) {
        let mut stream = TcpStream::connect(&self.address).expect("connecting to coda serve");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.address
        );
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = body.unwrap_or("");
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"))
        };
        (status, headers, json)
    }

    /// SIGTERM; the process must exit 0 and print its summary.
    pub(crate) fn stop(mut self) -> Value {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("coda serve did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        assert!(exit.success(), "coda serve exited with {exit}: {stdout}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no JSON summary ({e}): {stdout}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A test that failed midway must not leave a server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) const LIVE: &str = r#"{"name": "live", "type": "default", "start": "greet", "post_interaction": "after",
  "nodes": {"greet": {"applet": "set-data@0.1.0", "config": {"set": [{"name": "Greeted", "value": "yes"}]}}}}"#;

pub(crate) const AFTER: &str = "name: after
type: unattended
start: stamp
nodes:
  stamp:
    applet: set-data@0.1.0
    config:
      set:
        - { name: ProcessedBy, value: coda-serve }
    exits: { next: outcome }
  outcome:
    applet: data-router@0.1.0
    config:
      rules:
        - { when: 'InteractionOutcome == \"resolved\"', exit: resolved }
    exits: { resolved: thank }
  thank:
    applet: set-data@0.1.0
    config:
      set:
        - { name: Thanked, value: yes }
";

#[test]
fn serve_takes_a_tenant_from_events_to_a_finished_run_and_stops_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), Some(OPERATOR));
    assert!(
        !server.banner.iter().any(|l| l.contains("operator token")),
        "a token from the environment is not printed: {:#?}",
        server.banner
    );
    assert_eq!(server.call("GET", "/readyz", None, None).0, 200);

    let token = server.create_tenant("acme");

    // Plans publish through the tenant API: the process's post-interaction plan first.
    let put = |name: &str, text: &str| {
        let mut stream = TcpStream::connect(&server.address).unwrap();
        let request = format!(
            "PUT /v1/plans/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let published = put("after", AFTER);
    assert!(published.starts_with("HTTP/1.1 201"), "{published}");
    let published = put("live", LIVE);
    assert!(published.starts_with("HTTP/1.1 201"), "{published}");

    let started = json!({"type": "started", "interaction": "call-1", "channel": "voice", "plan": "live",
        "data": {"CLID": "+15550100"}});
    let (status, body) = server.call(
        "POST",
        "/v1/interactions/events",
        Some(&token),
        Some(&started.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let ended = json!({"type": "ended", "interaction": "call-1", "outcome": "resolved"});
    let (status, body) = server.call(
        "POST",
        "/v1/interactions/events",
        Some(&token),
        Some(&ended.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let run_id = body["runs"][0]
        .as_str()
        .expect("the end started a run")
        .to_owned();

    let run = server.finished_run(&token, &run_id);
    assert_eq!(run["status"], "done", "{run:#}");
    assert_eq!(run["data"]["ProcessedBy"], "coda-serve");
    assert_eq!(run["data"]["Thanked"], "yes");
    assert_eq!(run["data"]["CLID"], "+15550100");
    let nodes: Vec<&str> = run["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["stamp", "outcome", "thank"]);

    let summary = server.stop();
    assert_eq!(summary["stopped"], true, "{summary}");
    assert_eq!(summary["steps"], 3, "{summary}");

    // Without the environment's token: the first start makes one and prints it once...
    let server = start(data.path(), None);
    let line = server
        .banner
        .iter()
        .find(|l| l.contains("operator token"))
        .unwrap_or_else(|| panic!("no operator token printed: {:#?}", server.banner));
    let generated = line.rsplit(' ').next().unwrap().to_owned();
    assert!(generated.starts_with("coda_op_"), "{line}");
    let (status, body) = server.call(
        "POST",
        "/v1/operator/tenants",
        Some(&generated),
        Some(r#"{"id": "beta"}"#),
    );
    assert_eq!(status, 201, "{body}");
    // ... the data of the earlier start is all there ...
    let (status, _) = server.call("GET", &format!("/v1/runs/{run_id}"), Some(&token), None);
    assert_eq!(status, 200);
    server.stop();
    // ... and a later start prints none, and takes the same token.
    let server = start(data.path(), None);
    assert!(
        !server.banner.iter().any(|l| l.contains("operator token")),
        "{:#?}",
        server.banner
    );
    let (status, body) = server.call(
        "POST",
        "/v1/operator/tenants/beta/tokens",
        Some(&generated),
        None,
    );
    assert_eq!(status, 201, "{body}");
    server.stop();
}

/// Issue 15: one meaning of "the interaction ended". `coda run` once built the completed
/// interaction by hand and gave its run a `Channel` data source the service never gives;
/// now it goes through the service's event path, so a run started by `coda run` from an
/// event sees exactly the data sources `coda serve` gives the same interaction's
/// post-interaction process.
#[test]
fn coda_run_and_the_service_give_an_ended_interaction_the_same_data_sources() {
    const PROCESS: &str = "name: after
type: unattended
start: stamp
nodes:
  stamp:
    applet: set-data@0.1.0
    config:
      set:
        - { name: Stamped, value: yes }
";
    let data = json!({"CLID": "+15550100", "Language": "en-US", "InteractionId": "not-this"});

    let files = crate::run::Files::new();
    let plan = files.write("after.yaml", PROCESS);
    let event = files.write(
        "event.json",
        &json!({"interaction": "chat-7", "channel": "chat", "outcome": "resolved", "data": data})
            .to_string(),
    );
    let (status, local) = crate::coda(&["run", &plan, "--event", &event]);
    assert_eq!(status, 0, "{local:#}");

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some(OPERATOR));
    let token = server.create_tenant("acme");
    for (name, text) in [("after", PROCESS), ("live", LIVE)] {
        let mut stream = TcpStream::connect(&server.address).unwrap();
        let request = format!(
            "PUT /v1/plans/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    }
    let mut run_id = None;
    for event in [
        json!({"type": "started", "interaction": "chat-7", "channel": "chat", "plan": "live", "data": data}),
        json!({"type": "ended", "interaction": "chat-7", "outcome": "resolved"}),
    ] {
        let (status, body) = server.call(
            "POST",
            "/v1/interactions/events",
            Some(&token),
            Some(&event.to_string()),
        );
        assert_eq!(status, 200, "{body}");
        run_id = body["runs"][0].as_str().map(str::to_owned);
    }
    let run_id = run_id.expect("the end started a run");
    let served = server.finished_run(&token, &run_id);
    server.stop();

    assert_eq!(local["status"], "done", "{local:#}");
    assert_eq!(served["status"], "done", "{served:#}");
    assert_eq!(
        local["data"], served["data"],
        "local: {local:#}\nserved: {served:#}"
    );
    assert_eq!(local["data"]["InteractionId"], "chat-7");
    assert_eq!(local["data"]["InteractionOutcome"], "resolved");
    assert!(local["data"].get("Channel").is_none(), "{local:#}");
}

/// The service's grants and secrets, end to end: a tenant's plan using the `sms` applet is
/// refused until the tenant grants it what it declares it needs, within the ceiling the
/// operator set; then a run texts through a Twilio-speaking gateway with the credentials the
/// tenant stored as secrets, which the database holds only sealed.
#[test]
fn grants_and_secrets_set_through_the_api_let_the_sms_applet_reach_its_gateway() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let gateway = rt
        .block_on(coda_testkit::SmsGateway::start(Default::default()))
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let applets = crate::run::applets_dir();
    let server = start_with(
        data.path(),
        Some(OPERATOR),
        &["--applets", applets.to_str().unwrap()],
    );
    assert!(
        server.banner.iter().any(|l| l.contains("secrets.key")),
        "a generated key is announced: {:#?}",
        server.banner
    );
    let token = server.create_tenant("acme");
    let call = |method: &str, path: &str, body: Value| {
        let body = (!body.is_null()).then(|| body.to_string());
        server.call(method, path, Some(&token), body.as_deref())
    };

    let sms = json!({
        "name": "texts", "type": "unattended", "start": "text",
        "nodes": {"text": {"applet": "sms@0.1.0", "config": {
            "base_url": gateway.url(), "from": "+15550123", "to": "{{ CLID }}",
            "body": "Thanks {{ CustomerName }}, order {{ OrderId }} is confirmed.",
            "account_sid_secret": "twilio-sid", "auth_token_secret": "twilio-token"}}}
    });
    let live = json!({
        "name": "live", "type": "default", "start": "greet", "post_interaction": "texts",
        "nodes": {"greet": {"applet": "set-data@0.1.0",
            "config": {"set": [{"name": "Greeted", "value": "yes"}]}}}
    });
    let (status, body) = call("PUT", "/v1/plans/texts", sms.clone());
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("node `text` uses sms@0.1.0, which needs http, secrets")
            && message.contains("PUT /v1/grants/sms"),
        "{message}"
    );

    // The operator's ceiling, then the tenant's secrets and grant within it.
    let (status, body) = server.call(
        "PUT",
        "/v1/operator/tenants/acme/ceiling",
        Some(OPERATOR),
        Some(
            &json!({"ceiling": {"http_hosts": ["127.0.0.1:*"], "allow_private": ["127.0.0.0/8"],
                "max_secrets": 2}})
            .to_string(),
        ),
    );
    assert_eq!(status, 200, "{body}");
    server.grant_sms(&token);
    let (status, body) = call("PUT", "/v1/plans/texts", sms);
    assert_eq!(status, 201, "{body}");
    let (status, body) = call("PUT", "/v1/plans/live", live);
    assert_eq!(status, 201, "{body}");

    let started = json!({"type": "started", "interaction": "call-1", "channel": "voice",
        "plan": "live", "data": {"CLID": "+15550100", "CustomerName": "Ada", "OrderId": "A-17"}});
    let (status, body) = call("POST", "/v1/interactions/events", started);
    assert_eq!(status, 200, "{body}");
    let ended = json!({"type": "ended", "interaction": "call-1", "outcome": "sale"});
    let (status, body) = call("POST", "/v1/interactions/events", ended);
    assert_eq!(status, 200, "{body}");
    let run_id = body["runs"][0].as_str().expect("a run").to_owned();
    let run = server.finished_run(&token, &run_id);
    assert_eq!(
        run["journal"][0]["result"],
        json!({"exit": "sent"}),
        "{run:#}"
    );
    let deliveries = gateway.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0].to, "+15550100");
    assert_eq!(deliveries[0].body, "Thanks Ada, order A-17 is confirmed.");
    assert!(!run.to_string().contains(SMS_AUTH_TOKEN), "{run}");

    // Revoking the grant: the next run's call is refused at run time, `not-granted`.
    let (status, _) = call("DELETE", "/v1/grants/sms", Value::Null);
    assert_eq!(status, 204);
    let (status, body) = call(
        "POST",
        "/v1/interactions/events",
        json!({"type": "started", "interaction": "call-2", "channel": "voice", "plan": "live",
            "data": {"CLID": "+15550111", "CustomerName": "Grace", "OrderId": "B-2"}}),
    );
    assert_eq!(status, 200, "{body}");
    let (_, body) = call(
        "POST",
        "/v1/interactions/events",
        json!({"type": "ended", "interaction": "call-2", "outcome": "sale"}),
    );
    let run_id = body["runs"][0].as_str().expect("a run").to_owned();
    let run = server.finished_run(&token, &run_id);
    assert!(
        run["journal"][0]["result"]
            .to_string()
            .contains("not-granted")
            || run["journal"][0]["result"]
                .to_string()
                .contains("not granted"),
        "{run:#}"
    );
    assert_eq!(gateway.deliveries().len(), 1);

    server.stop();
    for file in ["coda.db", "coda.db-wal"] {
        if let Ok(bytes) = std::fs::read(data.path().join(file)) {
            assert!(
                !bytes
                    .windows(SMS_AUTH_TOKEN.len())
                    .any(|w| w == SMS_AUTH_TOKEN.as_bytes()),
                "{file} holds the auth token in plaintext"
            );
        }
    }
}
