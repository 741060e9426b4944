//! The operator's tenant API: listing the tenants, creating one with its first token, and
//! listing, issuing and revoking a tenant's tokens. A token's secret is shown once; only its
//! hash is stored, and neither is ever listed.

use axum::Json as Reply;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coda_store::NewToken;
use coda_types::names::{NameKind, check_name};
use coda_types::time::now_ms;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{JsonBody, PathArgs, QueryArgs};
use crate::{ApiError, AppState, Operator, hash_token, new_token};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// The page sizes of the operator's lists, as `/v1/runs`'.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// A page of a list: after the last id of the previous page (its `next`), at most `limit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    after: Option<String>,
    limit: Option<usize>,
}

impl PageQuery {
    fn limit(&self) -> Result<usize, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if (1..=MAX_PAGE).contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::bad_request(
                "invalid-query",
                format!("`limit` must be 1 to {MAX_PAGE}, not {limit}"),
            ))
        }
    }
}

/// A full page may have a next one: the id of its last entry, which the client passes as
/// `after`.
fn next_after<T>(page: &[T], limit: usize, id: impl Fn(&T) -> &str) -> Option<String> {
    (page.len() == limit)
        .then(|| page.last().map(|last| id(last).to_owned()))
        .flatten()
}

/// A tenant as the operator's list shows it.
#[derive(Serialize, ToSchema)]
pub struct TenantEntry {
    id: String,
    created_at_ms: i64,
    /// How many of its tokens are not revoked.
    live_tokens: u64,
    /// When the operator last set its ceiling; null: never, so it allows nothing.
    ceiling_updated_at_ms: Option<i64>,
}

/// A page of tenants, by id.
#[derive(Serialize, ToSchema)]
pub struct TenantPage {
    tenants: Vec<TenantEntry>,
    /// Pass as `after` for the next page; none on the last.
    next: Option<String>,
}

/// A tenant's token: its id and times, never its secret.
#[derive(Serialize, ToSchema)]
pub struct TokenEntry {
    /// For revoking it.
    id: String,
    created_at_ms: i64,
    /// When it was revoked; null: live.
    revoked_at_ms: Option<i64>,
}

/// A page of a tenant's tokens, newest first.
#[derive(Serialize, ToSchema)]
pub struct TokenPage {
    tenant: String,
    tokens: Vec<TokenEntry>,
    /// Pass as `after` for the next page; none on the last.
    next: Option<String>,
}

#[utoipa::path(get, path = "/v1/operator/tenants", params(("after" = Option<String>, Query, description = "the last tenant id of the previous page (`next` of the previous page)"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "the most tenants on the page (default 100)")), responses((status = 200, description = "A page of tenants, by id", body = TenantPage)), security(("operator" = [])))]
async fn list_tenants(
    _: Operator,
    State(state): State<AppState>,
    QueryArgs(query): QueryArgs<PageQuery>,
) -> Result<Reply<TenantPage>, ApiError> {
    let limit = query.limit()?;
    let tenants = state.store().tenants(query.after.as_deref(), limit)?;
    let next = next_after(&tenants, limit, |t| t.id.as_str());
    Ok(Reply(TenantPage {
        tenants: tenants
            .into_iter()
            .map(|t| TenantEntry {
                id: t.id,
                created_at_ms: t.created_at_ms,
                live_tokens: t.live_tokens,
                ceiling_updated_at_ms: t.ceiling_updated_at_ms,
            })
            .collect(),
        next,
    }))
}

