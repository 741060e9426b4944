//! The delivery loop against a real store and receivers on loopback: a receiver that never
//! answers holds only its own tenant's places (`max_in_flight_per_tenant`), and another
//! tenant's events go on meanwhile, each signed so that it verifies; and a refusal's body
//! is read only up to its bound.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coda_store::{
    NewRun, NewSubscription, RunStatus, RunUpdate, SecretsKey, StepCommit, StepRecord, Store,
    TenantSlots,
};
use coda_webhooks::{WebhookSettings, Webhooks};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What the receiver saw: per path, the requests in flight and the bodies answered 200,
/// with their signature headers.
#[derive(Default)]
struct Seen {
    in_flight: BTreeMap<String, usize>,
    most_in_flight: BTreeMap<String, usize>,
    answered: Vec<(String, String, String, String, String)>,
}

/// A receiver: requests to `/slow` are held until the test ends; any other path is
/// answered 200 at once. Woken on each request it answers.
async fn receiver(seen: Arc<Mutex<Seen>>, answered: Arc<Notify>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (seen, answered) = (seen.clone(), answered.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then the body its Content-Length announces.
                let (head, body) = loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if body.len() >= length {
                            break (head.to_owned(), body.to_owned());
                        }
                    }
                };
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                        .unwrap_or("")
                        .to_owned()
                };
                {
                    let mut seen = seen.lock().unwrap();
                    let now = {
                        let n = seen.in_flight.entry(path.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    let most = seen.most_in_flight.entry(path.clone()).or_default();
                    *most = (*most).max(now);
                }
                if path == "/slow" {
                    std::future::pending::<()>().await;
                }
                let reply = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = socket.write_all(reply.as_bytes()).await;
                let mut seen = seen.lock().unwrap();
                *seen.in_flight.entry(path.clone()).or_default() -= 1;
                seen.answered.push((
                    path,
                    header("webhook-id"),
                    header("webhook-timestamp"),
                    header("webhook-signature"),
                    body,
                ));
                answered.notify_one();
            });
        }
    });
    address
}

