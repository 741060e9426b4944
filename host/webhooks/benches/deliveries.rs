//! Webhook deliveries per second through the whole loop: `RUNS` runs of `STEPS` steps each,
//! committed to a SQLite store, projected into deliveries (`STEPS + 2` per run: started,
//! each step, done), claimed, signed, POSTed to a receiver on loopback that answers 200 at
//! once (keep-alive), and each result written back. Prints one line; not a criterion
//! bench, since one pass is the measurement.
//!
//!     cargo bench -p coda-webhooks --bench deliveries

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coda_store::{
    NewRun, NewSubscription, RunStatus, RunUpdate, SecretsKey, StepCommit, StepRecord, Store,
    TenantSlots,
};
use coda_webhooks::{EventKind, WebhookSettings, Webhooks};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RUNS: usize = 1_000;
const STEPS: u64 = 3;

/// Answers every request 200 on a kept-alive connection; counts them.
async fn receiver(count: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    // Every whole request buffered: its head, and the body it announces.
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if pending.len() < end + 4 + length {
                            break;
                        }
                        pending.drain(..end + 4 + length);
                        count.fetch_add(1, Ordering::Relaxed);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if socket.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    address
}

async fn commit_runs(store: &Store) {
    for n in 0..RUNS {
        let now = coda_types::time::now_ms();
        let run = store
            .start_run(NewRun {
                tenant: "acme".into(),
                plan: "after".into(),
                plan_version: 1,
                interaction: None,
                trigger_key: Some(format!("t{n}")),
                start_node: "a".into(),
                data: Default::default(),
                now_ms: now,
            })
            .await
            .unwrap();
        for seq in 0..STEPS {
            let now = coda_types::time::now_ms();
            let slots = vec![TenantSlots {
                tenant: "acme".into(),
                concurrency: 1_000,
            }];
            let claimed = store
                .claim_due_runs("bench", now, 60_000, 1_000, 1_000, slots)
                .await
                .unwrap();
            let claim = claimed.iter().find(|c| c.run.id == run.id).unwrap();
            let last = seq + 1 == STEPS;
            let step = StepRecord {
                seq,
                plan: "after".into(),
                plan_version: 1,
                node: format!("n{seq}"),
                applet: "set-data@0.1.0".into(),
                attempt: 1,
                result: json!({"exit": "next"}),
                note: "exit next".into(),
                fuel_used: 1_000,
                duration_us: 10,
                data_changes: Default::default(),
                at_ms: now,
                logs: Vec::new(),
            };
            let next = RunUpdate {
                status: if last {
                    RunStatus::Done
                } else {
                    RunStatus::Ready
                },
                plan: "after".into(),
                plan_version: 1,
                node: (!last).then(|| format!("n{}", seq + 1)),
                attempt: 1,
                data: Default::default(),
                state: Default::default(),
                due_at_ms: (!last).then_some(now),
                wait: None,
                route_depth: 0,
            };
            store
                .commit_claimed_step(
                    StepCommit {
                        run_id: run.id.clone(),
                        expected_seq: seq,
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
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
        let key = SecretsKey::from_bytes([3; 32]);
        let count = Arc::new(AtomicUsize::new(0));
        let address = receiver(count.clone()).await;
        let now = coda_types::time::now_ms();
        store.ensure_tenant("acme", now).await.unwrap();
        store
            .set_ceiling(
                "acme",
                &json!({"ceiling": {"allow_private": ["127.0.0.0/8"]}}),
                now,
            )
            .await
            .unwrap();
        store
            .create_webhook(
                "acme",
                NewSubscription {
                    id: "wh_bench".into(),
                    url: format!("http://{address}/hook"),
                    events: EventKind::ALL.iter().map(|k| k.as_str().to_owned()).collect(),
                    plan: None,
                    secret: coda_webhooks::signing::new_secret().unwrap(),
                },
                &key,
                5,
                now,
            )
            .await
            .unwrap();
        commit_runs(&store).await;
        let expected = RUNS * (STEPS as usize + 2);
        let settings = WebhookSettings {
            max_in_flight: 64,
            max_in_flight_per_tenant: 64,
            poll_ms: 5,
            ..WebhookSettings::default()
        };
        let webhooks = Arc::new(Webhooks::new(store.clone(), key, "bench", settings));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let batches_before = store.write_stats().batches;
        let started = Instant::now();
        let serving = tokio::spawn(webhooks.serve(async {
            let _ = stopped.await;
        }));
        while count.load(Ordering::Relaxed) < expected {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        let _ = stop.send(());
        let _ = serving.await;
        let batches = store.write_stats().batches - batches_before;
        println!(
            "webhook deliveries: {expected} ({RUNS} runs × {} events) in {:.2} s = {:.0} deliveries/s \
             (projection included; SQLite, {} write batches meanwhile)",
            STEPS + 2,
            elapsed.as_secs_f64(),
            expected as f64 / elapsed.as_secs_f64(),
            batches,
        );
    });
}
