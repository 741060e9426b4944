//! Runs as the API manages them: a cancel fences out a step begun before it, every journal
//! commit is announced once on disk, filters narrow within the tenant, versions carry digests.

use coda_store::{Control, ListOrder, RunFilter, RunStatus, StepCommit, StoreError};
use serde_json::json;

use super::{claim_due, commit, new_run, open, step, update};

async fn a_cancel_fences_out_the_step_in_flight_and_is_announced() {
    let (_dir, store) = open();
    let run = store.start_run(new_run(None)).await.unwrap();
    let commits = store.watch_run(&run.id);
    // A step begins at sequence 0, under a claim; the run is cancelled before it commits.
    let claimed = claim_due(&store, 1_000, 1, &["acme"]).await;
    assert_eq!(claimed.len(), 1);
    let in_flight = StepCommit {
        input: None,
        run_id: run.id.clone(),
        expected_seq: 0,
        step: step(0),
        next: update(Some("route"), RunStatus::Ready, Some(2_000)),
    };
    let Control::Applied(cancelled) = store
        .cancel_run("acme", &run.id, "cancelled by API", 1_500)
        .await
        .unwrap()
    else {
        panic!("refused");
    };
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!(cancelled.step_seq, 1);
    let notice = commits.changed().await;
    assert_eq!((&*notice.run_id, notice.seq), (run.id.as_str(), 0));
    assert_eq!(notice.status, RunStatus::Cancelled);
    // The step's commit loses: the run stays cancelled, its journal holds only the cancel.
    let lost = store
        .commit_claimed_step(in_flight, claimed[0].claim_seq)
        .await
        .unwrap_err();
    assert!(
        matches!(lost, StoreError::Conflict { expected: 0, .. }),
        "{lost}"
    );
    let record = store.run("acme", &run.id).unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Cancelled);
    assert_eq!(record.due_at_ms, None);
    let journal = store.journal("acme", &run.id).unwrap();
    assert_eq!(journal.len(), 1);
    assert!(journal[0].note.starts_with("cancelled by API"));
    assert!(
        claim_due(&store, i64::MAX / 2, 10, &["acme"])
            .await
            .is_empty()
    );
    // Refused once finished; another tenant's run is not found.
    assert!(matches!(
        store
            .cancel_run("acme", &run.id, "again", 1_600)
            .await
            .unwrap(),
        Control::Refused {
            status: RunStatus::Cancelled,
            ..
        }
    ));
    assert_eq!(
        store
            .cancel_run("globex", &run.id, "x", 1_600)
            .await
            .unwrap(),
        Control::NotFound
    );
}

async fn a_step_commit_is_announced_after_it_is_on_disk_to_its_runs_watchers_only() {
    let (_dir, store) = open();
    let run = store.start_run(new_run(None)).await.unwrap();
    let other = store.start_run(new_run(Some("other"))).await.unwrap();
    let (watch, second_watch) = (store.watch_run(&run.id), store.watch_run(&run.id));
    let other_watch = store.watch_run(&other.id);
    let dropped = store.watch_run(&run.id);
    drop(dropped);
    commit(
        &store,
        StepCommit {
            input: None,
            run_id: run.id.clone(),
            expected_seq: 0,
            step: step(0),
            next: update(None, RunStatus::Done, None),
        },
    )
    .await
    .unwrap();
    // Both of the run's watchers hear of it; the notice was kept until asked for.
    for watch in [&watch, &second_watch] {
        let notice = watch.changed().await;
        assert_eq!((&*notice.run_id, notice.seq), (run.id.as_str(), 0));
        assert_eq!(notice.status, RunStatus::Done);
    }
    // What the notice announces is readable.
    assert_eq!(store.journal_from("acme", &run.id, 0).unwrap().len(), 1);
    assert!(store.journal_from("acme", &run.id, 1).unwrap().is_empty());
    // The other run's watcher was not woken, and is by its own run's commit.
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), other_watch.changed());
    assert!(quiet.await.is_err(), "woken by another run's commit");
    store
        .cancel_run("acme", &other.id, "cancelled by API", 1_500)
        .await
        .unwrap();
    let notice = other_watch.changed().await;
    assert_eq!(
        (&*notice.run_id, notice.status),
        (other.id.as_str(), RunStatus::Cancelled)
    );
}

