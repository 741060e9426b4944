//! Events kept until something takes them: a named event wakes the runs already waiting in
//! the write that stores it, or is taken by the commit that parks a run on a wait for it;
//! several are taken oldest first, one per wait; they expire, are bounded per interaction
//! and per tenant, and are another tenant's to nobody. Early interaction events are held
//! once per body, in arrival order, until the interaction starts.

use coda_store::{
    Channel, EventLimits, EventWait, EventsFull, Hold, NamedEvent, RunStatus, StepCommit, Store,
    StoreError,
};
use coda_types::{Value, Values};

use crate::lists::interaction;
use crate::{commit, new_run, open, step, update};

const LIMITS: EventLimits = EventLimits {
    keep_ms: 10_000,
    per_interaction: 3,
    per_tenant: 5,
};

fn named(tenant: &str, interaction: &str, name: &str, payload: i64) -> NamedEvent {
    let mut data = Values::new();
    data.insert("Disposition".into(), Value::Text(format!("code-{payload}")));
    NamedEvent {
        tenant: tenant.into(),
        interaction: interaction.into(),
        name: name.into(),
        payload: Value::Integer(payload),
        data,
    }
}

/// A run of `tenant` on interaction `int` (at 1 s), then its first step committed at 2 s
/// parking it on a wait for `event`: what the commit left the run as.
async fn park(store: &Store, tenant: &str, int: &str, event: &str) -> String {
    let mut new = new_run(None);
    new.tenant = tenant.into();
    new.interaction = Some(int.into());
    let run = store.start_run(new).await.unwrap();
    let mut next = update(Some("late"), RunStatus::Waiting, Some(3_600_000));
    next.wait = Some(EventWait {
        event: event.into(),
        on_event: Some("thank".into()),
        node: Some("wait".into()),
    });
    let claimed = crate::claim_due(store, 2_000, 1_000, &[tenant]).await;
    let claim = claimed
        .iter()
        .find(|c| c.run.id == run.id)
        .unwrap()
        .claim_seq;
    store
        .commit_claimed_step(
            StepCommit {
                input: None,
                run_id: run.id.clone(),
                expected_seq: 0,
                step: step(0),
                next,
            },
            claim,
        )
        .await
        .unwrap();
    run.id
}

fn status(store: &Store, tenant: &str, run: &str) -> RunStatus {
    store.run(tenant, run).unwrap().unwrap().status
}

async fn an_event_wakes_the_runs_waiting_for_it_in_the_write_that_stores_it() {
    let (_dir, store) = open();
    let run = park(&store, "acme", "int-1", "disposition").await;
    assert_eq!(status(&store, "acme", &run), RunStatus::Waiting);
    // Another name wakes nothing and is kept.
    let other = store
        .deliver_event(named("acme", "int-1", "survey", 0), LIMITS, 2_500)
        .await
        .unwrap();
    assert!(other.kept && other.woken.is_empty());
    assert_eq!(status(&store, "acme", &run), RunStatus::Waiting);

    let delivered = store
        .deliver_event(named("acme", "int-1", "disposition", 7), LIMITS, 3_000)
        .await
        .unwrap();
    assert_eq!(delivered.woken, std::slice::from_ref(&run));
    assert!(!delivered.kept);
    assert_eq!((delivered.seq, delivered.expires_at_ms), (2, 13_000));
    let record = store.run("acme", &run).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Ready);
    assert_eq!(record.node.as_deref(), Some("thank"));
    assert_eq!(record.data.get("Event"), Some(&Value::Integer(7)));
    assert_eq!(
        record.data.get("Disposition"),
        Some(&Value::Text("code-7".into()))
    );
    // Stored, and taken by the run it woke, in that one write.
    let events = store.named_events("acme", "int-1").unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].taken_by, std::slice::from_ref(&run));
    assert_eq!(events[1].taken_at_ms, Some(3_000));
    assert!(events[0].taken_by.is_empty());
    assert_eq!(store.event_counts("acme").unwrap(), (1, 0));
    let journal = store.journal("acme", &run).unwrap();
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[1].note, "event `disposition` received → thank");
    assert_eq!(journal[1].node, "wait");
}

