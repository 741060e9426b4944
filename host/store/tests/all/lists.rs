//! The lists the console pages through: runs and interactions in either order by keyset,
//! with their filters, and usage cut into buckets.

use coda_store::{
    Channel, InteractionFilter, InteractionRecord, InteractionStatus, ListOrder, NewRun, RunFilter,
    RunStatus,
};
use serde_json::json;

use crate::{new_run, open};

/// Every page of `page(after)` until a page is not full: the ids in the order read.
fn read_all(limit: usize, mut page: impl FnMut(Option<&str>) -> Vec<String>) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    loop {
        let ids = page(all.last().map(String::as_str));
        let full = ids.len() == limit;
        all.extend(ids);
        if !full {
            return all;
        }
    }
}

async fn runs_are_paged_oldest_or_newest_first_with_none_missed_or_repeated() {
    let (_dir, store) = open();
    // Created at 1000, 1000, 1000, 2000, 2000, 3000, 4000: ties are ordered by id.
    let mut made: Vec<(i64, String)> = Vec::new();
    for (n, at) in [1_000, 1_000, 1_000, 2_000, 2_000, 3_000, 4_000]
        .into_iter()
        .enumerate()
    {
        let run = NewRun {
            now_ms: at,
            plan: if n % 2 == 0 { "even" } else { "odd" }.into(),
            interaction: Some(format!("int-{}", n % 3)),
            ..new_run(None)
        };
        made.push((at, store.start_run(run).await.unwrap().id));
    }
    store
        .start_run(NewRun {
            tenant: "globex".into(),
            ..new_run(None)
        })
        .await
        .unwrap();
    made.sort();
    let oldest: Vec<String> = made.iter().map(|(_, id)| id.clone()).collect();
    let newest: Vec<String> = oldest.iter().rev().cloned().collect();
    for (order, expected) in [
        (ListOrder::OldestFirst, &oldest),
        (ListOrder::NewestFirst, &newest),
    ] {
        for limit in [1, 2, 3, 7, 100] {
            let all = read_all(limit, |after| {
                store
                    .find_runs("acme", &RunFilter::default(), order, after, limit)
                    .unwrap()
                    .into_iter()
                    .map(|r| r.id)
                    .collect()
            });
            assert_eq!(&all, expected, "{order:?} by pages of {limit}");
        }
    }
    // Filters page the same way, in both orders.
    let by_plan = RunFilter {
        plan: Some("even".into()),
        since_ms: Some(1_000),
        until_ms: Some(4_000),
        ..RunFilter::default()
    };
    let expected: Vec<String> = store
        .find_runs("acme", &by_plan, ListOrder::OldestFirst, None, 100)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        expected.len(),
        3,
        "runs 0, 2 and 4 (run 6 is at the window's end)"
    );
    let newest_pages = read_all(2, |after| {
        store
            .find_runs("acme", &by_plan, ListOrder::NewestFirst, after, 2)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    });
    assert_eq!(
        newest_pages,
        expected.iter().rev().cloned().collect::<Vec<_>>()
    );
    let ready_for_int_0 = RunFilter {
        status: Some(RunStatus::Ready),
        interaction: Some("int-0".into()),
        ..RunFilter::default()
    };
    assert_eq!(
        store
            .find_runs("acme", &ready_for_int_0, ListOrder::NewestFirst, None, 100)
            .unwrap()
            .len(),
        3
    );
    // A cursor that names no run of the tenant (another tenant's included) ends the list.
    assert!(
        store
            .find_runs(
                "globex",
                &RunFilter::default(),
                ListOrder::NewestFirst,
                Some(&oldest[0]),
                10
            )
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .find_runs(
                "acme",
                &RunFilter::default(),
                ListOrder::OldestFirst,
                Some("nope"),
                10
            )
            .unwrap()
            .is_empty()
    );
}

pub(crate) fn interaction(
    id: &str,
    channel: Channel,
    skill: Option<&str>,
    at: i64,
) -> InteractionRecord {
    InteractionRecord {
        id: id.into(),
        channel,
        plan: None,
        status: InteractionStatus::Active,
        present: vec![coda_store::Party::Caller],
        agent_reached: false,
        data: Default::default(),
        post_flow: None,
        post_flow_fired: false,
        follow_up: None,
        updated_at_ms: at,
        skill: skill.map(str::to_owned),
        agent: None,
        completed_by: None,
        completed_at_ms: None,
        details: Default::default(),
        post_contact: None,
        disposition: None,
    }
}

