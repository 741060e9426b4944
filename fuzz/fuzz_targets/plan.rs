//! Plans as a tenant writes them: any text is parsed (YAML or JSON) and, when it parses,
//! validated against a catalog of realistic applets (the plan crate's test fixtures). No
//! input may panic, overflow the stack or hang; a plan that is refused is refused with
//! problems that each say where.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../host/plan/tests/all/fixtures.rs"]
mod fixtures;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let catalog = fixtures::catalog();
    match coda_plan::parse(text) {
        Ok(plan) => {
            if let Err(problems) = coda_plan::validate(&plan, &catalog) {
                assert!(!problems.is_empty(), "a refusal names at least one problem");
            }
        }
        Err(problems) => assert!(!problems.is_empty(), "a refusal names at least one problem"),
    }
});