async fn an_event_that_came_first_is_taken_by_the_commit_that_parks_on_it() {
    let (_dir, store) = open();
    let kept = store
        .deliver_event(named("acme", "int-1", "disposition", 9), LIMITS, 1_500)
        .await
        .unwrap();
    assert!(kept.kept && kept.woken.is_empty());
    assert_eq!(store.event_counts("acme").unwrap(), (1, 0));

    let run = park(&store, "acme", "int-1", "disposition").await;
    // The commit that parked it took the event: the run goes on at once.
    let record = store.run("acme", &run).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Ready);
    assert_eq!(record.node.as_deref(), Some("thank"));
    assert_eq!(record.wait, None);
    assert_eq!(record.data.get("Event"), Some(&Value::Integer(9)));
    let journal = store.journal("acme", &run).unwrap();
    let notes: Vec<&str> = journal.iter().map(|s| s.note.as_str()).collect();
    assert_eq!(
        notes,
        ["exit next → route", "event `disposition` received → thank"]
    );
    assert_eq!(
        journal[1].data_changes.get("Event"),
        Some(&Value::Integer(9))
    );
    let events = store.named_events("acme", "int-1").unwrap();
    assert_eq!(events[0].taken_by, [run]);
    assert_eq!(store.event_counts("acme").unwrap(), (0, 0));
}

async fn several_kept_events_are_taken_oldest_first_one_per_wait() {
    let (_dir, store) = open();
    let roomy = EventLimits {
        per_interaction: 10,
        ..LIMITS
    };
    for (payload, name) in [(1, "reply"), (2, "other"), (3, "reply"), (4, "reply")] {
        store
            .deliver_event(named("acme", "int-1", name, payload), roomy, 1_500)
            .await
            .unwrap();
    }
    let first = park(&store, "acme", "int-1", "reply").await;
    let second = park(&store, "acme", "int-1", "reply").await;
    let event_of = |run: &str| store.run("acme", run).unwrap().unwrap().data["Event"].clone();
    assert_eq!(event_of(&first), Value::Integer(1));
    assert_eq!(event_of(&second), Value::Integer(3));
    let taken: Vec<(i64, bool)> = store
        .named_events("acme", "int-1")
        .unwrap()
        .iter()
        .map(|e| (e.received_at_ms, e.taken_by.is_empty()))
        .collect();
    assert_eq!(
        taken,
        [(1_500, false), (1_500, true), (1_500, false), (1_500, true)]
    );
    // The other name's event and the newest reply are left for later waits.
    assert_eq!(store.event_counts("acme").unwrap(), (2, 0));
}

async fn kept_events_expire_and_are_bounded_per_interaction_and_tenant() {
    let (_dir, store) = open();
    for n in 0..3 {
        store
            .deliver_event(named("acme", "int-1", "reply", n), LIMITS, 1_000)
            .await
            .unwrap();
    }
    // The interaction's bound: refused, nothing stored.
    let refused = store
        .deliver_event(named("acme", "int-1", "reply", 3), LIMITS, 1_000)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            StoreError::EventsFull(EventsFull { limit: 3, .. })
        ),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("interaction `int-1`"),
        "{refused}"
    );
    assert_eq!(store.named_events("acme", "int-1").unwrap().len(), 3);
    // The tenant's bound, over its interactions.
    for n in 0..2 {
        store
            .deliver_event(named("acme", "int-2", "reply", n), LIMITS, 5_000)
            .await
            .unwrap();
    }
    let refused = store
        .deliver_event(named("acme", "int-3", "reply", 0), LIMITS, 5_000)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("the tenant keeps 5"),
        "{refused}"
    );
    // Another tenant has bounds of its own.
    store
        .deliver_event(named("globex", "int-3", "reply", 0), LIMITS, 5_000)
        .await
        .unwrap();
    // Expired (10 s after arrival) an event is not taken by a wait...
    let mut new = new_run(None);
    new.interaction = Some("int-1".into());
    let late = store.start_run(new).await.unwrap();
    let mut next = update(Some("late"), RunStatus::Waiting, Some(3_600_000));
    next.wait = Some(EventWait {
        event: "reply".into(),
        on_event: None,
        node: Some("wait".into()),
    });
    let mut parked = step(0);
    parked.at_ms = 11_000;
    commit(
        &store,
        StepCommit {
            input: None,
            run_id: late.id.clone(),
            expected_seq: 0,
            step: parked,
            next,
        },
    )
    .await
    .unwrap();
    assert_eq!(status(&store, "acme", &late.id), RunStatus::Waiting);
    // ... and a tenant at its bound makes room of what expired before refusing.
    let room = store
        .deliver_event(named("acme", "int-3", "reply", 0), LIMITS, 11_000)
        .await
        .unwrap();
    assert!(room.kept);
    assert_eq!(store.event_counts("acme").unwrap(), (3, 0));
    // The scheduler's pass prunes what expired, taken or not, a batch at a time.
    assert_eq!(store.prune_events(16_000, 1).await.unwrap(), 1);
    // acme's two at int-2 and globex's one.
    assert_eq!(store.prune_events(16_000, 100).await.unwrap(), 2);
    assert_eq!(store.prune_events(16_000, 100).await.unwrap(), 0);
    assert_eq!(store.event_counts("acme").unwrap(), (1, 0));
    assert_eq!(store.named_events("acme", "int-2").unwrap(), vec![]);
    assert_eq!(store.named_events("acme", "int-3").unwrap().len(), 1);
    // An interaction's expired events take no room in its bound, pruned or not yet.
    for n in 0..3 {
        store
            .deliver_event(named("acme", "int-4", "reply", n), LIMITS, 20_000)
            .await
            .unwrap();
    }
    assert_eq!(
        store.event_counts("acme").unwrap(),
        (4, 0),
        "not pruned yet"
    );
    let after = store
        .deliver_event(named("acme", "int-4", "reply", 3), LIMITS, 31_000)
        .await
        .unwrap();
    assert!(after.kept);
}

