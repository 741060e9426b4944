//! What a load refuses, and how compiled artifacts are reused.

use coda_runtime::{Capability, LoadOptions, Runtime, RuntimeConfig, WorldVersion};

use crate::runtime;
use coda_applet_artifacts as applets;

async fn refuse(bytes: &[u8]) -> coda_runtime::LoadError {
    runtime()
        .load(bytes, &LoadOptions::default())
        .await
        .expect_err("the load should be refused")
}

#[tokio::test]
async fn describe_reports_info_and_coda_imports() {
    let applet = crate::load(applets::HELLO).await;
    // The SDK builds against the newest world.
    assert_eq!(applet.world, WorldVersion::V0_2_0);
    assert_eq!(applet.info.name, "hello");
    assert_eq!(applet.info.exits, ["greeted", "anonymous"]);
    assert_eq!(
        applet.info.config_schema["properties"]["greeting"]["type"],
        "string"
    );
    assert!(applet.info.capabilities.is_empty());
    assert_eq!(applet.coda_imports, ["data", "log", "state"]);

    let probe = crate::load(applets::CAPABILITY_PROBE).await;
    assert_eq!(
        probe.coda_imports,
        [
            "data",
            "email",
            "http",
            "interactions",
            "kv",
            "secrets",
            "sql"
        ]
    );
    assert_eq!(probe.info.capabilities, Vec::<Capability>::new());
}

/// A component of the first world, built against `wit/v0.1.0` without the SDK, loads as
/// 0.1.0 and runs beside the 0.2.0 ones: data, a capability and its handler all work.
#[tokio::test]
async fn a_component_of_the_first_world_keeps_loading_and_running() {
    let applet = crate::load(applets::WORLD_V0_1_0).await;
    assert_eq!(applet.world, WorldVersion::V0_1_0);
    assert_eq!(applet.info.capabilities, [Capability::Secrets]);
    assert_eq!(applet.coda_imports, ["data", "secrets"]);
    let mut invocation = coda_runtime::Invocation::new(crate::context(), serde_json::json!({}));
    invocation
        .data
        .insert("Name".into(), coda_runtime::Value::Text("Ada".into()));
    let report = runtime().invoke(&applet, invocation).await;
    assert_eq!(
        report.result,
        Ok(coda_runtime::Outcome::Exit("greeted".into()))
    );
    assert_eq!(
        report.data_changes.get("Greeting"),
        Some(&coda_runtime::Value::Text(
            "Hello, Ada! (secret refused)".into()
        ))
    );
    let contact_frequency = crate::load(applets::CONTACT_FREQUENCY).await;
    assert_eq!(contact_frequency.world, WorldVersion::V0_2_0);
    assert_eq!(contact_frequency.info.capabilities, [Capability::Kv]);
    assert_eq!(contact_frequency.coda_imports, ["data", "kv", "log"]);
}

#[tokio::test]
async fn a_component_over_the_upload_limit_is_refused_before_compiling() {
    let bytes = applets::read(applets::HELLO);
    let error = runtime()
        .load(
            &bytes,
            &LoadOptions {
                max_bytes: 1000,
                ..LoadOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "too-large");
    assert_eq!(
        error.to_string(),
        format!(
            "component of {} bytes is larger than the upload limit of 1000 bytes",
            bytes.len()
        )
    );
}

#[tokio::test]
async fn a_core_module_is_refused() {
    let module = wat::parse_str("(module (func (export \"run\")))").unwrap();
    let error = refuse(&module).await;
    assert_eq!(error.kind(), "invalid-component");
    assert!(
        error.to_string().contains("core WebAssembly module"),
        "{error}"
    );
}

#[tokio::test]
async fn garbage_is_refused() {
    for bytes in [&b""[..], b"\0asm", b"MZ\x90\0not wasm at all", &[0xff; 64]] {
        let error = refuse(bytes).await;
        assert_eq!(error.kind(), "invalid-component", "{error}");
    }
    // The right header with a broken body: refused by the compiler, with its reason.
    let mut truncated = applets::read(applets::HELLO);
    truncated.truncate(truncated.len() / 2);
    let error = refuse(&truncated).await;
    assert_eq!(error.kind(), "invalid-component", "{error}");
}

#[tokio::test]
async fn a_component_without_the_applet_exports_is_refused() {
    let empty = wat::parse_str("(component)").unwrap();
    let error = refuse(&empty).await;
    assert_eq!(error.kind(), "invalid-component");
    assert!(
        error
            .to_string()
            .contains("does not export `coda:applet/handler@0.1.0`"),
        "{error}"
    );

    // The export is there but holds nothing: the link names what is missing.
    let hollow = wat::parse_str(
        r#"(component
            (instance $h)
            (export "coda:applet/handler@0.1.0" (instance $h)))"#,
    )
    .unwrap();
    let error = refuse(&hollow).await;
    assert_eq!(error.kind(), "invalid-component");
    assert!(error.to_string().contains("describe"), "{error}");
}

#[tokio::test]
async fn an_import_the_host_does_not_provide_is_named() {
    let wants_http = wat::parse_str(
        r#"(component
            (import "wasi:http/outgoing-handler@0.2.0" (instance))
            (instance $h)
            (export "coda:applet/handler@0.1.0" (instance $h)))"#,
    )
    .unwrap();
    let error = refuse(&wants_http).await;
    assert_eq!(error.kind(), "unknown-import");
    assert!(
        error
            .to_string()
            .contains("`wasi:http/outgoing-handler@0.2.0`"),
        "{error}"
    );
}

#[tokio::test]
async fn compiled_artifacts_are_cached_on_disk_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = applets::read(applets::HELLO);
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().to_owned()),
        max_concurrent_instances: 4,
        ..RuntimeConfig::default()
    };
    let first = Runtime::new(config.clone()).unwrap();
    let applet = first.load(&bytes, &LoadOptions::default()).await.unwrap();
    assert!(applet.compiled, "a cold cache compiles");
    // The same bytes again in the same process: the same loaded applet.
    let again = first.load(&bytes, &LoadOptions::default()).await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&applet, &again));

    // A restart loads the artifact instead of compiling.
    let restarted = Runtime::new(config.clone()).unwrap();
    let cached = restarted
        .load(&bytes, &LoadOptions::default())
        .await
        .unwrap();
    assert!(!cached.compiled, "a warm cache loads");
    assert_eq!(cached.info, applet.info);

    // A damaged entry is never executed: it is dropped and the component recompiled.
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert!(
        entry
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&applet.digest)
    );
    let mut artifact = std::fs::read(entry).unwrap();
    let middle = artifact.len() / 2;
    artifact[middle] ^= 0x5a;
    std::fs::write(entry, &artifact).unwrap();
    let third = Runtime::new(config).unwrap();
    let recompiled = third.load(&bytes, &LoadOptions::default()).await.unwrap();
    assert!(recompiled.compiled, "a damaged entry is recompiled");
    let report = third
        .invoke(
            &recompiled,
            coda_runtime::Invocation::new(crate::context(), serde_json::json!({})),
        )
        .await;
    assert_eq!(
        report.result,
        Ok(coda_runtime::Outcome::Exit("anonymous".into()))
    );
}

#[tokio::test]
async fn compiling_is_bounded_in_time() {
    // No real component compiles in a microsecond: the bound answers the caller with a
    // typed error, and the runtime stays usable.
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_instances: 4,
        compile_timeout: std::time::Duration::from_micros(1),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let bytes = applets::read(applets::ECHO);
    let error = runtime
        .load(&bytes, &LoadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "compile-timeout", "{error}");
}
