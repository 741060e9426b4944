//! Ceilings (the operator's), grants and secrets (the tenant's), and publishing refused
//! until an applet's declared needs are granted.

use std::sync::Arc;

use axum::http::StatusCode;
use coda_flow::{Engine, FlowLimits, WallClock};
use coda_server::{AppState, hash_token, router};
use coda_store::{SecretsKey, Store};
use coda_types::{AppletInfo, Capability};
use serde_json::json;

use crate::{Harness, OPERATOR, Script, call, json_body, step_info, tenant};

/// `sms@0.1.0` declares it needs http and secrets (it runs as `step` would: the script
/// does not know it, which these tests never need).
fn sms_info() -> AppletInfo {
    AppletInfo {
        name: "sms".into(),
        version: "0.1.0".into(),
        capabilities: vec![Capability::Http, Capability::Secrets],
        ..step_info()
    }
}

/// `connector@1.0.0` declares http and secrets, and ties secrets to its `secrets` config
/// property (`x-coda-needs`), as the Data Connector does.
fn connector_info() -> AppletInfo {
    AppletInfo {
        name: "connector".into(),
        version: "1.0.0".into(),
        config_schema: json!({"type": "object", "properties": {
            "url": {"type": "string"},
            "secrets": {"type": "object", "x-coda-needs": "secrets"}}}),
        capabilities: vec![Capability::Http, Capability::Secrets],
        ..step_info()
    }
}

fn harness() -> (Harness, SecretsKey) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let engine = Arc::new(Engine::new(
        store,
        Arc::new(Script),
        Arc::new(WallClock),
        FlowLimits::default(),
    ));
    let key = SecretsKey::generate().unwrap();
    let state = AppState::new(
        engine.clone(),
        vec![step_info(), sms_info(), connector_info()],
        &hash_token(OPERATOR),
    )
    .unwrap()
    .with_secrets_key(key.clone());
    (
        Harness {
            _dir: dir,
            engine,
            app: router(state),
        },
        key,
    )
}

const CEILING: &str = "/v1/operator/tenants/acme/ceiling";

fn ceiling() -> serde_json::Value {
    json!({
        "ceiling": {
            "http_hosts": ["*.twilio.com", "127.0.0.1:*"],
            "allow_private": ["127.0.0.0/8"],
            "email": true,
            "email_per_hour": 100,
            "databases": ["crm"],
            "max_secrets": 2,
            "fuel": 50000000,
            "concurrency": 4
        },
        "smtp": { "host": "mail.test", "port": 2525, "tls": "none",
                  "from": "Acme <support@acme.example>",
                  "username": "acme", "password": "smtp-password-plain" },
        "databases": { "crm": "postgres://app:db-password-plain@db.test/crm" }
    })
}