#[utoipa::path(get, path = "/v1/operator/tenants/{tenant}/tokens", params(("tenant" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the tenant's id"), ("after" = Option<String>, Query, description = "the last token id of the previous page (`next` of the previous page)"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "the most tokens on the page (default 100)")), responses((status = 200, description = "A page of the tenant's tokens, newest first", body = TokenPage)), security(("operator" = [])))]
async fn list_tokens(
    _: Operator,
    State(state): State<AppState>,
    PathArgs(tenant): PathArgs<String>,
    QueryArgs(query): QueryArgs<PageQuery>,
) -> Result<Reply<TokenPage>, ApiError> {
    let limit = query.limit()?;
    let Some(tokens) = state
        .store()
        .tenant_tokens(&tenant, query.after.as_deref(), limit)?
    else {
        return Err(unknown_tenant(&tenant));
    };
    let next = next_after(&tokens, limit, |t| t.id.as_str());
    Ok(Reply(TokenPage {
        tenant,
        tokens: tokens
            .into_iter()
            .map(|t| TokenEntry {
                id: t.id,
                created_at_ms: t.created_at_ms,
                revoked_at_ms: t.revoked_at_ms,
            })
            .collect(),
        next,
    }))
}

/// A new token: the secret (shown once) and its id (for revoking it).
fn fresh_token() -> Result<(String, NewToken), ApiError> {
    let secret = new_token("coda_").map_err(ApiError::internal)?;
    let id = new_token("tok_").map_err(ApiError::internal)?;
    // An id need not be secret, only unique: 16 hex digits of randomness are plenty.
    let id: String = id.chars().take(4 + 16).collect();
    let hash = hash_token(&secret);
    Ok((secret, NewToken { id, hash }))
}

/// The new tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Its id: 1 to 64 characters of a-z 0-9 . _ -, the first a letter or digit.
    #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    id: String,
}

/// A new token of a tenant: its secret is shown this once.
#[derive(Serialize, ToSchema)]
pub struct TokenIssued {
    tenant: String,
    /// For revoking it.
    token_id: String,
    /// The bearer token.
    token: String,
}

#[utoipa::path(post, path = "/v1/operator/tenants", request_body = CreateTenant, responses((status = 201, description = "Created, with its first token", body = TokenIssued)), security(("operator" = [])))]
async fn create_tenant(
    _: Operator,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateTenant>,
) -> Result<Response, ApiError> {
    // The one rule for tenant ids; the message quotes a long or odd id safely.
    if let Err(e) = check_name(NameKind::Tenant, &body.id) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-tenant",
            e.to_string(),
        ));
    }
    let (secret, token) = fresh_token()?;
    let token_id = token.id.clone();
    if !state
        .store()
        .create_tenant(&body.id, token, now_ms())
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "tenant-exists",
            format!("tenant `{}` exists already", body.id),
        ));
    }
    Ok((
        StatusCode::CREATED,
        Reply(TokenIssued {
            tenant: body.id,
            token_id,
            token: secret,
        }),
    )
        .into_response())
}

#[utoipa::path(post, path = "/v1/operator/tenants/{tenant}/tokens", params(("tenant" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the tenant's id")), responses((status = 201, description = "A new token, shown once", body = TokenIssued)), security(("operator" = [])))]
async fn create_token(
    _: Operator,
    State(state): State<AppState>,
    PathArgs(tenant): PathArgs<String>,
) -> Result<Response, ApiError> {
    let (secret, token) = fresh_token()?;
    let token_id = token.id.clone();
    if !state.store().add_token(&tenant, token, now_ms()).await? {
        return Err(unknown_tenant(&tenant));
    }
    Ok((
        StatusCode::CREATED,
        Reply(TokenIssued {
            tenant,
            token_id,
            token: secret,
        }),
    )
        .into_response())
}

fn unknown_tenant(tenant: &str) -> ApiError {
    ApiError::not_found("unknown-tenant", format!("tenant `{tenant}` not found"))
}

#[utoipa::path(delete, path = "/v1/operator/tenants/{tenant}/tokens/{token_id}", params(("tenant" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the tenant's id"), ("token_id" = String, Path, description = "the token's id")), responses((status = 204, description = "Revoked")), security(("operator" = [])))]
async fn revoke_token(
    _: Operator,
    State(state): State<AppState>,
    PathArgs((tenant, token_id)): PathArgs<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !state
        .store()
        .revoke_token(&tenant, &token_id, now_ms())
        .await?
    {
        return Err(ApiError::not_found(
            "unknown-token",
            format!("tenant `{tenant}` has no token `{token_id}`"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
