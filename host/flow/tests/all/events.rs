//! Nothing a platform sends is dropped because it came early: a named event delivered
//! before its run reaches the wait is taken by the wait, and an interaction's end that
//! arrives before its start is held, then applied after the start, starting one run. Each
//! test runs on SQLite and, with `CODA_TEST_POSTGRES`, on PostgreSQL.

use coda_flow::{EventAccepted, EventError};
use coda_store::{InteractionStatus, RunStatus, Store};
use serde_json::json;

use crate::postgres::Database;
use crate::{Host, event, host, host_on, send, start_run};

/// The test's host on SQLite, then (when a server is named) on PostgreSQL.
async fn hosts(test: &str) -> Vec<Host> {
    let mut hosts = vec![host().await];
    if let Some(database) = Database::new(test) {
        let store = Store::open_url(&database.url).unwrap();
        hosts.push(host_on(tempfile::tempdir().unwrap(), store, Some(database)).await);
    }
    hosts
}

fn notes(host: &Host, run: &str) -> Vec<String> {
    host.engine
        .store()
        .journal("acme", run)
        .unwrap()
        .into_iter()
        .map(|s| s.note)
        .collect()
}

#[tokio::test]
async fn a_disposition_sent_before_the_wait_is_taken_by_it() {
    for host in hosts("early_disposition").await {
        let run = start_run(&host, "dispo", Some("i7")).await;
        // The disposition comes first: nothing waits yet, so it is kept.
        let kept = host
            .engine
            .deliver("acme", "i7", "disposition", json!({"code": "sale"}))
            .await
            .unwrap()
            .unwrap();
        assert!(kept.kept && kept.woken.is_empty(), "{kept:?}");
        // The run reaches its wait and takes it in the commit that would have parked it:
        // it goes on at once by the event's exit, never by the timeout's (an hour away, to
        // which the virtual clock would jump if the run were left waiting).
        host.engine.run_until_idle().await.unwrap();
        let record = host.engine.store().run("acme", &run).unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Done);
        assert_eq!(
            notes(&host, &run),
            [
                "wait up to 3600000 ms for `disposition`",
                "event `disposition` received → thank",
                "exit next is not wired: the run ends"
            ]
        );
        assert_eq!(
            record.data.get("Event").map(|v| v.to_json()),
            Some(json!({"code": "sale"}))
        );
        let events = host.engine.store().named_events("acme", "i7").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].taken_by, std::slice::from_ref(&run));

        // One event per wait: a second run waiting for it later finds none left, waits, and
        // is woken by the next one.
        let second = start_run(&host, "dispo", Some("i7")).await;
        let created = host
            .engine
            .store()
            .run("acme", &second)
            .unwrap()
            .unwrap()
            .created_at_ms;
        host.engine.run_until(Some(created)).await.unwrap();
        assert_eq!(
            host.engine
                .store()
                .run("acme", &second)
                .unwrap()
                .unwrap()
                .status,
            RunStatus::Waiting
        );
        let woke = host
            .engine
            .deliver("acme", "i7", "disposition", json!({"code": "no-sale"}))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(woke.woken, std::slice::from_ref(&second));
        assert!(!woke.kept);
    }
}

