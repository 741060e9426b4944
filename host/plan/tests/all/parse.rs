//! Parsing: both formats, precise syntax errors, and no panic or stack overflow on any input.

use coda_plan::{Format, MAX_PLAN_BYTES, Plan, PlanType, Problem, parse, parse_as};

use crate::fixtures::plan;

const SMALL_YAML: &str = r#"
name: small
type: unattended
description: two nodes
start: a
nodes:
  a:
    applet: set-data-source@0.1.0
    config:
      set: { Greeting: hello }
    exits:
      next: b
    error: b
  b:
    applet: pause@0.1.0
    config: { seconds: 5 }
"#;

const SMALL_JSON: &str = r#"{
  "name": "small",
  "type": "unattended",
  "description": "two nodes",
  "start": "a",
  "nodes": {
    "a": {
      "applet": "set-data-source@0.1.0",
      "config": { "set": { "Greeting": "hello" } },
      "exits": { "next": "b" },
      "error": "b"
    },
    "b": { "applet": "pause@0.1.0", "config": { "seconds": 5 } }
  }
}"#;

/// The one problem of text that must not parse.
#[track_caller]
fn error(text: &str) -> Problem {
    match parse(text) {
        Ok(plan) => panic!("parsed, but the test expects an error: {plan:#?}"),
        Err(mut problems) => {
            assert_eq!(problems.len(), 1, "{problems:#?}");
            problems.remove(0)
        }
    }
}

#[test]
fn yaml_and_json_forms_are_the_same_plan() {
    let from_yaml = plan(SMALL_YAML);
    let from_json = plan(SMALL_JSON);
    assert_eq!(from_yaml, from_json);
    assert_eq!(from_yaml.plan_type, PlanType::Unattended);
    assert_eq!(
        from_yaml.nodes["a"].applet.to_string(),
        "set-data-source@0.1.0"
    );
    assert_eq!(from_yaml.nodes["b"].exits.len(), 0);
    assert_eq!(from_yaml.nodes["a"].error.as_deref(), Some("b"));
    // Either parser reads either text when told to.
    assert_eq!(parse_as(SMALL_JSON, Format::Yaml).unwrap(), from_json);
}

#[test]
fn round_trips_through_canonical_json() {
    let plan = plan(SMALL_YAML);
    let json = serde_json::to_string(&plan).unwrap();
    assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
    assert_eq!(parse(&json).unwrap(), plan);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["type"], "unattended");
    assert_eq!(value["nodes"]["a"]["applet"], "set-data-source@0.1.0");
    // Absent optional fields stay absent.
    assert!(value.get("post_interaction").is_none());
    assert!(value["nodes"]["b"].get("exits").is_none());
    assert!(value["nodes"]["b"].get("error").is_none());
}

#[test]
fn a_left_out_config_is_an_empty_object() {
    let plan = plan("name: x\ntype: default\nstart: a\nnodes:\n  a: { applet: pause@0.1.0 }\n");
    assert_eq!(plan.nodes["a"].config, serde_json::json!({}));
    let plan = plan_with_config("null");
    assert_eq!(plan.nodes["a"].config, serde_json::Value::Null);
}

fn plan_with_config(config: &str) -> Plan {
    plan(&format!(
        "name: x\ntype: default\nstart: a\nnodes:\n  a: {{ applet: pause@0.1.0, config: {config} }}\n"
    ))
}

