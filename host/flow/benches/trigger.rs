//! From an interaction's `ended` event to the first step of the post-interaction run it
//! starts: the engine's own latency (the event applied to the interaction and the run created,
//! each committed to SQLite with `synchronous=FULL`, then the scheduler waking and stepping),
//! with the applet answered in-process so that only the engine and the store are measured.
//!
//! `cargo bench -p coda-flow --bench trigger [-- EVENTS RATE]` (default 5000 events at
//! 500 per second), one tokio runtime with two worker threads. Prints median, p90, p99 and
//! max in microseconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coda_flow::{Applets, Engine, FlowLimits, InteractionEvent, StepInput, WallClock};
use coda_plan::AppletRef;
use coda_store::Store;
use coda_types::{AppletInfo, InvocationReport, Outcome, Values};

/// Answers every step with `next`, noting when each run's first step began.
#[derive(Default)]
struct FirstStep {
    at: Mutex<HashMap<String, Instant>>,
}

#[async_trait]
impl Applets for FirstStep {
    fn info(&self, _tenant: &str, applet: &AppletRef) -> Option<AppletInfo> {
        Some(AppletInfo {
            name: applet.name().into(),
            version: applet.version().into(),
            description: String::new(),
            exits: vec!["next".into()],
            config_schema: serde_json::json!({}),
            needs_live_party: false,
            capabilities: vec![],
        })
    }

    async fn invoke(
        &self,
        _tenant: &str,
        _applet: &AppletRef,
        input: StepInput,
    ) -> Result<InvocationReport, String> {
        self.at
            .lock()
            .unwrap()
            .entry(input.context.run.clone())
            .or_insert_with(Instant::now);
        Ok(InvocationReport {
            result: Ok(Outcome::Exit("next".into())),
            data_changes: Values::new(),
            state_changes: Values::new(),
            logs: vec![],
            fuel_used: 0,
            host_calls: 0,
            elapsed: Duration::ZERO,
        })
    }
}

fn event(json: serde_json::Value) -> InteractionEvent {
    serde_json::from_value(json).expect("a valid event")
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // On the target's disk, not /tmp (which may be tmpfs, where fsync costs nothing).
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
        for text in [
            "name: live\ntype: default\nstart: a\npost_interaction: post-call\nnodes:\n  a:\n    applet: step@1.0.0\n",
            "name: post-call\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: step@1.0.0\n    exits: { next: b }\n  b:\n    applet: step@1.0.0\n",
        ] {
            let plan = coda_plan::parse(text).unwrap();
            store
                .publish_plan("acme", &plan.name, &serde_json::to_value(&plan).unwrap(), 0)
                .await
                .unwrap();
        }
        let steps = Arc::new(FirstStep::default());
        let engine = Arc::new(Engine::new(
            store,
            steps.clone(),
            Arc::new(WallClock),
            FlowLimits::default(),
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let scheduler = {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .serve(async {
                        let _ = stopped.await;
                    })
                    .await
            })
        };

        let mut ended_at = HashMap::new();
        let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
        let began = Instant::now();
        for i in 0..events {
            ticker.tick().await;
            let id = format!("call-{i}");
            engine
                .on_event(
                    "acme",
                    event(serde_json::json!({"type": "started", "interaction": id, "channel": "voice", "plan": "live"})),
                )
                .await
                .unwrap()
                .unwrap();
            let sent = Instant::now();
            let outcome = engine
                .on_event(
                    "acme",
                    event(serde_json::json!({"type": "ended", "interaction": id, "outcome": "completed"})),
                )
                .await
                .unwrap()
                .unwrap();
            for run in outcome.runs().iter().cloned() {
                ended_at.insert(run.id, sent);
            }
        }
        let sending = began.elapsed();
        // Let the last runs take their first step.
        let deadline = Instant::now() + Duration::from_secs(10);
        while steps.at.lock().unwrap().len() < ended_at.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = stop.send(());
        scheduler.await.unwrap().unwrap();

        let first = steps.at.lock().unwrap();
        let mut latencies: Vec<u128> = ended_at
            .iter()
            .filter_map(|(run, sent)| first.get(run).map(|at| at.duration_since(*sent).as_micros()))
            .collect();
        assert_eq!(latencies.len(), ended_at.len(), "every run took its first step");
        latencies.sort_unstable();
        let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "{} ended events at {rate}/s (sent in {:.2} s): ended → first step: median {} µs, p90 {} µs, p99 {} µs, max {} µs",
            latencies.len(),
            sending.as_secs_f64(),
            pct(0.5),
            pct(0.9),
            pct(0.99),
            latencies.last().unwrap()
        );
    });
}
