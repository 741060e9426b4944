//! The tenants' key-value stores: every call on both backends, limits, expiry, tenants kept
//! apart, and a step's call applied once however often the step runs.

use coda_store::{EffectRecord, EffectSlot, KvResult, Store, StoreError};
use coda_types::kv::{KvAnswer, KvEntry, KvLimits, KvOp};
use coda_types::{HostError, Value};

use crate::{new_run, open};

const NOW: i64 = 1_000_000;

async fn kv(store: &Store, tenant: &str, op: KvOp, now: i64) -> KvResult {
    store
        .kv(tenant, op, KvLimits::default(), now, None)
        .await
        .unwrap()
}

fn get(key: &str) -> KvOp {
    KvOp::Get { key: key.into() }
}

fn set(key: &str, value: Value, ttl_millis: Option<u64>) -> KvOp {
    KvOp::Set {
        key: key.into(),
        value,
        ttl_millis,
    }
}

fn increment(key: &str, by: i64, ttl_millis: Option<u64>) -> KvOp {
    KvOp::Increment {
        key: key.into(),
        by,
        ttl_millis,
    }
}

fn cas(key: &str, version: Option<u64>, value: Value) -> KvOp {
    KvOp::CompareAndSet {
        key: key.into(),
        version,
        value,
        ttl_millis: None,
    }
}

fn entry(value: Value, version: u64, expires_at_ms: Option<i64>) -> KvResult {
    Ok(KvAnswer::Entry(Some(KvEntry {
        value,
        version,
        expires_at_ms,
    })))
}