async fn another_tenants_interaction_sees_no_event() {
    let (_dir, store) = open();
    store
        .deliver_event(named("acme", "int-1", "reply", 1), LIMITS, 1_500)
        .await
        .unwrap();
    // A run of another tenant on an interaction of the same id takes nothing and is woken
    // by nothing of acme's.
    let theirs = park(&store, "globex", "int-1", "reply").await;
    assert_eq!(status(&store, "globex", &theirs), RunStatus::Waiting);
    let again = store
        .deliver_event(named("acme", "int-1", "reply", 2), LIMITS, 2_500)
        .await
        .unwrap();
    assert!(again.kept);
    assert_eq!(status(&store, "globex", &theirs), RunStatus::Waiting);
    assert!(store.named_events("globex", "int-1").unwrap().is_empty());
    assert_eq!(store.named_events("acme", "int-1").unwrap().len(), 2);
    assert_eq!(store.event_counts("globex").unwrap(), (0, 0));
}

async fn early_interaction_events_are_held_once_in_order_until_the_start() {
    let (_dir, store) = open();
    let ended = r#"{"type":"ended","interaction":"c-1"}"#.to_owned();
    let left = r#"{"type":"party-disconnected","interaction":"c-1","party":"agent"}"#.to_owned();
    assert_eq!(
        store
            .hold_event("acme", "c-1", left.clone(), LIMITS, 1_000)
            .await
            .unwrap(),
        Hold::Held {
            seq: 1,
            expires_at_ms: 11_000
        }
    );
    assert_eq!(
        store
            .hold_event("acme", "c-1", ended.clone(), LIMITS, 1_100)
            .await
            .unwrap(),
        Hold::Held {
            seq: 2,
            expires_at_ms: 11_100
        }
    );
    // Delivered again: held once.
    assert_eq!(
        store
            .hold_event("acme", "c-1", ended.clone(), LIMITS, 1_200)
            .await
            .unwrap(),
        Hold::Duplicate {
            seq: 2,
            expires_at_ms: 11_100
        }
    );
    let held: Vec<String> = store
        .held_events("acme", "c-1")
        .unwrap()
        .into_iter()
        .map(|h| h.body)
        .collect();
    assert_eq!(held, [left, ended.clone()]);
    assert!(store.held_events("globex", "c-1").unwrap().is_empty());
    assert_eq!(store.event_counts("acme").unwrap(), (0, 2));
    // Not started yet: nothing for the scheduler's pass to apply.
    assert!(store.started_with_held(10).unwrap().is_empty());

    // Once the interaction exists, nothing more is held: the caller applies it.
    store
        .update_interaction::<()>("acme", "c-1", |_| {
            Ok(interaction("c-1", Channel::Voice, None, 2_000))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .hold_event("acme", "c-1", ended, LIMITS, 2_100)
            .await
            .unwrap(),
        Hold::Started
    );
    assert_eq!(
        store.started_with_held(10).unwrap(),
        [("acme".to_owned(), "c-1".to_owned())]
    );
    store.release_held("acme", "c-1", 1).await.unwrap();
    store.release_held("acme", "c-1", 1).await.unwrap();
    assert_eq!(store.event_counts("acme").unwrap(), (0, 1));
    // Held events expire like named ones.
    assert_eq!(store.prune_events(11_100, 10).await.unwrap(), 1);
    assert!(store.held_events("acme", "c-1").unwrap().is_empty());
    assert_eq!(store.event_counts("acme").unwrap(), (0, 0));
}

async fn held_events_are_bounded_per_interaction_and_tenant() {
    let (_dir, store) = open();
    let body =
        |n: u32, id: &str| format!(r#"{{"type":"ended","interaction":"{id}","outcome":"o{n}"}}"#);
    for n in 0..3 {
        store
            .hold_event("acme", "c-1", body(n, "c-1"), LIMITS, 1_000)
            .await
            .unwrap();
    }
    let refused = store
        .hold_event("acme", "c-1", body(3, "c-1"), LIMITS, 1_000)
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("interaction `c-1` keeps 3 held events"),
        "{refused}"
    );
    for n in 0..2 {
        store
            .hold_event("acme", "c-2", body(n, "c-2"), LIMITS, 1_000)
            .await
            .unwrap();
    }
    let refused = store
        .hold_event("acme", "c-3", body(0, "c-3"), LIMITS, 1_000)
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("the tenant keeps 5 held events"),
        "{refused}"
    );
    assert!(store.held_events("acme", "c-3").unwrap().is_empty());
}

