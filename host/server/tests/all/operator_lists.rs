//! The operator's lists: every tenant by page (the ones made through the API, not only the
//! ones a browser remembers), and a tenant's tokens with revoked ones marked, never a secret.

use axum::http::StatusCode;
use serde_json::{Value as Json, json};

use crate::{OPERATOR, call, harness, tenant};

fn ids(list: &Json, key: &str, field: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no `{key}` list: {list}"))
        .iter()
        .map(|e| e[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_operator_lists_every_tenant_by_page() {
    let h = harness();
    let acme = tenant(&h, "acme").await;
    tenant(&h, "globex").await;
    tenant(&h, "initech").await;
    let (status, _) = call(
        &h,
        "POST",
        "/v1/operator/tenants/acme/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, page) = call(
        &h,
        "GET",
        "/v1/operator/tenants?limit=2",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(ids(&page, "tenants", "id"), ["acme", "globex"]);
    assert_eq!(page["tenants"][0]["live_tokens"], 2);
    assert_eq!(page["tenants"][0]["ceiling_updated_at_ms"], Json::Null);
    assert!(page["tenants"][0]["created_at_ms"].as_i64().unwrap() > 0);
    assert_eq!(page["next"], "globex");
    let (status, rest) = call(
        &h,
        "GET",
        "/v1/operator/tenants?limit=2&after=globex",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    assert_eq!(ids(&rest, "tenants", "id"), ["initech"]);
    assert_eq!(rest["next"], Json::Null);

    // Setting a ceiling shows in the list.
    let (status, _) = call(
        &h,
        "PUT",
        "/v1/operator/tenants/globex/ceiling",
        Some(OPERATOR),
        crate::json_body(json!({ "ceiling": { "email": true } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, all) = call(&h, "GET", "/v1/operator/tenants", Some(OPERATOR), None).await;
    assert!(
        all["tenants"][1]["ceiling_updated_at_ms"]
            .as_i64()
            .is_some(),
        "{all}"
    );

    for bad in ["limit=0", "limit=1001", "limit=x", "page=2"] {
        let (status, body) = call(
            &h,
            "GET",
            &format!("/v1/operator/tenants?{bad}"),
            Some(OPERATOR),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["kind"], "invalid-query");
    }

    // A tenant's token cannot list the tenants nor another's tokens, as the other
    // operator routes answer it.
    for path in ["/v1/operator/tenants", "/v1/operator/tenants/acme/tokens"] {
        let (status, body) = call(&h, "GET", path, Some(&acme), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert!(!body.to_string().contains("globex"), "{body}");
    }
}

#[tokio::test]
async fn a_tenants_tokens_show_revoked_ones_and_never_a_secret() {
    let h = harness();
    let first = tenant(&h, "acme").await;
    tenant(&h, "globex").await;
    let (_, second) = call(
        &h,
        "POST",
        "/v1/operator/tenants/acme/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    let second_id = second["token_id"].as_str().unwrap().to_owned();
    let second_secret = second["token"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &h,
        "DELETE",
        &format!("/v1/operator/tenants/acme/tokens/{second_id}"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, list) = call(
        &h,
        "GET",
        "/v1/operator/tenants/acme/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["tenant"], "acme");
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{list}");
    let revoked = tokens
        .iter()
        .find(|t| t["id"] == second_id.as_str())
        .unwrap();
    assert!(revoked["revoked_at_ms"].as_i64().is_some(), "{list}");
    let live = tokens
        .iter()
        .find(|t| t["id"] != second_id.as_str())
        .unwrap();
    assert_eq!(live["revoked_at_ms"], Json::Null);
    let text = list.to_string();
    for secret in [&first, &second_secret] {
        assert!(!text.contains(secret.as_str()), "a secret listed: {text}");
        assert!(
            !text.contains(&coda_server::hash_token(secret)),
            "a hash listed: {text}"
        );
    }
    assert!(!text.contains("hash"), "{text}");

    // By page, newest first: the second token, then the first.
    let (_, page) = call(
        &h,
        "GET",
        "/v1/operator/tenants/acme/tokens?limit=1",
        Some(OPERATOR),
        None,
    )
    .await;
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, rest) = call(
        &h,
        "GET",
        &format!("/v1/operator/tenants/acme/tokens?limit=1&after={next}"),
        Some(OPERATOR),
        None,
    )
    .await;
    let mut both = ids(&page, "tokens", "id");
    both.extend(ids(&rest, "tokens", "id"));
    let mut listed = ids(&list, "tokens", "id");
    listed.sort();
    both.sort();
    assert_eq!(both, listed);

    // Only acme's: globex's token is not among them; an unknown tenant is a 404.
    let (_, globex) = call(
        &h,
        "GET",
        "/v1/operator/tenants/globex/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(globex["tokens"].as_array().unwrap().len(), 1);
    assert!(
        ids(&globex, "tokens", "id")
            .iter()
            .all(|id| !listed.contains(id))
    );
    let (status, body) = call(
        &h,
        "GET",
        "/v1/operator/tenants/nobody/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["kind"], "unknown-tenant");
}
