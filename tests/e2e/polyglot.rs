//! Applets in Python (componentize-py) and JavaScript (ComponentizeJS), built from the same
//! WIT as the Rust ones, described and run in a flow by `coda`: `survey-score`
//! (`applets/python/survey-score`) sorts a survey's score, and for a promoter
//! `webhook-notify` (`applets/js/webhook-notify`) POSTs to a real HTTP server on loopback.
//!
//! `./dev test` builds both components (tens of seconds each, skipped when nothing changed)
//! into the fixed paths below; a missing one fails these tests, it does not skip them.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::capabilities::servers;
use crate::run::Files;

const SURVEY_SCORE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../target/wasm-py/survey_score.wasm"
);
const WEBHOOK_NOTIFY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../target/wasm-js/webhook_notify.wasm"
);

/// Said out loud, though the default is as large: these carry their interpreters.
const MAX_BYTES: &str = "67108864";

fn component(path: &str) -> PathBuf {
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{} is missing: run `./dev test`, which builds the Python and JavaScript applets \
         (componentize-py and ComponentizeJS) before the tests",
        path.display()
    );
    path
}

/// Both components described once, before any test goes on: the first `describe` compiles
/// each (the longest part of these tests) into the suite's artifact cache, where every later
/// `coda` finds it, instead of several tests compiling the same component at once.
fn described() -> &'static (Value, Value) {
    static DESCRIBED: OnceLock<(Value, Value)> = OnceLock::new();
    DESCRIBED.get_or_init(|| {
        let describe = |path: &str| {
            let path = component(path);
            let (status, json) = crate::coda(&[
                "applet",
                "describe",
                path.to_str().unwrap(),
                "--max-bytes",
                MAX_BYTES,
            ]);
            assert_eq!(status, 0, "{json:#}");
            json
        };
        (describe(SURVEY_SCORE), describe(WEBHOOK_NOTIFY))
    })
}

