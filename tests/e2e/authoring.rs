//! Writing applets: `coda applet test` on fixtures, a production step taken as a fixture
//! (`coda runs show ID --as-fixture`) and replayed offline and in a dry run of its flow,
//! and the new-user walkthrough of docs/applets.md, run as written.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use coda_applet_artifacts as applets;
use serde_json::{Value, json};

use crate::serve::{OPERATOR, start_with};
use crate::{cache_dir, coda, coda_bin};

/// `coda ARGS` in `dir` with the environment given; (status, stdout, stderr).
fn coda_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(coda_bin());
    command
        .args(args)
        .current_dir(dir)
        .env("CODA_CACHE_DIR", cache_dir())
        .env_remove("CODA_SERVER")
        .env_remove("CODA_TOKEN")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("running coda");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn applet_test_passes_fails_and_refuses_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("fixtures");
    std::fs::create_dir(&fixtures).unwrap();
    write(
        &fixtures,
        "a-greets.yaml",
        "data: {CustomerName: Ada}\nexpect: {outcome: {exit: greeted}, data: {Greeting: 'Hello, Ada!'}}\n",
    );
    write(
        &fixtures,
        "b-wrong.json",
        r#"{"data": {}, "expect": {"outcome": {"exit": "greeted"}}}"#,
    );
    write(&fixtures, "notes.txt", "not a fixture");

    // One passes, one fails: exit 1, and the report says what did not hold.
    let (status, json) = coda(&[
        "applet",
        "test",
        applets::HELLO,
        "--fixture",
        fixtures.to_str().unwrap(),
    ]);
    assert_eq!(status, 1, "{json:#}");
    let report = &json["error"]["report"];
    assert_eq!(report["passed"], 1, "{json:#}");
    assert_eq!(report["failed"], 1);
    assert_eq!(report["applet"], "hello@0.1.0");
    let fixtures_run = report["fixtures"].as_array().unwrap();
    assert_eq!(fixtures_run.len(), 2, "the .txt is not a fixture");
    assert_eq!(fixtures_run[0]["passed"], true);
    assert!(fixtures_run[0]["fuel_used"].as_u64().unwrap() > 0);
    assert!(fixtures_run[0]["elapsed_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        fixtures_run[1]["mismatches"],
        json!(["outcome.exit is \"anonymous\", expected \"greeted\""])
    );

    // Only the passing one: exit 0.
    let (status, json) = coda(&[
        "applet",
        "test",
        applets::HELLO,
        "--fixture",
        fixtures.join("a-greets.yaml").to_str().unwrap(),
    ]);
    assert_eq!(status, 0, "{json:#}");
    assert_eq!(json["passed"], 1);

    // A fixture that expects nothing passes on any outcome, and the author is told so.
    write(dir.path(), "smoke.yaml", "data: {CustomerName: Ada}\n");
    let expects = |fixture: &str| {
        let (status, _, err) = coda_in(
            dir.path(),
            &["applet", "test", applets::HELLO, "--fixture", fixture],
            &[],
        );
        assert_eq!(status, 0, "{err}");
        err.contains("the fixture expects nothing")
    };
    assert!(expects("smoke.yaml"));
    assert!(!expects("fixtures/a-greets.yaml"));

    // A fixture that does not parse: exit 2, naming the file and the field; nothing runs.
    let bad = write(
        dir.path(),
        "bad.yaml",
        "calls:\n  - http: {response: {status: 'two hundred'}}\n",
    );
    let (status, json) = coda(&[
        "applet",
        "test",
        applets::HELLO,
        "--fixture",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(status, 2, "{json:#}");
    assert_eq!(json["error"]["kind"], "invalid-fixture");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("bad.yaml") && message.contains("calls[0].http.response.status"),
        "{message}"
    );

    // A fixture that is not there, and a component that is not one.
    let (status, json) = coda(&[
        "applet",
        "test",
        applets::HELLO,
        "--fixture",
        "/nonexistent/f.yaml",
    ]);
    assert_eq!((status, json["error"]["kind"].as_str()), (2, Some("io")));
    let (status, json) = coda(&[
        "applet",
        "test",
        bad.to_str().unwrap(),
        "--fixture",
        fixtures.join("a-greets.yaml").to_str().unwrap(),
    ]);
    assert_eq!(status, 2, "{json:#}");
    assert_eq!(json["error"]["kind"], "invalid-component");
}

/// Compiling is bounded (60 s unless told otherwise); a large interpreter on a busy machine
/// may need more, so the bound is a flag and an environment variable.
#[test]
fn the_compile_limit_is_named_when_hit_and_can_be_raised() {
    let dir = tempfile::tempdir().unwrap();
    let describe = |flag: &[&str], env: &[(&str, &str)]| {
        let args = [
            &["--no-cache"],
            flag,
            &["applet", "describe", applets::HELLO],
        ]
        .concat();
        let (status, out, err) = coda_in(dir.path(), &args, env);
        (
            status,
            serde_json::from_str::<Value>(&out).unwrap_or(Value::Null),
            err,
        )
    };
    for (flag, env) in [
        (&["--compile-timeout-ms", "1"][..], &[][..]),
        (&[][..], &[("CODA_COMPILE_TIMEOUT_MS", "1")][..]),
    ] {
        let (status, json, _) = describe(flag, env);
        assert_eq!(status, 2, "{json:#}");
        assert_eq!(json["error"]["kind"], "compile-timeout", "{json:#}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("1 ms") && message.contains("--compile-timeout-ms"),
            "{message}"
        );
    }
    let (status, json, _) = describe(&["--compile-timeout-ms", "600000"], &[]);
    assert_eq!(
        (status, json["name"].as_str()),
        (0, Some("hello")),
        "{json:#}"
    );
    let (status, _, err) = describe(&["--compile-timeout-ms", "0"], &[]);
    assert_eq!(status, 2);
    assert!(err.contains("--compile-timeout-ms"), "{err}");

    // `coda serve` takes it from its config file too: with 1 ms, compiling the built-in
    // applets at start is over the limit, and the service says so instead of starting.
    let config = write(
        dir.path(),
        "serve.yaml",
        "compile_timeout_ms: 1\nlisten: 127.0.0.1:0\ndata_dir: data\n",
    );
    let mut serve = Command::new(coda_bin())
        .args(["--no-cache", "serve", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            serve.kill().unwrap();
            panic!("coda serve started despite a 1 ms compile limit");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut serve.stdout.take().unwrap(), &mut out).unwrap();
    assert!(!status.success());
    assert!(out.contains("compile limit of 1 ms"), "{out}");
}

/// A step of a real run on `coda serve` (the sms applet against a gateway on loopback)
/// comes out as a fixture that `coda applet test` passes offline and that answers the
/// node's calls in a dry run of the flow; another tenant cannot read it.
#[test]
fn a_production_step_becomes_a_fixture_and_replays_offline_and_in_a_dry_run() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let gateway = rt
        .block_on(coda_testkit::SmsGateway::start(Default::default()))
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let applets_dir = crate::run::applets_dir();
    let server = start_with(
        data.path(),
        Some(OPERATOR),
        &["--applets", applets_dir.to_str().unwrap()],
    );
    let token = server.create_tenant("acme");
    let other = server.create_tenant("globex");
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
    let plan = json!({
        "name": "texts", "type": "unattended", "start": "route",
        "nodes": {
            "route": {"applet": "data-router@0.1.0",
                "config": {"rules": [{"when": "has(data.OrderId)", "exit": "order"}]},
                "exits": {"order": "text"}},
            "text": {"applet": "sms@0.1.0", "config": {
                "base_url": gateway.url(), "from": "+15550123", "to": "{{ CLID }}",
                "body": "Order {{ OrderId }} is confirmed.",
                "account_sid_secret": "twilio-sid", "auth_token_secret": "twilio-token"},
                "exits": {"sent": "done"}},
            "done": {"applet": "set-data@0.1.0",
                "config": {"set": [{"name": "Confirmed", "value": "yes"}]}}}
    });
    let (status, body) = server.call(
        "PUT",
        "/v1/plans/texts",
        Some(&token),
        Some(&plan.to_string()),
    );
    assert_eq!(status, 201, "{body}");
    let live = json!({"name": "live", "type": "default", "start": "greet",
        "post_interaction": "texts",
        "nodes": {"greet": {"applet": "set-data@0.1.0",
            "config": {"set": [{"name": "Greeted", "value": "yes"}]}}}});
    let (status, body) = server.call(
        "PUT",
        "/v1/plans/live",
        Some(&token),
        Some(&live.to_string()),
    );
    assert_eq!(status, 201, "{body}");
    for event in [
        json!({"type": "started", "interaction": "call-1", "channel": "voice", "plan": "live",
            "data": {"CLID": "+15550100", "OrderId": "A-17"}}),
        json!({"type": "ended", "interaction": "call-1", "outcome": "sale"}),
    ] {
        let (status, body) = server.call(
            "POST",
            "/v1/interactions/events",
            Some(&token),
            Some(&event.to_string()),
        );
        assert_eq!(status, 200, "{body}");
        if let Some(run) = body["runs"][0].as_str() {
            let run = server.finished_run(&token, run);
            assert_eq!(run["status"], "done", "{run:#}");
        }
    }
    let (_, runs) = server.call("GET", "/v1/runs?plan=texts", Some(&token), None);
    let run_id = runs["runs"][0]["id"]
        .as_str()
        .expect("the texts run")
        .to_owned();
    assert_eq!(gateway.deliveries().len(), 1);
    // The journal keeps what each applet logged.
    let (_, run) = server.call("GET", &format!("/v1/runs/{run_id}"), Some(&token), None);
    assert_eq!(run["journal"][1]["logs"][0]["level"], "info", "{run:#}");
    assert!(
        run["journal"][1]["logs"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("sent SMS")),
        "{run:#}"
    );
    let address = format!("http://{}", server.address);
    let (status, shown, _) = coda_in(
        Path::new("."),
        &["runs", "show", &run_id],
        &[("CODA_SERVER", &address), ("CODA_TOKEN", &token)],
    );
    assert_eq!(status, 0);
    assert!(
        shown.contains("logs:") && shown.contains("info  sent SMS"),
        "{shown}"
    );

    // The tenant CLI prints the sms step (step 1) as YAML.
    let work = tempfile::tempdir().unwrap();
    let env = [
        ("CODA_SERVER", address.as_str()),
        ("CODA_TOKEN", token.as_str()),
    ];
    let (status, yaml, stderr) = coda_in(
        work.path(),
        &["runs", "show", &run_id, "--as-fixture", "--step", "1"],
        &env,
    );
    assert_eq!(status, 0, "{yaml}\n{stderr}");
    let fixture: Value = coda_types::yaml::from_str(&yaml).expect("YAML");
    assert_eq!(fixture["applet"], "sms@0.1.0", "{yaml}");
    assert_eq!(fixture["context"]["node"], "text");
    assert_eq!(fixture["data"]["OrderId"], "A-17");
    assert_eq!(fixture["expect"]["outcome"], json!({"exit": "sent"}));
    assert!(fixture["expect"]["data"]["SmsSid"].is_string(), "{yaml}");
    let call = &fixture["calls"][0]["http"];
    assert_eq!(call["response"]["status"], 201, "{yaml}");
    assert!(call.get("digest").is_none(), "made of secrets: no digest");
    // Secret values never leave the service: names with a placeholder.
    assert!(!yaml.contains(crate::serve::SMS_AUTH_TOKEN), "{yaml}");
    assert!(
        fixture["secrets"]["twilio-token"]
            .as_str()
            .unwrap()
            .contains("not exported")
    );
    // The default step is the last applet step: set-data's.
    let (status, last, _) = coda_in(
        work.path(),
        &["runs", "show", &run_id, "--as-fixture"],
        &env,
    );
    assert_eq!(status, 0);
    assert!(last.contains("set-data@0.1.0"), "{last}");

    // Offline, with test values for the secrets, the step passes as it ran.
    let mut filled = fixture.clone();
    filled["secrets"] =
        json!({"twilio-sid": "AC0000000000000000000000000000000f", "twilio-token": "test"});
    let filled = serde_yaml_ng::to_string(&filled).unwrap();
    let fixture_file = write(work.path(), "sent.fixture.yaml", &filled);
    let (status, out, stderr) = coda_in(
        work.path(),
        &[
            "applet",
            "test",
            applets::SMS,
            "--fixture",
            "sent.fixture.yaml",
        ],
        &[],
    );
    assert_eq!(status, 0, "{out}\n{stderr}");
    assert!(stderr.contains("PASS sent.fixture.yaml"), "{stderr}");

    // A dry run of the flow: the sms node's call is answered from the fixture (no
    // delivery), the router and set-data run for real, and the path is printed.
    let plan_file = write(work.path(), "texts.json", &plan.to_string());
    let event = write(
        work.path(),
        "ended.json",
        r#"{"interaction": "call-9", "data": {"CLID": "+15550100", "OrderId": "A-17"}}"#,
    );
    let (status, out, stderr) = coda_in(
        work.path(),
        &[
            "run",
            plan_file.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
            "--applets",
            applets_dir.to_str().unwrap(),
            "--dry-run",
            "--fixture",
            fixture_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(status, 0, "{out}\n{stderr}");
    let dry: Value = serde_json::from_str(&out).unwrap();
    let path: Vec<&str> = dry["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(path, ["route", "text", "done"], "{dry:#}");
    // What the applet logged is in its step.
    assert!(
        dry["path"][1]["logs"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("sent SMS")),
        "{dry:#}"
    );
    assert_eq!(dry["effects"].as_array().unwrap().len(), 1, "{dry:#}");
    assert_eq!(dry["effects"][0]["answered"], "recorded");
    assert_eq!(dry["effects"][0]["node"], "text");
    assert_eq!(
        dry["effects"][0]["request"]["headers"]["authorization"],
        "(redacted)"
    );
    assert_eq!(dry["data"]["Confirmed"], "yes");
    assert_eq!(dry["unused_recorded_calls"], json!({}));
    assert_eq!(gateway.deliveries().len(), 1, "a dry run delivers nothing");

    // With no recorded call the call is simulated (a bare 200): the sms applet finds no
    // message id, and the dry run shows the run failing there (exit 1, as `coda run`).
    let secrets_only = write(
        work.path(),
        "secrets.yaml",
        "context: {node: text}\nsecrets: {twilio-sid: AC1, twilio-token: t}\n",
    );
    let (status, out, _) = coda_in(
        work.path(),
        &[
            "run",
            plan_file.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
            "--applets",
            applets_dir.to_str().unwrap(),
            "--dry-run",
            "--fixture",
            secrets_only.to_str().unwrap(),
        ],
        &[],
    );
    let failed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status, 1, "{failed:#}");
    let dry = &failed["error"]["run"];
    assert_eq!(dry["effects"][0]["answered"], "simulated", "{failed:#}");
    assert_eq!(dry["effects"][0]["answer"]["response"]["status"], 200);
    assert_eq!(dry["status"], "failed", "{dry:#}");
    assert_eq!(gateway.deliveries().len(), 1);

    // A fixture for a node no plan has (a typo) would answer nothing: it is refused.
    let stray = write(
        work.path(),
        "stray.yaml",
        "context: {node: txet}\nsecrets: {twilio-sid: AC1}\n",
    );
    let (status, out, _) = coda_in(
        work.path(),
        &[
            "run",
            plan_file.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
            "--applets",
            applets_dir.to_str().unwrap(),
            "--dry-run",
            "--fixture",
            stray.to_str().unwrap(),
        ],
        &[],
    );
    let refused: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status, 2, "{refused:#}");
    assert_eq!(refused["error"]["kind"], "invalid-fixture");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`txet`"),
        "{refused:#}"
    );

    // With --grants, a call the grants refuse is answered as it would be, not-granted:
    // here the sms applet may reach api.twilio.com only.
    let grants = write(
        work.path(),
        "grants.yaml",
        "tenants:\n  local:\n    ceiling: {http_hosts: [api.twilio.com], secrets: [twilio-sid, twilio-token]}\n    \
         grants:\n      sms: {http: [api.twilio.com], secrets: [twilio-sid, twilio-token]}\n    \
         secrets: {twilio-sid: AC1, twilio-token: t}\n",
    );
    let (status, out, _) = coda_in(
        work.path(),
        &[
            "run",
            plan_file.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
            "--applets",
            applets_dir.to_str().unwrap(),
            "--grants",
            grants.to_str().unwrap(),
            "--dry-run",
        ],
        &[],
    );
    let failed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status, 1, "{failed:#}");
    let effect = &failed["error"]["run"]["effects"][0];
    assert_eq!(effect["answered"], "not-granted", "{failed:#}");
    assert_eq!(effect["answer"]["error"]["kind"], "not-granted");
    assert!(
        effect["answer"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http to 127.0.0.1"),
        "{effect:#}"
    );

    // Another tenant's token: the run does not exist for it.
    let (status, body) = server.call(
        "GET",
        &format!("/v1/runs/{run_id}/fixture"),
        Some(&other),
        None,
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["kind"], "unknown-run");
    // A step that ran no applet, and one that does not exist.
    let (status, body) = server.call(
        "GET",
        &format!("/v1/runs/{run_id}/fixture?step=99"),
        Some(&token),
        None,
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["kind"], "unknown-step");
    server.stop();
}

/// The walkthrough of docs/applets.md, command by command as a new user types it: the
/// fenced block after the `walkthrough` marker. The project's `target/` is linked to a
/// directory kept between test runs, so only the first run compiles the dependencies.
#[test]
fn the_docs_walkthrough_runs_as_written() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/applets.md"
    ))
    .expect("docs/applets.md");
    let marker = "<!-- walkthrough: run by tests/e2e/authoring.rs -->";
    let block = docs
        .split(marker)
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the walkthrough block in docs/applets.md");
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        commands.iter().any(|c| c.starts_with("coda applet new"))
            && commands.iter().any(|c| c.starts_with("coda applet test")),
        "{commands:?}"
    );

    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(coda_bin(), bin.join("coda")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let shared_target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("walkthrough-target");
    std::fs::create_dir_all(&shared_target).unwrap();

    let started = Instant::now();
    let mut cwd = home.path().to_owned();
    let mut last = String::new();
    for command in commands {
        if let Some(dir) = command.strip_prefix("cd ") {
            cwd = cwd.join(dir.trim());
            // The project was just made: give it the kept target dir.
            let target = cwd.join("target");
            if !target.exists() {
                std::os::unix::fs::symlink(&shared_target, &target).unwrap();
            }
            continue;
        }
        let output = Command::new("bash")
            .args(["-euo", "pipefail", "-c", command])
            .current_dir(&cwd)
            .env("PATH", &path)
            .env("CODA_CACHE_DIR", cache_dir())
            .env_remove("CARGO_TARGET_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("bash");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "`{command}` failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
        last = format!("{stdout}\n{stderr}");
    }
    eprintln!(
        "the walkthrough took {:.1} s (dependencies {})",
        started.elapsed().as_secs_f64(),
        if shared_target.join("release").exists() {
            "cached"
        } else {
            "compiled"
        }
    );
    assert!(last.contains("PASS"), "{last}");
    assert!(!last.contains("FAIL"), "{last}");
}

#[test]
fn applet_new_refuses_bad_names_and_busy_directories() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["Greeter", "../escape", "a/b", ".hidden", ""] {
        let (status, out, _) = coda_in(dir.path(), &["applet", "new", name], &[]);
        let json: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(status, 2, "{name:?}: {json:#}");
        assert_eq!(json["error"]["kind"], "invalid-name", "{name:?}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );

    // A directory with something in it is left alone.
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    write(&dir.path().join("taken"), "keep.txt", "mine");
    let (status, out, _) = coda_in(dir.path(), &["applet", "new", "taken"], &[]);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (status, json["error"]["kind"].as_str()),
        (2, Some("exists")),
        "{json:#}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );

    // Each language's project, with the WIT of the world beside it.
    for (lang, entry) in [
        ("rust", "src/lib.rs"),
        ("python", "build.sh"),
        ("js", "build.sh"),
    ] {
        let name = format!("hello-{lang}");
        let (status, out, stderr) =
            coda_in(dir.path(), &["applet", "new", &name, "--lang", lang], &[]);
        assert_eq!(status, 0, "{out}\n{stderr}");
        let project = dir.path().join(&name);
        assert!(project.join(entry).is_file(), "{lang}: {out}");
        assert!(project.join("README.md").is_file());
        let wit = std::fs::read_to_string(project.join("wit/applet.wit")).unwrap();
        // Rust builds against the SDK's world; Python and JavaScript keep their pinned one.
        let world = if lang == "rust" { "0.2.0" } else { "0.1.0" };
        assert!(
            wit.contains(&format!("package coda:applet@{world};")),
            "{lang}"
        );
        let fixtures: Vec<_> = std::fs::read_dir(project.join("tests"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".yaml"))
            .collect();
        assert!(!fixtures.is_empty(), "{lang}: a sample fixture");
        for fixture in fixtures {
            let text = std::fs::read_to_string(fixture.path()).unwrap();
            assert!(!text.contains("{{"), "{lang}: placeholders left in {text}");
            coda_harness::Fixture::parse(&text)
                .unwrap_or_else(|e| panic!("{lang}: {}: {e}", fixture.path().display()));
        }
        let json: Value = serde_json::from_str(&out).unwrap();
        assert!(json["next"].as_array().unwrap().len() >= 3);
    }
}

/// The Python and JavaScript projects `coda applet new` makes build with their one command
/// (`./build.sh`: componentize-py from PyPI into `.venv`, ComponentizeJS from npm into
/// `node_modules`) and pass their own fixtures. The Rust project's walkthrough is the one
/// above, run from the docs.
#[test]
fn python_and_js_projects_build_with_one_command_and_pass_their_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    for lang in ["python", "js"] {
        let name = format!("hello-{lang}");
        let module = format!("hello_{lang}");
        let started = Instant::now();
        let (status, out, stderr) =
            coda_in(dir.path(), &["applet", "new", &name, "--lang", lang], &[]);
        assert_eq!(status, 0, "{out}\n{stderr}");
        let project = dir.path().join(&name);

        let built = Command::new("bash")
            .arg("build.sh")
            .current_dir(&project)
            .stdin(Stdio::null())
            .output()
            .expect("running build.sh");
        assert!(
            built.status.success(),
            "{lang}: ./build.sh failed:\n{}{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
        let component = project.join(format!("{module}.wasm"));
        let size = std::fs::metadata(&component)
            .unwrap_or_else(|e| panic!("{lang}: {}: {e}", component.display()))
            .len();
        let built_in = started.elapsed();

        let (status, out, stderr) = coda_in(
            &project,
            &[
                "applet",
                "test",
                component.to_str().unwrap(),
                "--fixture",
                "tests",
            ],
            &[],
        );
        assert_eq!(status, 0, "{lang}: {out}\n{stderr}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["failed"], 0, "{lang}: {report:#}");
        assert_eq!(
            report["passed"], 2,
            "{lang}: sample and anonymous: {report:#}"
        );
        let tested_in = started.elapsed();

        // Built against the project's narrowed world, it imports no capability, so a vendor
        // packages it with a manifest that declares none.
        let (status, described) = coda(&["applet", "describe", component.to_str().unwrap()]);
        assert_eq!(status, 0, "{lang}: {described:#}");
        assert_eq!(
            described["coda_imports"],
            json!(["data", "log", "state"]),
            "{lang}: {described:#}"
        );
        let key = project.join("vendor.key");
        let (status, made) = coda(&["applet", "keygen", "--out", key.to_str().unwrap()]);
        assert_eq!(status, 0, "{made:#}");
        let manifest = write(
            &project,
            "manifest.yaml",
            &format!(
                "name: {name}\nversion: 0.1.0\nvendor: acme\n\
                 description: Greets the customer by name\ncapabilities: []\n"
            ),
        );
        let (status, packaged) = coda(&[
            "applet",
            "package",
            component.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--out",
            project.join("hello.codapkg").to_str().unwrap(),
        ]);
        assert_eq!(status, 0, "{lang}: {packaged:#}");
        assert_eq!(packaged["capabilities"], json!([]), "{lang}: {packaged:#}");
        // Seen with --nocapture: the walkthrough's time and the hello world's size.
        eprintln!(
            "{lang}: new + build {:.1} s, new to passing test {:.1} s, {size} bytes",
            built_in.as_secs_f64(),
            tested_in.as_secs_f64()
        );
    }
}

/// A kv call in a fixture: Contact Frequency's increment is matched by its request and
/// answered from the recording, offline, and the applet routes on the count.
#[test]
fn a_fixture_answers_contact_frequencys_kv_call() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = |count: i64| {
        format!(
            r#"
applet: contact-frequency@0.1.0
config: {{key: "contact-frequency/sms/{{{{ CLID }}}}", limit: 1, window_seconds: 86400}}
data: {{CLID: "+15550100"}}
calls:
  - kv:
      request: {{op: increment, key: contact-frequency/sms/+15550100, by: 1, ttl_millis: 86400000}}
      response: {{counted: {count}}}
expect:
  outcome: {{exit: {}}}
  data: {{ContactCount: {count}}}
"#,
            if count > 1 { "limited" } else { "allowed" }
        )
    };
    for count in [1, 2] {
        let file = write(dir.path(), &format!("count-{count}.yaml"), &fixture(count));
        let (status, json) = coda(&[
            "applet",
            "test",
            applets::CONTACT_FREQUENCY,
            "--fixture",
            file.to_str().unwrap(),
        ]);
        assert_eq!(status, 0, "{json:#}");
        assert_eq!(json["passed"], 1, "{json:#}");
    }
}
