//! A run's effects as the API shows them, each with the idempotency key its downstream
//! got (a real HTTP call, through the host's real HTTP capability, to a loopback server
//! that keeps the header), and the tenant's usage of those runs cut into buckets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use coda_capabilities::{HostCapabilities, Settings};
use coda_flow::{Applets, CapabilitySource, Engine, FlowLimits, StepInput, WallClock};
use coda_plan::AppletRef;
use coda_server::{AppState, hash_token, router};
use coda_store::Store;
use coda_types::capabilities::{Capabilities, CapabilitiesExt, HttpRequest};
use coda_types::{AppletInfo, InvocationReport, Outcome, Values};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Harness, OPERATOR, call, publish, tenant};

/// `post@1.0.0` POSTs to `config.url` through the host's HTTP capability, then takes `next`.
struct Poster;

fn post_info() -> AppletInfo {
    AppletInfo {
        name: "post".into(),
        version: "1.0.0".into(),
        description: String::new(),
        exits: vec!["next".into()],
        config_schema: json!({}),
        needs_live_party: false,
        // Declares none, so publishing does not look for the tenant's grants in the store:
        // the calls are granted by the operator's settings below, as the host checks them.
        capabilities: vec![],
    }
}

#[async_trait]
impl Applets for Poster {
    fn info(&self, _tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        (applet.name() == "post").then(post_info)
    }

    async fn invoke(
        &self,
        _tenant: &str,
        _applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        let url = input.config["url"].as_str().unwrap_or_default().to_owned();
        let request = HttpRequest {
            method: "POST".into(),
            url,
            headers: vec![],
            body: b"booked".to_vec(),
            timeout: None,
        };
        let sent = input.capabilities.http_send(&input.context, request).await;
        Ok(InvocationReport {
            result: sent.map(|_| Outcome::Exit("next".into())).map_err(|e| {
                coda_types::InvokeError::Failure(coda_types::Failure {
                    code: "http".into(),
                    message: e.to_string(),
                    retryable: false,
                    retry_after_millis: None,
                })
            }),
            data_changes: Values::new(),
            state_changes: Values::new(),
            logs: vec![],
            fuel_used: 7,
            host_calls: 1,
            elapsed: Duration::from_micros(1),
        })
    }
}

/// The host's real capabilities, as `coda serve` builds them from the operator's settings.
struct Host(HostCapabilities);

impl CapabilitySource for Host {
    fn for_applet(&self, tenant: &str, applet: &AppletRef) -> Arc<dyn Capabilities> {
        self.0.for_applet(tenant, applet.name(), applet.version())
    }
}

/// A loopback server that answers 200 and keeps each request's `Idempotency-Key`.
async fn key_keeper() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let keys = Arc::new(Mutex::new(Vec::new()));
    let kept = keys.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                if let Some(key) = head.lines().find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("idempotency-key")
                        .then(|| value.trim().to_owned())
                }) {
                    kept.lock().unwrap().push(key);
                }
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (port, keys)
}

