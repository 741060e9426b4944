//! `coda_sdk::testing` as an applet's own `cargo test` uses it: the Rust project template
//! of `coda applet new` (rendered here against this SDK) built to a component by
//! `build_rust_component`, loaded, and run on its fixtures.

use std::path::Path;

use coda_sdk::testing::{Fixture, Harness, build_rust_component};

const TEMPLATE: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../host/cli/templates/rust/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../host/cli/templates/rust/src/lib.rs"),
    ),
    (
        "tests/sample.fixture.yaml",
        include_str!("../../host/cli/templates/rust/tests/sample.fixture.yaml"),
    ),
];

fn render(dir: &Path) {
    let sdk = format!("path = {:?}", env!("CARGO_MANIFEST_DIR"));
    for (file, text) in TEMPLATE {
        let text = text
            .replace("{{name}}", "sdk-probe")
            .replace("{{module}}", "sdk_probe")
            .replace(
                "{{sdk_testing}}",
                &format!("{{ {sdk}, features = [\"testing\"] }}"),
            )
            .replace("{{sdk}}", &format!("{{ {sdk} }}"));
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn an_applet_project_builds_loads_and_runs_its_fixtures() {
    let project = tempfile::tempdir().unwrap();
    render(project.path());
    // Dependencies compiled once across runs: the project's target/ is a kept directory.
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-probe-target");
    std::fs::create_dir_all(&kept).unwrap();
    std::os::unix::fs::symlink(&kept, project.path().join("target")).unwrap();

    let wasm = build_rust_component(project.path()).expect("the component builds");
    assert!(
        wasm.starts_with(project.path().join("target")),
        "{}",
        wasm.display()
    );
    let harness = Harness::new().expect("a harness");
    let applet = harness.load(&wasm).expect("it loads");
    assert_eq!(applet.info().name, "sdk-probe");
    assert_eq!(applet.info().exits, ["greeted", "anonymous"]);

    let report = applet
        .run_file(project.path().join("tests/sample.fixture.yaml"))
        .expect("the fixture reads");
    report.assert_passed();
    assert!(report.fuel_used > 0);

    // A fixture that does not hold fails the test, saying why.
    let wrong = Fixture::parse("data: {}\nexpect: {outcome: {exit: greeted}}\n").unwrap();
    let report = applet.run(&wrong);
    assert!(!report.passed);
    let panic = std::panic::catch_unwind(|| report.assert_passed()).expect_err("it panics");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("outcome.exit is \"anonymous\", expected \"greeted\""),
        "{message}"
    );
}

#[test]
fn a_crate_that_is_not_an_applet_is_refused_clearly() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("Cargo.toml"),
        "[package]\nname = \"not-an-applet\"\nversion = \"0.1.0\"\nedition = \"2024\"\n[workspace]\n",
    )
    .unwrap();
    std::fs::create_dir(project.path().join("src")).unwrap();
    std::fs::write(project.path().join("src/lib.rs"), "pub fn f() {}\n").unwrap();
    let error = build_rust_component(project.path()).expect_err("no component");
    assert!(error.to_string().contains("made no .wasm"), "{error}");
}
