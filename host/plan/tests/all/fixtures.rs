//! A catalog of realistic applets, as their `describe` would report them.

use coda_plan::{MemoryCatalog, Plan, PlanType};
use coda_types::{AppletInfo, Capability};
use serde_json::{Value, json};

pub fn applet(
    name: &str,
    exits: &[&str],
    config_schema: Value,
    needs_live_party: bool,
    capabilities: &[Capability],
) -> AppletInfo {
    AppletInfo {
        name: name.into(),
        version: "0.1.0".into(),
        description: format!("the {name} applet"),
        exits: exits.iter().map(|e| e.to_string()).collect(),
        config_schema,
        needs_live_party,
        capabilities: capabilities.to_vec(),
    }
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// The built-in applets and a few customer ones, each at 0.1.0 (`sms` also at 0.2.0).
pub fn catalog() -> MemoryCatalog {
    let days = json!({ "type": "integer", "minimum": 1, "maximum": 2_592_000 });
    MemoryCatalog::new()
        // The applets in applets/ that examples/plans/thank-caller.yaml runs with today
        // (their schemas are checked for real by the end-to-end tests).
        .with_applet(applet(
            "hello",
            &["greeted", "anonymous"],
            json!({}),
            false,
            &[],
        ))
        .with_applet(applet("echo", &["next", "other"], json!({}), false, &[]))
        .with_applet(applet(
            "scripted",
            &["next", "other", "received", "timeout"],
            json!({}),
            false,
            &[],
        ))
        .with_applet(applet(
            "set-data-source",
            &["next"],
            object(
                json!({
                    "set": {
                        "type": "object",
                        "minProperties": 1,
                        "propertyNames": { "pattern": "^[A-Za-z][A-Za-z0-9_]*$" },
                        "additionalProperties": { "type": "string" },
                    }
                }),
                &["set"],
            ),
            false,
            &[],
        ))
        .with_applet(applet(
            "data-router",
            &["default", "rule-1", "rule-2", "rule-3", "rule-4"],
            object(
                json!({
                    "source": { "type": "string", "minLength": 1 },
                    "rules": {
                        "type": "array",
                        "maxItems": 4,
                        "items": {
                            "type": "object",
                            "oneOf": [
                                { "required": ["equals"] },
                                { "required": ["in"] },
                                { "required": ["matches"] },
                            ],
                            "properties": {
                                "equals": { "type": "string" },
                                "in": { "type": "array", "items": { "type": "string" } },
                                "matches": { "type": "string", "format": "regex" },
                            },
                            "additionalProperties": false,
                        },
                    },
                }),
                &["source", "rules"],
            ),
            false,
            &[],
        ))
        .with_applet(applet(
            "loop-counter",
            &["next", "exhausted"],
            object(
                json!({ "max": { "type": "integer", "minimum": 1, "maximum": 10 } }),
                &["max"],
            ),
            false,
            &[],
        ))
        .with_applet(applet(
            "pause",
            &["next"],
            object(json!({ "seconds": days }), &["seconds"]),
            false,
            &[],
        ))
        .with_applet(applet(
            "wait-for-event",
            &["event", "timeout"],
            object(
                json!({ "event": { "type": "string", "minLength": 1 }, "timeout_seconds": days }),
                &["event", "timeout_seconds"],
            ),
            false,
            &[],
        ))
        .with_applet(applet(
            "schedule-router",
            &["open", "closed", "holiday"],
            object(
                json!({
                    "schedule": { "type": "string", "minLength": 1 },
                    "time_zone": { "type": "string" },
                }),
                &["schedule"],
            ),
            false,
            &[],
        ))
        .with_applet(applet(
            "send-email",
            &["next"],
            object(
                json!({
                    "to": { "type": "string", "format": "email" },
                    "subject": { "type": "string", "maxLength": 200 },
                    "body": { "type": "string" },
                }),
                &["to", "subject"],
            ),
            false,
            &[Capability::Email],
        ))
        .with_applet(applet(
            "play-prompt",
            &["next"],
            object(json!({ "prompt": { "type": "string" } }), &["prompt"]),
            true,
            &[],
        ))
        .with_applet(applet(
            "assign-and-dial",
            &["call-finished", "no-answer", "max-wait-reached", "no-match"],
            object(
                json!({
                    "skills": { "type": "array", "items": { "type": "string" }, "minItems": 1 },
                    "max_wait_seconds": { "type": "integer", "minimum": 1 },
                }),
                &["skills"],
            ),
            true,
            &[Capability::Interactions],
        ))
        .with_applet(applet(
            "chat-message",
            &["next"],
            object(
                json!({ "text": { "type": "string", "minLength": 1 } }),
                &["text"],
            ),
            true,
            &[Capability::Interactions],
        ))
        // Customer applets.
        .with_applet(applet(
            "sms",
            &["sent", "opted-out"],
            object(
                json!({
                    "to": { "type": "string" },
                    "text": { "type": "string", "minLength": 1, "maxLength": 480 },
                }),
                &["to", "text"],
            ),
            false,
            &[Capability::Http, Capability::Secrets],
        ))
        .with_applet(AppletInfo {
            version: "0.2.0".into(),
            ..applet("sms", &["sent", "opted-out"], json!(true), false, &[])
        })
        .with_applet(applet(
            "db-log",
            &["next"],
            object(
                json!({
                    "table": { "type": "string", "pattern": "^[a-z_][a-z0-9_]*$" },
                    "fields": {
                        "type": "object",
                        "additionalProperties": { "type": "string" },
                    },
                }),
                &["table", "fields"],
            ),
            false,
            &[Capability::Sql],
        ))
        .with_plan("post-call", PlanType::Unattended)
        .with_plan("live-call", PlanType::Default)
        .with_plan("chat-support", PlanType::Message)
}

/// Parses a plan that the test means to be well formed.
pub fn plan(text: &str) -> Plan {
    match coda_plan::parse(text) {
        Ok(plan) => plan,
        Err(problems) => panic!("the test plan does not parse: {problems:#?}"),
    }
}