async fn kv_calls_read_write_and_version_keys() {
    let (_db, store) = open();
    let score = || Value::Integer(9);
    assert_eq!(
        kv(&store, "acme", get("survey/1"), NOW).await,
        Ok(KvAnswer::Entry(None))
    );
    assert_eq!(
        kv(&store, "acme", set("survey/1", score(), None), NOW).await,
        Ok(KvAnswer::Written(1))
    );
    assert_eq!(
        kv(&store, "acme", get("survey/1"), NOW).await,
        entry(score(), 1, None)
    );
    let text = Value::Text("promoter".into());
    assert_eq!(
        kv(&store, "acme", set("survey/1", text.clone(), None), NOW).await,
        Ok(KvAnswer::Written(2))
    );
    assert_eq!(
        kv(&store, "acme", get("survey/1"), NOW).await,
        entry(text, 2, None)
    );

    // Compare-and-set writes only over the version expected; none expects an absent key.
    assert_eq!(
        kv(&store, "acme", cas("survey/1", Some(1), score()), NOW).await,
        Ok(KvAnswer::Swapped(None))
    );
    assert_eq!(
        kv(&store, "acme", cas("survey/1", None, score()), NOW).await,
        Ok(KvAnswer::Swapped(None))
    );
    assert_eq!(
        kv(&store, "acme", cas("survey/1", Some(2), score()), NOW).await,
        Ok(KvAnswer::Swapped(Some(3)))
    );
    assert_eq!(
        kv(&store, "acme", cas("survey/2", None, score()), NOW).await,
        Ok(KvAnswer::Swapped(Some(1)))
    );

    // Increments count from 0, and refuse what is not an integer or would overflow.
    assert_eq!(
        kv(&store, "acme", increment("failed/+1555", 1, None), NOW).await,
        Ok(KvAnswer::Counted(1))
    );
    assert_eq!(
        kv(&store, "acme", increment("failed/+1555", 41, None), NOW).await,
        Ok(KvAnswer::Counted(42))
    );
    kv(
        &store,
        "acme",
        set("name", Value::Text("Ada".into()), None),
        NOW,
    )
    .await
    .unwrap();
    match kv(&store, "acme", increment("name", 1, None), NOW).await {
        Err(HostError::Invalid(m)) => assert!(m.contains("'name' holds text"), "{m}"),
        other => panic!("{other:?}"),
    }
    match kv(
        &store,
        "acme",
        increment("failed/+1555", i64::MAX, None),
        NOW,
    )
    .await
    {
        Err(HostError::Invalid(m)) => assert!(m.contains("overflows"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        kv(&store, "acme", get("failed/+1555"), NOW).await,
        entry(Value::Integer(42), 2, None)
    );

    assert_eq!(
        kv(
            &store,
            "acme",
            KvOp::Delete {
                key: "survey/1".into()
            },
            NOW
        )
        .await,
        Ok(KvAnswer::Deleted(true))
    );
    assert_eq!(
        kv(
            &store,
            "acme",
            KvOp::Delete {
                key: "survey/1".into()
            },
            NOW
        )
        .await,
        Ok(KvAnswer::Deleted(false))
    );
    assert_eq!(
        kv(&store, "acme", get("survey/1"), NOW).await,
        Ok(KvAnswer::Entry(None))
    );
    // survey/2, failed/+1555 and name are left.
    assert_eq!(store.kv_usage("acme").unwrap().0, 3);
}

async fn kv_of_another_tenant_is_not_seen() {
    let (_db, store) = open();
    kv(
        &store,
        "acme",
        set("contact/+1555", Value::Integer(1), None),
        NOW,
    )
    .await
    .unwrap();
    kv(&store, "acme", increment("count", 5, None), NOW)
        .await
        .unwrap();
    assert_eq!(
        kv(&store, "globex", get("contact/+1555"), NOW).await,
        Ok(KvAnswer::Entry(None))
    );
    // The same key is globex's own: its count starts from nothing, and acme's is untouched.
    assert_eq!(
        kv(&store, "globex", increment("count", 1, None), NOW).await,
        Ok(KvAnswer::Counted(1))
    );
    assert_eq!(
        kv(
            &store,
            "globex",
            KvOp::Delete {
                key: "contact/+1555".into()
            },
            NOW
        )
        .await,
        Ok(KvAnswer::Deleted(false))
    );
    assert_eq!(
        kv(&store, "acme", get("count"), NOW).await,
        entry(Value::Integer(5), 1, None)
    );
    assert_eq!(store.kv_usage("globex").unwrap().0, 1);
    assert_eq!(store.kv_usage("acme").unwrap().0, 2);
}

async fn kv_keys_expire_then_are_pruned() {
    let (_db, store) = open();
    kv(
        &store,
        "acme",
        set("sms/+1555", Value::Boolean(true), Some(1_000)),
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(
        kv(&store, "acme", get("sms/+1555"), NOW + 999).await,
        entry(Value::Boolean(true), 1, Some(NOW + 1_000))
    );
    // Expired: absent at once, before anything prunes it.
    assert_eq!(
        kv(&store, "acme", get("sms/+1555"), NOW + 1_000).await,
        Ok(KvAnswer::Entry(None))
    );

    // An increment's ttl starts the window when it creates the key; later counts keep it.
    kv(
        &store,
        "acme",
        increment("contacts/+1555", 1, Some(500)),
        NOW,
    )
    .await
    .unwrap();
    kv(
        &store,
        "acme",
        increment("contacts/+1555", 1, Some(500)),
        NOW + 400,
    )
    .await
    .unwrap();
    assert_eq!(
        kv(&store, "acme", get("contacts/+1555"), NOW + 499).await,
        entry(Value::Integer(2), 2, Some(NOW + 500))
    );
    // Past the window the count starts over, with a new window.
    assert_eq!(
        kv(
            &store,
            "acme",
            increment("contacts/+1555", 1, Some(500)),
            NOW + 500
        )
        .await,
        Ok(KvAnswer::Counted(1))
    );
    assert_eq!(
        kv(&store, "acme", get("contacts/+1555"), NOW + 501).await,
        entry(Value::Integer(1), 1, Some(NOW + 1_000))
    );
    match kv(&store, "acme", set("x", Value::Null, Some(0)), NOW).await {
        Err(HostError::Invalid(m)) => assert!(m.contains("ttl"), "{m}"),
        other => panic!("{other:?}"),
    }

    kv(&store, "globex", set("forever", Value::Null, None), NOW)
        .await
        .unwrap();
    // sms/+1555 was deleted by the read that met it expired; contacts/+1555 is due at
    // NOW + 1000, and pruning takes it, once.
    assert_eq!(store.kv_usage("acme").unwrap().0, 1);
    assert_eq!(store.prune_kv(NOW + 999, 10).await.unwrap(), 0);
    assert_eq!(store.prune_kv(NOW + 1_000, 10).await.unwrap(), 1);
    assert_eq!(store.prune_kv(NOW + 1_000, 10).await.unwrap(), 0);
    assert_eq!(store.kv_usage("acme").unwrap(), (0, 0));
    assert_eq!(store.kv_usage("globex").unwrap().0, 1);
}

async fn kv_limits_refuse_with_the_limit_named() {
    let (_db, store) = open();
    let limits = KvLimits {
        max_keys: 2,
        max_total_bytes: 40,
        ..KvLimits::default()
    };
    let call = |op: KvOp, now: i64| store.kv("acme", op, limits, now, None);
    let text = |n: usize| Value::Text("x".repeat(n));
    call(set("a", text(10), None), NOW).await.unwrap().unwrap();
    call(set("b", text(10), Some(100)), NOW)
        .await
        .unwrap()
        .unwrap();
    match call(set("c", text(1), None), NOW).await.unwrap() {
        Err(HostError::LimitExceeded(m)) => assert!(m.contains("max_keys 2"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Rewriting a key adds no key; growing it past the total is refused, shrinking is not.
    match call(set("a", text(30), None), NOW).await.unwrap() {
        Err(HostError::LimitExceeded(m)) => assert!(m.contains("max_total_bytes 40"), "{m}"),
        other => panic!("{other:?}"),
    }
    call(set("a", text(2), None), NOW).await.unwrap().unwrap();
    // A refused write changed nothing.
    assert_eq!(call(get("a"), NOW).await.unwrap(), entry(text(2), 2, None));
    // Expired keys do not hold a place: b's expiry makes room for c without a prune pass.
    assert_eq!(
        call(set("c", text(1), None), NOW + 100).await.unwrap(),
        Ok(KvAnswer::Written(1))
    );
    assert_eq!(store.kv_usage("acme").unwrap(), (2, 5));
    // Another tenant's limits are its own.
    store
        .kv("globex", set("c", text(1), None), limits, NOW, None)
        .await
        .unwrap()
        .unwrap();
}

/// A step's call is applied and journaled in one transaction: a re-execution of the step
/// (after a crash) gets the journaled answer and applies nothing, and a call whose run has
/// moved on or whose claim was lost applies nothing either.
async fn kv_increment_of_a_step_is_applied_once() {
    let (_db, store) = open();
    let run = store.start_run(new_run(None)).await.unwrap().id;
    let slot = |step_seq: u64, call_seq: u32, claim: Option<u64>| EffectSlot {
        run_id: run.clone(),
        claim,
        record: EffectRecord {
            step_seq,
            call_seq,
            kind: "kv".into(),
            digest: "digest-of-the-increment".into(),
            result: serde_json::Value::Null,
            at_ms: NOW,
        },
        scrubber: Default::default(),
    };
    let increment = || increment("contacts/+1555", 1, None);
    for _ in 0..3 {
        let answer = store
            .kv(
                "acme",
                increment(),
                KvLimits::default(),
                NOW,
                Some(slot(0, 0, None)),
            )
            .await
            .unwrap();
        assert_eq!(answer, Ok(KvAnswer::Counted(1)));
    }
    let effects = store.effects(&run, Some(0)).unwrap();
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert_eq!(effects[0].result, serde_json::json!({"Ok": {"counted": 1}}));
    // The step's next call is another increment, applied.
    let answer = store
        .kv(
            "acme",
            increment(),
            KvLimits::default(),
            NOW,
            Some(slot(0, 1, None)),
        )
        .await
        .unwrap();
    assert_eq!(answer, Ok(KvAnswer::Counted(2)));

    // Fenced: a step sequence the run is not at, or a claim it is not under.
    for stale in [slot(1, 0, None), slot(0, 2, Some(7))] {
        match store
            .kv("acme", increment(), KvLimits::default(), NOW, Some(stale))
            .await
        {
            Err(StoreError::Conflict { .. }) => {}
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(
        kv(&store, "acme", get("contacts/+1555"), NOW).await,
        entry(Value::Integer(2), 2, None)
    );
    assert_eq!(store.effects(&run, Some(0)).unwrap().len(), 2);
}

/// Two nodes, each with its own store (its own writer) on one database, increment one key
/// at once: every increment is applied, each answer is its own count.
async fn kv_increments_from_two_nodes_at_once_are_each_applied() {
    let db = crate::Db::new();
    let nodes = [
        std::sync::Arc::new(db.open()),
        std::sync::Arc::new(db.open()),
    ];
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let store = nodes[i % 2].clone();
            tokio::spawn(async move {
                store
                    .kv(
                        "acme",
                        increment("count", 1, None),
                        KvLimits::default(),
                        NOW,
                        None,
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut counts = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(KvAnswer::Counted(n)) => counts.push(n),
            other => panic!("{other:?}"),
        }
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=40).collect::<Vec<i64>>());
    assert_eq!(
        kv(&nodes[0], "acme", get("count"), NOW).await,
        entry(Value::Integer(40), 40, None)
    );
}

on_every_backend!(
    kv_calls_read_write_and_version_keys,
    kv_of_another_tenant_is_not_seen,
    kv_keys_expire_then_are_pruned,
    kv_limits_refuse_with_the_limit_named,
    kv_increment_of_a_step_is_applied_once,
    kv_increments_from_two_nodes_at_once_are_each_applied,
);