/// A harness whose applet posts through the real HTTP capability, granted to loopback,
/// with the engine's scheduler running until `stop` is sent.
fn posting_harness() -> (Harness, tokio::sync::oneshot::Sender<()>) {
    let settings = Settings::from_yaml_str(
        r#"
tenants:
  acme:
    ceiling:
      http_hosts: ["127.0.0.1:*"]
      allow_private: ["127.0.0.0/8"]
    grants:
      post:
        http: ["127.0.0.1:*"]
"#,
    )
    .unwrap();
    let capabilities = HostCapabilities::new(settings).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let engine = Arc::new(
        Engine::new(
            store,
            Arc::new(Poster),
            Arc::new(WallClock),
            FlowLimits::default(),
        )
        .with_capabilities(Arc::new(Host(capabilities))),
    );
    let state = AppState::new(engine.clone(), vec![post_info()], &hash_token(OPERATOR)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = engine.clone();
    tokio::spawn(async move {
        serving
            .serve(async {
                let _ = stopped.await;
            })
            .await
    });
    let h = Harness {
        _dir: dir,
        engine,
        app: router(state),
    };
    (h, stop)
}

/// Starts a run of `plan` and waits (at most 10 s) until it is done; answers the run.
async fn run_to_done(h: &Harness, token: &str, plan: &str) -> Json {
    let run = h
        .engine
        .start(coda_flow::Start {
            tenant: "acme".into(),
            plan: plan.into(),
            version: None,
            interaction: None,
            trigger_key: None,
            data: Values::new(),
        })
        .await
        .unwrap()
        .id;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = call(h, "GET", &format!("/v1/runs/{run}"), Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] == "done" {
            return body;
        }
        assert!(
            body["status"] != "failed" && std::time::Instant::now() < deadline,
            "the run did not finish: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn each_effect_carries_the_idempotency_key_its_downstream_got() {
    let (port, keys) = key_keeper().await;
    let (h, stop) = posting_harness();
    let acme = tenant(&h, "acme").await;
    let url = format!("http://127.0.0.1:{port}/book");
    let plan = format!(
        "name: twice\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: post@1.0.0\n    config: {{ url: \"{url}\" }}\n    exits: {{ next: b }}\n  b:\n    applet: post@1.0.0\n    config: {{ url: \"{url}\" }}\n"
    );
    publish(&h, &acme, "twice", &plan).await;
    let run = run_to_done(&h, &acme, "twice").await;
    let effects = run["effects"].as_array().unwrap();
    let call_keys: Vec<&str> = effects
        .iter()
        .map(|e| e["call_key"].as_str().unwrap())
        .collect();
    let received = keys.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "one request a step: {received:?}");
    assert_eq!(
        call_keys, received,
        "the keys the API shows are the headers the server got"
    );
    assert_ne!(call_keys[0], call_keys[1], "each step its own key");
    // Each call's key is its step's and its position, the step's what the applet was given.
    let id = run["id"].as_str().unwrap();
    for (effect, step) in effects.iter().zip(["0", "1"]) {
        assert_eq!(effect["step_key"], format!("{id}/{step}"));
        assert_eq!(effect["call_key"], format!("{id}/{step}/0"));
    }
    let _ = stop.send(());
}

#[tokio::test]
async fn usage_buckets_add_up_to_the_windows_totals() {
    let (port, _keys) = key_keeper().await;
    let (h, stop) = posting_harness();
    let acme = tenant(&h, "acme").await;
    let globex = tenant(&h, "globex").await;
    let plan = format!(
        "name: once\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: post@1.0.0\n    config: {{ url: \"http://127.0.0.1:{port}/\" }}\n"
    );
    publish(&h, &acme, "once", &plan).await;
    for _ in 0..3 {
        run_to_done(&h, &acme, "once").await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (since, until) = (now - 3 * 3_600_000 - 1_234, now + 60_000);
    let (status, usage) = call(
        &h,
        "GET",
        &format!("/v1/usage?since={since}&until={until}&bucket=hour"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    let buckets = usage["buckets"].as_array().unwrap();
    assert_eq!(
        buckets.len(),
        4,
        "three whole hours, then the last 61 s cut short"
    );
    assert_eq!(buckets[0]["since"], usage["since"]);
    assert_eq!(
        buckets[3]["until"], usage["until"],
        "the last bucket ends with the window"
    );
    assert_eq!(
        buckets[3]["invocations"], 3,
        "the runs are in the last bucket"
    );
    for field in [
        "invocations",
        "fuel_used",
        "http_calls",
        "emails_sent",
        "sql_calls",
        "follow_ups",
    ] {
        let sum: u64 = buckets.iter().map(|b| b[field].as_u64().unwrap()).sum();
        assert_eq!(sum, usage[field].as_u64().unwrap(), "{field}: {usage}");
    }
    assert_eq!(
        (usage["invocations"].as_u64(), usage["http_calls"].as_u64()),
        (Some(3), Some(3))
    );
    // Without `bucket`, no series; by the day, one bucket here.
    let (_, plain) = call(
        &h,
        "GET",
        &format!("/v1/usage?since={since}&until={until}"),
        Some(&acme),
        None,
    )
    .await;
    assert!(plain.get("buckets").is_none(), "{plain}");
    let (_, daily) = call(
        &h,
        "GET",
        &format!("/v1/usage?since={since}&until={until}&bucket=day"),
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(daily["buckets"].as_array().unwrap().len(), 1);
    assert_eq!(daily["buckets"][0]["invocations"], 3);
    // Another tenant's series counts none of it.
    let (_, theirs) = call(
        &h,
        "GET",
        &format!("/v1/usage?since={since}&until={until}&bucket=hour"),
        Some(&globex),
        None,
    )
    .await;
    assert!(
        theirs["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["invocations"] == 0),
        "{theirs}"
    );
    // Past 1,000 buckets: a 422 naming the limit; a bucket that is not one: a 400.
    let (status, body) = call(
        &h,
        "GET",
        "/v1/usage?since=2020-01-01&until=2021-01-01&bucket=hour",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("1000"),
        "{body}"
    );
    let (status, body) = call(&h, "GET", "/v1/usage?bucket=week", Some(&acme), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`bucket`"),
        "{body}"
    );
    let _ = stop.send(());
}