async fn the_journal_is_read_a_page_at_a_time_within_its_tenant() {
    let (_dir, store) = open();
    let run = store.start_run(new_run(None)).await.unwrap();
    for seq in 0..5 {
        let status = if seq == 4 {
            RunStatus::Done
        } else {
            RunStatus::Ready
        };
        commit(
            &store,
            StepCommit {
                input: None,
                run_id: run.id.clone(),
                expected_seq: seq,
                step: step(seq),
                next: update(Some("greet"), status, None),
            },
        )
        .await
        .unwrap();
    }
    let seqs = |from: u64, limit: usize| -> Vec<u64> {
        store
            .journal_page("acme", &run.id, from, limit)
            .unwrap()
            .iter()
            .map(|s| s.seq)
            .collect()
    };
    assert_eq!(seqs(0, 2), [0, 1]);
    assert_eq!(seqs(2, 2), [2, 3]);
    assert_eq!(seqs(4, 2), [4]);
    assert!(seqs(5, 2).is_empty());
    assert_eq!(seqs(1, usize::MAX), [1, 2, 3, 4]);
    assert!(
        store
            .journal_page("globex", &run.id, 0, 10)
            .unwrap()
            .is_empty()
    );
}

async fn runs_are_found_by_filter_within_their_tenant() {
    let (_dir, store) = open();
    let a = store.start_run(new_run(None)).await.unwrap();
    let mut other = new_run(None);
    other.plan = "survey".into();
    other.interaction = Some("int-2".into());
    other.now_ms = 5_000;
    let b = store.start_run(other).await.unwrap();
    let find = |filter: RunFilter| -> Vec<String> {
        store
            .find_runs("acme", &filter, ListOrder::OldestFirst, None, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(find(RunFilter::default()), [a.id.as_str(), b.id.as_str()]);
    let by_plan = RunFilter {
        plan: Some("survey".into()),
        ..RunFilter::default()
    };
    assert_eq!(find(by_plan.clone()), [b.id.as_str()]);
    let by_interaction = RunFilter {
        interaction: Some("int-1".into()),
        ..RunFilter::default()
    };
    assert_eq!(find(by_interaction), [a.id.as_str()]);
    let since = RunFilter {
        since_ms: Some(5_000),
        ..RunFilter::default()
    };
    assert_eq!(find(since), [b.id.as_str()]);
    let until = RunFilter {
        until_ms: Some(5_000),
        ..RunFilter::default()
    };
    assert_eq!(find(until), [a.id.as_str()]);
    let ready = RunFilter {
        status: Some(RunStatus::Ready),
        ..RunFilter::default()
    };
    assert_eq!(find(ready).len(), 2);
    assert!(
        store
            .find_runs("globex", &by_plan, ListOrder::OldestFirst, None, 10)
            .unwrap()
            .is_empty()
    );
}

async fn plan_versions_carry_their_time_and_digest() {
    let (_dir, store) = open();
    store
        .publish_plan("acme", "p", &json!({"n": 1}), 10)
        .await
        .unwrap();
    store
        .publish_plan("acme", "p", &json!({"n": 2}), 20)
        .await
        .unwrap();
    store
        .publish_plan("acme", "q", &json!({"n": 1}), 30)
        .await
        .unwrap();
    let versions = store.plan_versions("acme", "p").unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!((versions[0].version, versions[0].created_at_ms), (1, 10));
    assert_eq!((versions[1].version, versions[1].created_at_ms), (2, 20));
    assert_ne!(versions[0].digest, versions[1].digest);
    // The same body has the same digest, whatever plan it is.
    assert_eq!(
        versions[0].digest,
        store.plan_versions("acme", "q").unwrap()[0].digest
    );
    assert!(store.plan_versions("globex", "p").unwrap().is_empty());
}

on_every_backend!(
    a_cancel_fences_out_the_step_in_flight_and_is_announced,
    a_step_commit_is_announced_after_it_is_on_disk_to_its_runs_watchers_only,
    the_journal_is_read_a_page_at_a_time_within_its_tenant,
    runs_are_found_by_filter_within_their_tenant,
    plan_versions_carry_their_time_and_digest,
);
