//! One test per hostile applet (the `foreach_hostile!` check below fails the build if one is
//! missing): each asserts the exact result, then that the host still serves a well-behaved
//! applet.

use std::time::Duration;

use coda_runtime::{Invocation, InvokeError, LimitKind, Limits, LoadOptions, Value};
use serde_json::json;

use crate::{assert_host_still_serves, context, expect_limit, invoke, load, runtime};

macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
coda_applet_artifacts::foreach_hostile!(assert_test_exists);

use coda_applet_artifacts as applets;

#[tokio::test]
async fn infinite_loop() {
    // Fuel stops it deterministically, at exactly the budget.
    let applet = load(applets::INFINITE_LOOP).await;
    let mut invocation = Invocation::new(context(), json!({}));
    invocation.limits = Limits {
        fuel: 5_000_000,
        ..Limits::default()
    };
    let report = runtime().invoke(&applet, invocation).await;
    assert_eq!(
        expect_limit(&report, LimitKind::Fuel),
        (5_000_000, Some(5_000_000))
    );
    assert_eq!(report.fuel_used, 5_000_000);

    // With fuel to spare, the wall-clock deadline stops it.
    let mut invocation = Invocation::new(context(), json!({}));
    invocation.limits = Limits {
        fuel: u64::MAX / 2,
        deadline: Duration::from_millis(200),
        ..Limits::default()
    };
    let report = runtime().invoke(&applet, invocation).await;
    let (limit, _) = expect_limit(&report, LimitKind::Deadline);
    assert_eq!(limit, 200);
    assert!(
        report.elapsed >= Duration::from_millis(200),
        "{:?}",
        report.elapsed
    );
    assert_host_still_serves().await;
}

#[tokio::test]
async fn host_call_loop() {
    let report = invoke(applets::HOST_CALL_LOOP, json!({})).await;
    let limit = coda_runtime::limits::DEFAULT_HOST_CALLS;
    assert_eq!(
        expect_limit(&report, LimitKind::HostCalls),
        (limit, Some(limit + 1))
    );
    assert_eq!(report.host_calls, limit + 1);
    assert_host_still_serves().await;
}

#[tokio::test]
async fn memory_bomb() {
    let applet = load(applets::MEMORY_BOMB).await;
    let mut invocation = Invocation::new(context(), json!({}));
    invocation.limits = Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let report = runtime().invoke(&applet, invocation).await;
    let (limit, used) = expect_limit(&report, LimitKind::Memory);
    assert_eq!(limit, 16 << 20);
    assert!(used.unwrap() > 16 << 20, "used {used:?}");
    assert_host_still_serves().await;
}

#[tokio::test]
async fn huge_memory() {
    // A 1 GiB initial memory is over the default limit before any code runs: the load is
    // refused under the memory limit's name.
    let bytes = applets::read(applets::HUGE_MEMORY);
    let error = runtime()
        .load(&bytes, &LoadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "memory", "{error}");
    match error {
        coda_runtime::LoadError::Describe(InvokeError::LimitExceeded(l)) => {
            assert_eq!(l.limit, coda_runtime::limits::DEFAULT_MEMORY_BYTES);
            assert!(l.used.unwrap() > 1 << 30, "{l}");
        }
        other => panic!("expected a memory limit at load, got {other:?}"),
    }
    // An operator who raises the limit can run it.
    let limits = Limits {
        memory_bytes: 2 << 30,
        ..Limits::default()
    };
    let applet = runtime()
        .load(
            &bytes,
            &LoadOptions {
                limits,
                ..LoadOptions::default()
            },
        )
        .await
        .expect("loads under a 2 GiB limit");
    let mut invocation = Invocation::new(context(), json!({}));
    invocation.limits = limits;
    let report = runtime().invoke(&applet, invocation).await;
    assert_eq!(
        report.result,
        Ok(coda_runtime::Outcome::Exit("touched".into()))
    );
    assert_host_still_serves().await;
}

#[tokio::test]
async fn deep_recursion() {
    let report = invoke(applets::DEEP_RECURSION, json!({})).await;
    let (limit, used) = expect_limit(&report, LimitKind::Stack);
    assert_eq!(limit, coda_runtime::limits::DEFAULT_WASM_STACK_BYTES as u64);
    assert_eq!(used, None);
    assert_host_still_serves().await;
}

