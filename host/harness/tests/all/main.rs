//! The harness on real components: the sms example (http + secrets), hello (data, state,
//! logs) and hostile applets. Every case checks what the report says, pass or fail.

use coda_applet_artifacts as applets;
use coda_harness::{Fixture, Harness, Report};
use serde_json::json;

fn harness() -> Harness {
    Harness::new().expect("a harness")
}

fn fixture(yaml: &str) -> Fixture {
    Fixture::parse(yaml).unwrap_or_else(|e| panic!("fixture: {e}\n{yaml}"))
}

const SMS_SENT: &str = r#"
description: the gateway accepts the message
applet: sms
config:
  base_url: https://gateway.example
  from: "+15550100"
  body: "Order {{ OrderId }} confirmed"
  account_sid_secret: sid
  auth_token_secret: token
data: {CLID: "+15550123", OrderId: A-17}
secrets: {sid: AC123, token: secret-token}
context: {idempotency_key: run-1/0/1}
calls:
  - http:
      request:
        method: POST
        url: https://gateway.example/2010-04-01/Accounts/AC123/Messages.json
        headers: {Idempotency-Key: run-1/0/1}
        body: To=%2B15550123&From=%2B15550100&Body=Order+A-17+confirmed
      response:
        status: 201
        headers: {content-type: application/json}
        body: {sid: SM1, status: queued}
expect:
  outcome: {exit: sent}
  data: {SmsSid: SM1, SmsStatus: queued}
  logs: [sent SMS SM1]
"#;

fn mismatches(report: &Report) -> String {
    report.mismatches.join("\n")
}

#[test]
fn a_recorded_answer_drives_the_applet_and_every_expectation_holds() {
    let harness = harness();
    let sms = harness.load(applets::SMS).expect("sms loads");
    let report = sms.run(&fixture(SMS_SENT));
    report.assert_passed();
    assert!(report.fuel_used > 0);
    // Secret reads are shown by name, never by value.
    let kinds: Vec<&str> = report.calls.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["secret", "secret", "http"]);
    assert_eq!(report.calls[0].request, json!({"name": "sid"}));
    assert!(
        !serde_json::to_string(&report)
            .unwrap()
            .contains("secret-token")
    );
    let http = &report.calls[2];
    assert_eq!(http.answered, "recorded");
    assert_eq!(
        http.request["headers"]["i-twilio-idempotency-token"],
        "run-1/0/1"
    );
    assert_eq!(http.digest.as_ref().map(String::len), Some(64));
}

#[test]
fn a_request_that_differs_from_the_recording_is_reported() {
    let harness = harness();
    let sms = harness.load(applets::SMS).expect("sms loads");
    let changed = SMS_SENT.replace("OrderId: A-17", "OrderId: A-18");
    let report = sms.run(&fixture(&changed));
    assert!(!report.passed);
    assert!(
        mismatches(&report).contains("call #0 (http): request.body is"),
        "{}",
        mismatches(&report)
    );
}

#[test]
fn a_journal_digest_that_does_not_match_is_reported() {
    let harness = harness();
    let sms = harness.load(applets::SMS).expect("sms loads");
    let pinned = SMS_SENT.replace(
        "  - http:\n",
        &format!("  - http:\n      digest: {}\n", "0".repeat(64)),
    );
    let report = sms.run(&fixture(&pinned));
    assert!(!report.passed);
    assert!(
        mismatches(&report).contains("differs from the recorded one"),
        "{}",
        mismatches(&report)
    );

    // The digest the report shows is the one that matches.
    let first = sms.run(&fixture(SMS_SENT));
    let digest = first.calls[2].digest.clone().unwrap();
    let pinned = SMS_SENT.replace(
        "  - http:\n",
        &format!("  - http:\n      digest: {digest}\n"),
    );
    sms.run(&fixture(&pinned)).assert_passed();
}

