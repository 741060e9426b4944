//! Plans validated, listed by version and diffed; runs filtered, cancelled, retried and
//! tailed live — through the router, against a real SQLite store and a real engine whose
//! applets are a script (the wasm path is the end-to-end test's).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use coda_flow::{Applets, Engine, FlowLimits, Start, StepInput, WallClock};
use coda_plan::AppletRef;
use coda_server::{AppState, hash_token, router};
use coda_store::Store;
use coda_types::{AppletInfo, Failure, InvocationReport, InvokeError, Outcome, Values};
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

use super::{Harness, OPERATOR, call, json_body, publish, tenant};

/// One invocation the script answered.
#[derive(Debug, Clone)]
struct Invoked {
    run: String,
    node: String,
    attempt: u32,
    key: String,
}

/// `step@1.0.0` takes `next`; `pause@1.0.0` pauses `config.millis` then takes `next`;
/// `wait@1.0.0` waits an hour for `disposition`; `flaky@1.0.0` fails (not retryable) the
/// first time it runs in a run and takes `next` after that. Every invocation is recorded.
#[derive(Default)]
struct Script {
    invoked: Mutex<Vec<Invoked>>,
}

impl Script {
    fn invoked(&self, run: &str) -> Vec<Invoked> {
        let all = self.invoked.lock().unwrap();
        all.iter().filter(|i| i.run == run).cloned().collect()
    }
}

fn info(name: &str, exits: &[&str]) -> AppletInfo {
    AppletInfo {
        name: name.into(),
        version: "1.0.0".into(),
        description: String::new(),
        exits: exits.iter().map(|e| e.to_string()).collect(),
        config_schema: json!({}),
        needs_live_party: false,
        capabilities: vec![],
    }
}

fn infos() -> Vec<AppletInfo> {
    vec![
        info("step", &["next"]),
        info("pause", &["next"]),
        info("wait", &["received", "timeout"]),
        info("flaky", &["next"]),
    ]
}

fn report(result: Result<Outcome, InvokeError>) -> InvocationReport {
    InvocationReport {
        result,
        data_changes: Values::new(),
        state_changes: Values::new(),
        logs: vec![],
        fuel_used: 1,
        host_calls: 0,
        elapsed: Duration::from_micros(1),
    }
}

#[async_trait]
impl Applets for Script {
    fn info(&self, _tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        infos()
            .into_iter()
            .find(|i| i.name == applet.name() && i.version == applet.version())
    }

    async fn invoke(
        &self,
        _tenant: &str,
        applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        let seen = {
            let mut invoked = self.invoked.lock().unwrap();
            let seen = invoked
                .iter()
                .filter(|i| i.run == input.context.run && i.node == input.context.node)
                .count();
            invoked.push(Invoked {
                run: input.context.run.clone(),
                node: input.context.node.clone(),
                attempt: input.context.attempt,
                key: input.context.idempotency_key.clone(),
            });
            seen
        };
        let outcome = match applet.name() {
            "pause" => Outcome::Pause {
                millis: input.config["millis"].as_u64().unwrap_or(3_600_000),
                exit: "next".into(),
            },
            "wait" => Outcome::Wait {
                event: "disposition".into(),
                timeout_millis: 3_600_000,
                on_event: "received".into(),
                on_timeout: "timeout".into(),
            },
            "flaky" if seen == 0 => {
                return Ok(report(Err(InvokeError::Failure(Failure {
                    code: "downstream-500".into(),
                    message: "the downstream answered 500".into(),
                    retryable: false,
                    retry_after_millis: None,
                }))));
            }
            _ => Outcome::Exit("next".into()),
        };
        Ok(report(Ok(outcome)))
    }
}

/// A harness with this file's script, and the engine's scheduler running until `stop`.
struct Served {
    h: Harness,
    script: Arc<Script>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    scheduler: Option<tokio::task::JoinHandle<coda_flow::Result<u64>>>,
}

impl Served {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(scheduler) = self.scheduler.take() {
            scheduler.await.unwrap().unwrap();
        }
    }
}

fn served() -> Served {
    served_with(|state| state)
}

