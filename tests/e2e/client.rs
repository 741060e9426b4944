//! The tenant CLI against a real `coda serve`: a tenant made through the operator API, then
//! only `coda` commands (plan push and list, interaction events, runs list and show), and
//! how it fails: a bad token, no token, no server at the address. And `coda serve --config`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{OPERATOR, start, start_command};
use crate::{cache_dir, coda_bin};

const EXAMPLE_PLAN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/plans/after-call.yaml"
);

const LIVE: &str = r#"{"name": "live", "type": "default", "start": "greet", "post_interaction": "after",
  "nodes": {"greet": {"applet": "set-data@0.1.0", "config": {"set": [{"name": "Greeted", "value": "yes"}]}}}}"#;

const AFTER: &str = "name: after
type: unattended
start: stamp
nodes:
  stamp:
    applet: set-data@0.1.0
    config:
      set:
        - { name: ProcessedBy, value: coda-cli }
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

/// What one `coda` command did.
struct Ran {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }

    fn ok(self) -> Self {
        assert_eq!(
            self.status, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// `coda ARGS` as a tenant runs it: the service and the token from the environment (none
/// when `None`), `stdin` piped in.
fn coda(server: &str, token: Option<&str>, args: &[&str], stdin: &str) -> Ran {
    let mut command = Command::new(coda_bin());
    command
        .args(args)
        .env("CODA_CACHE_DIR", cache_dir())
        .env("CODA_SERVER", server)
        .env_remove("CODA_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        command.env("CODA_TOKEN", token);
    }
    let mut child = command.spawn().expect("running coda");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    Ran {
        status: output.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn the_tenant_cli_publishes_plans_sends_events_and_shows_runs() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let server = start(data.path(), Some(OPERATOR));
    let url = format!("http://{}", server.address);
    let token = server.create_tenant("acme");
    let tenant_coda = |args: &[&str], stdin: &str| coda(&url, Some(&token), args, stdin);

    // The example plan's applets declare needs: refused until granted, within the ceiling
    // the operator sets.
    let ran = tenant_coda(&["plan", "push", EXAMPLE_PLAN], "");
    assert_ne!(ran.status, 0, "{}", ran.stdout);
    assert!(
        ran.stderr.contains("PUT /v1/grants/send-email"),
        "{}",
        ran.stderr
    );
    let (status, body) = server.call(
        "PUT",
        "/v1/operator/tenants/acme/ceiling",
        Some(OPERATOR),
        Some(r#"{"ceiling": {"email": true, "interactions": true, "max_secrets": 1}}"#),
    );
    assert_eq!(status, 200, "{body}");
    tenant_coda(&["grant", "set", "send-email", "--email"], "").ok();
    tenant_coda(&["grant", "set", "create-follow-up", "--interactions"], "").ok();
    let ran = tenant_coda(&["grant", "list"], "").ok();
    assert!(
        ran.stdout.contains("send-email") && ran.stdout.contains("create-follow-up"),
        "{}",
        ran.stdout
    );
    // A grant beyond the ceiling is refused, naming it.
    let ran = tenant_coda(&["grant", "set", "sms", "--http", "api.twilio.com"], "");
    assert_ne!(ran.status, 0, "{}", ran.stdout);
    assert!(ran.stderr.contains("api.twilio.com"), "{}", ran.stderr);
    // A secret from stdin; listed by name, its value never shown.
    tenant_coda(&["secret", "set", "survey-key"], "s3cret-value\n").ok();
    let ran = tenant_coda(&["secret", "list", "--json"], "").ok();
    assert!(
        ran.stdout.contains("survey-key") && !ran.stdout.contains("s3cret-value"),
        "{}",
        ran.stdout
    );

    // Plans: an example plan by its own name; the test's two, one under --name.
    let ran = tenant_coda(&["plan", "push", EXAMPLE_PLAN], "").ok();
    assert!(
        ran.stdout.contains("published after-call version 1"),
        "{}",
        ran.stdout
    );
    let after = files.path().join("after.yaml");
    std::fs::write(&after, AFTER).unwrap();
    tenant_coda(&["plan", "push", after.to_str().unwrap()], "").ok();
    let live = files.path().join("live-plan.json");
    std::fs::write(&live, LIVE).unwrap();
    let ran = tenant_coda(
        &[
            "plan",
            "push",
            live.to_str().unwrap(),
            "--name",
            "live",
            "--json",
        ],
        "",
    )
    .ok();
    assert_eq!(ran.json(), json!({"plan": "live", "version": 1}));

    let ran = tenant_coda(&["plan", "list"], "").ok();
    for name in ["after-call", "after", "live", "NAME", "VERSION"] {
        assert!(ran.stdout.contains(name), "{name}: {}", ran.stdout);
    }
    let plans = tenant_coda(&["plan", "list", "--json"], "").ok().json();
    assert_eq!(plans["plans"].as_array().unwrap().len(), 3, "{plans}");
    let ran = tenant_coda(&["plan", "show", "after", "--version", "1"], "").ok();
    assert!(
        ran.stdout.contains("# plan after version 1"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("ProcessedBy"), "{}", ran.stdout);

    // A plan the server refuses: every problem on a line of its own, exit 2.
    let broken = files.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "name: broken\ntype: unattended\nstart: a\nnodes:\n  a: {applet: nope@1.0.0, exits: {next: b}}\n",
    )
    .unwrap();
    let ran = tenant_coda(&["plan", "push", broken.to_str().unwrap()], "");
    assert_eq!(ran.status, 2, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("invalid-plan"), "{}", ran.stderr);
    let problems: Vec<&str> = ran.stderr.lines().filter(|l| l.starts_with("  ")).collect();
    assert!(problems.len() >= 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("nope"), "{}", ran.stderr);

    // Events: started from a file, ended from stdin.
    let started = files.path().join("started.json");
    std::fs::write(
        &started,
        json!({"type": "started", "interaction": "call-1", "channel": "voice", "plan": "live",
            "data": {"CLID": "+15550100"}})
        .to_string(),
    )
    .unwrap();
    let ran = tenant_coda(&["interaction", "event", started.to_str().unwrap()], "").ok();
    assert!(
        ran.stdout.contains("interaction call-1: active"),
        "{}",
        ran.stdout
    );
    let ended = json!({"type": "ended", "interaction": "call-1", "outcome": "resolved"});
    let answer = tenant_coda(&["interaction", "event", "-", "--json"], &ended.to_string())
        .ok()
        .json();
    let run_id = answer["runs"][0]
        .as_str()
        .unwrap_or_else(|| panic!("the end started no run: {answer}"))
        .to_owned();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = tenant_coda(&["runs", "show", &run_id, "--json"], "")
            .ok()
            .json();
        if run["status"] == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not finish: {run}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let ran = tenant_coda(&["runs", "list"], "").ok();
    let row = ran
        .stdout
        .lines()
        .find(|l| l.contains(&run_id))
        .unwrap_or_else(|| panic!("no row for {run_id}:\n{}", ran.stdout));
    assert!(
        row.contains("after") && row.contains("done") && row.contains("call-1"),
        "{row}"
    );
    let runs = tenant_coda(&["runs", "list", "--json", "--limit", "10"], "")
        .ok()
        .json();
    assert_eq!(runs["runs"][0]["id"], run_id.as_str(), "{runs}");

    let ran = tenant_coda(&["runs", "show", &run_id], "").ok();
    let journal = ran
        .stdout
        .split("journal:")
        .nth(1)
        .unwrap_or_else(|| panic!("no journal:\n{}", ran.stdout));
    let at = |node: &str| {
        journal
            .find(&format!(" {node} "))
            .unwrap_or_else(|| panic!("no step {node}:\n{journal}"))
    };
    assert!(
        at("stamp") < at("outcome") && at("outcome") < at("thank"),
        "{journal}"
    );
    assert!(journal.contains("exit resolved"), "{journal}");
    assert!(
        ran.stdout.contains("coda-cli"),
        "the run's data: {}",
        ran.stdout
    );

    let ran = tenant_coda(&["interaction", "show", "call-1"], "").ok();
    assert!(ran.stdout.contains("completed"), "{}", ran.stdout);

    // Filters: each one that matches finds the run, one that does not finds nothing.
    for filter in [
        &["--plan", "after"][..],
        &["--status", "done"],
        &["--interaction", "call-1"],
        &["--since", "1h"],
    ] {
        let mut args = vec!["runs", "list", "--json"];
        args.extend_from_slice(filter);
        let runs = tenant_coda(&args, "").ok().json();
        assert_eq!(runs["runs"][0]["id"], run_id.as_str(), "{filter:?}: {runs}");
    }
    let ran = tenant_coda(&["runs", "list", "--status", "failed"], "").ok();
    assert!(ran.stdout.contains("no runs"), "{}", ran.stdout);
    let ran = tenant_coda(&["runs", "list", "--status", "sideways"], "");
    assert_eq!(ran.status, 1);
    assert!(ran.stderr.contains("invalid-query"), "{}", ran.stderr);

    // The tail of a finished run: its steps, then its end.
    let ran = tenant_coda(&["runs", "tail", &run_id], "").ok();
    for node in ["stamp", "outcome", "thank", &format!("run {run_id}: done")] {
        assert!(ran.stdout.contains(node), "{node}: {}", ran.stdout);
    }
    // Cancel and retry of a run that is done: the server's refusals.
    let ran = tenant_coda(&["runs", "cancel", &run_id], "");
    assert_eq!(ran.status, 1);
    assert!(ran.stderr.contains("run-finished"), "{}", ran.stderr);
    let ran = tenant_coda(&["runs", "retry", &run_id], "");
    assert_eq!(ran.status, 1);
    assert!(ran.stderr.contains("run-not-failed"), "{}", ran.stderr);

    // Validation on the server, with a token at hand: nothing stored.
    let ran = tenant_coda(&["plan", "validate", after.to_str().unwrap()], "").ok();
    assert!(ran.stdout.contains("valid"), "{}", ran.stdout);
    let ran = tenant_coda(&["plan", "validate", broken.to_str().unwrap()], "");
    assert_eq!(ran.status, 2, "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.lines().filter(|l| l.starts_with("  ")).count() >= 2,
        "{}",
        ran.stderr
    );
    let ran = tenant_coda(&["plan", "show", "broken"], "");
    assert_eq!(ran.status, 1, "validate stored nothing: {}", ran.stdout);

    // A second version of `after`, its versions and the diff.
    std::fs::write(&after, AFTER.replace("value: yes", "value: very")).unwrap();
    let ran = tenant_coda(&["plan", "push", after.to_str().unwrap()], "").ok();
    assert!(ran.stdout.contains("version 2"), "{}", ran.stdout);
    let versions = tenant_coda(&["plan", "versions", "after", "--json"], "")
        .ok()
        .json();
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );
    let ran = tenant_coda(&["plan", "diff", "after", "1", "2"], "").ok();
    assert!(
        ran.stdout.contains("~ node thank: config"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("very"), "{}", ran.stdout);

    // The server's refusals: its kind and message, exit 1.
    let ran = tenant_coda(&["runs", "show", "run-that-is-not"], "");
    assert_eq!(ran.status, 1);
    assert!(
        ran.stderr.contains("unknown-run") && ran.stderr.contains("run-that-is-not"),
        "{}",
        ran.stderr
    );
    let ran = coda(&url, Some("coda_not_a_token"), &["runs", "list"], "");
    assert_eq!(ran.status, 1, "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("unauthorized") && ran.stderr.contains("not a live tenant token"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("coda_not_a_token"), "{}", ran.stderr);
    let ran = coda(
        &url,
        Some("coda_not_a_token"),
        &["runs", "list", "--json"],
        "",
    );
    assert_eq!(ran.status, 1);
    assert_eq!(ran.json()["error"]["kind"], "unauthorized");

    // No token: a usage error naming the variable, and no request made.
    let ran = coda(&url, None, &["plan", "list"], "");
    assert_eq!(ran.status, 2, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("CODA_TOKEN"), "{}", ran.stderr);

    // Another tenant sees none of it.
    let other = server.create_tenant("globex");
    let ran = coda(&url, Some(&other), &["runs", "list"], "").ok();
    assert!(ran.stdout.contains("no runs"), "{}", ran.stdout);
    let ran = coda(&url, Some(&other), &["runs", "show", &run_id], "");
    assert_eq!(ran.status, 1);
    assert!(ran.stderr.contains("unknown-run"), "{}", ran.stderr);

    server.stop();
}

#[test]
fn an_unreachable_server_is_named() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let ran = coda(&url, Some("coda_token"), &["runs", "list"], "");
    assert_eq!(ran.status, 1, "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("unreachable") && ran.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        ran.stderr
    );
}

#[test]
fn serve_takes_its_settings_from_a_config_file_and_refuses_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.yaml");
    // Relative paths are the file's: the database lands in DIR/data.
    std::fs::write(
        &config,
        "listen: 127.0.0.1:0\ndata_dir: data\nlog_format: json\nscheduler: {batch: 16, max_attempts: 2}\n",
    )
    .unwrap();
    let mut command = Command::new(coda_bin());
    command
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("CODA_DATA_DIR");
    let server = start_command(command, Some(OPERATOR));
    assert!(
        dir.path().join("data").join("coda.db").exists(),
        "{:#?}",
        server.banner
    );
    assert_eq!(server.call("GET", "/readyz", None, None).0, 200);
    server.stop();

    // A flag wins over the file.
    let mut command = Command::new(coda_bin());
    command
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(["--db", dir.path().join("other.db").to_str().unwrap()])
        .env_remove("CODA_DATA_DIR");
    let server = start_command(command, Some(OPERATOR));
    assert!(dir.path().join("other.db").exists());
    server.stop();

    std::fs::write(
        &config,
        "listen: 127.0.0.1:0\nscheduler: {tenant_concurency: 4}\n",
    )
    .unwrap();
    let output = Command::new(coda_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("CODA_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["kind"], "invalid-config", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("scheduler") && message.contains("tenant_concurency"),
        "{message}"
    );
}