#[test]
fn a_call_with_no_recording_is_answered_unavailable_and_reported() {
    let harness = harness();
    let sms = harness.load(applets::SMS).expect("sms loads");
    let mut no_calls = fixture(SMS_SENT);
    no_calls.calls.clear();
    no_calls.expect.outcome = None;
    no_calls.expect.data = None;
    no_calls.expect.logs.clear();
    no_calls.expect.error = Some(json!({"kind": "failure", "retryable": true}));
    let report = sms.run(&no_calls);
    assert_eq!(report.calls[2].answered, "missing");
    assert!(
        mismatches(&report).contains("the applet made a http call the fixture does not record"),
        "{}",
        mismatches(&report)
    );
    // The applet saw `unavailable` and failed retryably, as the expectation says.
    assert_eq!(report.result["error"]["kind"], "failure");
    assert_eq!(report.mismatches.len(), 1, "{}", mismatches(&report));
}

#[test]
fn recorded_calls_never_made_are_reported() {
    let harness = harness();
    let hello = harness.load(applets::HELLO).expect("hello loads");
    let report = hello.run(&fixture(
        r#"
data: {CustomerName: Ada}
calls:
  - email: {response: "<m1@example>"}
expect:
  outcome: {exit: greeted}
"#,
    ));
    assert!(!report.passed);
    assert!(mismatches(&report).contains("recorded call(s) never made: #0 (email)"));

    let report = hello.run(&fixture(
        r#"
data: {CustomerName: Ada}
calls:
  - email: {response: "<m1@example>"}
expect:
  outcome: {exit: greeted}
  all_calls_made: false
"#,
    ));
    report.assert_passed();
}

#[test]
fn a_missing_secret_is_not_granted_and_the_applet_fails() {
    let harness = harness();
    let sms = harness.load(applets::SMS).expect("sms loads");
    let mut fixture = fixture(SMS_SENT);
    fixture.secrets.remove("token");
    fixture.expect = coda_harness::Expect {
        error: Some(json!({"kind": "failure", "code": "not-granted"})),
        all_calls_made: false,
        ..Default::default()
    };
    let report = sms.run(&fixture);
    report.assert_passed();
    assert!(
        report.result["error"]["message"]
            .as_str()
            .unwrap()
            .contains("token")
    );
}

#[test]
fn data_and_state_must_be_exactly_what_was_set() {
    let harness = harness();
    let hello = harness.load(applets::HELLO).expect("hello loads");
    let good = r#"
data: {CustomerName: Ada}
state: {passes: 2}
expect:
  outcome: {exit: greeted}
  data: {Greeting: "Hello, Ada!"}
  state: {passes: 3.0}
"#;
    hello.run(&fixture(good)).assert_passed();

    let report = hello.run(&fixture(
        r#"
data: {CustomerName: Ada}
expect:
  outcome: {exit: anonymous}
  data: {Other: 1}
  state: {}
"#,
    ));
    let text = mismatches(&report);
    assert!(
        text.contains("outcome.exit is \"greeted\", expected \"anonymous\""),
        "{text}"
    );
    assert!(
        text.contains("data.Other was not set (expected 1)"),
        "{text}"
    );
    assert!(
        text.contains(
            "data.Greeting was set to \"Hello, Ada!\", which the fixture does not expect"
        ),
        "{text}"
    );
    assert!(text.contains("state.passes was set to 1"), "{text}");
}

#[test]
fn a_hostile_applet_ends_in_a_limit_the_fixture_can_expect() {
    let harness = harness();
    let spin = harness.load(applets::INFINITE_LOOP).expect("loads");
    let report = spin.run(&fixture(
        r#"
limits: {fuel: 5000000}
expect:
  error: {kind: fuel}
"#,
    ));
    report.assert_passed();
    assert_eq!(report.result["error"]["limit"], 5_000_000);

    // Without an expected error, an error is a failure of the fixture.
    let report = spin.run(&fixture("limits: {fuel: 5000000}\n"));
    assert!(!report.passed);
    assert!(mismatches(&report).contains("ended with an error instead of an outcome"));
}