/// Two nodes at once on one database: one parks runs on their waits while the other
/// delivers their events, each interaction's two writes racing. Whichever wins, no event is
/// left untaken beside a run waiting for it: every run is woken, every event taken once.
async fn a_delivery_and_a_parking_commit_racing_on_two_nodes_lose_nothing() {
    let db = crate::Db::new();
    let parking = std::sync::Arc::new(db.open());
    let delivering = std::sync::Arc::new(db.open());
    const N: usize = 40;
    let mut runs = Vec::new();
    for i in 0..N {
        let mut new = new_run(None);
        new.interaction = Some(format!("race-{i}"));
        runs.push(parking.start_run(new).await.unwrap().id);
    }
    let claimed = crate::claim_due(&parking, 2_000, 1_000, &["acme"]).await;
    let parks = {
        let parking = parking.clone();
        let runs = runs.clone();
        tokio::spawn(async move {
            let mut commits = Vec::new();
            for run in &runs {
                let claim = claimed.iter().find(|c| &c.run.id == run).unwrap().claim_seq;
                let mut next = update(Some("late"), RunStatus::Waiting, Some(3_600_000));
                next.wait = Some(EventWait {
                    event: "reply".into(),
                    on_event: Some("thank".into()),
                    node: Some("wait".into()),
                });
                let parking = parking.clone();
                let commit = StepCommit {
                    input: None,
                    run_id: run.clone(),
                    expected_seq: 0,
                    step: step(0),
                    next,
                };
                commits.push(tokio::spawn(async move {
                    parking.commit_claimed_step(commit, claim).await.unwrap()
                }));
            }
            for commit in commits {
                commit.await.unwrap();
            }
        })
    };
    let mut deliveries = Vec::new();
    for i in 0..N {
        let delivering = delivering.clone();
        deliveries.push(tokio::spawn(async move {
            delivering
                .deliver_event(
                    named("acme", &format!("race-{i}"), "reply", i as i64),
                    EventLimits::default(),
                    2_000,
                )
                .await
                .unwrap()
        }));
    }
    parks.await.unwrap();
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    for (i, run) in runs.iter().enumerate() {
        let record = parking.run("acme", run).unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Ready, "race-{i}: {record:?}");
        assert_eq!(record.data.get("Event"), Some(&Value::Integer(i as i64)));
        let events = parking.named_events("acme", &format!("race-{i}")).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].taken_by, std::slice::from_ref(run));
    }
    assert_eq!(parking.event_counts("acme").unwrap(), (0, 0));
}

on_every_backend!(
    a_delivery_and_a_parking_commit_racing_on_two_nodes_lose_nothing,
    an_event_wakes_the_runs_waiting_for_it_in_the_write_that_stores_it,
    an_event_that_came_first_is_taken_by_the_commit_that_parks_on_it,
    several_kept_events_are_taken_oldest_first_one_per_wait,
    kept_events_expire_and_are_bounded_per_interaction_and_tenant,
    another_tenants_interaction_sees_no_event,
    early_interaction_events_are_held_once_in_order_until_the_start,
    held_events_are_bounded_per_interaction_and_tenant,
);
