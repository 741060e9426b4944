//! Intake connections: created and replaced under a stable public id, found by it alone,
//! listed and deleted per tenant; and the one secret a delivery is authenticated with.

use coda_store::SecretsKey;
use serde_json::json;

use crate::{open, token};

async fn a_connection_keeps_its_id_and_is_found_by_it_or_by_its_tenant() {
    let (_dir, store) = open();
    store
        .create_tenant("acme", token("t1", "h1"), 1)
        .await
        .unwrap();
    store
        .create_tenant("globex", token("t2", "h2"), 1)
        .await
        .unwrap();
    let first = store
        .put_intake_connection("acme", "flex", "ic_1", &json!({"adapter": "twilio"}), 10)
        .await
        .unwrap()
        .expect("acme exists");
    assert_eq!((first.id.as_str(), first.tenant.as_str()), ("ic_1", "acme"));
    // Replaced: the configuration changes, the id (the platform's URL) does not.
    let replaced = store
        .put_intake_connection("acme", "flex", "ic_2", &json!({"adapter": "genesys"}), 20)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replaced.id, "ic_1");
    assert_eq!(replaced.config, json!({"adapter": "genesys"}));
    assert_eq!((replaced.created_at_ms, replaced.updated_at_ms), (10, 20));
    // The same name in another tenant is another connection.
    store
        .put_intake_connection("globex", "flex", "ic_3", &json!({}), 30)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .put_intake_connection("nobody", "flex", "ic_4", &json!({}), 30)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .intake_connection_by_id("ic_1")
            .unwrap()
            .unwrap()
            .tenant,
        "acme"
    );
    assert_eq!(
        store
            .intake_connection_by_id("ic_3")
            .unwrap()
            .unwrap()
            .tenant,
        "globex"
    );
    assert!(store.intake_connection_by_id("ic_2").unwrap().is_none());
    assert_eq!(
        store
            .intake_connection("globex", "flex")
            .unwrap()
            .unwrap()
            .id,
        "ic_3"
    );
    let names: Vec<String> = store
        .intake_connections("acme")
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["flex"]);
    assert!(
        !store
            .delete_intake_connection("globex", "nope")
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_intake_connection("acme", "flex")
            .await
            .unwrap()
    );
    assert!(store.intake_connection_by_id("ic_1").unwrap().is_none());
    assert!(store.intake_connection_by_id("ic_3").unwrap().is_some());
}

async fn one_secret_opens_for_its_own_tenant_only() {
    let (_dir, store) = open();
    store
        .create_tenant("acme", token("t1", "h1"), 1)
        .await
        .unwrap();
    let key = SecretsKey::generate().unwrap();
    store
        .put_secret("acme", "twilio-token", "tok-123", &key, 5, 1)
        .await
        .unwrap();
    assert_eq!(
        store
            .secret_value("acme", "twilio-token", &key)
            .unwrap()
            .as_deref(),
        Some("tok-123")
    );
    assert_eq!(store.secret_value("acme", "other", &key).unwrap(), None);
    assert_eq!(
        store.secret_value("globex", "twilio-token", &key).unwrap(),
        None
    );
    let wrong = SecretsKey::generate().unwrap();
    assert!(store.secret_value("acme", "twilio-token", &wrong).is_err());
}

on_every_backend!(
    a_connection_keeps_its_id_and_is_found_by_it_or_by_its_tenant,
    one_secret_opens_for_its_own_tenant_only,
);
