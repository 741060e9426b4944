//! One test per class of problem `validate` reports, and plans that pass.

use coda_plan::{CYCLE_BREAKERS, MAX_CONFIG_PROBLEMS, MAX_NODES, Problem, validate};
use serde_json::json;

use crate::fixtures::{applet, catalog, plan};

/// The problems of a plan that must not validate.
fn problems(text: &str) -> Vec<Problem> {
    match validate(&plan(text), &catalog()) {
        Ok(()) => panic!("the plan validated, but the test expects problems"),
        Err(problems) => problems,
    }
}

/// The one problem at `field` whose message contains `fragment`.
#[track_caller]
fn find<'p>(problems: &'p [Problem], field: &str, fragment: &str) -> &'p Problem {
    problems
        .iter()
        .find(|p| p.field == field && p.message.contains(fragment))
        .unwrap_or_else(|| {
            panic!("no problem at {field} containing {fragment:?} among:\n{problems:#?}")
        })
}

#[track_caller]
fn only<'p>(problems: &'p [Problem], field: &str, fragment: &str) -> &'p Problem {
    assert_eq!(problems.len(), 1, "expected one problem, got {problems:#?}");
    find(problems, field, fragment)
}

#[test]
fn a_simple_plan_validates() {
    let plan = plan(
        r#"
name: greet
type: unattended
start: greet
nodes:
  greet:
    applet: set-data-source@0.1.0
    config: { set: { Greeting: hello } }
"#,
    );
    validate(&plan, &catalog()).unwrap();
}

#[test]
fn unknown_applet_version_lists_the_installed_ones() {
    let p = problems(
        r#"
name: x
type: unattended
start: a
nodes:
  a: { applet: sms@0.3.0, config: { to: x, text: y } }
"#,
    );
    let p = only(
        &p,
        "nodes.a.applet",
        "the applet sms@0.3.0 is not installed",
    );
    assert_eq!(
        p.to_string(),
        "nodes.a.applet: the applet sms@0.3.0 is not installed (installed versions of sms: 0.1.0, 0.2.0)"
    );
    assert_eq!(p.node.as_deref(), Some("a"));
}

#[test]
fn unknown_applet_name_says_none_is_installed() {
    let p = problems(
        r#"
name: x
type: unattended
start: a
nodes:
  a: { applet: smz@0.1.0 }
"#,
    );
    only(&p, "nodes.a.applet", "no applet named \"smz\" is installed");
}

#[test]
fn undeclared_exit_names_the_declared_ones() {
    let p = problems(
        r#"
name: x
type: unattended
start: greet
nodes:
  greet:
    applet: set-data-source@0.1.0
    config: { set: { A: b } }
    exits: { nxt: route }
  route:
    applet: set-data-source@0.1.0
    config: { set: { A: b } }
"#,
    );
    let p = only(&p, "nodes.greet.exits.nxt", "has no exit");
    assert_eq!(
        p.to_string(),
        r#"nodes.greet.exits.nxt: the applet set-data-source@0.1.0 has no exit "nxt" (its exits: next)"#
    );
}

#[test]
fn error_is_not_an_exit_to_wire() {
    let p = problems(
        r#"
name: x
type: unattended
start: a
nodes:
  a:
    applet: set-data-source@0.1.0
    config: { set: { A: b } }
    exits: { next: b, error: b }
  b: { applet: pause@0.1.0, config: { seconds: 1 } }
"#,
    );
    let p = only(
        &p,
        "nodes.a.exits.error",
        "\"error\" is not an exit to wire under exits",
    );
    assert!(
        p.message.contains("set the node's error field instead"),
        "{p}"
    );
}

