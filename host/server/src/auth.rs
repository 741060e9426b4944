//! Bearer tokens: the operator's, compared by hash in constant time, and tenants', looked
//! up by hash in the store. A handler that takes [`Tenant`] gets the tenant from its token
//! and from nowhere else.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::{ApiError, AppState, hash_token};

/// A request made with the operator's token.
pub struct Operator;

/// A request made with a live token of this tenant.
pub struct Tenant(pub String);

/// A request made with a live token of this tenant, and which token it was: the "who" of
/// an edit's audit entry, whom a clone is assigned to. (A sibling of [`Tenant`] rather than
/// a field of it, so that every `Tenant(tenant)` handler stays as it is.)
pub struct Caller {
    pub tenant: String,
    /// The token's public id (`tok_…`), never its secret.
    pub token_id: String,
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("no Authorization header: send `Bearer TOKEN`"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "the Authorization header is not `Bearer TOKEN`",
        ));
    }
    Ok(token.trim())
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let mut hash = [0u8; 32];
        // Our own hex: it always decodes.
        let _ = hex::decode_to_slice(hash_token(token), &mut hash);
        // Constant time, so response timing says nothing about how close a guess was.
        let differ = hash
            .iter()
            .zip(state.inner.operator_hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differ != 0 {
            return Err(ApiError::unauthorized(
                "the operator API takes the operator's token, and this is not it",
            ));
        }
        Ok(Operator)
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        match state.store().token_tenant(&hash_token(token))? {
            Some(tenant) => Ok(Tenant(tenant)),
            None => Err(ApiError::unauthorized(
                "the token is not a live tenant token (unknown, revoked, or the operator's)",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        match state.store().token_caller(&hash_token(token))? {
            Some((tenant, token_id)) => Ok(Caller { tenant, token_id }),
            None => Err(ApiError::unauthorized(
                "the token is not a live tenant token (unknown, revoked, or the operator's)",
            )),
        }
    }
}