async fn interactions_are_listed_by_filter_and_paged_in_either_order() {
    let (_dir, store) = open();
    let made = [
        ("c-1", Channel::Voice, Some("sales"), 1_000),
        ("c-2", Channel::Chat, Some("support"), 2_000),
        ("c-3", Channel::Voice, None, 2_000),
        ("c-4", Channel::Sms, Some("sales"), 3_000),
    ];
    for (id, channel, skill, at) in made {
        let record = interaction(id, channel, skill, at);
        store
            .update_interaction("acme", id, move |_| Ok::<_, ()>(record))
            .await
            .unwrap()
            .unwrap();
    }
    store
        .update_interaction("globex", "g-1", |_| {
            Ok::<_, ()>(interaction("g-1", Channel::Voice, None, 1_500))
        })
        .await
        .unwrap()
        .unwrap();
    // c-1 completes later: its place in the list is where it was first seen.
    store
        .update_interaction("acme", "c-1", |current| {
            let mut record = current.expect("c-1 was written");
            record.status = InteractionStatus::Completed;
            record.updated_at_ms = 9_000;
            Ok::<_, ()>(record)
        })
        .await
        .unwrap()
        .unwrap();
    store
        .start_run(NewRun {
            interaction: Some("c-2".into()),
            ..new_run(None)
        })
        .await
        .unwrap();
    let ids = |filter: &InteractionFilter, order, after: Option<&str>, limit| -> Vec<String> {
        store
            .find_interactions("acme", filter, order, after, limit)
            .unwrap()
            .into_iter()
            .map(|i| i.record.id)
            .collect()
    };
    let all = InteractionFilter::default();
    assert_eq!(
        ids(&all, ListOrder::OldestFirst, None, 10),
        ["c-1", "c-2", "c-3", "c-4"]
    );
    for limit in [1, 2, 3] {
        let newest = read_all(limit, |after| {
            ids(&all, ListOrder::NewestFirst, after, limit)
        });
        assert_eq!(newest, ["c-4", "c-3", "c-2", "c-1"], "pages of {limit}");
        let oldest = read_all(limit, |after| {
            ids(&all, ListOrder::OldestFirst, after, limit)
        });
        assert_eq!(oldest, ["c-1", "c-2", "c-3", "c-4"], "pages of {limit}");
    }
    let completed = InteractionFilter {
        status: Some(InteractionStatus::Completed),
        ..InteractionFilter::default()
    };
    assert_eq!(ids(&completed, ListOrder::OldestFirst, None, 10), ["c-1"]);
    let voice = InteractionFilter {
        channel: Some(Channel::Voice),
        ..InteractionFilter::default()
    };
    assert_eq!(
        ids(&voice, ListOrder::NewestFirst, None, 10),
        ["c-3", "c-1"]
    );
    let sales_window = InteractionFilter {
        skill: Some("sales".into()),
        since_ms: Some(1_500),
        until_ms: Some(3_500),
        ..InteractionFilter::default()
    };
    assert_eq!(
        ids(&sales_window, ListOrder::OldestFirst, None, 10),
        ["c-4"]
    );
    // Each entry counts the runs the interaction started; its times are its own.
    let found = store
        .find_interactions("acme", &all, ListOrder::OldestFirst, None, 10)
        .unwrap();
    let c1 = &found[0];
    assert_eq!(
        (c1.created_at_ms, c1.record.updated_at_ms, c1.runs),
        (1_000, 9_000, 0)
    );
    assert_eq!((found[1].record.id.as_str(), found[1].runs), ("c-2", 1));
    // Another tenant's interactions are not listed, nor is its id a cursor here.
    assert_eq!(
        store
            .find_interactions("globex", &all, ListOrder::OldestFirst, None, 10)
            .unwrap()
            .len(),
        1
    );
    assert!(ids(&all, ListOrder::OldestFirst, Some("g-1"), 10).is_empty());
}

async fn usage_buckets_add_up_to_the_windows_totals() {
    let (_dir, store) = open();
    let run = store.start_run(new_run(None)).await.unwrap().id;
    // Calls at 0.5 h, 1.5 h, 1.9 h and 3.2 h; the window is [0, 3.5 h).
    let hour = 3_600_000;
    for (n, at) in [hour / 2, hour * 3 / 2, hour * 19 / 10, hour * 32 / 10]
        .into_iter()
        .enumerate()
    {
        store
            .record_effect(
                &run,
                coda_store::EffectRecord {
                    step_seq: 0,
                    call_seq: n as u32,
                    kind: if n == 1 { "http" } else { "email" }.into(),
                    digest: format!("d{n}"),
                    result: json!({ "Ok": n }),
                    at_ms: at,
                },
            )
            .await
            .unwrap();
    }
    let until = hour * 35 / 10;
    let series = store.usage_series("acme", 0, until, hour).unwrap();
    assert_eq!(series.len(), 4, "three whole hours and half of one");
    let calls = |i: usize, kind: &str| series[i].effects.get(kind).map_or(0, |c| c.calls);
    assert_eq!(
        (0..4)
            .map(|i| (calls(i, "email"), calls(i, "http")))
            .collect::<Vec<_>>(),
        [(1, 0), (1, 1), (0, 0), (1, 0)]
    );
    let total = store.usage("acme", 0, until).unwrap();
    assert_eq!(
        total.effects["email"].calls,
        (0..4).map(|i| calls(i, "email")).sum::<u64>()
    );
    assert_eq!(coda_store::bucket_count(0, until, hour), 4);
    assert_eq!(coda_store::bucket_count(0, 3 * hour, hour), 3);
}

on_every_backend!(
    runs_are_paged_oldest_or_newest_first_with_none_missed_or_repeated,
    interactions_are_listed_by_filter_and_paged_in_either_order,
    usage_buckets_add_up_to_the_windows_totals,
);