/// [`served`] with its state set up by `setup` (limits, say).
fn served_with(setup: impl FnOnce(AppState) -> AppState) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let script = Arc::new(Script::default());
    let engine = Arc::new(Engine::new(
        store,
        script.clone(),
        Arc::new(WallClock),
        FlowLimits::default(),
    ));
    let state = setup(AppState::new(engine.clone(), infos(), &hash_token(OPERATOR)).unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = engine.clone();
    let scheduler = tokio::spawn(async move {
        serving
            .serve(async {
                let _ = stop_rx.await;
            })
            .await
    });
    Served {
        h: Harness {
            _dir: dir,
            engine,
            app: router(state),
        },
        script,
        stop: Some(stop_tx),
        scheduler: Some(scheduler),
    }
}

const ALPHA: &str = "name: alpha\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n    exits: { next: b }\n  b:\n    applet: step@1.0.0\n";
const BETA: &str = "name: beta\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n";
const NAPPER: &str = "name: napper\ntype: unattended\nstart: nap\nnodes:\n  nap:\n    applet: pause@1.0.0\n    config: { millis: 300 }\n    exits: { next: after }\n  after:\n    applet: step@1.0.0\n";
const SHAKY: &str = "name: shaky\ntype: unattended\nstart: first\nnodes:\n  first:\n    applet: step@1.0.0\n    exits: { next: fragile }\n  fragile:\n    applet: flaky@1.0.0\n    exits: { next: last }\n  last:\n    applet: step@1.0.0\n";
const WAITER: &str = "name: waiter\ntype: unattended\nstart: w\nnodes:\n  w:\n    applet: wait@1.0.0\n    exits: { received: thank }\n  thank:\n    applet: step@1.0.0\n";

fn yaml(text: &str) -> super::Payload {
    Some(("application/yaml", text.as_bytes().to_vec()))
}

async fn start(h: &Harness, tenant: &str, plan: &str, interaction: Option<&str>) -> String {
    h.engine
        .start(Start {
            tenant: tenant.into(),
            plan: plan.into(),
            version: None,
            interaction: interaction.map(str::to_owned),
            trigger_key: None,
            data: Values::new(),
        })
        .await
        .unwrap()
        .id
}

