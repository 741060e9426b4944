//! Each documented payload through its adapter: what coda makes of it.

use coda_intake::{AdapterKind, ConnectionConfig, IntakeError, interpret};
use serde_json::{Value as Json, json};

fn testdata(path: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn connection(adapter: AdapterKind) -> ConnectionConfig {
    let config: ConnectionConfig = serde_json::from_value(json!({
        "adapter": adapter.as_str(),
        "secret": "platform-key",
        "header": if adapter.header_auth() { Some("x-coda-key") } else { None },
        "plan": "live",
    }))
    .unwrap();
    config.check().unwrap();
    config
}

/// The actions a payload becomes, as JSON.
fn actions(adapter: AdapterKind, path: &str) -> (String, Vec<Json>) {
    let intake =
        interpret(&connection(adapter), &testdata(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    (
        intake.platform_event,
        intake.actions.iter().map(|a| a.to_json()).collect(),
    )
}

const TASK: &str = "WT00000000000000000000000000000001";

#[test]
fn twilio_task_events_become_an_interaction() {
    let (event, started) = actions(AdapterKind::Twilio, "twilio/task-created.txt");
    assert_eq!(event, "task.created");
    assert_eq!(
        started,
        vec![
            json!({"type": "started", "interaction": TASK, "channel": "voice", "plan": "live",
            "skill": null,
            "data": {"CLID": "+15555550100", "DialedNumber": "+15555550199", "Language": "en-US"}})
        ]
    );
    let (_, joined) = actions(AdapterKind::Twilio, "twilio/reservation-accepted.txt");
    assert_eq!(
        joined,
        vec![
            json!({"type": "party-joined", "interaction": TASK, "party": "agent",
            "agent": "WK00000000000000000000000000000001"})
        ]
    );
    let (_, wrapup) = actions(AdapterKind::Twilio, "twilio/task-wrapup.txt");
    assert_eq!(
        wrapup,
        vec![json!({"type": "ended", "interaction": TASK, "outcome": null})]
    );
    let (_, completed) = actions(AdapterKind::Twilio, "twilio/task-completed.txt");
    assert_eq!(
        completed[0],
        json!({"type": "ended", "interaction": TASK, "outcome": "resolved"})
    );
    assert_eq!(completed[1]["event"], "disposition");
    assert_eq!(completed[1]["payload"]["reason"], "resolved");
    assert_eq!(
        completed[1]["payload"]["attributes"]["call_sid"],
        "CA00000000000000000000000000000001"
    );
    assert_eq!(completed[1]["data"]["Queue"], "Support");
    let (_, canceled) = actions(AdapterKind::Twilio, "twilio/task-canceled.txt");
    assert_eq!(
        canceled,
        vec![json!({"type": "ended", "interaction": TASK, "outcome": "hangup"})]
    );
    let (event, ignored) = actions(AdapterKind::Twilio, "twilio/worker-activity-update.txt");
    assert_eq!(
        (event.as_str(), ignored.len()),
        ("worker.activity.update", 0)
    );
}

const CONTACT: &str = "11111111-1111-1111-1111-111111111111";

#[test]
fn amazon_connect_contact_events_become_an_interaction() {
    let (event, started) = actions(AdapterKind::AmazonConnect, "amazon-connect/initiated.json");
    assert_eq!(event, "INITIATED");
    assert_eq!(
        started,
        vec![
            json!({"type": "started", "interaction": CONTACT, "channel": "voice", "plan": "live",
            "skill": null, "data": {"DialedNumber": "+11234567890"}})
        ]
    );
    let (_, joined) = actions(
        AdapterKind::AmazonConnect,
        "amazon-connect/connected-to-agent.json",
    );
    // The agent's id is the last part of its ARN; the data source keeps the ARN.
    assert_eq!(
        joined,
        vec![
            json!({"type": "party-joined", "interaction": CONTACT, "party": "agent",
            "agent": "12345678-1234-1234-1234-123456789012"})
        ]
    );
    let (_, ended) = actions(
        AdapterKind::AmazonConnect,
        "amazon-connect/disconnected.json",
    );
    assert_eq!(
        ended,
        vec![json!({"type": "ended", "interaction": CONTACT, "outcome": null})]
    );
    let (_, updated) = actions(
        AdapterKind::AmazonConnect,
        "amazon-connect/contact-data-updated.json",
    );
    assert_eq!(updated[0]["event"], "contact-data-updated");
    assert_eq!(updated[0]["data"]["Language"], "en-US");
    assert_eq!(
        updated[0]["data"]["Queue"],
        "arn:aws:connect:us-west-2:123456789012:instance/12345678-1234-1234-1234-123456789012/queue/12345678-1234-1234-1234-123456789012"
    );
    let (event, ignored) = actions(AdapterKind::AmazonConnect, "amazon-connect/queued.json");
    assert_eq!((event.as_str(), ignored.len()), ("QUEUED", 0));
}

const CONVERSATION: &str = "7f1c7a52-1f36-4cfe-a2a5-0d5a6a0c3b11";

#[test]
fn genesys_detail_events_become_an_interaction_by_eventbridge_or_webhook() {
    let (event, started) = actions(AdapterKind::Genesys, "genesys/customer-start.json");
    assert_eq!(event, "v2.detail.events.conversation.{id}.customer.start");
    let expected = vec![
        json!({"type": "started", "interaction": CONVERSATION, "channel": "voice",
        "plan": "live", "skill": null,
        "data": {"CLID": "+15555550100", "DialedNumber": "+15555550199"}}),
    ];
    assert_eq!(started, expected);
    let (_, webhook) = actions(AdapterKind::Genesys, "genesys/customer-start-webhook.json");
    assert_eq!(webhook, expected);
    let (_, joined) = actions(AdapterKind::Genesys, "genesys/user-start.json");
    assert_eq!(
        joined,
        vec![
            json!({"type": "party-joined", "interaction": CONVERSATION, "party": "agent",
            "agent": "2b4a71c6-8f0e-4d2b-9a3e-1c5d7e9f0a21"})
        ]
    );
    let (_, ended) = actions(AdapterKind::Genesys, "genesys/customer-end.json");
    assert_eq!(
        ended,
        vec![json!({"type": "ended", "interaction": CONVERSATION, "outcome": "CLIENT"})]
    );
    let (_, acw) = actions(AdapterKind::Genesys, "genesys/acw.json");
    assert_eq!(acw[0]["event"], "disposition");
    assert_eq!(
        acw[0]["payload"]["wrapupCode"],
        "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
    );
    assert_eq!(acw[0]["payload"]["wrapupNotes"], "refund issued");
}

#[test]
fn cloudevents_name_what_happened_by_the_last_word_of_their_type() {
    let (event, started) = actions(AdapterKind::Cloudevents, "cloudevents/started.json");
    assert_eq!(event, "com.acme.pbx.call.started");
    assert_eq!(
        started,
        vec![
            json!({"type": "started", "interaction": "call-20261207-0001", "channel": "voice",
            "plan": "live", "skill": "billing",
            "data": {"CLID": "+15555550100", "DialedNumber": "+15555550199", "Language": "en-US",
                "Queue": "billing"}})
        ]
    );
    let (_, joined) = actions(AdapterKind::Cloudevents, "cloudevents/party-joined.json");
    assert_eq!(joined[0]["agent"], "agent-007");
    let (_, ended) = actions(AdapterKind::Cloudevents, "cloudevents/ended.json");
    assert_eq!(ended[0]["outcome"], "resolved");
    let (_, disposition) = actions(AdapterKind::Cloudevents, "cloudevents/disposition.json");
    assert_eq!(
        disposition[0],
        json!({"type": "event", "interaction": "call-20261207-0001", "event": "disposition",
            "payload": {"code": "refund", "amount": 12.5}, "data": {}})
    );
}

#[test]
fn a_tenants_mapping_replaces_adds_and_drops_data_sources() {
    let mut config = connection(AdapterKind::AmazonConnect);
    config.mapping = serde_json::from_value(json!({
        "Dept": "/detail/tags/Dept",
        "DialedNumber": null,
        "Contact": ["/detail/nope", "/detail/contactId"],
    }))
    .unwrap();
    config.check().unwrap();
    let intake = interpret(&config, &testdata("amazon-connect/disconnected.json")).unwrap();
    let ended = intake.actions[0].to_json();
    assert_eq!(ended["type"], "ended");
    let intake = interpret(&config, &testdata("amazon-connect/initiated.json")).unwrap();
    assert_eq!(
        intake.actions[0].to_json()["data"],
        json!({"Contact": CONTACT})
    );
    let mut disconnected: Json =
        serde_json::from_slice(&testdata("amazon-connect/disconnected.json")).unwrap();
    disconnected["detail"]["eventType"] = json!("INITIATED");
    let intake = interpret(&config, disconnected.to_string().as_bytes()).unwrap();
    assert_eq!(
        intake.actions[0].to_json()["data"],
        json!({"Agent": "arn", "Contact": CONTACT, "Dept": "Finance"})
    );
}

fn refused(adapter: AdapterKind, body: &[u8]) -> IntakeError {
    interpret(&connection(adapter), body).expect_err("refused")
}

#[test]
fn malformed_and_oversized_payloads_are_refused_naming_what_was_wrong() {
    let e = refused(AdapterKind::AmazonConnect, b"{\"detail-type\": ");
    assert_eq!(e.kind(), "malformed-payload");
    assert!(
        e.to_string()
            .contains("the EventBridge event is not valid JSON"),
        "{e}"
    );
    let e = refused(
        AdapterKind::AmazonConnect,
        br#"{"detail-type": "EC2 Instance State-change Notification", "detail": {}}"#,
    );
    assert!(
        e.to_string().contains("`detail-type`") && e.to_string().contains("is not a contact event"),
        "{e}"
    );
    let e = refused(
        AdapterKind::AmazonConnect,
        br#"{"detail-type": "Amazon Connect Contact Event", "detail": {"eventType": "INITIATED"}}"#,
    );
    assert_eq!(
        e.to_string(),
        "`detail.contactId` is missing: it names the interaction the event is about"
    );
    let e = refused(AdapterKind::Twilio, b"TaskSid=WT1");
    assert!(e.to_string().starts_with("`EventType` is missing"), "{e}");
    let e = refused(
        AdapterKind::Twilio,
        b"EventType=task.created&TaskSid=WT1&TaskAttributes=%7Bnope",
    );
    assert!(
        e.to_string()
            .starts_with("TaskAttributes is not valid JSON"),
        "{e}"
    );
    let e = refused(AdapterKind::Twilio, b"EventType=task.created&TaskSid=a%2Fb");
    assert!(
        e.to_string().contains("`TaskSid`") && e.to_string().contains("not a valid interaction id"),
        "{e}"
    );
    let e = refused(AdapterKind::Genesys, br#"{"detail": {"eventBody": {}}}"#);
    assert!(e.to_string().starts_with("`topicName` is missing"), "{e}");
    let e = refused(
        AdapterKind::Cloudevents,
        br#"{"specversion": "0.3", "id": "1", "source": "/s", "type": "t.started"}"#,
    );
    assert!(e.to_string().contains("CloudEvents 1.0 only"), "{e}");
    let e = refused(AdapterKind::Cloudevents, br#"{"specversion": "1.0", "id": "1", "source": "/s", "type": "x.party-joined", "subject": "c1", "data": {"party": "robot"}}"#);
    assert_eq!(
        e.to_string(),
        "`data.party`: `robot` is not a party: `caller` or `agent`"
    );
    let deep = format!(
        "{{\"specversion\": \"1.0\", \"data\": {}{}}}",
        "[".repeat(40),
        "]".repeat(40)
    );
    assert_eq!(
        refused(AdapterKind::Cloudevents, deep.as_bytes()).kind(),
        "payload-too-deep"
    );
    let big = vec![b' '; coda_intake::limits::MAX_PAYLOAD_BYTES + 1];
    assert_eq!(
        refused(AdapterKind::Genesys, &big).kind(),
        "payload-too-large"
    );
}
