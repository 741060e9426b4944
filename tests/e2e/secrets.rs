//! Issue 14, finding 2, as it was found: a `coda serve` whose Data Connector puts a secret in
//! a URL (user info, path, query) to a host that does not resolve, and in a header and a
//! body to a server that echoes it back. The secret must appear nowhere the host writes:
//! not in `GET /v1/runs/{id}` (journal, effects, data), not in the database's files (the
//! WAL included), not in the log on stderr with every coda event at trace level.
//!
//! And the smaller thing of the same issue: a Data Connector that names no secrets needs
//! no secrets grant to be published, and a secrets call is still refused at run time.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{OPERATOR, Server};
use crate::{cache_dir, coda_bin};

const SECRET: &str = "crm-Tok3n-9ZqXw2";

/// `coda serve` with its whole log (every coda event down to trace) written to `log`.
fn start_logging(data: &std::path::Path, log: &std::path::Path) -> Server {
    let file = std::fs::File::create(log).unwrap();
    let child = Command::new(coda_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("CODA_DATA_DIR", data)
        .env("CODA_CACHE_DIR", cache_dir())
        .env("CODA_OPERATOR_TOKEN", OPERATOR)
        .env(
            "CODA_LOG",
            "info,coda=trace,coda_cli=trace,coda_flow=trace,coda_runtime=trace,\
             coda_capabilities=trace,coda_server=trace,coda_store=trace,reqwest=trace,\
             hyper_util=trace",
        )
        .env_remove("CODA_SECRETS_KEY")
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .expect("starting coda serve");
    // Held at once, so that a start that fails is killed and reaped (`Server`'s drop).
    let mut server = Server {
        child,
        address: String::new(),
        banner: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("listening on http://").nth(1) {
            server.address = rest
                .split(|c: char| c.is_whitespace() || c == '"' || c == '\\')
                .next()
                .unwrap()
                .to_owned();
            server.banner = text.lines().map(str::to_owned).collect();
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "coda serve never listened: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_secret_in_a_data_connectors_url_header_and_body_is_written_nowhere() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // A downstream that echoes the secret in its answer, as a careless API does.
    let echo = rt
        .block_on(coda_testkit::Recorder::start(
            200,
            json!({ "received": { "token": SECRET, "auth": format!("Bearer {SECRET}") } }),
        ))
        .unwrap();
    // For the plan that reads no secret: what it is answered is not the host's to scrub.
    let plain_api = rt
        .block_on(coda_testkit::Recorder::start(
            200,
            json!({ "status": "open" }),
        ))
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("serve.log");
    let server = start_logging(data.path(), &log);
    let token = server.create_tenant("acme");
    let call = |method: &str, path: &str, body: Value| {
        let body = (!body.is_null()).then(|| body.to_string());
        server.call(method, path, Some(&token), body.as_deref())
    };
    let (status, body) = server.call(
        "PUT",
        "/v1/operator/tenants/acme/ceiling",
        Some(OPERATOR),
        Some(
            &json!({"ceiling": {"http_hosts": ["*.invalid:*", "127.0.0.1:*"],
                "allow_private": ["127.0.0.0/8"], "max_secrets": 4}})
            .to_string(),
        ),
    );
    assert_eq!(status, 200, "{body}");

    // B: a Data Connector that names no secrets publishes with an http grant only.
    let (status, body) = call(
        "PUT",
        "/v1/grants/data-connector",
        json!({"http": ["*.invalid:*", "127.0.0.1:*"]}),
    );
    assert_eq!(status, 200, "{body}");
    let plain = json!({"name": "plain", "type": "unattended", "start": "get",
        "nodes": {"get": {"applet": "data-connector@0.1.0",
            "config": {"url": format!("{}/status", plain_api.url()), "response": {"Got": ""}}}}});
    let (status, body) = call("PUT", "/v1/plans/plain", plain);
    assert_eq!(status, 201, "{body}");

    // A plan naming secrets still needs them granted.
    let leak = json!({"name": "leak", "type": "unattended", "start": "lookup",
        "nodes": {
            "lookup": {"applet": "data-connector@0.1.0",
                "config": {
                    "url": "https://bot:{{ secrets.crm | urlencode }}@api.invalid/v1/{{ secrets.crm | urlencode }}/orders?key={{ secrets.crm | urlencode }}",
                    "secrets": {"crm": "crm-token"}},
                "error": "notify"},
            "notify": {"applet": "data-connector@0.1.0",
                "config": {
                    "method": "POST",
                    "url": format!("{}/notes", echo.url()),
                    "headers": {"Authorization": "Bearer {{ secrets.crm }}"},
                    "body": "{\"token\": {{ secrets.crm | tojson }}, \"error\": {{ LastError | tojson }}}",
                    "secrets": {"crm": "crm-token"},
                    "response": {"Echo": ""}}}}});
    let (status, body) = call("PUT", "/v1/plans/leak", leak.clone());
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("which needs secrets"),
        "{body}"
    );
    let (status, body) = call("PUT", "/v1/secrets/crm-token", json!({ "value": SECRET }));
    assert_eq!(status, 204, "{body}");
    let (status, body) = call(
        "PUT",
        "/v1/grants/data-connector",
        json!({"http": ["*.invalid:*", "127.0.0.1:*"], "secrets": ["crm-token"]}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = call("PUT", "/v1/plans/leak", leak);
    assert_eq!(status, 201, "{body}");

    let run_plan = |plan: &str, interaction: &str| {
        let live = json!({"name": format!("live-{plan}"), "type": "default", "start": "greet",
            "post_interaction": plan,
            "nodes": {"greet": {"applet": "set-data@0.1.0",
                "config": {"set": [{"name": "Greeted", "value": "yes"}]}}}});
        let (status, body) = call("PUT", &format!("/v1/plans/live-{plan}"), live);
        assert_eq!(status, 201, "{body}");
        let (status, body) = call(
            "POST",
            "/v1/interactions/events",
            json!({"type": "started", "interaction": interaction, "channel": "voice",
                "plan": format!("live-{plan}")}),
        );
        assert_eq!(status, 200, "{body}");
        let (status, body) = call(
            "POST",
            "/v1/interactions/events",
            json!({"type": "ended", "interaction": interaction, "outcome": "sale"}),
        );
        assert_eq!(status, 200, "{body}");
        let id = body["runs"][0].as_str().expect("a run").to_owned();
        (server.finished_run(&token, &id), id)
    };

    let (run, id) = run_plan("leak", "call-1");
    let shown = run.to_string();
    // The unresolvable host was tried (every attempt), the error exit taken, the echo
    // reached with the secret in its header and body.
    assert_eq!(run["status"], "done", "{run:#}");
    assert!(shown.contains("api.invalid"), "{run:#}");
    assert!(shown.contains("[secret:crm-token]"), "{run:#}");
    let notes = echo.requests();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(
        notes[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert!(
        String::from_utf8_lossy(&notes[0].body).contains(SECRET),
        "the downstream gets the secret: only what the host writes is scrubbed"
    );
    assert!(
        !shown.contains(SECRET),
        "GET /v1/runs/{id} shows the secret: {run:#}"
    );
    for path in [format!("/v1/runs/{id}/fixture"), "/v1/runs".to_string()] {
        let (_, body) = call("GET", &path, Value::Null);
        assert!(!body.to_string().contains(SECRET), "{path}: {body}");
    }

    // B at run time: the plain plan runs with no secrets grant needed; a grant without
    // secrets refuses a secrets call, `not-granted` (the connector naming a secret now).
    let (plain_run, _) = run_plan("plain", "call-2");
    assert_eq!(plain_run["status"], "done", "{plain_run:#}");
    let (status, body) = call(
        "PUT",
        "/v1/grants/data-connector",
        json!({"http": ["*.invalid:*", "127.0.0.1:*"]}),
    );
    assert_eq!(status, 200, "{body}");
    let (refused, _) = run_plan("leak", "call-3");
    let refused_text = refused.to_string();
    assert!(
        refused_text.contains("not-granted") || refused_text.contains("not granted"),
        "{refused:#}"
    );

    server.stop();
    let mut files = 0;
    for file in ["coda.db", "coda.db-wal", "serve.log"] {
        if let Ok(bytes) = std::fs::read(data.path().join(file)) {
            files += 1;
            if let Some(at) = bytes
                .windows(SECRET.len())
                .position(|w| w == SECRET.as_bytes())
            {
                let around = &bytes[at.saturating_sub(300)..(at + 200).min(bytes.len())];
                panic!(
                    "{file} holds the secret: …{}…",
                    String::from_utf8_lossy(around)
                );
            }
        }
    }
    assert!(files >= 2, "the database and the log were read");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("coda::applet"),
        "the applets' log lines are traced (and were searched)"
    );
}