#[tokio::test]
async fn an_end_before_its_start_is_held_and_starts_one_run_after_it() {
    for host in hosts("ended_first").await {
        let engine = &host.engine;
        let held = |accepted: EventAccepted| match accepted {
            EventAccepted::Held(held) => held,
            EventAccepted::Applied(outcome) => panic!("applied, not held: {outcome:?}"),
        };
        // Out of order: the agent's join and the end come before the start, the end twice.
        let joined = engine
            .on_event(
                "acme",
                event(json!({"type": "party-joined", "interaction": "c9", "party": "agent", "agent": "ada"})),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(held(joined).seq, 1);
        let ended = event(json!({"type": "ended", "interaction": "c9", "outcome": "resolved"}));
        let first = held(
            engine
                .on_event("acme", ended.clone())
                .await
                .unwrap()
                .unwrap(),
        );
        assert!(!first.duplicate);
        let again = held(
            engine
                .on_event("acme", ended.clone())
                .await
                .unwrap()
                .unwrap(),
        );
        assert!(again.duplicate && again.seq == first.seq);
        // Nothing exists yet, for this tenant or another.
        assert!(engine.store().interaction("acme", "c9").unwrap().is_none());
        assert!(
            engine
                .store()
                .held_events("globex", "c9")
                .unwrap()
                .is_empty()
        );
        // Another tenant's start of the same id applies none of acme's.
        let theirs = engine
            .on_event(
                "globex",
                event(json!({"type": "started", "interaction": "c9", "channel": "voice"})),
            )
            .await
            .unwrap()
            .unwrap()
            .applied()
            .unwrap();
        assert_eq!(theirs.reconciled, 0);

        // The start applies what was held, in arrival order, in the same call.
        let started = send(
            &host,
            json!({"type": "started", "interaction": "c9", "channel": "voice", "plan": "live"}),
        )
        .await;
        assert_eq!(started.reconciled, 2);
        assert_eq!(started.runs.len(), 1, "{started:?}");
        assert!(started.runs[0].created);
        assert_eq!(started.interaction.status, InteractionStatus::Completed);
        assert_eq!(started.interaction.completed_by.as_deref(), Some("ada"));
        assert!(engine.store().held_events("acme", "c9").unwrap().is_empty());
        let run = engine
            .store()
            .run("acme", &started.runs[0].id)
            .unwrap()
            .unwrap();
        assert_eq!(run.plan, "post-call");

        // The end delivered once more, and the start again: still one run.
        let redelivered = send(
            &host,
            json!({"type": "ended", "interaction": "c9", "outcome": "resolved"}),
        )
        .await;
        assert_eq!(redelivered.runs[0].id, run.id);
        assert!(!redelivered.runs[0].created);
        let restarted = send(
            &host,
            json!({"type": "started", "interaction": "c9", "channel": "voice", "plan": "live"}),
        )
        .await;
        // (A start of a completed interaction names the run its end started, as before.)
        assert!(restarted.runs.iter().all(|r| !r.created && r.id == run.id));
        assert_eq!(restarted.reconciled, 0);
        let all = engine.store().runs("acme", None, 100).unwrap();
        assert_eq!(all.len(), 1);
        // Started again on another channel is still the conflict it was.
        let refused = engine
            .on_event(
                "acme",
                event(json!({"type": "started", "interaction": "c9", "channel": "chat"})),
            )
            .await
            .unwrap();
        assert!(
            matches!(refused, Err(EventError::Conflict(..))),
            "{refused:?}"
        );
    }
}

/// A start whose held events were not applied (the host stopped between its write and
/// theirs) leaves them to the scheduler's pass, which applies them the same way, once.
#[tokio::test]
async fn held_events_a_start_left_behind_are_applied_by_the_schedulers_pass() {
    for host in hosts("held_left").await {
        let engine = &host.engine;
        let held = engine
            .on_event(
                "acme",
                event(json!({"type": "ended", "interaction": "c10"})),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(held, EventAccepted::Held(_)));
        // The start's own write, as if the host died right after it.
        let store = engine.store();
        let record: coda_store::InteractionRecord = serde_json::from_value(json!({
            "id": "c10", "channel": "voice", "plan": "live", "status": "active",
            "present": ["caller"], "agent_reached": false, "data": {}, "post_flow": null,
            "updated_at_ms": 1
        }))
        .unwrap();
        store
            .update_interaction::<()>("acme", "c10", move |_| Ok(record))
            .await
            .unwrap()
            .unwrap();
        engine.tend_events().await;
        assert!(store.held_events("acme", "c10").unwrap().is_empty());
        let record = store.interaction("acme", "c10").unwrap().unwrap();
        assert_eq!(record.status, InteractionStatus::Completed);
        assert_eq!(store.runs("acme", None, 100).unwrap().len(), 1);
        // A second pass finds nothing left to apply.
        engine.tend_events().await;
        assert_eq!(store.runs("acme", None, 100).unwrap().len(), 1);
    }
}

/// Past its bound an event is refused and nothing is kept: the sender learns it.
#[tokio::test]
async fn an_event_past_the_bound_is_refused_not_dropped_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let engine = coda_flow::Engine::new(
        store,
        std::sync::Arc::new(crate::Script),
        std::sync::Arc::new(coda_flow::VirtualClock::new()),
        coda_flow::FlowLimits {
            max_events_per_interaction: 1,
            ..coda_flow::FlowLimits::default()
        },
    );
    engine
        .deliver("acme", "i1", "reply", json!(1))
        .await
        .unwrap()
        .unwrap();
    let refused = engine
        .deliver("acme", "i1", "reply", json!(2))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(refused, EventError::EventsFull(_)), "{refused}");
    assert_eq!(engine.store().named_events("acme", "i1").unwrap().len(), 1);
    engine
        .on_event("acme", event(json!({"type": "ended", "interaction": "c1"})))
        .await
        .unwrap()
        .unwrap();
    let refused = engine
        .on_event(
            "acme",
            event(json!({"type": "ended", "interaction": "c1", "outcome": "other"})),
        )
        .await
        .unwrap()
        .unwrap_err();
    assert!(refused.to_string().contains("held events"), "{refused}");
}