#[test]
fn dangling_targets_and_start_are_reported() {
    let p = problems(
        r#"
name: x
type: unattended
start: begin
nodes:
  a:
    applet: set-data-source@0.1.0
    config: { set: { A: b } }
    exits: { next: nowhere }
    error: limbo
"#,
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    find(
        &p,
        "start",
        "the start node \"begin\" is not a node of this plan",
    );
    find(
        &p,
        "nodes.a.exits.next",
        "the exit \"next\" goes to \"nowhere\", which is not a node of this plan",
    );
    find(
        &p,
        "nodes.a.error",
        "the error exit goes to \"limbo\", which is not a node of this plan",
    );
}

#[test]
fn a_plan_without_nodes_says_so() {
    let p = problems("name: x\ntype: unattended\nstart: a\nnodes: {}\n");
    only(&p, "start", "which has no nodes");
}

#[test]
fn unreachable_nodes_are_reported_each() {
    let p = problems(
        r#"
name: x
type: unattended
start: a
nodes:
  a: { applet: pause@0.1.0, config: { seconds: 5 }, error: b }
  b: { applet: pause@0.1.0, config: { seconds: 5 } }
  orphan: { applet: pause@0.1.0, config: { seconds: 5 }, exits: { next: orphan2 } }
  orphan2: { applet: pause@0.1.0, config: { seconds: 5 } }
"#,
    );
    assert_eq!(p.len(), 2, "{p:#?}");
    let orphan = find(
        &p,
        "nodes.orphan",
        "the node is not reachable from the start node \"a\"",
    );
    assert_eq!(orphan.node.as_deref(), Some("orphan"));
    find(&p, "nodes.orphan2", "not reachable");
}

#[test]
fn config_schema_errors_point_into_the_config() {
    let p = problems(
        r#"
name: x
type: unattended
start: greet
nodes:
  greet:
    applet: set-data-source@0.1.0
    config: { set: { Greeting: 5, "bad name": x }, extra: true }
"#,
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    find(
        &p,
        "nodes.greet.config/set/Greeting",
        "5 is not of type \"string\"",
    );
    find(&p, "nodes.greet.config/set", "bad name");
    find(&p, "nodes.greet.config", "extra");
    assert!(p.iter().all(|p| p.node.as_deref() == Some("greet")));
}

#[test]
fn a_missing_config_is_an_empty_object_checked_against_the_schema() {
    let p = problems(
        r#"
name: x
type: unattended
start: count
nodes:
  count: { applet: loop-counter@0.1.0 }
"#,
    );
    only(&p, "nodes.count.config", "\"max\" is a required property");
}

#[test]
fn config_values_out_of_range() {
    let p = problems(
        r#"
name: x
type: unattended
start: count
nodes:
  count: { applet: loop-counter@0.1.0, config: { max: 11 }, exits: { next: wait } }
  wait: { applet: pause@0.1.0, config: { seconds: 0 } }
  email:
    applet: send-email@0.1.0
    config: { to: not-an-address, subject: hi }
"#,
    );
    find(
        &p,
        "nodes.count.config/max",
        "11 is greater than the maximum of 10",
    );
    find(
        &p,
        "nodes.wait.config/seconds",
        "0 is less than the minimum of 1",
    );
    // Formats are asserted, not merely annotations.
    find(&p, "nodes.email.config/to", "not-an-address");
}

#[test]
fn a_schema_that_does_not_compile_is_the_applets_fault() {
    let catalog = catalog()
        .with_applet(applet(
            "broken",
            &["next"],
            json!({ "type": "nope" }),
            false,
            &[],
        ))
        .with_applet(applet(
            "remote",
            &["next"],
            // Must be refused without any network access.
            json!({ "$ref": "https://example.com/schemas/config.json" }),
            false,
            &[],
        ))
        .with_applet(applet(
            "local-file",
            &["next"],
            json!({ "$ref": "file:///etc/passwd" }),
            false,
            &[],
        ));
    let plan = plan(
        r#"
name: x
type: unattended
start: a
nodes:
  a: { applet: broken@0.1.0, exits: { next: b } }
  b: { applet: remote@0.1.0, exits: { next: c } }
  c: { applet: local-file@0.1.0 }
"#,
    );
    let p = validate(&plan, &catalog).unwrap_err();
    assert_eq!(p.len(), 3, "{p:#?}");
    for (field, applet) in [
        ("nodes.a.config", "broken"),
        ("nodes.b.config", "remote"),
        ("nodes.c.config", "local-file"),
    ] {
        find(
            &p,
            field,
            &format!(
                "the config schema of the applet {applet}@0.1.0 does not compile, which is the applet's fault"
            ),
        );
    }
}

#[test]
fn schema_errors_are_capped_per_node() {
    let catalog = catalog().with_applet(applet(
        "strings",
        &[],
        json!({ "type": "array", "items": { "type": "string" } }),
        false,
        &[],
    ));
    let plan = coda_plan::Plan {
        nodes: [(
            "a".to_string(),
            coda_plan::Node {
                config: json!(vec![1; 100]),
                ..coda_plan::Node::new("strings@0.1.0".parse().unwrap())
            },
        )]
        .into(),
        ..plan("name: x\ntype: unattended\nstart: a\nnodes: {}\n")
    };
    let p = validate(&plan, &catalog).unwrap_err();
    assert_eq!(p.len(), MAX_CONFIG_PROBLEMS + 1, "{p:#?}");
    assert_eq!(p[0].field, "nodes.a.config/0");
    find(
        &p,
        "nodes.a.config",
        &format!(
            "{} more schema errors in this config are not listed",
            100 - MAX_CONFIG_PROBLEMS
        ),
    );
}

#[test]
fn a_config_over_the_size_limit_is_refused() {
    let big = "x".repeat(70_000);
    let p = problems(&format!(
        "name: x\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: set-data-source@0.1.0\n    config: {{ set: {{ A: {big} }} }}\n"
    ));
    only(
        &p,
        "nodes.a.config",
        "bytes of JSON, more than the limit of 65536",
    );
}

#[test]
fn live_party_applets_are_refused_in_unattended_plans() {
    let text = r#"
name: x
type: unattended
start: hello
nodes:
  hello: { applet: play-prompt@0.1.0, config: { prompt: welcome } }
"#;
    let p = problems(text);
    only(
        &p,
        "nodes.hello.applet",
        "the applet play-prompt@0.1.0 needs a live party, and an unattended plan runs with no interaction present",
    );
    // The same node is fine in a live plan.
    let live = text.replace("type: unattended", "type: default");
    validate(&plan(&live), &catalog()).unwrap();
}

#[test]
fn a_cycle_without_a_breaker_is_refused_and_named_in_order() {
    let p = problems(
        r#"
name: x
type: unattended
start: first
nodes:
  first:
    applet: set-data-source@0.1.0
    config: { set: { A: b } }
    exits: { next: c-second }
  c-second:
    applet: data-router@0.1.0
    config: { source: A, rules: [{ equals: b }] }
    exits: { default: b-third, rule-1: first }
  b-third:
    applet: send-email@0.1.0
    config: { to: ops@example.com, subject: again }
    exits: { next: c-second }
"#,
    );
    let p = only(&p, "nodes.first", "has no cycle breaker on it");
    // Entered at `first` (the start), the shortest way round goes back from c-second.
    assert_eq!(
        p.message,
        format!(
            "the cycle first -> c-second -> first has no cycle breaker on it (one of {}), so a run could go round it forever; the nodes b-third loop with it",
            CYCLE_BREAKERS.join(", ")
        )
    );
    assert_eq!(p.node.as_deref(), Some("first"));
}

#[test]
fn a_self_loop_is_a_cycle() {
    let p = problems(
        r#"
name: x
type: unattended
start: a
nodes:
  a:
    applet: set-data-source@0.1.0
    config: { set: { A: b } }
    error: a
"#,
    );
    only(&p, "nodes.a", "the cycle a -> a has no cycle breaker");
}

#[test]
fn a_cycle_is_named_from_where_a_run_enters_it() {
    let p = problems(
        r#"
name: x
type: unattended
start: s
nodes:
  s: { applet: set-data-source@0.1.0, config: { set: { A: b } }, exits: { next: z } }
  a: { applet: set-data-source@0.1.0, config: { set: { A: b } }, exits: { next: z } }
  z: { applet: set-data-source@0.1.0, config: { set: { A: b } }, exits: { next: a } }
"#,
    );
    only(&p, "nodes.z", "the cycle z -> a -> z has no cycle breaker");
}

#[test]
fn a_retry_loop_through_loop_counter_validates() {
    let plan = plan(
        r#"
name: retry
type: unattended
start: log
nodes:
  log:
    applet: db-log@0.1.0
    config: { table: interaction_log, fields: { clid: CLID } }
    error: count
  count:
    applet: loop-counter@0.1.0
    config: { max: 3 }
    exits: { next: log, exhausted: alert }
  alert:
    applet: send-email@0.1.0
    config: { to: ops@example.com, subject: could not log }
"#,
    );
    validate(&plan, &catalog()).unwrap();
}

#[test]
fn every_breaker_breaks_a_cycle() {
    for (breaker, config, exit) in [
        ("loop-counter", "{ max: 2 }", "next"),
        ("pause", "{ seconds: 60 }", "next"),
        (
            "wait-for-event",
            "{ event: callback, timeout_seconds: 60 }",
            "timeout",
        ),
    ] {
        assert!(CYCLE_BREAKERS.contains(&breaker));
        let text = format!(
            r#"
name: x
type: unattended
start: a
nodes:
  a: {{ applet: set-data-source@0.1.0, config: {{ set: {{ A: b }} }}, exits: {{ next: b }} }}
  b: {{ applet: {breaker}@0.1.0, config: {config}, exits: {{ {exit}: a }} }}
"#
        );
        validate(&plan(&text), &catalog()).unwrap_or_else(|p| panic!("{breaker}: {p:#?}"));
    }
}

#[test]
fn post_interaction_must_name_a_known_plan() {
    let p = problems(
        r#"
name: live
type: default
start: a
post_interaction: after-call
nodes:
  a: { applet: play-prompt@0.1.0, config: { prompt: hi } }
"#,
    );
    only(
        &p,
        "post_interaction",
        "there is no plan named \"after-call\"",
    );
}

#[test]
fn a_message_plans_post_interaction_plan_must_be_unattended() {
    let text = r#"
name: chat
type: message
start: a
post_interaction: live-call
nodes:
  a: { applet: chat-message@0.1.0, config: { text: hi } }
"#;
    let p = problems(text);
    only(
        &p,
        "post_interaction",
        "a message plan's post-interaction plan must be an unattended plan, and \"live-call\" is a default plan",
    );
    let fixed = text.replace("live-call", "post-call");
    validate(&plan(&fixed), &catalog()).unwrap();
}

#[test]
fn an_unattended_plan_has_no_post_interaction_plan() {
    let p = problems(
        r#"
name: x
type: unattended
start: a
post_interaction: post-call
nodes:
  a: { applet: pause@0.1.0, config: { seconds: 1 } }
"#,
    );
    only(
        &p,
        "post_interaction",
        "an unattended plan cannot have a post-interaction plan",
    );
}

#[test]
fn a_plan_cannot_follow_itself() {
    let p = problems(
        r#"
name: live-call
type: default
start: a
post_interaction: live-call
nodes:
  a: { applet: play-prompt@0.1.0, config: { prompt: hi } }
"#,
    );
    only(
        &p,
        "post_interaction",
        "the plan \"live-call\" names itself as its post-interaction plan",
    );
}

#[test]
fn names_and_node_ids_must_be_well_formed() {
    let p = problems(
        r#"
name: Post Call
type: default
start: "say hi"
post_interaction: "Post Call 2"
nodes:
  "say hi": { applet: play-prompt@0.1.0, config: { prompt: hi } }
"#,
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    find(&p, "name", "the plan name \"Post Call\" is not valid");
    find(&p, "nodes.say hi", "the node id \"say hi\" is not valid");
    find(
        &p,
        "post_interaction",
        "\"Post Call 2\" is not a valid plan name",
    );
}

#[test]
fn at_most_max_nodes() {
    let mut text = String::from("name: big\ntype: unattended\nstart: n0\nnodes:\n");
    for i in 0..=MAX_NODES {
        let next = if i < MAX_NODES {
            format!(", exits: {{ next: n{} }}", i + 1)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "  n{i}: {{ applet: pause@0.1.0, config: {{ seconds: 1 }}{next} }}\n"
        ));
    }
    let p = problems(&text);
    only(
        &p,
        "nodes",
        &format!(
            "the plan has {} nodes, more than the limit of {MAX_NODES}",
            MAX_NODES + 1
        ),
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let p = problems(
        r#"
name: Bad
type: unattended
start: greet
post_interaction: post-call
nodes:
  greet:
    applet: set-data-source@0.1.0
    config: { set: { Greeting: 5 } }
    exits: { nxt: route }
  route:
    applet: data-router@0.1.0
    config: { source: InteractionOutcome, rules: [] }
    exits: { rule-1: hello, default: ghost }
  hello:
    applet: play-prompt@0.1.0
    config: { prompt: hi }
    exits: { next: route }
  sms:
    applet: sms@9.9.9
    error: sms
"#,
    );
    let expected = [
        ("name", "the plan name \"Bad\" is not valid"),
        ("post_interaction", "an unattended plan cannot have"),
        ("nodes.greet.exits.nxt", "has no exit \"nxt\""),
        (
            "nodes.greet.config/set/Greeting",
            "is not of type \"string\"",
        ),
        ("nodes.route.exits.default", "goes to \"ghost\""),
        ("nodes.hello.applet", "needs a live party"),
        (
            "nodes.sms.applet",
            "installed versions of sms: 0.1.0, 0.2.0",
        ),
        // `nxt` is not an exit of the applet, but it still leads to `route`.
        ("nodes.sms", "not reachable"),
        (
            "nodes.route",
            "the cycle route -> hello -> route has no cycle breaker",
        ),
        ("nodes.sms", "the cycle sms -> sms"),
    ];
    for (field, fragment) in expected {
        find(&p, field, fragment);
    }
    assert_eq!(p.len(), expected.len(), "{p:#?}");
    // Plan fields first, then nodes in id order, then the graph.
    assert_eq!(p[0].field, "name");
    assert_eq!(p[1].field, "post_interaction");
}

#[test]
fn validation_never_panics_on_odd_plans() {
    // Built in code, bypassing the parser: empty ids, ids with path characters, unicode.
    let mut plan = plan("name: x\ntype: unattended\nstart: ''\nnodes: {}\n");
    for id in ["", "a.b", "ü", "exits", "nodes"] {
        let mut node = coda_plan::Node::new("pause@0.1.0".parse().unwrap());
        node.config = json!({ "seconds": 1 });
        node.exits.insert("next".into(), "".into());
        node.exits.insert("".into(), "ü".into());
        node.error = Some("a.b".into());
        plan.nodes.insert(id.into(), node);
    }
    let problems = validate(&plan, &catalog()).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.field == "nodes." && p.message.contains("not valid"))
    );
}

#[test]
fn recursive_schemas_check_nested_configs() {
    let catalog = catalog().with_applet(applet(
        "tree",
        &[],
        json!({
            "type": "object",
            "properties": { "label": { "type": "string" }, "child": { "$ref": "#" } },
            "additionalProperties": false,
        }),
        false,
        &[],
    ));
    let mut config = json!({ "label": 7 });
    for _ in 0..100 {
        config = json!({ "child": config });
    }
    let mut plan = plan("name: x\ntype: unattended\nstart: a\nnodes: {}\n");
    plan.nodes.insert(
        "a".into(),
        coda_plan::Node {
            config,
            ..coda_plan::Node::new("tree@0.1.0".parse().unwrap())
        },
    );
    let p = validate(&plan, &catalog).unwrap_err();
    let field = format!("nodes.a.config{}/label", "/child".repeat(100));
    only(&p, &field, "7 is not of type \"string\"");
}

/// A config schema comes from an applet, that is from a tenant, and the host runs its
/// `pattern`s natively when it validates a plan. With a back-reference, a backtracking
/// engine can be made to spend its whole backtracking budget on every string of a config
/// and then match: 1 500 strings took minutes. Patterns run on a linear-time engine only,
/// so such a schema does not compile (the applet's fault), and an exponential-looking
/// pattern without one is linear (issue 14).
#[test]
fn config_schema_patterns_run_in_linear_time() {
    let schema = |pattern: &str| {
        json!({ "type": "object", "properties": { "s": { "type": "array",
            "items": { "type": "string", "pattern": pattern } } } })
    };
    let catalog = catalog()
        .with_applet(applet(
            "backtracks",
            &["next"],
            schema(r"^(?:(a|a)*\1c|a*b)$"),
            false,
            &[],
        ))
        .with_applet(applet(
            "nested",
            &["next"],
            schema(r"^(a|a)*b$"),
            false,
            &[],
        ));
    let strings = serde_json::to_string(&vec![format!("{}b", "a".repeat(15)); 1500]).unwrap();
    for (applet, fails) in [("backtracks", true), ("nested", false)] {
        let plan = plan(&format!(
            "name: x\ntype: unattended\nstart: a\nnodes:\n  a: {{ applet: {applet}@0.1.0, config: {{ s: {strings} }} }}\n",
        ));
        let started = std::time::Instant::now();
        let result = validate(&plan, &catalog);
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(5),
            "{applet}: {took:?}"
        );
        match result {
            Ok(_) => assert!(!fails, "{applet} validated"),
            Err(p) => {
                assert!(fails, "{applet}: {p:?}");
                only(
                    &p,
                    "nodes.a.config",
                    "does not compile, which is the applet's fault",
                );
            }
        }
    }
}