/// Runs of `tenant`, each one step and done: each a `run.done` event.
pub(crate) async fn finished_runs(store: &Store, tenant: &str, count: usize) {
    for n in 0..count {
        let run = store
            .start_run(NewRun {
                tenant: tenant.into(),
                plan: "after".into(),
                plan_version: 1,
                interaction: None,
                trigger_key: Some(format!("{tenant}-{n}")),
                start_node: "only".into(),
                data: Default::default(),
                now_ms: coda_types::time::now_ms(),
            })
            .await
            .unwrap();
        let now = coda_types::time::now_ms();
        let slots = vec![TenantSlots {
            tenant: tenant.into(),
            concurrency: 100,
        }];
        let claimed = store
            .claim_due_runs("test", now, 60_000, 100, 100, slots)
            .await
            .unwrap();
        let claim = claimed.iter().find(|c| c.run.id == run.id).unwrap();
        let step = StepRecord {
            seq: 0,
            plan: "after".into(),
            plan_version: 1,
            node: "only".into(),
            applet: "set-data@0.1.0".into(),
            attempt: 1,
            result: json!({"exit": "next"}),
            note: "exit next → end".into(),
            fuel_used: 1,
            duration_us: 1,
            data_changes: Default::default(),
            at_ms: now,
            logs: Vec::new(),
        };
        let next = RunUpdate {
            status: RunStatus::Done,
            plan: "after".into(),
            plan_version: 1,
            node: None,
            attempt: 1,
            data: Default::default(),
            state: Default::default(),
            due_at_ms: None,
            wait: None,
            route_depth: 0,
        };
        store
            .commit_claimed_step(
                StepCommit {
                    run_id: run.id.clone(),
                    expected_seq: 0,
                    step,
                    next,
                    input: None,
                },
                claim.claim_seq,
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_holds_only_its_own_tenants_places() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let key = SecretsKey::from_bytes([9; 32]);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let answered = Arc::new(Notify::new());
    let address = receiver(seen.clone(), answered.clone()).await;
    let now = coda_types::time::now_ms();
    let mut secrets = BTreeMap::new();
    for (tenant, path) in [("slowco", "/slow"), ("fastco", "/fast")] {
        store.ensure_tenant(tenant, now).await.unwrap();
        store
            .set_ceiling(
                tenant,
                &json!({"ceiling": {"allow_private": ["127.0.0.0/8"]}}),
                now,
            )
            .await
            .unwrap();
        let secret = coda_webhooks::signing::new_secret().unwrap();
        store
            .create_webhook(
                tenant,
                NewSubscription {
                    id: format!("wh_{tenant}"),
                    url: format!("http://{address}{path}"),
                    events: vec!["run.done".into()],
                    plan: None,
                    secret: secret.clone(),
                },
                &key,
                5,
                now,
            )
            .await
            .unwrap();
        secrets.insert(path.to_owned(), secret);
    }
    // The slow tenant's events first: they would take every place if they could.
    finished_runs(&store, "slowco", 6).await;
    finished_runs(&store, "fastco", 4).await;

    let settings = WebhookSettings {
        response_timeout_ms: 60_000,
        max_in_flight: 8,
        max_in_flight_per_tenant: 2,
        poll_ms: 20,
        ..WebhookSettings::default()
    };
    let webhooks = Arc::new(Webhooks::new(store.clone(), key, "node-1", settings));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(webhooks.serve(async {
        let _ = stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let notified = answered.notified();
            {
                let seen = seen.lock().unwrap();
                if seen.answered.len() == 4 && seen.in_flight.get("/slow") == Some(&2) {
                    return;
                }
            }
            notified.await;
        }
    })
    .await
    .expect("the fast tenant's four events never all arrived beside the slow one's two");

    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.most_in_flight.get("/slow"),
            Some(&2),
            "the slow tenant never held more than its two places"
        );
        for (path, id, timestamp, signature, body) in &seen.answered {
            assert_eq!(path, "/fast");
            let timestamp: i64 = timestamp.parse().unwrap();
            let expected =
                coda_webhooks::signing::sign(&secrets["/fast"], id, timestamp, body.as_bytes())
                    .unwrap();
            assert_eq!(signature, &expected);
            let event: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(event["type"], "coda.run.done");
        }
    }
    let _ = stop.send(());
    // The held attempts are dropped after the drain: the loop stops all the same.
    tokio::time::timeout(Duration::from_secs(30), serving)
        .await
        .expect("the loop stops")
        .unwrap();
}

/// A refusal's body is read into the log only so far (`send::RESPONSE_BYTES_READ`): a
/// receiver answering 500 with 64 KiB costs the sender 1 KiB of it, and the attempt says
/// the status and the start of what the receiver said.
#[tokio::test]
async fn a_refusals_body_is_read_only_up_to_its_bound() {
    use coda_webhooks::send::{RESPONSE_BYTES_READ, Sender};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let said = format!("quota exceeded {}", "x".repeat(64 << 10));
    let answer = said.clone();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 8192];
        let _ = socket.read(&mut buf).await;
        let head = format!(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            answer.len()
        );
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(answer.as_bytes()).await;
    });
    let delivery = coda_store::ClaimedDelivery {
        id: "msg_1".into(),
        tenant: "acme".into(),
        subscription: "wh_1".into(),
        url: format!("http://{address}/hook"),
        body: "{}".into(),
        attempts: 0,
        first_at_ms: 0,
        claim_seq: 1,
        secrets: vec![coda_webhooks::signing::new_secret().unwrap()],
    };
    let allowed: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
    let sender = Sender::new(Duration::from_secs(5), Duration::from_secs(10));
    let attempt = sender
        .send(&delivery, &allowed, coda_types::time::now_ms() / 1000)
        .await;
    assert!(!attempt.delivered);
    assert_eq!(attempt.status, Some(500));
    let error = attempt.error.unwrap();
    assert!(
        error.starts_with("answered 500 Internal Server Error: quota exceeded xxx"),
        "{error}"
    );
    let logged = error.split_once(": ").unwrap().1;
    assert_eq!(
        logged.len(),
        RESPONSE_BYTES_READ,
        "{} bytes kept",
        logged.len()
    );
    server.await.unwrap();
}