/// Polls a run until it has `status` (at most 10 s); returns it with its journal.
async fn reaches(h: &Harness, token: &str, run: &str, status: &str) -> Json {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = call(h, "GET", &format!("/v1/runs/{run}"), Some(token), None).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        if body["status"] == status {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never became {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ids(body: &Json) -> Vec<String> {
    body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn validate_answers_valid_or_every_problem_exactly_as_publish_and_stores_nothing() {
    let s = served();
    let h = &s.h;
    let acme = tenant(h, "acme").await;

    let (status, body) = call(h, "POST", "/v1/plans/validate", Some(&acme), yaml(ALPHA)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["valid"], true);
    assert_eq!(body["plan"], "alpha");
    // JSON is taken as PUT takes it.
    let as_json = serde_json::to_value(coda_plan::parse(ALPHA).unwrap()).unwrap();
    let (status, body) = call(
        h,
        "POST",
        "/v1/plans/validate",
        Some(&acme),
        json_body(as_json),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Nothing was stored.
    let (status, _) = call(h, "GET", "/v1/plans/alpha", Some(&acme), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Two problems at once: an applet nobody has, and an exit to a node that is not there.
    let bad = "name: bad\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: nope@1.0.0\n  b:\n    applet: step@1.0.0\n    exits: { next: nowhere }\n";
    let (status, validated) = call(h, "POST", "/v1/plans/validate", Some(&acme), yaml(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{validated}");
    let problems = validated["error"]["problems"].as_array().unwrap();
    assert!(problems.len() >= 2, "{validated}");
    assert!(
        problems
            .iter()
            .any(|p| p["node"] == "a" && p["field"] == "nodes.a.applet"),
        "{validated}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p["node"] == "b" && p["field"] == "nodes.b.exits.next"),
        "{validated}"
    );
    let (status, published) = call(h, "PUT", "/v1/plans/bad", Some(&acme), yaml(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(validated, published, "validate answers as publish would");

    // Not a plan at all: 422 naming the problem, as publish.
    let (status, body) = call(
        h,
        "POST",
        "/v1/plans/validate",
        Some(&acme),
        yaml("name: x\ntype: sideways\n"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "invalid-plan");

    // `validate` is still a usable plan name.
    let named = ALPHA.replace("name: alpha", "name: validate");
    let (status, body) = call(h, "PUT", "/v1/plans/validate", Some(&acme), yaml(&named)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(h, "GET", "/v1/plans/validate", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["plan"], "validate");

    // No token: 401, as everywhere.
    let (status, _) = call(h, "POST", "/v1/plans/validate", None, yaml(ALPHA)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn versions_list_and_diff_names_what_changed() {
    let s = served();
    let h = &s.h;
    let acme = tenant(h, "acme").await;
    let globex = tenant(h, "globex").await;
    assert_eq!(publish(h, &acme, "alpha", ALPHA).await, 1);
    // Version 2: node b runs another applet with a config, and a node c is added after it.
    let v2 = "name: alpha\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n    exits: { next: b }\n  b:\n    applet: pause@1.0.0\n    config: { millis: 5 }\n    exits: { next: c }\n  c:\n    applet: step@1.0.0\n";
    assert_eq!(publish(h, &acme, "alpha", v2).await, 2);

    let (status, body) = call(h, "GET", "/v1/plans/alpha/versions", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let versions = body["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{body}");
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[1]["version"], 2);
    for v in versions {
        assert!(v["created_at_ms"].as_i64().unwrap() > 0, "{body}");
        assert!(
            v["digest"].as_str().unwrap().starts_with("sha256:"),
            "{body}"
        );
    }
    assert_ne!(versions[0]["digest"], versions[1]["digest"]);

    let (status, body) = call(
        h,
        "GET",
        "/v1/plans/alpha/diff?from=1&to=2",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let unified = body["unified"].as_str().unwrap();
    assert!(
        unified.starts_with("--- alpha@1\n+++ alpha@2\n"),
        "{unified}"
    );
    assert!(
        unified.contains("+      \"applet\": \"pause@1.0.0\""),
        "{unified}"
    );
    assert!(unified.contains("+    \"c\": {"), "{unified}");
    let summary = &body["summary"];
    assert_eq!(summary["nodes_added"], json!(["c"]), "{summary}");
    assert_eq!(summary["nodes_removed"], json!([]), "{summary}");
    let changed = summary["nodes_changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{summary}");
    assert_eq!(changed[0]["node"], "b");
    assert_eq!(changed[0]["changed"], json!(["applet", "config", "exits"]));
    assert_eq!(summary["start"], Json::Null);
    assert_eq!(body["identical"], false);
    // A version against itself: nothing.
    let (status, body) = call(
        h,
        "GET",
        "/v1/plans/alpha/diff?from=2&to=2",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["identical"], true);
    assert_eq!(body["summary"]["nodes_changed"], json!([]));

    // Bad queries name the parameter; unknown plans and versions are 404s naming them.
    for (query, names) in [
        ("from=1", "`to`"),
        ("to=2", "`from`"),
        ("from=one&to=2", "`from`"),
        ("from=1&to=0", "`to`"),
        ("from=1&to=2&extra=3", "extra"),
    ] {
        let (status, body) = call(
            h,
            "GET",
            &format!("/v1/plans/alpha/diff?{query}"),
            Some(&acme),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{query}: {message}");
    }
    let (status, body) = call(
        h,
        "GET",
        "/v1/plans/alpha/diff?from=1&to=9",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("version `9`")
    );
    let (status, missing) = call(
        h,
        "GET",
        "/v1/plans/gone/diff?from=1&to=2",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`gone`")
    );
    let (status, body) = call(h, "GET", "/v1/plans/gone/versions", Some(&acme), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Another tenant's plan is missing, exactly.
    let (status, theirs) = call(h, "GET", "/v1/plans/alpha/versions", Some(&globex), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, none) = call(h, "GET", "/v1/plans/nothing/versions", Some(&globex), None).await;
    assert_eq!(
        theirs["error"]["message"]
            .as_str()
            .unwrap()
            .replace("alpha", "X"),
        none["error"]["message"]
            .as_str()
            .unwrap()
            .replace("nothing", "X")
    );
    let (status, _) = call(
        h,
        "GET",
        "/v1/plans/alpha/diff?from=1&to=2",
        Some(&globex),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn runs_are_filtered_by_plan_status_interaction_and_time() {
    let s = served();
    let h = &s.h;
    let acme = tenant(h, "acme").await;
    let globex = tenant(h, "globex").await;
    publish(h, &acme, "alpha", ALPHA).await;
    publish(h, &acme, "beta", BETA).await;
    publish(h, &acme, "waiter", WAITER).await;
    let a1 = start(h, "acme", "alpha", Some("i1")).await;
    let b2 = start(h, "acme", "beta", Some("i2")).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cut = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let w1 = start(h, "acme", "waiter", Some("i1")).await;
    reaches(h, &acme, &a1, "done").await;
    reaches(h, &acme, &b2, "done").await;
    reaches(h, &acme, &w1, "waiting").await;

    let list = |query: String| {
        let acme = acme.clone();
        async move {
            let (status, body) =
                call(h, "GET", &format!("/v1/runs?{query}"), Some(&acme), None).await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            body
        }
    };
    assert_eq!(
        ids(&list(String::new()).await),
        [a1.as_str(), b2.as_str(), w1.as_str()]
    );
    assert_eq!(ids(&list("plan=alpha".into()).await), [a1.as_str()]);
    assert_eq!(ids(&list("status=waiting".into()).await), [w1.as_str()]);
    assert_eq!(
        ids(&list("status=done".into()).await),
        [a1.as_str(), b2.as_str()]
    );
    assert_eq!(
        ids(&list("interaction=i1".into()).await),
        [a1.as_str(), w1.as_str()]
    );
    assert_eq!(
        ids(&list("interaction=i1&status=done".into()).await),
        [a1.as_str()]
    );
    assert_eq!(ids(&list(format!("since={cut}")).await), [w1.as_str()]);
    assert_eq!(
        ids(&list(format!("until={cut}")).await),
        [a1.as_str(), b2.as_str()]
    );
    assert_eq!(
        ids(&list("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z".into()).await),
        [a1.as_str(), b2.as_str(), w1.as_str()]
    );
    assert!(ids(&list("until=2000-01-01T00:00:00Z".into()).await).is_empty());
    assert!(ids(&list("plan=nope".into()).await).is_empty());
    // Pages within a filter.
    let first = list("interaction=i1&limit=1".into()).await;
    assert_eq!(ids(&first), [a1.as_str()]);
    let after = first["next"].as_str().unwrap();
    let second = list(format!("interaction=i1&limit=1&after={after}")).await;
    assert_eq!(ids(&second), [w1.as_str()]);

    // Bad values are 400s naming the parameter.
    for (query, names) in [
        ("status=sleeping", "`status`"),
        ("since=yesterday", "`since`"),
        ("until=2026-13-01T00:00:00Z", "`until`"),
        (
            "since=2000-01-01T00:00:00Z&until=1999-01-01T00:00:00Z",
            "`until`",
        ),
        ("limit=0", "`limit`"),
        ("limit=many", "limit"),
        ("plan=", "`plan`"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = call(h, "GET", &format!("/v1/runs?{query}"), Some(&acme), None).await;
        // Two times in the wrong order are well-formed: refused 422, not 400.
        let expected = if query.contains("&until=1999") {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, expected, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{query}: {message}");
    }
    // Another tenant sees none of them, whatever the filter.
    let (_, body) = call(h, "GET", "/v1/runs?interaction=i1", Some(&globex), None).await;
    assert!(ids(&body).is_empty(), "{body}");
    s.stop().await;
}

#[tokio::test]
async fn a_cancelled_parked_run_never_runs_and_a_finished_one_cannot_be_cancelled() {
    let s = served();
    let h = &s.h;
    let acme = tenant(h, "acme").await;
    let globex = tenant(h, "globex").await;
    publish(h, &acme, "napper", NAPPER).await;
    publish(h, &acme, "beta", BETA).await;
    let nap = start(h, "acme", "napper", None).await;
    reaches(h, &acme, &nap, "parked").await;

    // Another tenant's run is missing, exactly.
    let (status, theirs) = call(
        h,
        "POST",
        &format!("/v1/runs/{nap}/cancel"),
        Some(&globex),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, none) = call(h, "POST", "/v1/runs/nothing/cancel", Some(&globex), None).await;
    assert_eq!(
        theirs["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&nap, "X"),
        none["error"]["message"]
            .as_str()
            .unwrap()
            .replace("nothing", "X")
    );

    let (status, body) = call(
        h,
        "POST",
        &format!("/v1/runs/{nap}/cancel"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["node"], Json::Null);
    // The pause (300 ms) passes; the node after it never runs.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let run = reaches(h, &acme, &nap, "cancelled").await;
    let nodes: Vec<String> = s.script.invoked(&nap).into_iter().map(|i| i.node).collect();
    assert_eq!(nodes, ["nap"]);
    let journal = run["journal"].as_array().unwrap();
    assert_eq!(journal.len(), 2, "{run}");
    assert!(
        journal[1]["note"]
            .as_str()
            .unwrap()
            .starts_with("cancelled by API"),
        "{run}"
    );
    assert_eq!(journal[1]["result"], json!({ "cancelled": true }));
    let (_, cancelled) = call(h, "GET", "/v1/runs?status=cancelled", Some(&acme), None).await;
    assert_eq!(ids(&cancelled), [nap.as_str()]);

    // Cancelled, or finished otherwise: 409 naming the status.
    let (status, body) = call(
        h,
        "POST",
        &format!("/v1/runs/{nap}/cancel"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancelled")
    );
    let done = start(h, "acme", "beta", None).await;
    reaches(h, &acme, &done, "done").await;
    let (status, body) = call(
        h,
        "POST",
        &format!("/v1/runs/{done}/cancel"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "run-finished");
    assert!(body["error"]["message"].as_str().unwrap().contains("done"));
    s.stop().await;
}

#[tokio::test]
async fn a_failed_run_is_retried_from_its_failed_node_and_finishes() {
    let s = served();
    let h = &s.h;
    let acme = tenant(h, "acme").await;
    let globex = tenant(h, "globex").await;
    publish(h, &acme, "shaky", SHAKY).await;
    let run = start(h, "acme", "shaky", None).await;
    let failed = reaches(h, &acme, &run, "failed").await;
    assert_eq!(failed["journal"].as_array().unwrap().len(), 2, "{failed}");

    let (status, _) = call(
        h,
        "POST",
        &format!("/v1/runs/{run}/retry"),
        Some(&globex),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(
        h,
        "POST",
        &format!("/v1/runs/{run}/retry"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["node"], "fragile");
    let done = reaches(h, &acme, &run, "done").await;

    // first once; fragile failed, then ran again as a later attempt with the same key; then
    // last.
    let invoked = s.script.invoked(&run);
    let nodes: Vec<&str> = invoked.iter().map(|i| i.node.as_str()).collect();
    assert_eq!(nodes, ["first", "fragile", "fragile", "last"]);
    assert!(invoked[2].attempt > invoked[1].attempt);
    assert_eq!(
        invoked[2].key, invoked[1].key,
        "a retry keeps the step's key"
    );
    let journal = done["journal"].as_array().unwrap();
    let notes: Vec<&str> = journal
        .iter()
        .map(|s| s["note"].as_str().unwrap())
        .collect();
    assert_eq!(journal.len(), 5, "{notes:?}");
    assert!(notes[1].contains("no error exit is wired"), "{notes:?}");
    assert!(notes[2].starts_with("retried by API"), "{notes:?}");
    assert_eq!(journal[2]["node"], "fragile");
    assert_eq!(journal[3]["node"], "fragile");
    for (seq, step) in journal.iter().enumerate() {
        assert_eq!(step["seq"], seq as u64);
    }

    // Not failed (now done): 409 naming its status.
    let (status, body) = call(
        h,
        "POST",
        &format!("/v1/runs/{run}/retry"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "run-not-failed");
    assert!(body["error"]["message"].as_str().unwrap().contains("done"));
    s.stop().await;
}

/// One server-sent event.
#[derive(Debug)]
struct Sse {
    event: String,
    id: Option<String>,
    data: Json,
}

/// Reads a tail until it ends or has `count` events; panics after 10 s.
async fn read_events(body: &mut Body, buffer: &mut String, count: usize) -> (Vec<Sse>, bool) {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = Sse {
                event: "message".into(),
                id: None,
                data: Json::Null,
            };
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event.event = v.trim().into();
                } else if let Some(v) = line.strip_prefix("id:") {
                    event.id = Some(v.trim().into());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            event.data = serde_json::from_str(&data).unwrap();
            events.push(event);
            if events.len() == count {
                return (events, false);
            }
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("the tail sent nothing for 10 s");
        match frame {
            None => return (events, true),
            Some(frame) => {
                if let Ok(bytes) = frame.unwrap().into_data() {
                    buffer.push_str(std::str::from_utf8(&bytes).unwrap());
                }
            }
        }
    }
}

#[tokio::test]
async fn a_tail_replays_the_steps_then_streams_new_ones_and_ends() {
    let s = served();
    let h = &s.h;
    let acme = tenant(h, "acme").await;
    let globex = tenant(h, "globex").await;
    publish(h, &acme, "waiter", WAITER).await;
    let run = start(h, "acme", "waiter", Some("i-tail")).await;
    reaches(h, &acme, &run, "waiting").await;

    let tail = |token: &str| {
        Request::builder()
            .uri(format!("/v1/runs/{run}/tail"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _) = call(
        h,
        "GET",
        &format!("/v1/runs/{run}/tail"),
        Some(&globex),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let response = h.app.clone().oneshot(tail(&acme)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let mut buffer = String::new();
    // The replay: the wait step.
    let (events, ended) = read_events(&mut body, &mut buffer, 1).await;
    assert!(!ended);
    assert_eq!(events[0].event, "step");
    assert_eq!(events[0].id.as_deref(), Some("0"));
    assert_eq!(events[0].data["node"], "w");

    // Live: the event arrives, the run steps on and ends.
    let woken = h
        .engine
        .deliver("acme", "i-tail", "disposition", json!({ "score": 9 }))
        .await
        .unwrap()
        .unwrap()
        .woken;
    assert_eq!(woken, [run.as_str()]);
    let (events, ended) = read_events(&mut body, &mut buffer, 10).await;
    assert!(ended, "the stream closes after the end event: {events:?}");
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["step", "step", "end"], "{events:?}");
    assert_eq!(events[0].id.as_deref(), Some("1"));
    assert_eq!(events[0].data["result"], json!({ "event": "disposition" }));
    assert_eq!(events[1].data["node"], "thank");
    assert_eq!(events[2].data["status"], "done");

    // A finished run's tail replays everything and ends at once; Last-Event-ID resumes.
    let response = h.app.clone().oneshot(tail(&acme)).await.unwrap();
    let (events, ended) = read_events(&mut response.into_body(), &mut String::new(), 10).await;
    assert!(ended);
    assert_eq!(events.len(), 4, "{events:?}");
    let mut resumed = tail(&acme);
    resumed
        .headers_mut()
        .insert("last-event-id", "1".parse().unwrap());
    let response = h.app.clone().oneshot(resumed).await.unwrap();
    let (events, ended) = read_events(&mut response.into_body(), &mut String::new(), 10).await;
    assert!(ended);
    let seqs: Vec<Option<&str>> = events.iter().map(|e| e.id.as_deref()).collect();
    assert_eq!(seqs, [Some("2"), None], "{events:?}");

    // A client that goes away mid-tail leaves nothing behind: dropping the body drops the
    // stream and its receiver.
    let other = start(h, "acme", "waiter", Some("i-gone")).await;
    reaches(h, &acme, &other, "waiting").await;
    let response = h
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri(format!("/v1/runs/{other}/tail"))
                .header(header::AUTHORIZATION, format!("Bearer {acme}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    read_events(&mut body, &mut String::new(), 1).await;
    drop(body);
    h.engine
        .deliver("acme", "i-gone", "disposition", json!(null))
        .await
        .unwrap()
        .unwrap();
    reaches(h, &acme, &other, "done").await;
    s.stop().await;
}

#[tokio::test]
async fn every_new_endpoint_answers_another_tenants_ids_with_404() {
    let s = served();
    let h = &s.h;
    let acme = tenant(h, "acme").await;
    let globex = tenant(h, "globex").await;
    publish(h, &acme, "shaky", SHAKY).await;
    let run = start(h, "acme", "shaky", None).await;
    reaches(h, &acme, &run, "failed").await;
    for (method, path) in [
        ("GET", "/v1/plans/shaky/versions".to_owned()),
        ("GET", "/v1/plans/shaky/diff?from=1&to=1".to_owned()),
        ("POST", format!("/v1/runs/{run}/cancel")),
        ("POST", format!("/v1/runs/{run}/retry")),
        ("GET", format!("/v1/runs/{run}/tail")),
    ] {
        let (status, body) = call(h, method, &path, Some(&globex), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    // And the owner still can.
    let (status, body) = call(
        h,
        "POST",
        &format!("/v1/runs/{run}/retry"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    reaches(h, &acme, &run, "done").await;
    s.stop().await;
}

fn tail_request(run: &str, token: &str) -> Request<Body> {
    Request::builder()
        .uri(format!("/v1/runs/{run}/tail"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn live_tails_are_capped_per_tenant_and_in_all_with_a_429() {
    // Two tails per tenant, three in all.
    let s = served_with(|state| state.with_tail_limits(3, 2));
    let h = &s.h;
    let acme = tenant(h, "acme").await;
    let globex = tenant(h, "globex").await;
    publish(h, &acme, "waiter", WAITER).await;
    publish(h, &globex, "waiter", WAITER).await;
    let acme_run = start(h, "acme", "waiter", Some("i-a")).await;
    let globex_run = start(h, "globex", "waiter", Some("i-g")).await;
    reaches(h, &acme, &acme_run, "waiting").await;
    reaches(h, &globex, &globex_run, "waiting").await;
    let open = |run: &str, token: &str| h.app.clone().oneshot(tail_request(run, token));

    // A tail holds its place for as long as its response (its stream) is alive.
    let mut held = Vec::new();
    for _ in 0..2 {
        let response = open(&acme_run, &acme).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response);
    }
    let refused = open(&acme_run, &acme).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    let body: Json =
        serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["kind"], "too-many-tails", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this tenant"),
        "{body}"
    );

    // Another tenant is not refused for acme's tails, until the total is reached.
    let third = open(&globex_run, &globex).await.unwrap();
    assert_eq!(third.status(), StatusCode::OK);
    let refused = open(&globex_run, &globex).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Json =
        serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the server"),
        "{body}"
    );

    // A refused tail took no place, and a closed one gives its place back.
    drop(held.pop());
    let again = open(&globex_run, &globex).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    // A tail of a run that does not exist is a 404 and takes no place either.
    drop(again);
    let (status, _) = call(h, "GET", "/v1/runs/nope/tail", Some(&acme), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let again = open(&acme_run, &acme).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    drop((held, third, again));
    s.stop().await;
}

#[tokio::test]
async fn a_long_journal_is_tailed_a_page_at_a_time_in_order_to_its_end() {
    let s = served();
    let h = &s.h;
    let acme = tenant(h, "acme").await;
    // More steps than a tail reads at once (8), and not a multiple of it.
    const STEPS: usize = 75;
    let mut plan = String::from("name: long\ntype: unattended\nstart: n0\nnodes:\n");
    for i in 0..STEPS {
        plan.push_str(&format!("  n{i}:\n    applet: step@1.0.0\n"));
        if i + 1 < STEPS {
            plan.push_str(&format!("    exits: {{ next: n{} }}\n", i + 1));
        }
    }
    publish(h, &acme, "long", &plan).await;
    let run = start(h, "acme", "long", None).await;
    reaches(h, &acme, &run, "done").await;

    let response = h
        .app
        .clone()
        .oneshot(tail_request(&run, &acme))
        .await
        .unwrap();
    let (events, ended) =
        read_events(&mut response.into_body(), &mut String::new(), STEPS + 10).await;
    assert!(ended);
    assert_eq!(events.len(), STEPS + 1, "every step, then the end");
    for (i, event) in events[..STEPS].iter().enumerate() {
        assert_eq!(event.event, "step");
        assert_eq!(event.id.as_deref(), Some(i.to_string().as_str()));
        assert_eq!(event.data["node"], format!("n{i}"));
    }
    assert_eq!(events[STEPS].event, "end");
    assert_eq!(events[STEPS].data["steps"], STEPS);
    assert_eq!(events[STEPS].data["status"], "done");
    s.stop().await;
}

/// Every page of `GET {path}&after=…` from the first until `next` is none: the ids in the
/// order read.
async fn every_page(h: &Harness, token: &str, path: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(after) => format!("{path}&after={after}"),
            None => path.to_owned(),
        };
        let (status, body) = call(h, "GET", &url, Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        all.extend(ids(&body));
        match body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return all,
        }
    }
}

#[tokio::test]
async fn runs_are_listed_newest_or_oldest_first_a_page_at_a_time() {
    let s = served();
    let h = &s.h;
    let acme = tenant(h, "acme").await;
    let globex = tenant(h, "globex").await;
    publish(h, &acme, "alpha", ALPHA).await;
    publish(h, &acme, "waiter", WAITER).await;
    let mut started = Vec::new();
    for n in 0..7 {
        let plan = if n % 3 == 0 { "waiter" } else { "alpha" };
        started.push(start(h, "acme", plan, Some(&format!("i{}", n % 2))).await);
    }
    for (n, run) in started.iter().enumerate() {
        let status = if n % 3 == 0 { "waiting" } else { "done" };
        reaches(h, &acme, run, status).await;
    }
    // The whole list, oldest first, as the default has always answered it.
    let (_, body) = call(h, "GET", "/v1/runs?limit=1000", Some(&acme), None).await;
    let oldest = ids(&body);
    assert_eq!(oldest.len(), 7);
    let newest: Vec<String> = oldest.iter().rev().cloned().collect();
    let (_, body) = call(
        h,
        "GET",
        "/v1/runs?limit=1000&order=newest",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(ids(&body), newest);
    let (_, body) = call(h, "GET", "/v1/runs?order=oldest", Some(&acme), None).await;
    assert_eq!(ids(&body), oldest);
    // Pages of 1, 2 and 3 in either order: every run once, none missed.
    for limit in [1, 2, 3] {
        for (order, expected) in [("newest", &newest), ("oldest", &oldest)] {
            let read = every_page(h, &acme, &format!("/v1/runs?order={order}&limit={limit}")).await;
            assert_eq!(&read, expected, "{order} first by pages of {limit}");
        }
    }
    // Filters page the same way, newest first.
    let filtered = |filter: &str| {
        let expected: Vec<String> = newest
            .iter()
            .filter(|id| {
                let n = started.iter().position(|s| s == *id).unwrap();
                match filter {
                    "status=waiting" => n % 3 == 0,
                    "plan=alpha" => n % 3 != 0,
                    "interaction=i1" => n % 2 == 1,
                    _ => unreachable!(),
                }
            })
            .cloned()
            .collect();
        expected
    };
    for filter in ["status=waiting", "plan=alpha", "interaction=i1"] {
        let read = every_page(h, &acme, &format!("/v1/runs?order=newest&limit=2&{filter}")).await;
        assert_eq!(read, filtered(filter), "{filter}");
    }
    let read = every_page(
        h,
        &acme,
        "/v1/runs?order=newest&limit=2&since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(read, newest);
    // Another tenant sees nothing in either order, even from one of these as a cursor.
    for query in [
        "order=newest",
        "order=oldest",
        &format!("order=newest&after={}", oldest[3]),
    ] {
        let (_, body) = call(h, "GET", &format!("/v1/runs?{query}"), Some(&globex), None).await;
        assert!(ids(&body).is_empty(), "{query}: {body}");
    }
    // An order that is not one: a 400 naming the parameter and its values.
    let (status, body) = call(h, "GET", "/v1/runs?order=sideways", Some(&acme), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`order`") && message.contains("newest"),
        "{message}"
    );
    s.stop().await;
}