#[tokio::test]
async fn the_ceiling_is_the_operators_to_set_and_the_tenant_sees_it_without_credentials() {
    let (h, _) = harness();
    let acme = tenant(&h, "acme").await;

    // Only the operator sets or reads it through the operator API.
    let (status, _) = call(&h, "PUT", CEILING, Some(&acme), json_body(ceiling())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&h, "GET", CEILING, Some(&acme), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/operator/tenants/nobody/ceiling",
        Some(OPERATOR),
        json_body(ceiling()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = call(
        &h,
        "GET",
        "/v1/operator/tenants/nobody/ceiling",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Before the operator sets one, the tenant's ceiling allows nothing.
    let (status, body) = call(&h, "GET", "/v1/ceiling", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["set"], false);
    assert_eq!(body["ceiling"]["email"], false);
    assert_eq!(body["ceiling"]["http_hosts"], json!([]));

    // Each invalid field is named.
    for (bad, field) in [
        (json!({ "ceiling": { "fuel": 0 } }), "ceiling.fuel"),
        (json!({ "ceiling": { "emial": true } }), "ceiling"),
        (
            json!({ "ceiling": { "http_hosts": ["https://x.test"] } }),
            "ceiling.http_hosts[0]",
        ),
        (
            json!({ "ceiling": { "databases": ["crm"] } }),
            "ceiling.databases[0]",
        ),
        (
            json!({ "smtp": { "host": "m", "from": "not an address" } }),
            "smtp.from",
        ),
        (json!({ "grants": { "sms": {} } }), "grants"),
    ] {
        let (status, body) = call(&h, "PUT", CEILING, Some(OPERATOR), json_body(bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["kind"], "invalid-ceiling");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{field}")), "{field}: {message}");
    }

    let (status, body) = call(&h, "PUT", CEILING, Some(OPERATOR), json_body(ceiling())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(&h, "GET", CEILING, Some(OPERATOR), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["set"], true);
    assert_eq!(body["ceiling"]["max_secrets"], 2);
    assert_eq!(body["ceiling"]["fuel"], 50_000_000);

    let (status, body) = call(&h, "GET", "/v1/ceiling", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["ceiling"]["http_hosts"],
        json!(["*.twilio.com", "127.0.0.1:*"])
    );
    assert_eq!(body["ceiling"]["email_per_hour"], 100);
    assert_eq!(body["smtp"]["host"], "mail.test");
    assert_eq!(body["smtp"]["authenticated"], true);
    let text = body.to_string();
    for hidden in ["smtp-password-plain", "db-password-plain", "app:"] {
        assert!(!text.contains(hidden), "{hidden} shown: {text}");
    }
    assert!(text.contains("db.test/crm"), "{text}");

    // Another tenant sees its own (none), not acme's.
    let globex = tenant(&h, "globex").await;
    let (_, body) = call(&h, "GET", "/v1/ceiling", Some(&globex), None).await;
    assert_eq!(body["set"], false);
    assert_eq!(body["tenant"], "globex");
}

/// The stored ceiling's credentials, read back through the tenant's settings.
fn stored_credentials(h: &Harness) -> (Option<String>, Option<String>, Option<String>) {
    let body = h.engine.store().ceiling("acme").unwrap().unwrap();
    let settings =
        coda_capabilities::settings::TenantSettings::from_ceiling_json("acme", &body).unwrap();
    let smtp = settings.smtp.unwrap();
    (
        smtp.username,
        smtp.password.map(|p| p.expose().to_owned()),
        body["databases"]["crm"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn a_ceiling_read_changed_and_written_back_keeps_its_credentials() {
    let (h, _) = harness();
    tenant(&h, "acme").await;
    let (status, _) = call(&h, "PUT", CEILING, Some(OPERATOR), json_body(ceiling())).await;
    assert_eq!(status, StatusCode::OK);

    // The operator's view hides them, marking the database's with `***`.
    let (_, mut view) = call(&h, "GET", CEILING, Some(OPERATOR), None).await;
    assert_eq!(view["databases"]["crm"], "postgres://***@db.test/crm");
    assert_eq!(view["smtp"]["authenticated"], true);
    let text = view.to_string();
    assert!(!text.contains("password-plain"), "{text}");

    // Changed and written back as it is: a limit changes, the credentials stay.
    view["ceiling"]["fuel"] = json!(1000);
    let (status, answer) = call(&h, "PUT", CEILING, Some(OPERATOR), json_body(view.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ceiling"]["fuel"], 1000);
    assert_eq!(
        stored_credentials(&h),
        (
            Some("acme".into()),
            Some("smtp-password-plain".into()),
            Some("postgres://app:db-password-plain@db.test/crm".into())
        )
    );

    // A credential given replaces the stored one.
    view["smtp"]["username"] = json!("acme2");
    view["smtp"]["password"] = json!("smtp-password-new");
    view["databases"]["crm"] = json!("postgres://app:db-password-new@db.test/crm");
    let (status, answer) = call(&h, "PUT", CEILING, Some(OPERATOR), json_body(view.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        stored_credentials(&h),
        (
            Some("acme2".into()),
            Some("smtp-password-new".into()),
            Some("postgres://app:db-password-new@db.test/crm".into())
        )
    );

    // The marker where nothing is stored for it is refused, naming the field, and so is
    // the view of another tenant.
    let (_, mut view) = call(&h, "GET", CEILING, Some(OPERATOR), None).await;
    view["databases"]["crm"] = json!("postgres://***@other.test/crm");
    let (status, body) = call(&h, "PUT", CEILING, Some(OPERATOR), json_body(view.clone())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`databases.crm`"),
        "{body}"
    );
    view["databases"]["crm"] = json!("postgres://***@db.test/crm");
    view["tenant"] = json!("globex");
    let (status, body) = call(&h, "PUT", CEILING, Some(OPERATOR), json_body(view)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`tenant`"),
        "{body}"
    );
}

#[tokio::test]
async fn a_grant_must_lie_within_the_ceiling() {
    let (h, _) = harness();
    let acme = tenant(&h, "acme").await;
    let grant = json!({ "http": ["api.twilio.com"], "secrets": ["twilio-token"] });

    // No ceiling yet: everything exceeds it, and the answer says what.
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/grants/sms",
        Some(&acme),
        json_body(grant.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "exceeds-ceiling");
    assert_eq!(body["error"]["problems"][0]["field"], "http[0]");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`api.twilio.com`"),
        "{body}"
    );

    call(&h, "PUT", CEILING, Some(OPERATOR), json_body(ceiling())).await;
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/grants/sms",
        Some(&acme),
        json_body(grant.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["grant"]["http"], json!(["api.twilio.com"]));

    // Partly outside: each excess named, nothing stored.
    let over =
        json!({ "http": ["api.twilio.com", "evil.test"], "sql": ["crm", "hr"], "email": true });
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/grants/mailer@1.0.0",
        Some(&acme),
        json_body(over),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields: Vec<&str> = body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["http[1]", "sql[1]"], "{body}");

    // Malformed grants are 400s naming the field.
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/grants/sms",
        Some(&acme),
        json_body(json!({ "htp": [] })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("htp"),
        "{body}"
    );
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/grants/sms",
        Some(&acme),
        json_body(json!({ "http": ["a.*.com"] })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http[0]"),
        "{body}"
    );
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/grants/Not%20A%20Name",
        Some(&acme),
        json_body(grant),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = call(&h, "GET", "/v1/grants", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["grants"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["grants"][0]["applet"], "sms");

    // Another tenant neither sees nor deletes it.
    let globex = tenant(&h, "globex").await;
    let (_, body) = call(&h, "GET", "/v1/grants", Some(&globex), None).await;
    assert_eq!(body["grants"], json!([]));
    let (status, _) = call(&h, "DELETE", "/v1/grants/sms", Some(&globex), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = call(&h, "DELETE", "/v1/grants/sms", Some(&acme), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(&h, "DELETE", "/v1/grants/sms", Some(&acme), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["kind"], "unknown-grant");
}

#[tokio::test]
async fn secrets_are_written_listed_by_name_only_capped_and_sealed_at_rest() {
    let (h, key) = harness();
    let acme = tenant(&h, "acme").await;
    let put = |name: &'static str, value: &'static str| {
        let (h, acme) = (&h, &acme);
        async move {
            call(
                h,
                "PUT",
                &format!("/v1/secrets/{name}"),
                Some(acme),
                json_body(json!({ "value": value })),
            )
            .await
        }
    };

    // No ceiling: no secrets (deny by default).
    let (status, body) = put("twilio-token", "plain-secret-value-1").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "too-many-secrets");

    call(&h, "PUT", CEILING, Some(OPERATOR), json_body(ceiling())).await;
    assert_eq!(
        put("twilio-token", "plain-secret-value-1").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put("twilio-sid", "plain-secret-value-2").await.0,
        StatusCode::NO_CONTENT
    );
    // Rewriting one is fine; a third is past max_secrets (2).
    assert_eq!(
        put("twilio-sid", "plain-secret-value-2").await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = put("third", "plain-secret-value-3").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_secrets")
    );

    // Malformed: bad name, unknown field, wrong type.
    let (status, _) = put("Bad%20Name", "x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/secrets/x",
        Some(&acme),
        json_body(json!({ "value": "v", "extra": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(
        &h,
        "PUT",
        "/v1/secrets/x",
        Some(&acme),
        json_body(json!({ "value": 5 })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = call(&h, "GET", "/v1/secrets", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["twilio-sid", "twilio-token"]);
    assert!(body["secrets"][0]["updated_at_ms"].is_i64());
    assert!(!body.to_string().contains("plain-secret-value"), "{body}");

    // At rest: neither the database nor its WAL holds a value; the key opens them.
    for file in ["coda.db", "coda.db-wal"] {
        if let Ok(bytes) = std::fs::read(h._dir.path().join(file)) {
            assert!(
                !bytes.windows(18).any(|w| w == b"plain-secret-value"),
                "{file} holds a secret in plaintext"
            );
        }
    }
    let values = h.engine.store().secret_values("acme", &key).unwrap();
    assert_eq!(
        values[1],
        ("twilio-token".into(), "plain-secret-value-1".into())
    );

    // Another tenant: its own (none), and acme's names are not found.
    let globex = tenant(&h, "globex").await;
    let (_, body) = call(&h, "GET", "/v1/secrets", Some(&globex), None).await;
    assert_eq!(body["secrets"], json!([]));
    let (status, body) = call(
        &h,
        "DELETE",
        "/v1/secrets/twilio-token",
        Some(&globex),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, _) = call(&h, "DELETE", "/v1/secrets/twilio-token", Some(&acme), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&h, "DELETE", "/v1/secrets/twilio-token", Some(&acme), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        put("third", "plain-secret-value-3").await.0,
        StatusCode::NO_CONTENT
    );
}

const NOTIFY: &str = "name: notify-plan\ntype: unattended\nstart: notify\nnodes:\n  notify:\n    applet: sms@0.1.0\n    exits: { next: done }\n  done:\n    applet: step@1.0.0\n";

#[tokio::test]
async fn publishing_is_refused_until_the_applets_declared_needs_are_granted() {
    let (h, _) = harness();
    let acme = tenant(&h, "acme").await;
    call(&h, "PUT", CEILING, Some(OPERATOR), json_body(ceiling())).await;
    let publish = || {
        call(
            &h,
            "PUT",
            "/v1/plans/notify-plan",
            Some(&acme),
            Some(("application/yaml", NOTIFY.as_bytes().to_vec())),
        )
    };

    let (status, body) = publish().await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "not-granted");
    assert_eq!(body["error"]["problems"][0]["node"], "notify");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("node `notify` uses sms@0.1.0, which needs http, secrets")
            && message.contains("PUT /v1/grants/sms"),
        "{message}"
    );

    // Half the needs granted: the other half is named.
    let (status, _) = call(
        &h,
        "PUT",
        "/v1/grants/sms",
        Some(&acme),
        json_body(json!({ "http": ["api.twilio.com"] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = publish().await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("which needs secrets and"), "{message}");

    // A grant pinned to the version covers it too.
    let (status, _) = call(
        &h,
        "PUT",
        "/v1/grants/sms@0.1.0",
        Some(&acme),
        json_body(json!({ "http": ["api.twilio.com"], "secrets": ["twilio-token"] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = publish().await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Another tenant's grants do not count for this one.
    let globex = tenant(&h, "globex").await;
    let (status, _) = call(
        &h,
        "PUT",
        "/v1/plans/notify-plan",
        Some(&globex),
        Some(("application/yaml", NOTIFY.as_bytes().to_vec())),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_grant_names_only_secrets_the_secrets_api_would_take() {
    let (h, _) = harness();
    let acme = tenant(&h, "acme").await;
    call(&h, "PUT", CEILING, Some(OPERATOR), json_body(ceiling())).await;
    for bad in ["../secrets.key", "", "Token", "a/b", "tok\u{0}en"] {
        // The secrets API refuses the name...
        let (status, body) = call(
            &h,
            "PUT",
            &format!(
                "/v1/secrets/{}",
                bad.replace('/', "%2F").replace('\0', "%00")
            ),
            Some(&acme),
            json_body(json!({ "value": "v" })),
        )
        .await;
        if !bad.is_empty() {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
            assert_eq!(body["error"]["kind"], "invalid-secret-name", "{bad:?}");
        }
        // ...and so does a grant naming it, with the same words.
        let (status, body) = call(
            &h,
            "PUT",
            "/v1/grants/sms",
            Some(&acme),
            json_body(json!({ "secrets": ["twilio-token", bad] })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert_eq!(body["error"]["kind"], "invalid-secret-name", "{bad:?}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("secret name"),
            "{body}"
        );
    }
    // Nothing was stored.
    let (_, body) = call(&h, "GET", "/v1/grants", Some(&acme), None).await;
    assert_eq!(body["grants"], json!([]), "{body}");
}

/// Issue 14: an applet declares what it *may* use; a node whose config does not ask for a
/// need tied to a config property publishes without that grant, and one that asks for it
/// still needs it.
#[tokio::test]
async fn a_need_the_nodes_config_does_not_ask_for_is_not_asked_of_the_tenant() {
    let (h, _) = harness();
    let acme = tenant(&h, "acme").await;
    call(&h, "PUT", CEILING, Some(OPERATOR), json_body(ceiling())).await;
    let plan = |config: serde_json::Value| {
        let yaml = json!({"name": "fetch", "type": "unattended", "start": "get",
            "nodes": {"get": {"applet": "connector@1.0.0", "config": config}}});
        Some(("application/json", yaml.to_string().into_bytes()))
    };
    let publish = |config| call(&h, "PUT", "/v1/plans/fetch", Some(&acme), plan(config));

    // Nothing granted: http is needed whatever the config.
    let (status, body) = publish(json!({"url": "https://api.twilio.com/x"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("which needs http and"), "{message}");

    let (status, _) = call(
        &h,
        "PUT",
        "/v1/grants/connector",
        Some(&acme),
        json_body(json!({ "http": ["api.twilio.com"] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for config in [
        json!({"url": "https://api.twilio.com/x"}),
        json!({"url": "https://api.twilio.com/x", "secrets": {}}),
    ] {
        let (status, body) = publish(config.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{config}: {body}");
    }
    let (status, body) =
        publish(json!({"url": "https://api.twilio.com/x", "secrets": {"t": "twilio-token"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("node `get` uses connector@1.0.0, which needs secrets and"),
        "{message}"
    );
}

/// A tenant's webhooks are capped (`coda_webhooks::MAX_SUBSCRIPTIONS_PER_TENANT`): the one
/// past the cap is refused by name, nothing stored, and a deleted one makes room again.
/// Their secrets are sealed like the tenant's secrets, hence this module's keyed harness.
#[tokio::test]
async fn a_tenant_has_at_most_its_cap_of_webhooks_and_the_next_is_refused_by_name() {
    let (h, _key) = harness();
    let acme = tenant(&h, "acme").await;
    let cap = coda_webhooks::MAX_SUBSCRIPTIONS_PER_TENANT as usize;
    let create = |n: usize| {
        let (h, acme) = (&h, &acme);
        async move {
            call(
                h,
                "POST",
                "/v1/webhooks",
                Some(acme),
                json_body(json!({ "url": format!("https://hooks.example.com/{n}"), "events": ["run.done"] })),
            )
            .await
        }
    };
    let mut first = None;
    for n in 0..cap {
        let (status, body) = create(n).await;
        assert_eq!(status, StatusCode::CREATED, "webhook {n}: {body}");
        first.get_or_insert_with(|| body["webhook"]["id"].as_str().unwrap().to_owned());
    }
    let (status, body) = create(cap).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "too-many-webhooks");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("at most {cap} webhooks")),
        "{body}"
    );
    let (_, page) = call(&h, "GET", "/v1/webhooks?limit=1000", Some(&acme), None).await;
    assert_eq!(
        page["webhooks"].as_array().map(Vec::len),
        Some(cap),
        "{page}"
    );
    let first = first.unwrap();
    let (status, _) = call(
        &h,
        "DELETE",
        &format!("/v1/webhooks/{first}"),
        Some(&acme),
        None,
    )
    .await;
    assert!(status.is_success(), "{status}");
    let (status, body) = create(cap).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