#[test]
fn a_bad_fixture_is_refused_naming_the_field() {
    let cases = [
        (
            "calls:\n  - http: {response: {status: two}}\n",
            "calls[0].http.response.status",
        ),
        ("calls:\n  - ftp: {response: 1}\n", "calls[0]"),
        (
            "calls:\n  - email: {}\n",
            "calls[0] (email): needs a `response` or an `error`",
        ),
        (
            "calls:\n  - email: {response: x, error: {kind: unavailable, message: m}}\n",
            "not both",
        ),
        ("config: [1]\n", "config: must be an object"),
        ("at: yesterday\n", "at: `yesterday` is not an RFC 3339 time"),
        ("expect: {outcom: {exit: x}}\n", "expect"),
        ("dta: {}\n", "unknown field `dta`"),
    ];
    for (yaml, expected) in cases {
        let error = Fixture::parse(yaml).expect_err(yaml);
        assert!(error.contains(expected), "{yaml:?}: {error}");
    }
    // Text that is not YAML at all names the line, with no path before it.
    let error = Fixture::parse("{\n").expect_err("unclosed");
    assert!(
        error.starts_with("did not find expected node content at line 2"),
        "{error}"
    );
}

/// A fixture whose aliases expand a 20 KB string a hundred times over (2 MB from 21 KB) is
/// refused before it is built, naming the limit (issue 14).
#[test]
fn a_fixture_whose_aliases_expand_past_the_limit_is_refused() {
    let yaml = format!(
        "config:\n  big: &a {}\n  many: [{}]\n",
        "x".repeat(20 * 1024),
        vec!["*a"; 100].join(",")
    );
    let error = Fixture::parse(&yaml).expect_err("aliased");
    assert!(
        error.starts_with(
            "the fixture expands through its anchors and aliases to more than 1048576 bytes"
        ),
        "{error}"
    );
    // The same with ten aliases is 200 KB: a fixture may reuse a block.
    let yaml = format!(
        "config:\n  big: &a {}\n  many: [{}]\n",
        "x".repeat(20 * 1024),
        ["*a"; 10].join(",")
    );
    let fixture = Fixture::parse(&yaml).unwrap();
    assert_eq!(fixture.config["many"].as_array().map(Vec::len), Some(10));
}

#[test]
fn the_fixture_clock_is_the_applets_wall_clock() {
    // schedule-router reads the time: at 03:00 UTC on a Monday, Berlin is closed.
    let harness = harness();
    let router = harness.load(applets::SCHEDULE_ROUTER).expect("loads");
    let yaml = |at: &str, exit: &str| {
        format!(
            r#"
at: "{at}"
config:
  schedule:
    time_zone: Europe/Berlin
    weekly: {{monday: [{{open: "09:00", close: "17:00"}}]}}
expect:
  outcome: {{exit: {exit}}}
"#
        )
    };
    let closed = router.run(&fixture(&yaml("2026-03-30T01:00:00Z", "closed")));
    let open = router.run(&fixture(&yaml("2026-03-30T08:00:00Z", "open")));
    if !closed.passed || !open.passed {
        panic!("{:?}\n{:?}", closed.mismatches, open.mismatches);
    }
}

#[test]
fn a_fixture_is_for_an_applet_by_name_whatever_its_version() {
    let harness = harness();
    let hello = harness.load(applets::HELLO).expect("hello loads");
    let yaml = |applet: &str| format!("applet: {applet}\ndata: {{CustomerName: Ada}}\n");
    hello.run(&fixture(&yaml("hello"))).assert_passed();
    hello.run(&fixture(&yaml("hello@0.0.9"))).assert_passed();
    let report = hello.run(&fixture(&yaml("sms@0.1.0")));
    assert_eq!(
        report.mismatches,
        ["the fixture is for sms@0.1.0, the applet is hello@0.1.0"]
    );
}

