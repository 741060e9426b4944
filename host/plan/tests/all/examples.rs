//! The example plans in `examples/plans/` parse, in both formats, and link up. Every one of
//! them is runnable: that each validates against the applets coda ships is the end-to-end
//! suite's to check (`tests/e2e/run.rs`, every file of the folder), since this crate's
//! fixtures are stand-ins, not the built-in applets.

use std::path::PathBuf;

use coda_plan::{Format, PlanType, parse, parse_as};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/plans")
}

/// Each example's file name and text, post-call first.
pub fn texts() -> Vec<(String, String)> {
    let mut texts: Vec<(String, String)> = std::fs::read_dir(dir())
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    texts.sort_by_key(|(name, _)| (name != "post-call.yaml", name.clone()));
    texts
}

#[test]
fn every_example_parses_in_its_format() {
    let texts = texts();
    assert!(texts.len() >= 3, "{texts:?}");
    for (name, text) in &texts {
        let format = Format::from_path(name.as_ref()).expect("a .yaml or .json example");
        let plan = parse_as(text, format).unwrap_or_else(|p| panic!("{name}: {p:#?}"));
        assert_eq!(parse(text).unwrap(), plan, "{name}: detection disagrees");
        assert_eq!(
            format!("{}.{}", plan.name, name.rsplit('.').next().unwrap()),
            *name
        );
    }
}

#[test]
fn the_examples_link_up() {
    let plans: Vec<_> = texts()
        .iter()
        .map(|(_, text)| parse(text).unwrap())
        .collect();
    let by_name = |name: &str| plans.iter().find(|p| p.name == name).unwrap();
    assert_eq!(by_name("post-call").plan_type, PlanType::Unattended);
    assert_eq!(
        by_name("live-call").post_interaction.as_deref(),
        Some("post-call")
    );
    assert_eq!(by_name("chat-support").plan_type, PlanType::Message);
    assert_eq!(
        by_name("chat-support").post_interaction.as_deref(),
        Some("post-call")
    );
    // The post-call retry loop passes through loop-counter and pause.
    let post_call = by_name("post-call");
    assert_eq!(post_call.nodes["retries"].applet.name(), "loop-counter");
    assert_eq!(post_call.nodes["wait-an-hour"].exits["next"], "log");
}
