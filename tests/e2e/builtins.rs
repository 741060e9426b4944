//! The built-in unattended applets (applets/builtin), each run inside a flow by `coda run`
//! with a virtual clock, checked on the path the run took and the data it left.

use serde_json::{Value, json};

use crate::coda;
use crate::run::{Files, applets_dir, notes, run_plan};

/// The nodes the run stepped through, in order.
fn nodes(run: &Value) -> Vec<String> {
    run["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap().to_owned())
        .collect()
}

/// The nodes whose applets ran, in order: the journal without the steps the host journals
/// itself (a wait's event or timeout).
fn applet_nodes(run: &Value) -> Vec<String> {
    run["journal"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["applet"] != "")
        .map(|s| s["node"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs `plan` and expects it to end well (exit status 0, status done).
fn run_done(files: &Files, plan: &str, extra: &[&str]) -> Value {
    let (status, run) = run_plan(files, plan, extra);
    assert_eq!(status, 0, "{run:#}");
    assert_eq!(run["status"], "done", "{run:#}");
    run
}

#[test]
fn set_data_sets_literals_then_expressions_and_a_bad_one_takes_the_error_exit() {
    let files = Files::new();
    let run = run_done(
        &files,
        r#"
name: set-data-flow
type: unattended
start: literal
nodes:
  literal:
    applet: set-data@0.1.0
    config:
      set:
        - { name: Tier, value: gold }
        - { name: Order, value: { total: 120, items: [a, b] } }
        - { name: Order-Total, value: 120.5 }
        - { name: Nothing, value: null }
    exits: { next: computed }
  computed:
    applet: set-data@0.1.0
    config:
      set:
        - { name: Greeting, expression: 'CustomerName + " (" + CLID + ")"' }
        - { name: Doubled, expression: 'data.Order.total * 2' }
        # Sees the entry before it, and a data source whose name is no identifier.
        - { name: Big, expression: 'Doubled > 200 && Tier == "gold" && data["Order-Total"] > 100.0' }
        - { name: Items, expression: 'data.Order.items.map(i, i + "!")' }
    exits: { next: broken }
  broken:
    applet: set-data@0.1.0
    config:
      set:
        - { name: Never, value: 1 }
        - { name: Oops, expression: 'NoSuchSource + 1' }
    exits: { next: unreachable }
    error: recover
  unreachable:
    applet: echo@0.1.0
  recover:
    applet: echo@0.1.0
"#,
        &[],
    );
    assert_eq!(nodes(&run), ["literal", "computed", "broken", "recover"]);
    let data = &run["data"];
    assert_eq!(data["Tier"], "gold");
    assert_eq!(data.get("Nothing"), Some(&Value::Null), "{data:#}");
    assert_eq!(data["Order"], json!({ "total": 120, "items": ["a", "b"] }));
    assert_eq!(data["Greeting"], "Ada (+15550100)");
    assert_eq!(data["Doubled"], 240);
    assert_eq!(data["Big"], true);
    assert_eq!(data["Items"], json!(["a!", "b!"]));
    // The failed step changed nothing, not even the entry before the bad one.
    assert!(data.get("Never").is_none(), "{data:#}");
    assert_eq!(data["LastError"]["kind"], "failure");
    assert_eq!(data["LastError"]["node"], "broken");
    let message = data["LastError"]["message"].as_str().unwrap();
    assert!(
        message.contains("bad-expression")
            && message.contains("set[1] (`Oops`)")
            && message.contains("NoSuchSource"),
        "{message}"
    );
    assert_eq!(
        run["journal"][1]["data_changes"],
        json!({
            "Greeting": "Ada (+15550100)",
            "Doubled": 240,
            "Big": true,
            "Items": ["a!", "b!"],
        })
    );
    assert_eq!(
        notes(&run)[..2],
        ["exit next → computed", "exit next → broken"]
    );
    assert!(
        notes(&run)[2].ends_with("→ error exit recover"),
        "{:?}",
        notes(&run)
    );
}

const ROUTER_NODES: &str = r#"
  bob:
    applet: set-data@0.1.0
    config: { set: [{ name: Route, value: bob }] }
  us:
    applet: set-data@0.1.0
    config: { set: [{ name: Route, value: us }] }
  fallback:
    applet: set-data@0.1.0
    config: { set: [{ name: Route, value: fallback }] }
"#;

#[test]
fn data_router_takes_the_first_rule_that_holds_else_default() {
    let files = Files::new();
    let plan = |rules: &str| {
        format!(
            r#"
name: router
type: unattended
start: route
nodes:
  route:
    applet: data-router@0.1.0
    config:
      rules:
{rules}
    exits: {{ bob: bob, us-caller: us, always: us, default: fallback }}
{ROUTER_NODES}"#
        )
    };
    // The second and third rules both hold: the second, the first to, wins.
    let run = run_done(
        &files,
        &plan(
            r#"        - { when: 'CustomerName == "Bob"', exit: bob }
        - { when: 'CLID.startsWith("+1555") && InteractionOutcome == "completed"', exit: us-caller }
        - { when: 'true', exit: always }"#,
        ),
        &[],
    );
    assert_eq!(nodes(&run), ["route", "us"]);
    assert_eq!(notes(&run)[0], "exit us-caller → us");
    assert_eq!(run["data"]["Route"], "us");

    let run = run_done(
        &files,
        &plan(
            r#"        - { when: 'CustomerName == "Bob"', exit: bob }
        - { when: 'has(data.Order) && data.Order.total > 100', exit: us-caller }"#,
        ),
        &[],
    );
    assert_eq!(nodes(&run), ["route", "fallback"]);
    assert_eq!(notes(&run)[0], "exit default → fallback");
    assert_eq!(run["data"]["Route"], "fallback");

    // A condition that is not a bool is the applet's failure: the run fails without an
    // error exit.
    let (status, out) = run_plan(
        &files,
        &plan(r#"        - { when: 'CustomerName', exit: bob }"#),
        &[],
    );
    assert_eq!(status, 1, "{out:#}");
    let note = &notes(&out["error"]["run"])[0];
    assert!(
        note.contains("bad-expression") && note.contains("not a bool"),
        "{note}"
    );
}

#[test]
fn loop_counter_lets_a_loop_pass_n_times_then_exhausts() {
    let files = Files::new();
    let run = run_done(
        &files,
        r#"
name: three-tries
type: unattended
start: count
nodes:
  count:
    applet: loop-counter@0.1.0
    config: { times: 3 }
    exits: { next: tick, exhausted: done }
  tick:
    applet: set-data@0.1.0
    config:
      set: [{ name: Ticks, expression: 'has(data.Ticks) ? Ticks + 1 : 1' }]
    exits: { next: count }
  done:
    applet: echo@0.1.0
"#,
        &[],
    );
    assert_eq!(
        nodes(&run),
        [
            "count", "tick", "count", "tick", "count", "tick", "count", "done"
        ]
    );
    assert_eq!(run["data"]["Ticks"], 3);
    let counts: Vec<&str> = run["journal"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["node"] == "count")
        .map(|s| s["result"]["exit"].as_str().unwrap())
        .collect();
    assert_eq!(counts, ["next", "next", "next", "exhausted"]);
    assert_eq!(notes(&run)[6], "exit exhausted → done");

    // Exhausting resets the count: an inner loop entered again by an outer one counts its
    // passes afresh.
    let run = run_done(
        &files,
        r#"
name: nested-loops
type: unattended
start: outer
nodes:
  outer:
    applet: loop-counter@0.1.0
    config: { times: 2 }
    exits: { next: inner, exhausted: done }
  inner:
    applet: loop-counter@0.1.0
    config: { times: 2 }
    exits: { next: tick, exhausted: outer }
  tick:
    applet: set-data@0.1.0
    config:
      set: [{ name: Ticks, expression: 'has(data.Ticks) ? Ticks + 1 : 1' }]
    exits: { next: inner }
  done:
    applet: echo@0.1.0
"#,
        &[],
    );
    let once = ["inner", "tick", "inner", "tick", "inner", "outer"];
    let expected: Vec<&str> = std::iter::once("outer")
        .chain(once)
        .chain(once)
        .chain(["done"])
        .collect();
    assert_eq!(nodes(&run), expected);
    assert_eq!(run["data"]["Ticks"], 4);
}

#[test]
fn pause_parks_the_run_for_two_days_of_virtual_time() {
    let files = Files::new();
    let run = run_done(
        &files,
        r#"
name: two-days
type: unattended
start: wait
nodes:
  wait:
    applet: pause@0.1.0
    config: { duration: 2d }
    exits: { next: after }
  after:
    applet: echo@0.1.0
"#,
        &[],
    );
    assert_eq!(nodes(&run), ["wait", "after"]);
    assert_eq!(notes(&run)[0], "pause 172800000 ms, then exit next → after");
    let at: Vec<i64> = run["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["at_ms"].as_i64().unwrap())
        .collect();
    assert!(at[1] - at[0] >= 172_800_000, "{at:?}");
}

#[test]
fn route_to_plan_continues_the_run_in_another_plan() {
    let files = Files::new();
    let second = files.write(
        "second.yaml",
        r#"
name: second
type: unattended
start: mark
nodes:
  mark:
    applet: set-data@0.1.0
    config: { set: [{ name: Routed, expression: '"from " + Came' }] }
"#,
    );
    let run = run_done(
        &files,
        r#"
name: first
type: unattended
start: before
nodes:
  before:
    applet: set-data@0.1.0
    config: { set: [{ name: Came, value: first }] }
    exits: { next: go }
  go:
    applet: route-to-plan@0.1.0
    config: { plan: second }
"#,
        &["--with", &second],
    );
    assert_eq!(nodes(&run), ["before", "go", "mark"]);
    assert_eq!(notes(&run)[1], "route to plan second@1");
    assert_eq!(run["journal"][2]["plan"], "second");
    // The data the run had went along.
    assert_eq!(run["data"]["Routed"], "from first");
}

#[test]
fn wait_for_event_times_out_through_its_timeout_exit() {
    let files = Files::new();
    let run = run_done(
        &files,
        r#"
name: wait-disposition
type: unattended
start: wait
nodes:
  wait:
    applet: wait-for-event@0.1.0
    config: { event: disposition, timeout_seconds: 3600 }
    exits: { received: got, timeout: late }
  got:
    applet: set-data@0.1.0
    config: { set: [{ name: Path, value: received }] }
  late:
    applet: set-data@0.1.0
    config: { set: [{ name: Path, value: timeout }] }
"#,
        &[],
    );
    assert_eq!(applet_nodes(&run), ["wait", "late"]);
    assert_eq!(nodes(&run).len(), 3);
    assert_eq!(
        notes(&run)[..2],
        [
            "wait up to 3600000 ms for `disposition`",
            "no `disposition` event before the timeout → late"
        ]
    );
    assert_eq!(run["data"]["Path"], "timeout");
}

#[test]
fn wait_for_event_wakes_on_its_event_with_the_payload() {
    let files = Files::new();
    let plan = files.write(
        "plan.yaml",
        r#"
name: wait-survey
type: unattended
start: wait
nodes:
  wait:
    applet: wait-for-event@0.1.0
    config: { event: survey, timeout_seconds: 86400 }
    exits: { received: got, timeout: late }
  got:
    applet: set-data@0.1.0
    config: { set: [{ name: Score, expression: 'Event.score * 2' }] }
  late:
    applet: set-data@0.1.0
    config: { set: [{ name: Path, value: timeout }] }
"#,
    );
    // The survey reply arrives an hour into the day-long wait.
    let event = files.write(
        "event.json",
        r#"{
  "interaction": "int-7",
  "outcome": "completed",
  "data": {},
  "then": [{ "after_ms": 3600000, "event": "survey", "data": { "score": 4 } }]
}"#,
    );
    let applets = applets_dir();
    let (status, run) = coda(&[
        "run",
        &plan,
        "--event",
        &event,
        "--applets",
        applets.to_str().unwrap(),
        "--clock",
        "virtual",
    ]);
    assert_eq!(status, 0, "{run:#}");
    assert_eq!(run["status"], "done", "{run:#}");
    assert_eq!(applet_nodes(&run), ["wait", "got"]);
    assert_eq!(
        notes(&run)[..2],
        [
            "wait up to 86400000 ms for `survey`",
            "event `survey` received → got"
        ]
    );
    let at: Vec<i64> = run["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["at_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(at[1] - at[0], 3_600_000, "{at:?}");
    assert_eq!(run["data"]["Event"], json!({ "score": 4 }));
    assert_eq!(run["data"]["Score"], 8);
    assert!(run["data"].get("Path").is_none(), "{run:#}");
}

/// Weekdays 09:00–17:00 in Berlin, Christmas off; each exit sets `Path` to its name.
const SCHEDULE_PLAN: &str = r#"
name: hours
type: unattended
start: check
nodes:
  check:
    applet: schedule-router@0.1.0
    config:
      schedule:
        time_zone: Europe/Berlin
        weekly:
          monday: [{ open: "09:00", close: "17:00" }]
          tuesday: [{ open: "09:00", close: "17:00" }]
          wednesday: [{ open: "09:00", close: "17:00" }]
          thursday: [{ open: "09:00", close: "17:00" }]
          friday: [{ open: "09:00", close: "12:00" }, { open: "13:00", close: "17:00" }]
          sunday: [{ open: "03:00", close: "04:00" }]
        holidays:
          - { date: "2026-12-25", name: Christmas }
    exits: { open: open, closed: closed, holiday: holiday }
  open:
    applet: set-data@0.1.0
    config: { set: [{ name: Path, value: open }] }
  closed:
    applet: set-data@0.1.0
    config: { set: [{ name: Path, value: closed }] }
  holiday:
    applet: set-data@0.1.0
    config: { set: [{ name: Path, value: holiday }] }
"#;

/// The exit the schedule router takes when the run starts at `at`.
fn schedule_exit(files: &Files, plan: &str, at: &str) -> String {
    let run = run_done(files, plan, &["--at", at]);
    let exit = run["data"]["ScheduleStatus"].as_str().unwrap().to_owned();
    assert_eq!(nodes(&run), ["check", exit.as_str()], "at {at}");
    assert_eq!(run["data"]["Path"], exit.as_str(), "at {at}");
    assert_eq!(notes(&run)[0], format!("exit {exit} → {exit}"), "at {at}");
    exit
}

#[test]
fn schedule_router_routes_open_closed_and_holiday() {
    let files = Files::new();
    let cases = [
        // Tuesday 2026-12-22, 10:00 in Berlin (UTC+1).
        ("2026-12-22T09:00:00Z", "open"),
        // 17:00 local: closing time is not open any more.
        ("2026-12-22T16:00:00Z", "closed"),
        // Friday 2026-12-25, Christmas, 10:00 local: the holiday wins over open hours,
        // and it is a whole local day: 00:30 local is still Christmas.
        ("2026-12-25T09:00:00Z", "holiday"),
        ("2026-12-24T23:30:00Z", "holiday"),
        // Friday 2027-01-08 at lunch, 12:30 local: between two intervals.
        ("2027-01-08T11:30:00Z", "closed"),
        // Saturday: no hours at all.
        ("2026-12-26T10:00:00Z", "closed"),
    ];
    for (at, expected) in cases {
        assert_eq!(
            schedule_exit(&files, SCHEDULE_PLAN, at),
            expected,
            "at {at}"
        );
    }
}

#[test]
fn schedule_router_keeps_local_hours_across_a_daylight_saving_change() {
    let files = Files::new();
    // Berlin moves from UTC+1 to UTC+2 on Sunday 2026-03-29 at 02:00 local. At 07:30 UTC it
    // is 08:30 local on the Friday before (closed) and 09:30 local on the Monday after
    // (open): open hours follow the local clock, not a fixed offset.
    let cases = [
        ("2026-03-27T07:30:00Z", "closed"),
        ("2026-03-27T08:00:00Z", "open"),
        ("2026-03-30T07:30:00Z", "open"),
        ("2026-03-30T06:59:59Z", "closed"),
        ("2026-03-30T15:00:00Z", "closed"),
        // The change itself: 01:59:59 CET, then 03:00 CEST a second later; 02:00–03:00
        // local never happens that night. Sunday's hours are 03:00–04:00 local.
        ("2026-03-29T00:59:59Z", "closed"),
        ("2026-03-29T01:00:00Z", "open"),
        ("2026-03-29T02:00:00Z", "closed"),
    ];
    for (at, expected) in cases {
        assert_eq!(
            schedule_exit(&files, SCHEDULE_PLAN, at),
            expected,
            "at {at}"
        );
    }
}

#[test]
fn schedule_router_reads_a_named_schedule_from_a_data_source() {
    let files = Files::new();
    // New York's change (2026-03-08, UTC-5 → UTC-4), with the schedule a data source that an
    // earlier step set, as a tenant's named schedule would be.
    let plan = r#"
name: hours-from-data
type: unattended
start: load
nodes:
  load:
    applet: set-data@0.1.0
    config:
      set:
        - name: TenantSchedule
          value:
            time_zone: America/New_York
            weekly:
              friday: [{ open: "09:00", close: "17:00" }]
              monday: [{ open: "09:00", close: "17:00" }]
    exits: { next: check }
  check:
    applet: schedule-router@0.1.0
    config: { schedule_source: TenantSchedule }
    exits: { open: open, closed: closed }
  open:
    applet: echo@0.1.0
  closed:
    applet: echo@0.1.0
"#;
    let exit_at = |at: &str| {
        let run = run_done(&files, plan, &["--at", at]);
        assert_eq!(nodes(&run)[..2], ["load", "check"]);
        run["data"]["ScheduleStatus"].as_str().unwrap().to_owned()
    };
    // 13:30 UTC: 08:30 local on Friday 2026-03-06 (EST), 09:30 on Monday 2026-03-09 (EDT).
    assert_eq!(exit_at("2026-03-06T13:30:00Z"), "closed");
    assert_eq!(exit_at("2026-03-09T13:30:00Z"), "open");

    // A bad time zone in the data is the applet's bad-config failure, naming the field.
    let broken = plan.replace("America/New_York", "America/Nowhere");
    let (status, out) = run_plan(&files, &broken, &["--at", "2026-03-09T13:30:00Z"]);
    assert_eq!(status, 1, "{out:#}");
    let note = &notes(&out["error"]["run"])[1];
    assert!(
        note.contains("bad-config")
            && note.contains("time_zone")
            && note.contains("America/Nowhere"),
        "{note}"
    );
}

#[test]
fn plan_validate_names_the_wrong_field_of_a_builtin_config() {
    let files = Files::new();
    let plan = files.write(
        "bad.yaml",
        r#"
name: bad-builtins
type: unattended
start: route
nodes:
  route:
    applet: data-router@0.1.0
    config: { rules: [{ when: 'true', exit: Big Spender }] }
    exits: { default: count }
  count:
    applet: loop-counter@0.1.0
    config: { times: 0 }
    exits: { next: nap }
  nap:
    applet: pause@0.1.0
    config: { duration: 2 weeks }
    exits: { next: both }
  both:
    applet: pause@0.1.0
    config: { seconds: 5, duration: 5s }
    exits: { next: wait }
  wait:
    applet: wait-for-event@0.1.0
    config: { event: x, timeout_seconds: 9999999 }
    exits: { timeout: hours }
  hours:
    applet: schedule-router@0.1.0
    config: { schedule: { time_zone: UTC, weekly: { monday: [{ open: "9:00", close: "17:00" }] } } }
    exits: { open: go }
  go:
    applet: route-to-plan@0.1.0
    config: { plan: Other Plan }
    exits: {}
    error: set
  set:
    applet: set-data@0.1.0
    config: { set: [{ name: A, value: 1 }, { name: B, expression: "" }, { name: C }] }
"#,
    );
    let (status, out) = crate::run::validate(&plan);
    assert_eq!(status, 2, "{out:#}");
    let mut fields: Vec<&str> = out["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "nodes.both.config",
            "nodes.count.config/times",
            "nodes.go.config/plan",
            "nodes.hours.config/schedule/weekly/monday/0/open",
            "nodes.nap.config/duration",
            "nodes.route.config/rules/0/exit",
            "nodes.set.config/set/1/expression",
            "nodes.set.config/set/2",
            "nodes.wait.config/timeout_seconds",
        ]
    );
}
