//! Ceilings, grants and secrets: per tenant, generation-counted, secrets sealed.

use coda_store::{SecretWrite, SecretsKey};
use serde_json::json;

use crate::{open, token};

async fn every_change_bumps_the_tenants_generation_and_reads_take_the_tenant() {
    let (_dir, store) = open();
    store
        .create_tenant("acme", token("t1", "h1"), 1)
        .await
        .unwrap();
    store
        .create_tenant("globex", token("t2", "h2"), 1)
        .await
        .unwrap();
    assert_eq!(store.grants_generation("acme").unwrap(), 0);
    assert_eq!(store.ceiling_state("nobody").unwrap(), None);
    assert_eq!(store.ceiling_state("acme").unwrap(), Some(false));

    let ceiling = json!({ "ceiling": { "email": true } });
    assert!(store.set_ceiling("acme", &ceiling, 2).await.unwrap());
    assert!(!store.set_ceiling("nobody", &ceiling, 2).await.unwrap());
    assert_eq!(store.ceiling("acme").unwrap(), Some(ceiling));
    assert_eq!(store.ceiling("globex").unwrap(), None);
    assert_eq!(store.ceiling_state("acme").unwrap(), Some(true));
    assert_eq!(store.grants_generation("acme").unwrap(), 1);

    store
        .put_grant("acme", "sms", &json!({ "email": true }), 3)
        .await
        .unwrap();
    store
        .put_grant("acme", "sms", &json!({ "interactions": true }), 4)
        .await
        .unwrap();
    let grants = store.grants("acme").unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].body, json!({ "interactions": true }));
    assert_eq!(grants[0].updated_at_ms, 4);
    assert!(store.grants("globex").unwrap().is_empty());
    assert_eq!(store.grants_generation("acme").unwrap(), 3);
    assert_eq!(store.grants_generation("globex").unwrap(), 0);

    // Another tenant's grant is not there to delete; deleting nothing changes nothing.
    assert!(!store.delete_grant("globex", "sms").await.unwrap());
    assert!(store.delete_grant("acme", "sms").await.unwrap());
    assert!(!store.delete_grant("acme", "sms").await.unwrap());
    assert_eq!(store.grants_generation("acme").unwrap(), 4);
}

async fn secrets_are_capped_sealed_and_open_only_with_their_key() {
    let (dir, store) = open();
    store
        .create_tenant("acme", token("t1", "h1"), 1)
        .await
        .unwrap();
    store
        .create_tenant("globex", token("t2", "h2"), 1)
        .await
        .unwrap();
    let key = SecretsKey::generate().unwrap();
    let put = |tenant: &'static str, name: &'static str, max: u32| {
        let (store, key) = (&store, &key);
        async move {
            store
                .put_secret(tenant, name, "hunter2-plaintext", key, max, 5)
                .await
                .unwrap()
        }
    };
    assert_eq!(put("acme", "a", 2).await, SecretWrite::Created);
    assert_eq!(put("acme", "b", 2).await, SecretWrite::Created);
    assert_eq!(put("acme", "c", 2).await, SecretWrite::TooMany { max: 2 });
    // Replacing one is not a new one.
    assert_eq!(put("acme", "a", 2).await, SecretWrite::Replaced);
    assert_eq!(put("nobody", "a", 2).await, SecretWrite::UnknownTenant);
    assert_eq!(put("globex", "a", 0).await, SecretWrite::TooMany { max: 0 });

    let names: Vec<String> = store
        .secret_names("acme")
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert!(store.secret_names("globex").unwrap().is_empty());
    assert_eq!(
        store.secret_values("acme", &key).unwrap(),
        [
            ("a".to_owned(), "hunter2-plaintext".to_owned()),
            ("b".to_owned(), "hunter2-plaintext".to_owned())
        ]
    );
    let other = SecretsKey::generate().unwrap();
    assert!(store.secret_values("acme", &other).is_err());

    // Not in the database file or its WAL as plaintext.
    for file in ["coda.db", "coda.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            assert!(
                !bytes.windows(17).any(|w| w == b"hunter2-plaintext"),
                "{file} holds the plaintext"
            );
        }
    }

    assert!(!store.delete_secret("globex", "a").await.unwrap());
    assert!(store.delete_secret("acme", "a").await.unwrap());
    assert_eq!(put("acme", "c", 2).await, SecretWrite::Created);
}

on_every_backend!(
    every_change_bumps_the_tenants_generation_and_reads_take_the_tenant,
    secrets_are_capped_sealed_and_open_only_with_their_key,
);
