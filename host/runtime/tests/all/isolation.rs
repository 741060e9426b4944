//! What one invocation can do to others: stall them, leak into them, or leave half-written
//! data behind.

use std::time::{Duration, Instant};

use coda_runtime::{Invocation, LimitKind, Limits, Outcome, Value};
use serde_json::json;

use crate::{context, expect_limit, load, runtime};
use coda_applet_artifacts as applets;

/// On a single-threaded executor, busy applets must still let a quick one through: the
/// epoch makes a running guest yield, so three spinning tenants cannot starve a fourth.
#[tokio::test(flavor = "current_thread")]
async fn spinning_applets_do_not_stall_others() {
    let spinner = load(applets::INFINITE_LOOP).await;
    let hello = load(applets::HELLO).await;
    let mut spinners = Vec::new();
    for _ in 0..3 {
        let spinner = spinner.clone();
        spinners.push(tokio::spawn(async move {
            let mut invocation = Invocation::new(context(), json!({}));
            invocation.limits = Limits {
                fuel: u64::MAX / 2,
                deadline: Duration::from_millis(1500),
                ..Limits::default()
            };
            let report = runtime().invoke(&spinner, invocation).await;
            (report, Instant::now())
        }));
    }
    // Let the spinners start first.
    tokio::task::yield_now().await;
    let report = runtime()
        .invoke(&hello, Invocation::new(context(), json!({})))
        .await;
    let hello_done = Instant::now();
    assert_eq!(report.result, Ok(Outcome::Exit("anonymous".into())));
    for spinner in spinners {
        let (report, done) = spinner.await.unwrap();
        expect_limit(&report, LimitKind::Deadline);
        assert!(hello_done < done, "hello waited for a spinner to end");
    }
}

#[tokio::test]
async fn a_step_that_fails_leaves_no_data_or_state() {
    // hello writes its state (14 bytes), then its greeting (19 bytes): a 20-byte data limit
    // stops it between the two, and neither write may survive.
    let hello = load(applets::HELLO).await;
    let mut invocation = Invocation::new(context(), json!({}));
    invocation
        .data
        .insert("CustomerName".into(), Value::Text("Ada".into()));
    invocation.limits = Limits {
        data_bytes: 20,
        ..Limits::default()
    };
    let report = runtime().invoke(&hello, invocation).await;
    assert_eq!(expect_limit(&report, LimitKind::Data), (20, Some(33)));
    assert!(report.data_changes.is_empty(), "{:?}", report.data_changes);
    assert!(
        report.state_changes.is_empty(),
        "{:?}",
        report.state_changes
    );
}

#[tokio::test]
async fn state_and_data_reach_the_applet() {
    let hello = load(applets::HELLO).await;
    let mut invocation = Invocation::new(context(), json!({ "name_from": "Caller" }));
    invocation
        .data
        .insert("Caller".into(), Value::Text("Grace".into()));
    invocation.state.insert("passes".into(), Value::Integer(2));
    let report = runtime().invoke(&hello, invocation).await;
    assert_eq!(report.result, Ok(Outcome::Exit("greeted".into())));
    assert_eq!(
        report.data_changes.get("Greeting"),
        Some(&Value::Text("Hello, Grace!".into()))
    );
    assert_eq!(report.state_changes.get("passes"), Some(&Value::Integer(3)));

    let echo = load(applets::ECHO).await;
    let mut invocation = Invocation::new(context(), json!({ "exit": "other" }));
    invocation
        .data
        .insert("CLID".into(), Value::Text("+15550100".into()));
    invocation
        .data
        .insert("Duration".into(), Value::Integer(184));
    invocation.data.insert("Score".into(), Value::Number(4.5));
    invocation.data.insert("Vip".into(), Value::Boolean(true));
    invocation
        .data
        .insert("Custom".into(), Value::Json(r#"{"tier":"gold"}"#.into()));
    let report = runtime().invoke(&echo, invocation).await;
    assert_eq!(report.result, Ok(Outcome::Exit("other".into())));
    let echoed = report.data_changes.get("Echo").expect("Echo").to_json();
    assert_eq!(
        echoed,
        json!({"CLID": "+15550100", "Duration": 184, "Score": 4.5, "Vip": true, "Custom": {"tier": "gold"}})
    );
    assert_eq!(report.logs.len(), 1);
}

#[tokio::test]
async fn instance_and_table_limits_are_typed() {
    let hello = load(applets::HELLO).await;
    let mut invocation = Invocation::new(context(), json!({}));
    invocation.limits = Limits {
        instances: 1,
        ..Limits::default()
    };
    let report = runtime().invoke(&hello, invocation).await;
    expect_limit(&report, LimitKind::Instances);

    let mut invocation = Invocation::new(context(), json!({}));
    invocation.limits = Limits {
        table_elements: 1,
        ..Limits::default()
    };
    let report = runtime().invoke(&hello, invocation).await;
    let (limit, used) = expect_limit(&report, LimitKind::TableElements);
    assert_eq!(limit, 1);
    assert!(used.unwrap() > 1);
}

#[tokio::test]
async fn limits_the_runtime_cannot_enforce_are_refused() {
    let hello = load(applets::HELLO).await;
    let mut invocation = Invocation::new(context(), json!({}));
    invocation.limits = Limits {
        memory_bytes: 8 << 30,
        ..Limits::default()
    };
    let report = runtime().invoke(&hello, invocation).await;
    match report.result {
        Err(coda_runtime::InvokeError::InvalidResult { message }) => {
            assert!(message.contains("memory limit"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_outcome_naming_an_empty_exit_is_refused() {
    let scripted = load(applets::SCRIPTED).await;
    let mut invocation = Invocation::new(context(), json!({ "exit": "", "count_into": "N" }));
    invocation.data.insert("N".into(), Value::Integer(1));
    let report = runtime().invoke(&scripted, invocation).await;
    match &report.result {
        Err(coda_runtime::InvokeError::InvalidResult { message }) => {
            assert!(message.contains("empty exit"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Refused like any other failed step: its data change does not survive.
    assert!(report.data_changes.is_empty(), "{:?}", report.data_changes);
}

/// An event an outcome waits for and a plan it routes to become store keys and reach the
/// API: they follow the naming rule of their kind (`coda_types::names`), like every name.
#[tokio::test]
async fn an_outcome_naming_an_event_or_plan_against_the_naming_rule_is_refused() {
    let scripted = load(applets::SCRIPTED).await;
    let long = "e".repeat(10_000);
    for config in [
        json!({ "wait_for": "../../etc", "timeout_ms": 1000 }),
        json!({ "wait_for": "survey\nreply", "timeout_ms": 1000 }),
        json!({ "wait_for": long, "timeout_ms": 1000 }),
        json!({ "route_to": "../other-tenant" }),
        json!({ "route_to": "Plan With Spaces" }),
    ] {
        let report = runtime()
            .invoke(&scripted, Invocation::new(context(), config.clone()))
            .await;
        match &report.result {
            Err(coda_runtime::InvokeError::InvalidResult { message }) => {
                assert!(message.contains("not a valid"), "{message}");
                assert!(message.len() < 600, "quoted short: {message}");
            }
            other => panic!("{config}: {other:?}"),
        }
    }
    let report = runtime()
        .invoke(
            &scripted,
            Invocation::new(
                context(),
                json!({ "wait_for": "Survey Reply:1", "timeout_ms": 1000 }),
            ),
        )
        .await;
    assert!(report.result.is_ok(), "{:?}", report.result);
}