mod dry_run {
    //! The dry run's fixture layer on its own, with no component: what it answers and lists.

    use std::sync::Arc;

    use coda_harness::Fixture;
    use coda_harness::dry_run::{DryRun, GrantCheck};
    use coda_types::capabilities::{
        CapabilitiesExt, CapabilityCall, DenyAll, EmailMessage, HttpRequest,
    };
    use coda_types::{HostError, InvocationContext};
    use serde_json::json;

    fn cx(node: &str) -> InvocationContext {
        InvocationContext {
            node: node.into(),
            idempotency_key: "run-1/3".into(),
            ..InvocationContext::default()
        }
    }

    fn request(url: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![],
            body: vec![],
            timeout: None,
        }
    }

    fn email() -> EmailMessage {
        EmailMessage {
            to: vec!["ada@example.com".into()],
            cc: vec![],
            subject: "hi".into(),
            text: "hello".into(),
            html: None,
            reply_to: None,
        }
    }

    #[tokio::test]
    async fn a_call_is_answered_from_its_nodes_fixture_else_simulated_and_listed() {
        let recorded =
            Fixture::parse("secrets: {token: t0k}\ncalls:\n  - http: {response: {status: 202}}\n")
                .unwrap();
        let dry = DryRun::new([("notify".to_owned(), recorded)]);
        let caps = dry.for_applet(Arc::new(DenyAll), None);
        // An email where the fixture records http: simulated, the recording kept.
        let id = caps.email_send(&cx("notify"), email()).await.unwrap();
        assert_eq!(id, "<dry-run.run-1.3.0@coda.invalid>");
        let response = caps
            .http_send(&cx("notify"), request("https://hooks.example/a"))
            .await
            .unwrap();
        assert_eq!(response.status, 202);
        // Another node has no fixture: a plain success.
        let response = caps
            .http_send(&cx("other"), request("https://hooks.example/b"))
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        // Secrets come from the fixtures, else from the real capabilities.
        assert_eq!(
            caps.secret_get(&cx("other"), "token".into()).await.unwrap(),
            "t0k"
        );
        assert!(matches!(
            caps.secret_get(&cx("other"), "other".into()).await,
            Err(HostError::NotGranted(_))
        ));
        let effects = serde_json::to_value(dry.effects()).unwrap();
        let listed: Vec<_> = effects
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["kind"].clone(), e["key"].clone(), e["answered"].clone()))
            .collect();
        assert_eq!(
            listed,
            [
                (json!("email"), json!("run-1/3/0"), json!("simulated")),
                (json!("http"), json!("run-1/3/1"), json!("recorded")),
                (json!("http"), json!("run-1/3/2"), json!("simulated")),
            ]
        );
        assert_eq!(
            effects[1]["answer"],
            json!({"response": {"status": 202, "headers": {}}})
        );
        assert!(dry.unused().is_empty());
    }

    #[tokio::test]
    async fn a_call_the_grants_refuse_is_listed_not_granted_and_uses_no_recording() {
        let recorded = Fixture::parse("calls:\n  - http: {response: {status: 202}}\n").unwrap();
        let dry = DryRun::new([("notify".to_owned(), recorded)]);
        let refuse: GrantCheck = Arc::new(|call: &CapabilityCall| match call {
            CapabilityCall::Http(r) if r.url.contains("evil") => {
                Err(HostError::NotGranted("http to evil.test:443".into()))
            }
            _ => Ok(()),
        });
        let caps = dry.for_applet(Arc::new(DenyAll), Some(refuse));
        let refused = caps
            .http_send(&cx("notify"), request("https://evil.test/"))
            .await;
        assert!(
            matches!(refused, Err(HostError::NotGranted(_))),
            "{refused:?}"
        );
        assert_eq!(dry.effects()[0].answered, "not-granted");
        assert_eq!(dry.unused().get("notify"), Some(&1));
    }
}
