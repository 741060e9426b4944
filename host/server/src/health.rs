//! Liveness and readiness, for a load balancer or an orchestrator: no token.

use axum::Json as Reply;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{ApiError, AppState};

/// `{"status": "ok"}` (alive) or `{"status": "ready"}`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> Reply<Health> {
    Reply(Health { status: "ok" })
}

/// Ready when the database answers a read.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "Ready (503 when its database is not)", body = Health)))]
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store().operator_token_hash() {
        Ok(_) => Reply(Health { status: "ready" }).into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the database does not answer: {e}"),
        )
        .into_response(),
    }
}