#[test]
fn an_unknown_field_is_located_by_path_line_and_column() {
    let p = error(
        "name: x\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: pause@0.1.0\n    exitz: {}\n",
    );
    assert_eq!(p.field, "nodes.a.exitz");
    assert_eq!(p.node.as_deref(), Some("a"));
    assert_eq!(
        p.message,
        "unknown field `exitz`, expected one of `applet`, `config`, `exits`, `error` at line 7 column 5"
    );
    let p =
        error(r#"{"name": "x", "type": "default", "start": "a", "colour": "red", "nodes": {}}"#);
    assert_eq!(p.field, "colour");
    assert!(p.message.starts_with("unknown field `colour`"), "{p}");
    assert!(p.message.ends_with("at line 1 column 55"), "{p}");
}

#[test]
fn a_syntax_error_has_line_and_column() {
    let p = error("name: x\ntype: default\nstart: a\nnodes:\n  a: { applet: pause@0.1.0\n");
    assert!(p.message.contains("at line 6 column 1"), "{p}");
    let p = error("{\"name\": \"x\",\n  \"type\": ");
    assert_eq!(p.message, "EOF while parsing a value at line 2 column 10");
    let p = error("name: x\n\ttype: default\n");
    assert!(p.message.contains("at line 2 column"), "{p}");
    let p = error(r#"{"name": "x", "type": "default", "start": "a", "nodes": {}} trailing"#);
    assert!(
        p.message.starts_with("trailing characters at line 1"),
        "{p}"
    );
}

#[test]
fn a_missing_field_points_at_the_field() {
    let p = error("name: x\ntype: default\nnodes: {}\n");
    assert_eq!(p.field, "start");
    assert!(p.message.starts_with("missing field `start`"), "{p}");
    let p = error("name: x\ntype: default\nstart: a\nnodes:\n  a: { config: {} }\n");
    assert_eq!(p.field, "nodes.a.applet");
}

#[test]
fn wrong_types_and_variants() {
    let p = error("name: x\ntype: live\nstart: a\nnodes: {}\n");
    assert_eq!(p.field, "type");
    assert!(
        p.message.starts_with(
            "unknown variant `live`, expected one of `default`, `message`, `unattended`"
        ),
        "{p}"
    );
    let p = error("name: [x]\ntype: default\nstart: a\nnodes: {}\n");
    assert_eq!(p.field, "name");
    assert!(
        p.message
            .starts_with("invalid type: sequence, expected a string"),
        "{p}"
    );
    let p = error("just a string");
    assert_eq!(p.field, "");
    let p = error(
        "name: x\ntype: default\nstart: a\nnodes:\n  a: { applet: pause@0.1.0, exits: { next: [b] } }\n",
    );
    assert_eq!(p.field, "nodes.a.exits.next");
}

#[test]
fn a_bad_applet_reference_is_a_parse_error() {
    let p = error("name: x\ntype: default\nstart: a\nnodes:\n  a: { applet: set-data-source }\n");
    assert_eq!(p.field, "nodes.a.applet");
    assert_eq!(
        p.to_string(),
        "nodes.a.applet: the applet reference \"set-data-source\" has no version: write NAME@VERSION, like set-data-source@0.1.0 at line 5 column 16"
    );
    let p = error("name: x\ntype: default\nstart: a\nnodes:\n  a: { applet: sms@latest }\n");
    assert!(p.message.contains("is not an exact version"), "{p}");
}

#[test]
fn repeated_keys_are_refused() {
    let p = error(
        "name: x\ntype: default\nstart: a\nnodes:\n  a: { applet: pause@0.1.0 }\n  a: { applet: sms@0.1.0 }\n",
    );
    assert_eq!(p.field, "nodes");
    assert!(
        p.message.starts_with("the node id \"a\" is defined twice"),
        "{p}"
    );
    let p = error(
        r#"{"name":"x","type":"default","start":"a","nodes":{"a":{"applet":"pause@0.1.0","exits":{"next":"a","next":"b"}}}}"#,
    );
    assert_eq!(p.field, "nodes.a.exits");
    assert!(
        p.message
            .starts_with("the exit \"next\" is wired twice at line 1"),
        "{p}"
    );
    let p = error(
        "name: x\ntype: default\nstart: a\nnodes:\n  a: { applet: pause@0.1.0, config: { a: { b: 1, b: 2 } } }\n",
    );
    assert_eq!(p.field, "nodes.a.config.a");
    assert!(p.message.starts_with("the key \"b\" appears twice"), "{p}");
    let p = error("name: x\nname: y\ntype: default\nstart: a\nnodes: {}\n");
    assert!(p.message.starts_with("duplicate field `name`"), "{p}");
}

#[test]
fn yaml_values_json_cannot_hold_are_refused() {
    for config in ["{ a: .nan }", "{ a: .inf }", "{ a: [-.inf] }"] {
        let text = format!(
            "name: x\ntype: default\nstart: a\nnodes:\n  a: {{ applet: pause@0.1.0, config: {config} }}\n"
        );
        let p = error(&text);
        assert!(p.field.starts_with("nodes.a.config.a"), "{p}");
        assert!(p.message.contains("is not a number JSON can hold"), "{p}");
    }
    let p = error(
        "name: x\ntype: default\nstart: a\nnodes:\n  a: { applet: pause@0.1.0, config: { a: !secret b } }\n",
    );
    assert_eq!(p.field, "nodes.a.config.a");
    // Ordinary YAML scalars become JSON.
    let plan = plan_with_config("{ n: 1, f: 1.5, t: true, s: 'x', z: ~, l: [1, two] }");
    assert_eq!(
        plan.nodes["a"].config,
        serde_json::json!({ "n": 1, "f": 1.5, "t": true, "s": "x", "z": null, "l": [1, "two"] })
    );
}

#[test]
fn empty_oversized_and_multi_document_input() {
    for empty in ["", "   \n\t\n", "\u{feff}"] {
        let p = error(empty);
        assert_eq!(p.to_string(), "the plan is empty");
    }
    let huge = format!("name: x\ndescription: {}\n", "x".repeat(MAX_PLAN_BYTES));
    let p = error(&huge);
    assert_eq!(p.field, "");
    assert!(
        p.message
            .ends_with(&format!("bytes, more than the limit of {MAX_PLAN_BYTES}")),
        "{p}"
    );
    let p = error("name: a\ntype: default\nstart: a\nnodes: {}\n---\nname: b\n");
    assert!(p.message.contains("more than one document"), "{p}");
    // A byte-order mark is not an error.
    parse(&format!("\u{feff}{SMALL_YAML}")).unwrap();
    parse(&format!("\u{feff}{SMALL_JSON}")).unwrap();
}

#[test]
fn deep_nesting_cannot_overflow_the_stack() {
    let n = 100_000;
    let deep = [
        // JSON, everywhere a value can go.
        format!("{}{}", "[".repeat(n), "]".repeat(n)),
        "{\"a\":".repeat(n),
        format!(
            r#"{{"name":"x","type":"default","start":"a","nodes":{{"a":{{"applet":"p@0.1.0","config":{}}}}}}}"#,
            "[".repeat(n)
        ),
        // YAML flow style.
        format!("name: x\nnodes: {{a: {{config: {}}}}}\n", "[".repeat(n)),
        format!("name: x\nnodes: {{a: {{config: {}}}}}\n", "{a: ".repeat(n)),
        "[".repeat(n),
        "{".repeat(n),
        // YAML block style, as deep as fits in the size limit.
        (0..1000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect(),
        (0..1000).map(|i| format!("{}-\n", " ".repeat(i))).collect(),
        "- ".repeat(n),
    ];
    for text in &deep {
        let started = std::time::Instant::now();
        // On a thread with half the stack a test thread gets, for a margin: an overflow
        // aborts the whole test binary.
        let owned = text.clone();
        let result = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || parse(&owned).map(|_| ()))
            .unwrap()
            .join()
            .expect("parse panicked");
        assert!(result.is_err());
        // libyaml's scanner is quadratic in bracket depth: unchecked, 100 000 `[` took
        // over a minute in a debug build.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?} for {}...",
            started.elapsed(),
            &text[..40]
        );
    }
    let p = error(&format!(
        "name: x
nodes: {{a: {{config: {}}}}}
",
        "[".repeat(200)
    ));
    assert_eq!(
        p.to_string(),
        "the plan nests brackets more than 128 levels deep at line 2 column 147"
    );
}

#[test]
fn aliases_cannot_blow_up() {
    // "Billion laughs": nine aliases of nine aliases of ... would be 9^9 strings.
    let mut text = String::from(
        "name: x\ntype: default\nstart: a\nnodes:\n  a:\n    applet: p@0.1.0\n    config:\n      l0: &l0 [x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..9 {
        let prev = format!("*l{}", i - 1);
        text.push_str(&format!(
            "      l{i}: &l{i} [{}]\n",
            [prev.as_str(); 9].join(", ")
        ));
    }
    let started = std::time::Instant::now();
    let p = error(&text);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(p.field.starts_with("nodes.a.config"), "{p}");
}

/// The review's plan (issue 14): one 20 KB string anchored once and aliased 100 000 times,
/// 320 KB of text that deserialized to 2 GB of strings (about 4 GB of memory for `coda plan
/// validate`). It is refused before anything is built, saying why.
pub fn aliased_plan(aliases: usize) -> String {
    format!(
        "name: x\ntype: default\nstart: a\nnodes:\n  a:\n    applet: p@0.1.0\n    config:\n      big: &a {}\n      many: [{}]\n",
        "x".repeat(20 * 1024),
        vec!["*a"; aliases].join(",")
    )
}

#[test]
fn large_anchors_cannot_blow_up() {
    let text = aliased_plan(100_000);
    assert!(text.len() < 330_000, "{}", text.len());
    let started = std::time::Instant::now();
    let p = error(&text);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(p.field, "");
    assert_eq!(
        p.message,
        format!(
            "the plan expands through its anchors and aliases to more than {} bytes (the limit is 4 times the text's size, at least 1048576): repeat less through aliases",
            coda_types::yaml::expanded_limit(text.len())
        )
    );
    // A few aliases of the same anchor are fine: anchors are for reuse.
    let plan = parse(&aliased_plan(10)).expect("ten aliases of 20 KB");
    assert_eq!(
        plan.nodes["a"].config["many"][9].as_str().map(str::len),
        Some(20 * 1024)
    );
}

/// Every prefix of every example, every single-byte corruption of one, and pseudo-random
/// text: parse returns, whatever it returns.
#[test]
fn malformed_input_never_panics() {
    let examples = crate::examples::texts();
    let mut inputs: Vec<String> = Vec::new();
    for (_, text) in &examples {
        for (i, _) in text.char_indices() {
            inputs.push(text[..i].to_string());
        }
    }
    let (_, post_call) = &examples[0];
    let specials = b"{}[]:,-?|>&*!%@`'\"#\n\t \\\0";
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..2000 {
        let mut bytes = post_call.as_bytes().to_vec();
        let at = next() as usize % bytes.len();
        bytes[at] = specials[next() as usize % specials.len()];
        inputs.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    for _ in 0..2000 {
        let len = next() as usize % 300;
        let bytes: Vec<u8> = (0..len)
            .map(|_| match next() % 3 {
                0 => specials[next() as usize % specials.len()],
                1 => b'a' + (next() % 26) as u8,
                _ => next() as u8,
            })
            .collect();
        inputs.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    inputs.push("\0\0\0\0".into());
    inputs.push("\u{fffd}\u{fffd}{".into());
    inputs.push("%YAML 1.2\n---\n".into());
    inputs.push("!!binary aGVsbG8=".into());
    inputs.push("? [a]\n: b\n".into());
    inputs.push("<<: *x\n".into());
    inputs.push("a: &a\n  b: *a\n".into());
    for input in &inputs {
        let result = std::panic::catch_unwind(|| {
            let _ = parse(input);
            let _ = parse_as(input, Format::Json);
            let _ = parse_as(input, Format::Yaml);
        });
        assert!(result.is_ok(), "parse panicked on {input:?}");
    }
    assert!(inputs.len() > 5000, "{}", inputs.len());
}
