//! Pre-initialization (`src/preinit.rs`): the built-in applets start each step from a
//! snapshot taken after their `wizer-initialize`, within the fuel goals of issue 17, doing
//! exactly what a fresh instance does; snapshots are cached by digest; an applet without an
//! init loads as it is. The hostile inits are in `hostile.rs`.

use std::path::PathBuf;

use coda_runtime::{LoadOptions, PreInit, Runtime, RuntimeConfig};

use crate::builtin_steps::steps;
use crate::runtime;

fn component(file: &str) -> Vec<u8> {
    let path = coda_applet_artifacts::ALL
        .iter()
        .map(|(_, path)| PathBuf::from(path))
        .find(|path| path.file_name().is_some_and(|name| name == file))
        .unwrap_or_else(|| panic!("no built applet is {file}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn pre_initialized_builtin_steps_stay_within_their_fuel_bounds() {
    // Fuel is deterministic: these are exact figures of this build, bounded with a little
    // room, so a change that loses the snapshot's gain (an init that no longer runs, an
    // environment built again in `run`) fails here.
    let mut over = Vec::new();
    for step in steps() {
        let applet = runtime()
            .load(&component(step.file), &LoadOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", step.name));
        let report = runtime().invoke(&applet, step.invocation()).await;
        assert!(report.result.is_ok(), "{}: {:?}", step.name, report.result);
        match step.bound {
            Some(bound) => {
                assert_ne!(
                    applet.pre_init,
                    PreInit::None,
                    "{} is not pre-initialized",
                    step.name
                );
                if report.fuel_used >= bound {
                    over.push(format!(
                        "{}: {} fuel, bound {bound}",
                        step.name, report.fuel_used
                    ));
                }
            }
            None => assert_eq!(applet.pre_init, PreInit::None, "{}", step.name),
        }
    }
    assert!(over.is_empty(), "over the bound: {over:#?}");
}

#[tokio::test]
async fn a_pre_initialized_builtin_does_what_a_fresh_one_does() {
    for step in steps() {
        let bytes = component(step.file);
        let snapshot = runtime()
            .load(&bytes, &LoadOptions::default())
            .await
            .unwrap();
        let fresh = runtime()
            .load_as_built(&bytes, &LoadOptions::default())
            .await
            .unwrap();
        assert_eq!(fresh.pre_init, PreInit::None);
        assert_eq!(snapshot.info, fresh.info, "{}", step.name);
        let a = runtime().invoke(&snapshot, step.invocation()).await;
        let b = runtime().invoke(&fresh, step.invocation()).await;
        assert_eq!(a.result, b.result, "{}", step.name);
        assert_eq!(a.data_changes, b.data_changes, "{}", step.name);
        assert_eq!(a.state_changes, b.state_changes, "{}", step.name);
        // schedule-router logs the local time, whose milliseconds move during the step.
        let messages = |r: &coda_runtime::Report| -> Vec<_> {
            r.logs
                .iter()
                .map(|l| {
                    (
                        l.level,
                        (step.file != "schedule_router.wasm").then(|| l.message.clone()),
                    )
                })
                .collect()
        };
        assert_eq!(messages(&a), messages(&b), "{}", step.name);
        if step.bound.is_some() {
            assert!(
                a.fuel_used < b.fuel_used,
                "{}: {} vs {}",
                step.name,
                a.fuel_used,
                b.fuel_used
            );
        }
    }
}

#[tokio::test]
async fn a_snapshot_is_taken_once_and_then_read_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = component("set_data.wasm");
    let new_runtime = || {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().to_owned()),
            max_concurrent_instances: 4,
            ..RuntimeConfig::default()
        })
        .unwrap()
    };
    let first = new_runtime()
        .load(&bytes, &LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(first.pre_init, PreInit::Ran);
    assert!(first.compiled);
    // Another process on the same cache directory (a restart, another node): the init does
    // not run again, and the snapshot's compiled artifact is found too.
    let second = new_runtime()
        .load(&bytes, &LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(second.pre_init, PreInit::Cached);
    assert!(!second.compiled);
    assert_eq!(second.digest, first.digest);
    let snapshots = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snapshot.wasm"))
        .count();
    assert_eq!(snapshots, 1);
}

#[tokio::test]
async fn an_applet_without_an_init_loads_as_it_is() {
    let bytes = coda_applet_artifacts::read(coda_applet_artifacts::HELLO);
    let applet = runtime()
        .load(&bytes, &LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(applet.pre_init, PreInit::None);
    crate::assert_host_still_serves().await;
}
