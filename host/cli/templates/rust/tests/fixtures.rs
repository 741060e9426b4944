//! Every `tests/*.fixture.yaml`, run against the built component by the SDK's offline
//! harness: no service, no network, capability calls answered from the fixture.

use coda_sdk::testing::{Harness, build_rust_component};

#[test]
fn fixtures_pass() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let wasm = build_rust_component(dir).expect("building the component");
    let harness = Harness::new().expect("the harness");
    let applet = harness.load(&wasm).expect("loading the component");
    let mut ran = 0;
    for entry in std::fs::read_dir(format!("{dir}/tests")).expect("tests/") {
        let path = entry.expect("an entry").path();
        if path.to_string_lossy().ends_with(".fixture.yaml") {
            let report = applet.run_file(&path).expect("reading the fixture");
            println!("{}: fuel {}, {:.2} ms", path.display(), report.fuel_used, report.elapsed_ms);
            report.assert_passed();
            ran += 1;
        }
    }
    assert!(ran > 0, "no tests/*.fixture.yaml found");
}
