//! Outbound webhooks' store: subscriptions are the tenant's own and capped; the journal's
//! projection finds what is not projected yet and writes each delivery once; deliveries
//! are claimed by one node at a time, the earliest of each run first, and an attempt's
//! result is written only under the claim it was made with.

use coda_store::{
    AttemptOutcome, AttemptResult, NewDelivery, NewSubscription, RunStatus, SecretsKey, StepCommit,
    SubscriptionPatch, SubscriptionWrite,
};

use crate::{commit, new_run, open, step, update};

fn key() -> SecretsKey {
    SecretsKey::from_bytes([7; 32])
}

fn subscription(id: &str, secret: &str) -> NewSubscription {
    NewSubscription {
        id: id.into(),
        url: "https://hooks.example.com/coda".into(),
        events: vec!["run.done".into()],
        plan: None,
        secret: secret.into(),
    }
}

fn delivery(id: &str, subscription: &str, position: u64) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        subscription: subscription.into(),
        position,
        event_type: "coda.step.finished".into(),
        body: format!("{{\"position\": {position}}}"),
    }
}

fn result(outcome: AttemptOutcome, status: Option<u16>) -> AttemptResult {
    AttemptResult {
        outcome,
        status,
        error: status
            .filter(|s| *s >= 300)
            .map(|s| format!("answered {s}")),
    }
}

async fn webhook_subscriptions_are_the_tenants_own_and_capped() {
    let (_dir, store) = open();
    let created = store
        .create_webhook("acme", subscription("wh_1", "whsec_one"), &key(), 2, 10)
        .await
        .unwrap();
    let SubscriptionWrite::Created(hook) = created else {
        panic!("{created:?}");
    };
    assert_eq!((hook.id.as_str(), hook.created_at_ms), ("wh_1", 10));
    store
        .create_webhook("acme", subscription("wh_2", "whsec_two"), &key(), 2, 11)
        .await
        .unwrap();
    assert_eq!(
        store
            .create_webhook("acme", subscription("wh_3", "whsec_3"), &key(), 2, 12)
            .await
            .unwrap(),
        SubscriptionWrite::TooMany { max: 2 }
    );
    // Another tenant's ids are not there for it, whatever it asks.
    assert_eq!(store.webhook("globex", "wh_1", 20).unwrap(), None);
    assert!(store.webhooks("globex", None, 10, 20).unwrap().is_empty());
    let patch = SubscriptionPatch {
        url: Some("https://elsewhere.example.com/".into()),
        ..SubscriptionPatch::default()
    };
    assert_eq!(
        store
            .update_webhook("globex", "wh_1", patch.clone(), 20)
            .await
            .unwrap(),
        None
    );
    assert!(!store.delete_webhook("globex", "wh_1").await.unwrap());
    assert_eq!(
        store
            .rotate_webhook_secret("globex", "wh_1", "whsec_x", &key(), 100, 20)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .webhook_deliveries("globex", "wh_1", None, 10)
            .unwrap(),
        None
    );
    // Its own: paged by id, changed, rotated (the previous secret's window shown while it
    // lasts), deleted.
    let page = store.webhooks("acme", None, 1, 20).unwrap();
    assert_eq!(page.len(), 1);
    let rest = store.webhooks("acme", Some(&page[0].id), 1, 20).unwrap();
    assert_eq!(rest[0].id, "wh_2");
    let changed = store
        .update_webhook("acme", "wh_1", patch, 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.url, "https://elsewhere.example.com/");
    assert_eq!(changed.events, ["run.done"]);
    let rotated = store
        .rotate_webhook_secret("acme", "wh_1", "whsec_new", &key(), 1_000, 40)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.previous_secret_until_ms, Some(1_000));
    assert_eq!(
        store
            .webhook("acme", "wh_1", 1_000)
            .unwrap()
            .unwrap()
            .previous_secret_until_ms,
        None
    );
    assert!(store.delete_webhook("acme", "wh_1").await.unwrap());
    assert_eq!(store.webhook("acme", "wh_1", 50).unwrap(), None);
}

