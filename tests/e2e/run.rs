//! `coda plan validate` and `coda run`: plans run end to end on real applets and a real
//! SQLite database, with a virtual clock so pauses of days pass at once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::coda;

/// A directory holding the test applets this suite's plans use, the built-in unattended
/// ones included (a `coda` that embeds them loads the same component once).
pub(crate) fn applets_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-applets");
    std::fs::create_dir_all(&dir).unwrap();
    for path in [
        coda_applet_artifacts::HELLO,
        coda_applet_artifacts::ECHO,
        coda_applet_artifacts::SCRIPTED,
        coda_applet_artifacts::SET_DATA,
        coda_applet_artifacts::DATA_ROUTER,
        coda_applet_artifacts::LOOP_COUNTER,
        coda_applet_artifacts::PAUSE,
        coda_applet_artifacts::ROUTE_TO_PLAN,
        coda_applet_artifacts::WAIT_FOR_EVENT,
        coda_applet_artifacts::SCHEDULE_ROUTER,
        coda_applet_artifacts::SMS,
        coda_applet_artifacts::DB_LOG,
    ] {
        let name = Path::new(path).file_name().unwrap();
        // Copied aside, then renamed into place: tests run in parallel, and a `coda` listing
        // the directory must never read a component another test is halfway through copying.
        static COPIES: AtomicU64 = AtomicU64::new(0);
        let n = COPIES.fetch_add(1, Ordering::Relaxed);
        let aside = dir.join(format!("{}.{}.{n}.tmp", name.display(), std::process::id()));
        std::fs::copy(path, &aside).unwrap();
        std::fs::rename(&aside, dir.join(name)).unwrap();
    }
    dir
}

pub(crate) struct Files(tempfile::TempDir);

impl Files {
    pub(crate) fn new() -> Self {
        Files(tempfile::tempdir().unwrap())
    }
    pub(crate) fn path(&self, name: &str) -> String {
        self.0.path().join(name).to_string_lossy().into_owned()
    }
    pub(crate) fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }
}

const EVENT: &str = r#"{
  "interaction": "int-42",
  "channel": "voice",
  "outcome": "completed",
  "data": { "CLID": "+15550100", "CustomerName": "Ada" }
}"#;

pub(crate) fn run_plan(files: &Files, plan: &str, extra: &[&str]) -> (i32, Value) {
    let plan = files.write("plan.yaml", plan);
    let event = files.write("event.json", EVENT);
    let applets = applets_dir();
    let mut args = vec![
        "run",
        plan.as_str(),
        "--event",
        event.as_str(),
        "--applets",
        applets.to_str().unwrap(),
        "--clock",
        "virtual",
    ];
    args.extend_from_slice(extra);
    coda(&args)
}

/// `coda plan validate PLAN` against the suite's applets.
pub(crate) fn validate(plan: &str) -> (i32, Value) {
    let applets = applets_dir();
    coda(&[
        "plan",
        "validate",
        plan,
        "--applets",
        applets.to_str().unwrap(),
    ])
}