/// A directory holding just these two components (the built-ins are embedded in `coda`).
fn applets_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-polyglot-applets");
    std::fs::create_dir_all(&dir).unwrap();
    for path in [SURVEY_SCORE, WEBHOOK_NOTIFY] {
        let source = component(path);
        let name = source.file_name().unwrap();
        let target = dir.join(name);
        let same = std::fs::metadata(&target).is_ok_and(|m| {
            m.len() == std::fs::metadata(&source).unwrap().len()
                && std::fs::read(&target).unwrap() == std::fs::read(&source).unwrap()
        });
        if !same {
            // Copied aside, then renamed into place: tests run in parallel, and a `coda`
            // listing the directory must never read a half-copied component.
            let aside = dir.join(format!(
                "{}.{}.{:?}.tmp",
                name.display(),
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::copy(&source, &aside).unwrap();
            std::fs::rename(&aside, &target).unwrap();
        }
    }
    dir
}

/// The local tenant may reach loopback (refused otherwise), and grants webhook-notify http.
fn grants(files: &Files) -> String {
    files.write(
        "grants.yaml",
        r#"
tenants:
  local:
    ceiling:
      http_hosts: ["127.0.0.1:*"]
      allow_private: ["127.0.0.0/8"]
    grants:
      webhook-notify: { http: ["127.0.0.1:*"] }
"#,
    )
}

/// Survey score, then for a promoter a webhook with the category, the score and the name
/// (and a source the run does not have, which is left out).
fn plan(url: &str) -> String {
    format!(
        r#"
name: nps-follow-up
type: unattended
start: score
nodes:
  score:
    applet: survey-score@0.1.0
    config: {{ score_from: SurveyScore }}
    exits: {{ promoter: notify }}
  notify:
    applet: webhook-notify@0.1.0
    config:
      url: "{url}/nps"
      fields: [NpsCategory, SurveyScore, CustomerName, Unset]
"#
    )
}

fn survey_event(files: &Files, interaction: &str, score: Value) -> String {
    files.write(
        &format!("{interaction}.json"),
        &json!({
            "interaction": interaction,
            "channel": "voice",
            "outcome": "completed",
            "data": { "CustomerName": "Ada", "SurveyScore": score }
        })
        .to_string(),
    )
}

fn run(files: &Files, plan: &str, event: &str, grants: Option<&str>) -> (i32, Value) {
    described();
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
    crate::coda(&args)
}

/// Each step's node and result.
fn path(run: &Value) -> Vec<(String, Value)> {
    run["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["node"].as_str().unwrap().to_owned(), s["result"].clone()))
        .collect()
}

#[test]
fn python_and_js_applets_describe_themselves() {
    let (survey, webhook) = described();
    assert_eq!(survey["name"], "survey-score", "{survey:#}");
    assert_eq!(survey["version"], "0.1.0");
    assert_eq!(survey["world"], "0.1.0");
    assert_eq!(
        survey["exits"],
        json!(["promoter", "passive", "detractor", "missing"])
    );
    assert_eq!(
        survey["config_schema"],
        json!({
            "type": "object",
            "properties": {"score_from": {"type": "string"}},
            "additionalProperties": false
        })
    );
    assert_eq!(survey["needs_live_party"], false);
    assert_eq!(survey["capabilities"], json!([]));
    assert!(!survey["description"].as_str().unwrap().is_empty());

    assert_eq!(webhook["name"], "webhook-notify", "{webhook:#}");
    assert_eq!(webhook["version"], "0.1.0");
    assert_eq!(webhook["world"], "0.1.0");
    assert_eq!(webhook["exits"], json!(["sent", "failed"]));
    assert_eq!(webhook["config_schema"]["required"], json!(["url"]));
    assert_eq!(
        webhook["config_schema"]["properties"]["fields"],
        json!({"type": "array", "items": {"type": "string"}})
    );
    assert_eq!(webhook["needs_live_party"], false);
    assert_eq!(webhook["capabilities"], json!(["http"]));

    // A second describe loads the artifact the first compiled, and answers the same.
    let path = component(WEBHOOK_NOTIFY);
    let (status, again) = crate::coda(&[
        "applet",
        "describe",
        path.to_str().unwrap(),
        "--max-bytes",
        MAX_BYTES,
    ]);
    assert_eq!(status, 0, "{again:#}");
    assert_eq!(&again, webhook);
}

#[test]
fn a_promoter_is_scored_in_python_and_posted_by_js_with_the_step_key() {
    let rt = servers();
    let hook = rt
        .block_on(coda_testkit::Recorder::start(200, json!({"ok": true})))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files);
    let event = survey_event(&files, "int-promoter", json!(10));
    let (status, out) = run(&files, &plan(&hook.url()), &event, Some(&grants));
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(out["status"], "done");
    assert_eq!(
        path(&out),
        [
            ("score".to_owned(), json!({"exit": "promoter"})),
            ("notify".to_owned(), json!({"exit": "sent"})),
        ],
        "{out:#}"
    );
    assert_eq!(out["data"]["NpsCategory"], "promoter");
    assert_eq!(out["data"]["WebhookStatus"], 200);
    assert_eq!(
        out["journal"][0]["logs"][0]["message"],
        "SurveyScore = 10: promoter"
    );

    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/nps");
    assert_eq!(request.header("content-type"), Some("application/json"));
    // The step's key, stable across retries of the step: the webhook can deduplicate.
    let run_id = out["run"].as_str().unwrap();
    assert_eq!(
        request.header("idempotency-key"),
        Some(format!("{run_id}/1").as_str())
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        json!({
            "interaction": "int-promoter",
            "run": run_id,
            "data": {"NpsCategory": "promoter", "SurveyScore": 10, "CustomerName": "Ada"}
        })
    );
}

#[test]
fn others_end_without_a_post_and_a_bad_score_fails_the_run() {
    let rt = servers();
    let hook = rt
        .block_on(coda_testkit::Recorder::start(200, json!({"ok": true})))
        .unwrap();
    let files = Files::new();
    let grants = grants(&files);
    let plan = plan(&hook.url());

    // A score in text and one as a number: their exits are not wired, the run ends there;
    // so does no score (null).
    for (score, category) in [(json!("7"), "passive"), (json!(3), "detractor")] {
        let event = survey_event(&files, &format!("int-{category}"), score);
        let (status, out) = run(&files, &plan, &event, Some(&grants));
        assert_eq!(status, 0, "{out:#}");
        assert_eq!(
            path(&out),
            [("score".to_owned(), json!({"exit": category}))],
            "{out:#}"
        );
        assert_eq!(out["data"]["NpsCategory"], category);
    }
    let event = survey_event(&files, "int-missing", Value::Null);
    let (status, out) = run(&files, &plan, &event, Some(&grants));
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(
        path(&out),
        [("score".to_owned(), json!({"exit": "missing"}))]
    );
    assert!(out["data"].get("NpsCategory").is_none(), "{out:#}");

    // Out of range: the applet's failure, not retried, and no error exit: the run fails.
    for (interaction, score) in [("int-eleven", json!(11)), ("int-ten", json!("ten"))] {
        let event = survey_event(&files, interaction, score);
        let (status, out) = run(&files, &plan, &event, Some(&grants));
        assert_eq!(status, 1, "{out:#}");
        let failed = &out["error"]["run"];
        assert_eq!(failed["status"], "failed", "{out:#}");
        let journal = failed["journal"].as_array().unwrap();
        assert_eq!(journal.len(), 1, "a bad score is not retried: {out:#}");
        let text = journal[0].to_string();
        assert!(text.contains("bad-score"), "{text}");
        assert!(failed["data"].get("NpsCategory").is_none(), "{out:#}");
    }
    assert!(hook.requests().is_empty(), "{:?}", hook.requests());
}

#[test]
fn webhook_errors_become_exits_and_failures() {
    let rt = servers();
    let files = Files::new();
    let grants = grants(&files);

    // A 500: the status is kept and the failed exit taken.
    let hook = rt
        .block_on(coda_testkit::Recorder::start(500, json!({"error": "down"})))
        .unwrap();
    let event = survey_event(&files, "int-500", json!(9));
    let (status, out) = run(&files, &plan(&hook.url()), &event, Some(&grants));
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(out["journal"][1]["result"], json!({"exit": "failed"}));
    assert_eq!(out["data"]["WebhookStatus"], 500);
    assert_eq!(hook.requests().len(), 1);

    // Without a grant the host refuses the call: not retryable, the run fails, and the
    // server hears nothing.
    let before = hook.requests().len();
    let (status, out) = run(&files, &plan(&hook.url()), &event, None);
    assert_eq!(status, 1, "{out:#}");
    let journal = out["error"]["run"]["journal"].as_array().unwrap();
    assert_eq!(journal.len(), 2, "not-granted is not retried: {out:#}");
    assert!(journal[1].to_string().contains("not-granted"), "{out:#}");
    assert_eq!(hook.requests().len(), before);

    // Nobody listening: unavailable, retried with the same key until the retries run out.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (status, out) = run(&files, &plan(&url), &event, Some(&grants));
    assert_eq!(status, 1, "{out:#}");
    let journal = out["error"]["run"]["journal"].as_array().unwrap();
    let attempts: Vec<_> = journal
        .iter()
        .filter(|s| s["node"] == "notify")
        .map(|s| s["attempt"].as_u64().unwrap())
        .collect();
    assert!(attempts.len() > 1, "unavailable is retried: {out:#}");
    assert_eq!(attempts, (1..=attempts.len() as u64).collect::<Vec<_>>());
    assert!(
        journal.last().unwrap().to_string().contains("unavailable"),
        "{out:#}"
    );
}

#[test]
fn their_fixtures_pass_offline() {
    described();
    for (component_path, fixtures, count) in [
        (SURVEY_SCORE, "applets/python/survey-score/tests", 4),
        (WEBHOOK_NOTIFY, "applets/js/webhook-notify/tests", 4),
    ] {
        let path = component(component_path);
        let fixtures = format!("{}/../../{fixtures}", env!("CARGO_MANIFEST_DIR"));
        let (status, out) = crate::coda(&[
            "applet",
            "test",
            path.to_str().unwrap(),
            "--fixture",
            &fixtures,
        ]);
        assert_eq!(status, 0, "{out:#}");
        assert_eq!(out["passed"], count, "{out:#}");
        assert_eq!(out["failed"], 0, "{out:#}");
    }
}
