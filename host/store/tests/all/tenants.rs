//! The operator's lists: tenants by page with their live tokens and whether a ceiling is
//! set, and a tenant's tokens newest first, revoked ones with their time.

use serde_json::json;

use crate::{open, token};

async fn tenants_are_listed_by_page_with_their_live_tokens() {
    let (_dir, store) = open();
    for (i, tenant) in ["globex", "acme", "initech"].into_iter().enumerate() {
        let at = 10 + i as i64;
        assert!(
            store
                .create_tenant(
                    tenant,
                    token(&format!("{tenant}-1"), &format!("h-{tenant}-1")),
                    at
                )
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .add_token("acme", token("acme-2", "h-acme-2"), 20)
            .await
            .unwrap()
    );
    assert!(store.revoke_token("globex", "globex-1", 30).await.unwrap());
    assert!(
        store
            .set_ceiling("acme", &json!({ "ceiling": { "email": true } }), 40)
            .await
            .unwrap()
    );

    let first = store.tenants(None, 2).unwrap();
    let ids: Vec<&str> = first.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["acme", "globex"]);
    assert_eq!(
        (
            first[0].created_at_ms,
            first[0].live_tokens,
            first[0].ceiling_updated_at_ms
        ),
        (11, 2, Some(40))
    );
    assert_eq!(
        (first[1].live_tokens, first[1].ceiling_updated_at_ms),
        (0, None)
    );
    let rest = store.tenants(Some("globex"), 2).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!((rest[0].id.as_str(), rest[0].live_tokens), ("initech", 1));
    assert!(store.tenants(Some("initech"), 2).unwrap().is_empty());
}

async fn a_tenants_tokens_are_listed_newest_first_and_only_its_own() {
    let (_dir, store) = open();
    store
        .create_tenant("acme", token("a1", "h1"), 1)
        .await
        .unwrap();
    store
        .create_tenant("globex", token("g1", "hg"), 1)
        .await
        .unwrap();
    // Two tokens issued in the same millisecond are ordered by id.
    store.add_token("acme", token("a2", "h2"), 5).await.unwrap();
    store.add_token("acme", token("a3", "h3"), 5).await.unwrap();
    store.revoke_token("acme", "a1", 7).await.unwrap();

    let page = store.tenant_tokens("acme", None, 2).unwrap().unwrap();
    let ids: Vec<&str> = page.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["a3", "a2"]);
    assert_eq!((page[0].created_at_ms, page[0].revoked_at_ms), (5, None));
    let rest = store.tenant_tokens("acme", Some("a2"), 2).unwrap().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(
        (rest[0].id.as_str(), rest[0].revoked_at_ms),
        ("a1", Some(7))
    );

    // Another tenant's token is no cursor into this one's, and an unknown tenant is none.
    assert!(
        store
            .tenant_tokens("acme", Some("g1"), 2)
            .unwrap()
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.tenant_tokens("nobody", None, 2).unwrap(), None);
}

on_every_backend!(
    tenants_are_listed_by_page_with_their_live_tokens,
    a_tenants_tokens_are_listed_newest_first_and_only_its_own,
);
