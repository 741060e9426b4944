//! The runtime's integration tests: one binary (link time matters), modules by subject.
//! Applets come from `coda-applet-artifacts`, built once for wasm32-wasip2.

// Shared with the example `builtin_fuel`: each reads only some of the steps' fields.
#[allow(dead_code)]
mod builtin_steps;
mod hostile;
mod isolation;
mod loading;
mod preinit;
mod secrets;

use std::sync::{Arc, OnceLock};

use coda_runtime::{
    Invocation, InvocationContext, InvokeError, LimitKind, LoadOptions, LoadedApplet, Outcome,
    Report, Runtime, RuntimeConfig,
};

/// One runtime for the whole suite, as one host serves every tenant: a hostile applet in one
/// test runs in the same engine as the well-behaved applets of the others.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            max_concurrent_instances: 64,
            ..RuntimeConfig::default()
        })
        .expect("runtime")
    })
}

pub async fn load(path: &str) -> Arc<LoadedApplet> {
    let bytes = coda_applet_artifacts::read(path);
    runtime()
        .load(&bytes, &LoadOptions::default())
        .await
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

pub fn context() -> InvocationContext {
    InvocationContext {
        tenant: "acme".into(),
        interaction: Some("int-1".into()),
        run: "run-1".into(),
        plan: "post-call".into(),
        node: "n1".into(),
        idempotency_key: "run-1/n1/1".into(),
        attempt: 1,
        ..Default::default()
    }
}

pub async fn invoke(path: &str, config: serde_json::Value) -> Report {
    let applet = load(path).await;
    runtime()
        .invoke(&applet, Invocation::new(context(), config))
        .await
}

/// Asserts the report is the limit `kind`, returning (limit, used).
#[track_caller]
pub fn expect_limit(report: &Report, kind: LimitKind) -> (u64, Option<u64>) {
    match &report.result {
        Err(InvokeError::LimitExceeded(l)) if l.kind == kind => (l.limit, l.used),
        other => panic!("expected a {kind} limit, got {other:?}"),
    }
}

/// Runs the well-behaved sample right after something hostile: the host must be unharmed.
pub async fn assert_host_still_serves() {
    let applet = load(coda_applet_artifacts::HELLO).await;
    let mut invocation = Invocation::new(context(), serde_json::json!({ "greeting": "Hi" }));
    invocation.data.insert(
        "CustomerName".into(),
        coda_runtime::Value::Text("Ada".into()),
    );
    let report = runtime().invoke(&applet, invocation).await;
    assert_eq!(report.result, Ok(Outcome::Exit("greeted".into())));
    assert_eq!(
        report.data_changes.get("Greeting"),
        Some(&coda_runtime::Value::Text("Hi, Ada!".into()))
    );
}