#[tokio::test]
async fn unreachable() {
    let report = invoke(applets::UNREACHABLE, json!({})).await;
    match &report.result {
        Err(InvokeError::Trap { message }) => {
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_host_still_serves().await;
}

#[tokio::test]
async fn huge_outcome() {
    let report = invoke(applets::HUGE_OUTCOME, json!({})).await;
    assert_eq!(
        expect_limit(&report, LimitKind::Output),
        (coda_runtime::limits::DEFAULT_OUTPUT_BYTES, Some(1 << 20))
    );
    assert_host_still_serves().await;
}

#[tokio::test]
async fn log_flood() {
    let report = invoke(applets::LOG_FLOOD, json!({})).await;
    let (limit, used) = expect_limit(&report, LimitKind::Log);
    assert_eq!(limit, coda_runtime::limits::DEFAULT_LOG_BYTES);
    // The line that crossed the limit is the one refused: 16 lines of 1 KiB fit, the 17th not.
    assert_eq!(used, Some(17 << 10));
    assert_eq!(report.logs.len(), 16);
    assert_host_still_serves().await;
}

#[tokio::test]
async fn net_probe() {
    // A real listener on loopback: the probe must not reach it, by any route.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let report = invoke(
        applets::NET_PROBE,
        json!({ "addr": addr.to_string(), "host": "localhost" }),
    )
    .await;
    assert_eq!(
        report.result,
        Ok(coda_runtime::Outcome::Exit("denied".into()))
    );
    let seen = |name: &str| report.data_changes.get(name).cloned();
    assert_eq!(seen("tcp"), Some(Value::Text("access-denied".into())));
    assert_eq!(seen("udp"), Some(Value::Text("access-denied".into())));
    assert_eq!(
        seen("dns"),
        Some(Value::Text("permanent-resolver-failure".into()))
    );
    match seen("std_tcp") {
        Some(Value::Text(error)) => assert!(error.contains("Permission denied"), "{error}"),
        other => panic!("std_tcp: {other:?}"),
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the listener saw a connection: {other:?}"),
    }
    assert_host_still_serves().await;
}

#[tokio::test]
async fn sys_probe() {
    let report = invoke(applets::SYS_PROBE, json!({})).await;
    assert_eq!(
        report.result,
        Ok(coda_runtime::Outcome::Exit("isolated".into()))
    );
    let seen = |name: &str| {
        report
            .data_changes
            .get(name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(seen("env_count"), Value::Integer(0));
    assert_eq!(seen("args_count"), Value::Integer(0));
    assert_eq!(seen("preopens"), Value::Integer(0));
    assert_eq!(seen("stdin_bytes"), Value::Integer(0));
    for name in ["root_dir", "passwd"] {
        match seen(name) {
            Value::Text(error) => assert_ne!(error, "ok", "{name} was readable"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // Clocks are coarse: 1 ms resolution, and the wall clock has no sub-millisecond part.
    assert_eq!(seen("clock_resolution_ns"), Value::Integer(1_000_000));
    match seen("wall_nanos") {
        Value::Integer(nanos) => assert_eq!(nanos % 1_000_000, 0, "{nanos}"),
        other => panic!("wall_nanos: {other:?}"),
    }
    assert_host_still_serves().await;
}

#[tokio::test]
async fn unknown_import() {
    let bytes = applets::read(applets::UNKNOWN_IMPORT);
    let error = runtime()
        .load(&bytes, &LoadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "unknown-import");
    assert!(
        error.to_string().contains("`acme:missing/thing@1.0.0`"),
        "{error}"
    );
    assert_host_still_serves().await;
}

#[tokio::test]
async fn memory_probe() {
    // The positive control: in one invocation, the scan finds what was written.
    let pattern = "c0da5eed0badf00d17e55a9e";
    let report = invoke(
        applets::MEMORY_PROBE,
        json!({ "write": pattern, "seek": pattern }),
    )
    .await;
    assert_eq!(
        report.result,
        Ok(coda_runtime::Outcome::Exit("found".into()))
    );

    // Across invocations of the same loaded component, nothing is left behind.
    let report = invoke(applets::MEMORY_PROBE, json!({ "write": pattern })).await;
    assert_eq!(
        report.result,
        Ok(coda_runtime::Outcome::Exit("written".into()))
    );
    let report = invoke(applets::MEMORY_PROBE, json!({ "seek": pattern })).await;
    assert_eq!(
        report.result,
        Ok(coda_runtime::Outcome::Exit("clean".into())),
        "found at {:?}",
        report.data_changes.get("found_at")
    );
    assert_host_still_serves().await;
}

#[tokio::test]
async fn guest_failure() {
    let report = invoke(applets::GUEST_FAILURE, json!({})).await;
    match &report.result {
        Err(InvokeError::Failure(failure)) => {
            assert_eq!(failure.code, "boom");
            assert!(failure.retryable);
        }
        other => panic!("expected the applet's failure, got {other:?}"),
    }
    assert_host_still_serves().await;
}

#[tokio::test]
async fn sql_statement() {
    // Its statement reaches the host only through the sql capability, which this host does
    // not wire: the step fails with the host's answer (the rule on what a statement may do
    // is coda-capabilities' `sql_policy`, tested there and end to end in the crash suite).
    let report = invoke(
        applets::SQL_STATEMENT,
        json!({ "database": "calls", "statement": "PRAGMA hard_heap_limit=65536" }),
    )
    .await;
    match &report.result {
        Err(InvokeError::Failure(failure)) => {
            assert_eq!(failure.code, "not-granted");
            assert!(!failure.retryable);
        }
        other => panic!("expected the host's refusal, got {other:?}"),
    }
    assert_host_still_serves().await;
}

#[tokio::test]
async fn capability_probe() {
    // Every capability this host does not wire answers `not-granted`: a value, not a trap.
    let report = invoke(applets::CAPABILITY_PROBE, json!({})).await;
    assert_eq!(
        report.result,
        Ok(coda_runtime::Outcome::Exit("done".into()))
    );
    for name in [
        "http",
        "email",
        "sql_query",
        "sql_execute",
        "secrets",
        "interactions",
        "kv",
    ] {
        assert_eq!(
            report.data_changes.get(name),
            Some(&Value::Text("not-granted".into())),
            "{name}"
        );
    }
    assert_host_still_serves().await;
}

#[tokio::test]
async fn init_loop() {
    // The init is the tenant's code: it runs under the load's fuel, and an endless one is
    // refused at load, naming the init and the limit, instead of holding the upload.
    let bytes = applets::read(applets::INIT_LOOP);
    let limits = Limits {
        fuel: 5_000_000,
        ..Limits::default()
    };
    let error = runtime()
        .load(
            &bytes,
            &LoadOptions {
                limits,
                ..LoadOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "fuel", "{error}");
    assert!(
        error
            .to_string()
            .starts_with("the component's `wizer-initialize` failed: "),
        "{error}"
    );
    // Without fuel to stop it, the deadline does.
    let limits = Limits {
        fuel: u64::MAX / 2,
        deadline: Duration::from_millis(200),
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let error = runtime()
        .load(
            &bytes,
            &LoadOptions {
                limits,
                ..LoadOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "deadline", "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Loaded as built (a host that does not pre-initialize), its `run` is harmless.
    let applet = runtime()
        .load_as_built(&bytes, &LoadOptions::default())
        .await
        .unwrap();
    let report = runtime()
        .invoke(&applet, Invocation::new(context(), json!({})))
        .await;
    assert_eq!(
        report.result,
        Ok(coda_runtime::Outcome::Exit("next".into()))
    );
    assert_host_still_serves().await;
}

#[tokio::test]
async fn init_memory() {
    // 96 MiB kept by the init: over a 64 MiB memory limit, the init is stopped there…
    let bytes = applets::read(applets::INIT_MEMORY);
    let limits = Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    let error = runtime()
        .load(
            &bytes,
            &LoadOptions {
                limits,
                ..LoadOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "memory", "{error}");
    assert!(error.to_string().contains("wizer-initialize"), "{error}");
    // … and within the default 128 MiB it finishes, but its snapshot is past the largest
    // the host keeps: refused, not stored or compiled.
    let error = runtime()
        .load(&bytes, &LoadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "too-large", "{error}");
    assert!(
        matches!(error, coda_runtime::LoadError::SnapshotTooLarge { size, limit }
            if size > 96 << 20 && limit == coda_runtime::limits::MAX_SNAPSHOT_BYTES),
        "{error:?}"
    );
    assert_host_still_serves().await;
}

#[tokio::test]
async fn init_probe() {
    // What an init reads from random numbers and clocks is the same on every runtime (a
    // snapshot is a function of the bytes alone, and holds nothing of the machine or the
    // moment), while `run` still gets fresh random numbers.
    let bytes = applets::read(applets::INIT_PROBE);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let fresh = coda_runtime::Runtime::new(coda_runtime::RuntimeConfig {
            max_concurrent_instances: 4,
            ..Default::default()
        })
        .unwrap();
        let applet = fresh.load(&bytes, &LoadOptions::default()).await.unwrap();
        assert_eq!(applet.pre_init, coda_runtime::PreInit::Ran);
        let report = fresh
            .invoke(&applet, Invocation::new(context(), json!({})))
            .await;
        assert_eq!(
            report.result,
            Ok(coda_runtime::Outcome::Exit("next".into()))
        );
        seen.push(report.data_changes);
    }
    let text = |i: usize, name: &str| match seen[i].get(name) {
        Some(Value::Text(t)) => t.clone(),
        other => panic!("{name}: {other:?}"),
    };
    for name in [
        "InitRandom",
        "InitInsecureRandom",
        "InitSeed",
        "InitWallSeconds",
        "InitMonotonic",
    ] {
        assert_eq!(text(0, name), text(1, name), "{name}");
    }
    assert_eq!(
        text(0, "InitWallSeconds"),
        coda_runtime::limits::INIT_CLOCK.as_secs().to_string()
    );
    assert_eq!(text(0, "InitMonotonic"), "0");
    assert_ne!(text(0, "RunRandom"), text(1, "RunRandom"));
    assert_ne!(text(0, "RunRandom"), text(0, "InitRandom"));
    assert_host_still_serves().await;
}
