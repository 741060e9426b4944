//! The operator's tenant API: creating a tenant with its first token, and issuing and
//! revoking a tenant's tokens. A token's secret is shown once; only its hash is stored.

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

use crate::error::{JsonBody, PathArgs};
use crate::{ApiError, AppState, Operator, hash_token, new_token};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant))
        .routes(routes!(create_token))
        .routes(routes!(revoke_token))
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