async fn deliveries_are_projected_once_claimed_in_run_order_and_fenced() {
    let (_dir, store) = open();
    store
        .create_webhook("acme", subscription("wh_1", "whsec_one"), &key(), 5, 10)
        .await
        .unwrap();
    let run = store.start_run(new_run(None)).await.unwrap();
    for seq in 0..2 {
        let last = seq == 1;
        commit(
            &store,
            StepCommit {
                input: None,
                run_id: run.id.clone(),
                expected_seq: seq,
                step: step(seq),
                next: if last {
                    update(None, RunStatus::Done, None)
                } else {
                    update(Some("next"), RunStatus::Ready, Some(2_000))
                },
            },
        )
        .await
        .unwrap();
    }
    // Both steps are found (stamped at 2,000 ms), the run's news read from its cursor.
    let found = store.webhook_unprojected(0, 10_000, 100).unwrap();
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|(r, at)| *r == run.id && *at == 2_000));
    let news = store.webhook_run_news(&run.id, 100).unwrap().unwrap();
    assert_eq!(
        (news.next_seq, news.step_seq, news.status),
        (0, 2, RunStatus::Done)
    );
    assert_eq!(news.steps.len(), 2);
    assert_eq!(store.webhook_targets("acme").unwrap()[0].id, "wh_1");

    assert!(!store.webhook_deliveries_due(4_000).unwrap());
    let made = vec![delivery("msg_a", "wh_1", 1), delivery("msg_b", "wh_1", 5)];
    store
        .project_webhooks("acme", &run.id, 2, made, 3_000)
        .await
        .unwrap();
    // A second projection of the same run (another node) writes nothing new, and the
    // cursor never moves back.
    let again = vec![delivery("msg_c", "wh_1", 1), delivery("msg_d", "wh_1", 5)];
    store
        .project_webhooks("acme", &run.id, 1, again, 3_001)
        .await
        .unwrap();
    assert!(
        store
            .webhook_unprojected(0, 10_000, 100)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .webhook_run_news(&run.id, 100)
            .unwrap()
            .unwrap()
            .next_seq,
        2
    );
    let log = store
        .webhook_deliveries("acme", "wh_1", None, 10)
        .unwrap()
        .unwrap();
    let ids: Vec<&str> = log.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["msg_b", "msg_a"], "newest first");

    assert!(!store.webhook_deliveries_due(2_999).unwrap());
    assert!(store.webhook_deliveries_due(3_000).unwrap());
    // The earliest of the run is claimed alone: the later one waits for it. Another node
    // takes nothing while the claim lives.
    let claimed = store
        .claim_webhook_deliveries("node-a", 4_000, 1_000, 10, 8, &key())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let first = &claimed[0];
    assert_eq!(
        (first.id.as_str(), first.url.as_str()),
        ("msg_a", "https://hooks.example.com/coda")
    );
    assert_eq!(first.secrets, ["whsec_one"]);
    assert_eq!(
        first.first_at_ms, 4_000,
        "the window starts at the first attempt"
    );
    assert!(
        store
            .claim_webhook_deliveries("node-b", 4_500, 1_000, 10, 8, &key())
            .await
            .unwrap()
            .is_empty()
    );
    // Past its claim, another node takes it over; the first node's result, written late,
    // is refused.
    let taken = store
        .claim_webhook_deliveries("node-b", 5_001, 1_000, 10, 8, &key())
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, "msg_a");
    assert!(
        !store
            .finish_webhook_attempt(
                "msg_a",
                first.claim_seq,
                result(AttemptOutcome::Delivered, Some(200)),
                5_100
            )
            .await
            .unwrap()
    );
    // A failure under the live claim: retried at its time, the later one still waiting.
    assert!(
        store
            .finish_webhook_attempt(
                "msg_a",
                taken[0].claim_seq,
                result(AttemptOutcome::Retry { next_at_ms: 6_000 }, Some(500)),
                5_200
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_webhook_deliveries("node-b", 5_500, 1_000, 10, 8, &key())
            .await
            .unwrap()
            .is_empty()
    );
    let retried = store
        .claim_webhook_deliveries("node-b", 6_000, 1_000, 10, 8, &key())
        .await
        .unwrap();
    assert_eq!(retried[0].id, "msg_a");
    assert_eq!(retried[0].attempts, 1);
    // The window began with the takeover's claim (the first claim's attempt was never
    // written), and is kept across the attempts written since.
    assert_eq!(retried[0].first_at_ms, 5_001);
    store
        .finish_webhook_attempt(
            "msg_a",
            retried[0].claim_seq,
            result(AttemptOutcome::Delivered, Some(204)),
            6_100,
        )
        .await
        .unwrap();
    // Now the later one; failed for good, then queued again with the failed since a time.
    let next = store
        .claim_webhook_deliveries("node-b", 6_200, 1_000, 10, 8, &key())
        .await
        .unwrap();
    assert_eq!(next[0].id, "msg_b");
    store
        .finish_webhook_attempt(
            "msg_b",
            next[0].claim_seq,
            result(AttemptOutcome::Failed, Some(410)),
            6_300,
        )
        .await
        .unwrap();
    let log = store
        .webhook_deliveries("acme", "wh_1", None, 10)
        .unwrap()
        .unwrap();
    let states: Vec<(&str, &str, u32, Option<u16>)> = log
        .iter()
        .map(|d| (d.id.as_str(), d.status.as_str(), d.attempts, d.last_status))
        .collect();
    assert_eq!(
        states,
        [
            ("msg_b", "failed", 1, Some(410)),
            ("msg_a", "delivered", 2, Some(204))
        ]
    );
    assert_eq!(
        store
            .redeliver_failed("globex", "wh_1", 0, 7_000)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .redeliver_failed("acme", "wh_1", 0, 7_000)
            .await
            .unwrap(),
        Some(1)
    );
    let again = store
        .claim_webhook_deliveries("node-b", 7_000, 1_000, 10, 8, &key())
        .await
        .unwrap();
    assert_eq!(again[0].id, "msg_b");
    assert_eq!(
        again[0].first_at_ms, 7_000,
        "a redelivery has a window of its own"
    );
    // Redelivered again while that attempt is in flight: the attempt's result, under the
    // claim it was made with, writes nothing over the redelivery, whose window and count
    // start afresh.
    let requeued = store
        .redeliver("acme", "wh_1", "msg_b", 7_100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (requeued.status.as_str(), requeued.attempts),
        ("pending", 0)
    );
    assert!(
        !store
            .finish_webhook_attempt(
                "msg_b",
                again[0].claim_seq,
                result(AttemptOutcome::Failed, Some(500)),
                7_200
            )
            .await
            .unwrap(),
        "an attempt made before the redelivery wrote over it"
    );
    let after = store
        .webhook_delivery("acme", "wh_1", "msg_b")
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.status.as_str(), after.next_at_ms),
        ("pending", Some(7_100))
    );
    // One delivered is sent again when asked, under its tenant only.
    assert_eq!(
        store
            .redeliver("globex", "wh_1", "msg_a", 8_000)
            .await
            .unwrap(),
        None
    );
    let redelivered = store
        .redeliver("acme", "wh_1", "msg_a", 8_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(redelivered.status, "pending");
}

async fn a_tenant_has_at_most_its_allowance_of_deliveries_in_flight() {
    let (_dir, store) = open();
    store
        .create_webhook("acme", subscription("wh_1", "whsec_one"), &key(), 5, 10)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let run = store
            .start_run(new_run(Some(&format!("t{n}"))))
            .await
            .unwrap();
        let id = format!("msg_{n}");
        store
            .project_webhooks("acme", &run.id, 1, vec![delivery(&id, "wh_1", 0)], 100)
            .await
            .unwrap();
        ids.push(id);
    }
    let claimed = store
        .claim_webhook_deliveries("node-a", 200, 1_000, 10, 2, &key())
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        2,
        "each run's first is due, the tenant takes two"
    );
    assert!(
        store
            .claim_webhook_deliveries("node-b", 300, 1_000, 10, 2, &key())
            .await
            .unwrap()
            .is_empty(),
        "counted across nodes"
    );
}

on_every_backend!(
    webhook_subscriptions_are_the_tenants_own_and_capped,
    deliveries_are_projected_once_claimed_in_run_order_and_fenced,
    a_tenant_has_at_most_its_allowance_of_deliveries_in_flight,
);