pub(crate) fn notes(run: &Value) -> Vec<String> {
    run["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["note"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_plan_runs_through_its_exits_to_the_end() {
    let files = Files::new();
    let (status, run) = run_plan(
        &files,
        r#"
name: greet-and-echo
type: unattended
start: greet
nodes:
  greet:
    applet: hello@0.1.0
    config: { greeting: Thanks }
    exits: { greeted: echo }
  echo:
    applet: echo@0.1.0
"#,
        &[],
    );
    assert_eq!(status, 0, "{run:#}");
    assert_eq!(run["status"], "done");
    assert_eq!(run["data"]["Greeting"], "Thanks, Ada!");
    assert_eq!(run["data"]["InteractionOutcome"], "completed");
    // echo saw every data source the run had, the greeting included.
    assert_eq!(run["data"]["Echo"]["Greeting"], "Thanks, Ada!");
    assert_eq!(
        notes(&run),
        [
            "exit greeted → echo",
            "exit next is not wired: the run ends"
        ]
    );
}

#[test]
fn pauses_park_the_run_until_due() {
    let files = Files::new();
    let (status, run) = run_plan(
        &files,
        r#"
name: pause-loop
type: unattended
start: tick
nodes:
  tick:
    applet: scripted@0.1.0
    config: { count_into: Ticks, pause_ms: 86400000 }
    exits: { next: check }
  check:
    applet: scripted@0.1.0
    config: { exit: other }
    exits: { other: done }
  done:
    applet: echo@0.1.0
"#,
        &[],
    );
    assert_eq!(status, 0, "{run:#}");
    assert_eq!(run["data"]["Ticks"], 1);
    let journal = run["journal"].as_array().unwrap();
    // The step after the pause ran a day (virtual) later.
    let paused = journal[0]["at_ms"].as_i64().unwrap();
    let resumed = journal[1]["at_ms"].as_i64().unwrap();
    assert!(resumed - paused >= 86_400_000, "{paused} → {resumed}");
    assert_eq!(notes(&run)[0], "pause 86400000 ms, then exit next → check");
}

#[test]
fn retryable_failures_are_retried_then_succeed() {
    let files = Files::new();
    let (status, run) = run_plan(
        &files,
        r#"
name: flaky
type: unattended
start: call
nodes:
  call:
    applet: scripted@0.1.0
    config: { fail_attempts: 2 }
"#,
        &[],
    );
    assert_eq!(status, 0, "{run:#}");
    let journal = run["journal"].as_array().unwrap();
    let attempts: Vec<i64> = journal
        .iter()
        .map(|s| s["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(
        notes(&run)[0].starts_with("retryable failure (flaky): retry 2 of 3 in "),
        "{:?}",
        notes(&run)
    );
    // Backoff: the second retry waited longer than the first.
    let at: Vec<i64> = journal
        .iter()
        .map(|s| s["at_ms"].as_i64().unwrap())
        .collect();
    assert!(at[2] - at[1] > at[1] - at[0], "{at:?}");
}

#[test]
fn errors_take_the_error_exit_or_fail_the_run() {
    let files = Files::new();
    let (status, run) = run_plan(
        &files,
        r#"
name: with-error-exit
type: unattended
start: call
nodes:
  call:
    applet: scripted@0.1.0
    config: { fail_code: declined }
    error: recover
  recover:
    applet: echo@0.1.0
"#,
        &[],
    );
    assert_eq!(status, 0, "{run:#}");
    assert_eq!(run["data"]["LastError"]["kind"], "failure");
    assert_eq!(run["data"]["LastError"]["node"], "call");
    assert!(
        notes(&run)[0].ends_with("→ error exit recover"),
        "{:?}",
        notes(&run)
    );

    // Exhausted retries with no error exit: the run fails, exit status 1.
    let (status, failed) = run_plan(
        &files,
        r#"
name: always-flaky
type: unattended
start: call
nodes:
  call:
    applet: scripted@0.1.0
    config: { fail_attempts: 99 }
"#,
        &[],
    );
    assert_eq!(status, 1, "{failed:#}");
    let run = &failed["error"]["run"];
    assert_eq!(run["status"], "failed");
    assert_eq!(run["journal"].as_array().unwrap().len(), 3);
    assert!(
        notes(run)[2].ends_with("no error exit is wired: the run fails"),
        "{:?}",
        notes(run)
    );
}

#[test]
fn a_wait_times_out_through_its_timeout_exit() {
    let files = Files::new();
    let (status, run) = run_plan(
        &files,
        r#"
name: wait-disposition
type: unattended
start: wait
nodes:
  wait:
    applet: scripted@0.1.0
    config: { wait_for: disposition, timeout_ms: 3600000 }
    exits: { timeout: after, received: after }
  after:
    applet: echo@0.1.0
"#,
        &[],
    );
    assert_eq!(status, 0, "{run:#}");
    assert_eq!(
        notes(&run)[..2],
        [
            "wait up to 3600000 ms for `disposition`",
            "no `disposition` event before the timeout → after"
        ]
    );
}

#[test]
fn routes_continue_in_another_plan_and_cannot_loop_forever() {
    let files = Files::new();
    let other = files.write(
        "other.yaml",
        r#"
name: other
type: unattended
start: back
nodes:
  back:
    applet: scripted@0.1.0
    config: { count_into: Hops, route_to: ping }
    error: stop
  stop:
    applet: echo@0.1.0
"#,
    );
    let (status, run) = run_plan(
        &files,
        r#"
name: ping
type: unattended
start: go
nodes:
  go:
    applet: scripted@0.1.0
    config: { count_into: Hops, route_to: other }
    error: stop
  stop:
    applet: echo@0.1.0
"#,
        &["--with", &other],
    );
    assert_eq!(status, 0, "{run:#}");
    // Eight routes are allowed; the ninth takes the error exit, and that step's own data
    // changes are dropped with it, as for any step that does not end in an outcome.
    assert_eq!(run["data"]["Hops"], 8);
    assert_eq!(run["data"]["LastError"]["kind"], "route-depth");
}

#[test]
fn plan_validate_lists_every_problem() {
    let files = Files::new();
    let plan = files.write(
        "bad.yaml",
        r#"
name: bad
type: unattended
start: greet
nodes:
  greet:
    applet: hello@0.1.0
    config: { greeting: 5 }
    exits: { greeted: nowhere, waved: echo }
  echo:
    applet: echo@9.9.9
"#,
    );
    let (status, out) = validate(&plan);
    assert_eq!(status, 2, "{out:#}");
    let problems = out["error"]["problems"].as_array().unwrap();
    let fields: Vec<&str> = problems
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    for expected in [
        "nodes.greet.exits.greeted",
        "nodes.greet.exits.waved",
        "nodes.echo.applet",
    ] {
        assert!(
            fields.iter().any(|f| f.starts_with(expected)),
            "{expected} not in {fields:?}"
        );
    }
    assert!(
        fields.iter().any(|f| f.starts_with("nodes.greet.config")),
        "{fields:?}"
    );

    let good = files.write(
        "good.yaml",
        "name: good\ntype: unattended\nstart: greet\nnodes:\n  greet:\n    applet: hello@0.1.0\n",
    );
    let (status, out) = validate(&good);
    assert_eq!(status, 0, "{out:#}");
    assert_eq!(out["valid"], true);
}

/// Issue 14: `coda plan validate` on a 320 KB plan whose 20 KB string is aliased 100 000
/// times used about 4 GB for 8 to 16 s. It is refused before it is built, naming the limit.
#[test]
fn plan_validate_refuses_a_plan_whose_aliases_expand_past_the_limit() {
    let files = Files::new();
    let plan = files.write(
        "aliased.yaml",
        &format!(
            "name: aliased\ntype: unattended\nstart: greet\nnodes:\n  greet:\n    applet: hello@0.1.0\n    config:\n      big: &a {}\n      many: [{}]\n",
            "x".repeat(20 * 1024),
            vec!["*a"; 100_000].join(",")
        ),
    );
    let started = std::time::Instant::now();
    let (status, out) = validate(&plan);
    let took = started.elapsed();
    assert_eq!(status, 2, "{out:#}");
    let message = out["error"]["problems"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the plan expands through its anchors and aliases to more than"),
        "{out:#}"
    );
    // The process's start included: unbounded, parsing alone took 8 to 16 s.
    assert!(took < std::time::Duration::from_secs(20), "{took:?}");
}

#[test]
fn every_example_plan_validates_against_the_real_applets() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/plans"));
    // Every file, the live plans included: an example that cannot validate cannot run.
    let mut plans: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    plans.sort();
    assert!(plans.len() >= 5, "{plans:?}");
    let applets = applets_dir();
    for plan in &plans {
        // Each with the others at hand, for the plans they name (post-interaction, routes).
        let mut args = vec![
            "plan",
            "validate",
            plan.as_str(),
            "--applets",
            applets.to_str().unwrap(),
        ];
        for other in plans.iter().filter(|p| *p != plan) {
            args.extend(["--with", other.as_str()]);
        }
        let (status, out) = coda(&args);
        assert_eq!(status, 0, "{plan}: {out:#}");
    }
}