/// Issue 14's second round: a config schema of a few kilobytes whose `oneOf`s `$ref` the
/// same definition twice, 24 levels down, expands to 2^24 paths, and the host checked a
/// plan's config against it natively on the API's thread for minutes. A schema's expanded
/// size is bounded before it is compiled: such a schema does not compile (the applet's
/// fault), whether the branching is a chain of definitions or a recursive `$ref`; a
/// recursive schema that does not branch (a tree) still works
/// (`recursive_schemas_check_nested_configs`).
#[test]
fn config_schemas_that_expand_without_bound_do_not_compile() {
    let mut defs = serde_json::Map::new();
    for i in 0..24 {
        let next = format!("#/$defs/a{}", i + 1);
        defs.insert(
            format!("a{i}"),
            json!({ "oneOf": [{ "$ref": next }, { "$ref": next }] }),
        );
    }
    defs.insert("a24".into(), json!({ "type": "string" }));
    let chain = json!({ "$defs": defs, "$ref": "#/$defs/a0" });
    let branching_cycle = json!({ "$defs": { "t": { "type": "object", "properties": {
        "c": { "allOf": [{ "$ref": "#/$defs/t" }, { "$ref": "#/$defs/t" }] } } } },
        "$ref": "#/$defs/t" });
    let elsewhere = json!({ "$ref": "https://example.com/schema.json" });
    let anchor = json!({ "$defs": { "x": { "$anchor": "x" } }, "$ref": "#x" });
    let moved = json!({ "$defs": { "x": { "$id": "https://example.com/x", "type": "string" } } });
    let catalog = [
        ("chain", chain),
        ("cycle", branching_cycle),
        ("elsewhere", elsewhere),
        ("anchor", anchor),
        ("moved", moved),
    ]
    .into_iter()
    .fold(catalog(), |catalog, (name, schema)| {
        catalog.with_applet(applet(name, &["next"], schema, false, &[]))
    });
    for (applet, says) in [
        (
            "chain",
            "expands through its `$ref`s to more than 100000 nodes",
        ),
        (
            "cycle",
            "expands through its `$ref`s to more than 100000 nodes",
        ),
        ("elsewhere", "is not a JSON pointer into the schema"),
        ("anchor", "is not a JSON pointer into the schema"),
        ("moved", "a nested `$id`"),
    ] {
        let plan = plan(&format!(
            "name: x\ntype: unattended\nstart: a\nnodes:\n  a: {{ applet: {applet}@0.1.0, config: 1 }}\n",
        ));
        let started = std::time::Instant::now();
        let p = validate(&plan, &catalog).unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{applet}: {:?}",
            started.elapsed()
        );
        only(
            &p,
            "nodes.a.config",
            "does not compile, which is the applet's fault",
        );
        assert!(p[0].message.contains(says), "{applet}: {}", p[0].message);
    }
}
