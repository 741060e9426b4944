//! Platform intake: a tenant's connections (`/v1/intake/connections/{name}`) and the
//! endpoint each platform delivers to (`POST /v1/intake/{adapter}/{connection}`), the
//! HTTP glue around `coda-intake`, which reads the payloads.
//!
//! A delivery carries no coda token: it is authenticated by the platform's own mechanism
//! (Twilio's signature, or the header its connection names), keyed by a tenant secret
//! sealed like the others. The connection is found by the random public id in its path,
//! which names its tenant; an unknown id, or one under another adapter, answers 404, and a
//! delivery that does not authenticate answers 403, both before anything is interpreted
//! or stored (the body is read first, up to the payload limit: Twilio signs it). A delivery's answer says what coda did: the interaction events applied (and the
//! runs they started) and the named events delivered (and the runs they woke).

use std::collections::BTreeMap;

use axum::Json as Reply;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coda_flow::{EventAccepted, EventError};
use coda_intake::auth::Delivery;
use coda_intake::{Action, AdapterKind, ConnectionConfig, IntakeError};
use coda_store::IntakeConnection;
use coda_types::{Value, Values};
use serde::Serialize;
use serde_json::{Value as Json, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{JsonBody, PathArgs};
use crate::{ApiError, AppState, Tenant};

/// The prefix of a connection's public id; 32 random bytes as hex follow it.
const CONNECTION_ID_PREFIX: &str = "ic_";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_connections))
        .routes(routes!(put_connection, get_connection, delete_connection))
        .routes(routes!(deliver))
}

/// A connection as the API shows it: its configuration, its public id and the path its
/// platform delivers to, and its mapping with the adapter's defaults merged in.
#[derive(Serialize, ToSchema)]
pub struct Connection {
    name: String,
    /// The public id in the delivery path: random, fixed for the connection's life.
    id: String,
    /// Where the platform delivers: `/v1/intake/{adapter}/{id}` on this server.
    path: String,
    /// `twilio`, `amazon-connect`, `genesys` or `cloudevents`.
    adapter: String,
    /// The tenant secret deliveries are authenticated with (its name; never its value).
    secret: String,
    /// The header holding the secret (every adapter but `twilio`).
    header: Option<String>,
    /// `twilio`: the callback URL as configured in the Workspace, which Twilio signs.
    public_url: Option<String>,
    /// The live plan interactions start under.
    plan: String,
    /// The channel when the payload names none coda knows.
    #[schema(value_type = Option<crate::openapi::bodies::Channel>)]
    channel: Json,
    /// The named event a wrap-up is delivered as.
    wrapup_event: String,
    /// Each data source and its places in the payload (JSON pointers, tried in order).
    mapping: BTreeMap<String, Vec<String>>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

/// The tenant's connections.
#[derive(Serialize, ToSchema)]
pub struct ConnectionList {
    connections: Vec<Connection>,
}

fn connection_json(stored: &IntakeConnection) -> Result<Connection, ApiError> {
    let config: ConnectionConfig =
        serde_json::from_value(stored.config.clone()).map_err(ApiError::internal)?;
    Ok(Connection {
        name: stored.name.clone(),
        id: stored.id.clone(),
        path: format!("/v1/intake/{}/{}", config.adapter.as_str(), stored.id),
        adapter: config.adapter.as_str().to_owned(),
        secret: config.secret.clone(),
        header: config.header.clone(),
        public_url: config.public_url.clone(),
        plan: config.plan.clone(),
        channel: json!(config.channel),
        wrapup_event: config.wrapup_event().to_owned(),
        mapping: config.mapping().entries().clone(),
        created_at_ms: stored.created_at_ms,
        updated_at_ms: stored.updated_at_ms,
    })
}

fn check_connection_name(name: &str) -> Result<(), ApiError> {
    crate::error::check_name(coda_types::names::NameKind::Connection, name)
}

fn unknown_connection(name: &str) -> ApiError {
    ApiError::not_found(
        "unknown-connection",
        format!("intake connection `{}` not found", name.escape_debug()),
    )
}

/// `GET /v1/intake/connections`: the tenant's connections, by name.
#[utoipa::path(get, path = "/v1/intake/connections", responses((status = 200, description = "The tenant's intake connections", body = ConnectionList)), security(("tenant" = [])))]
async fn list_connections(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<Reply<ConnectionList>, ApiError> {
    let connections = state
        .store()
        .intake_connections(&tenant)?
        .iter()
        .map(connection_json)
        .collect::<Result<_, _>>()?;
    Ok(Reply(ConnectionList { connections }))
}

/// `PUT /v1/intake/connections/{name}`: creates or replaces a connection. Its live plan and
/// its secret must exist; a replaced connection keeps its id, so the platform's URL stays.
#[utoipa::path(put, path = "/v1/intake/connections/{name}", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the connection's name")), request_body = crate::openapi::bodies::IntakeConnection, responses((status = 200, description = "Stored", body = Connection)), security(("tenant" = [])))]
async fn put_connection(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
    JsonBody(config): JsonBody<ConnectionConfig>,
) -> Result<Reply<Connection>, ApiError> {
    check_connection_name(&name)?;
    config.check().map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-connection",
            e.to_string(),
        )
    })?;
    if state.store().plan(&tenant, &config.plan, None)?.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-plan",
            format!("plan `{}` not found: publish it first", config.plan),
        ));
    }
    let stored = state.store().secret_names(&tenant)?;
    if !stored.iter().any(|s| s.name == config.secret) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-secret",
            format!(
                "secret `{}` is not stored: store the platform's {} first \
                 (PUT /v1/secrets/{})",
                config.secret,
                if config.adapter.header_auth() {
                    "header value"
                } else {
                    "auth token"
                },
                config.secret
            ),
        ));
    }
    let id = crate::new_token(CONNECTION_ID_PREFIX).map_err(ApiError::internal)?;
    let body = serde_json::to_value(&config).map_err(ApiError::internal)?;
    let now = state.engine().now_ms();
    let Some(stored) = state
        .store()
        .put_intake_connection(&tenant, &name, &id, &body, now)
        .await?
    else {
        return Err(ApiError::not_found(
            "unknown-tenant",
            "the token's tenant no longer exists",
        ));
    };
    Ok(Reply(connection_json(&stored)?))
}

/// `GET /v1/intake/connections/{name}`.
#[utoipa::path(get, path = "/v1/intake/connections/{name}", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the connection's name")), responses((status = 200, description = "The connection", body = Connection)), security(("tenant" = [])))]
async fn get_connection(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
) -> Result<Reply<Connection>, ApiError> {
    check_connection_name(&name)?;
    match state.store().intake_connection(&tenant, &name)? {
        Some(stored) => Ok(Reply(connection_json(&stored)?)),
        None => Err(unknown_connection(&name)),
    }
}

/// `DELETE /v1/intake/connections/{name}`: its path answers 404 from now on.
#[utoipa::path(delete, path = "/v1/intake/connections/{name}", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the connection's name")), responses((status = 204, description = "Deleted")), security(("tenant" = [])))]
async fn delete_connection(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
) -> Result<StatusCode, ApiError> {
    check_connection_name(&name)?;
    if state
        .store()
        .delete_intake_connection(&tenant, &name)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_connection(&name))
    }
}

/// What a delivery did.
#[derive(Serialize, ToSchema)]
pub struct Delivered {
    /// The connection's name.
    connection: String,
    adapter: String,
    /// The platform's name for the event (`task.created`, `INITIATED`, a topic, a type).
    platform_event: String,
    /// True when coda has no use for this event: acknowledged, nothing done.
    ignored: bool,
    /// What was done, in order.
    applied: Vec<Applied>,
}

/// One thing a delivery did.
#[derive(Serialize, ToSchema)]
pub struct Applied {
    /// `started`, `party-joined`, `party-disconnected`, `ended` or `event:NAME`.
    kind: String,
    interaction: String,
    /// The interaction's status after an interaction event (`active`, `completed`).
    status: Option<String>,
    /// The runs an interaction event started (or found started by the same trigger).
    runs: Vec<String>,
    /// The runs a named event woke.
    woken: Vec<String>,
    /// An interaction event held until its interaction starts: when it is dropped if the
    /// start has not come by then (ms); the delivery is then answered 202.
    held_until_ms: Option<i64>,
}

/// The same answer for every way a delivery's path can name no connection of this
/// adapter: nothing tells a prober which part was wrong.
fn no_connection() -> ApiError {
    ApiError::not_found(
        "unknown-connection",
        "no intake connection at this path: copy the path from the connection \
         (GET /v1/intake/connections/{name})",
    )
}

fn forbidden() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "the delivery is not authenticated for this connection: its signature or key header \
         does not match the connection's secret",
    )
}

fn refused_payload(e: IntakeError) -> ApiError {
    let status = match e {
        IntakeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        IntakeError::TooManyFields { .. }
        | IntakeError::TooDeep { .. }
        | IntakeError::Malformed { .. } => StatusCode::BAD_REQUEST,
        IntakeError::Missing { .. } | IntakeError::Invalid { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    };
    ApiError::new(status, e.kind(), e.to_string())
}

/// The URL the platform called, as it signs it: the scheme a proxy says it was called with
/// (`X-Forwarded-Proto`), else http; the `Host` it named; the path and query.
fn called_url(headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_owned())
    };
    let scheme = header("x-forwarded-proto").unwrap_or_else(|| "http".into());
    let host = header("host").unwrap_or_default();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{scheme}://{host}{path}")
}

/// `POST /v1/intake/{adapter}/{connection}`: a platform's event. Authenticated by the
/// platform's own mechanism (see the connection's adapter), not by a coda token; answered
/// 200 with what was done, 403 when it does not authenticate and 404 when the path names no
/// connection, neither storing anything; an event for an interaction coda has not seen
/// started is held until the start arrives and answered 202.
#[utoipa::path(post, path = "/v1/intake/{adapter}/{connection}", params(("adapter" = String, Path, pattern = r"^(?:twilio|amazon-connect|genesys|cloudevents)$", description = "the connection's adapter"), ("connection" = String, Path, pattern = r"^ic_[0-9a-f]{64}$", description = "the connection's public id")), request_body(content((crate::openapi::bodies::IntakePayload = "application/json"), (crate::openapi::bodies::IntakeForm = "application/x-www-form-urlencoded")), description = "The platform's event as it sends it: JSON (Amazon Connect, Genesys Cloud, CloudEvents) or a form (Twilio)"), responses((status = 200, description = "What the delivery did", body = Delivered), (status = 202, description = "Accepted: an event held until its interaction starts", body = Delivered)), security(("platform" = [])))]
async fn deliver(
    State(state): State<AppState>,
    PathArgs((adapter, id)): PathArgs<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let Some(adapter) = AdapterKind::from_name(&adapter) else {
        return Err(no_connection());
    };
    let well_formed = id.strip_prefix(CONNECTION_ID_PREFIX).is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if !well_formed {
        return Err(no_connection());
    }
    let Some(stored) = state.store().intake_connection_by_id(&id)? else {
        return Err(no_connection());
    };
    let config: ConnectionConfig =
        serde_json::from_value(stored.config.clone()).map_err(ApiError::internal)?;
    if config.adapter != adapter {
        return Err(no_connection());
    }
    let tenant = stored.tenant.clone();

    let (parts, body) = request.into_parts();
    let limit = coda_intake::limits::MAX_PAYLOAD_BYTES;
    let body = crate::error::read_limited(&parts.headers, body, limit, || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("the payload is larger than the limit of {limit} bytes"),
        )
    })
    .await?;
    let Some(key) = state.secrets_key() else {
        tracing::warn!(
            connection = stored.name,
            "intake delivery refused: this server has no secrets key"
        );
        return Err(forbidden());
    };
    let Some(secret) = state.store().secret_value(&tenant, &config.secret, key)? else {
        tracing::warn!(
            tenant,
            connection = stored.name,
            secret = config.secret,
            "intake delivery refused: the connection's secret is not stored"
        );
        return Err(forbidden());
    };
    let delivery = Delivery {
        url: called_url(&parts.headers, &parts.uri),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect(),
        body: &body,
    };
    if let Err(why) = coda_intake::authenticate(&config, &secret, &delivery) {
        tracing::info!(tenant, connection = stored.name, %why, "intake delivery not authenticated");
        return Err(forbidden());
    }
    let intake = coda_intake::interpret(&config, &body).map_err(refused_payload)?;
    let mut applied = Vec::with_capacity(intake.actions.len());
    for action in intake.actions.iter().cloned() {
        applied.push(apply(&state, &tenant, action).await?);
    }
    // Held until its interaction starts: accepted, not yet applied.
    let status = if applied.iter().any(|a| a.held_until_ms.is_some()) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let answer = Delivered {
        connection: stored.name,
        adapter: adapter.as_str().to_owned(),
        platform_event: intake.platform_event,
        ignored: applied.is_empty(),
        applied,
    };
    Ok((status, Reply(answer)).into_response())
}

/// One action through the engine's own paths: an interaction event as
/// `POST /v1/interactions/events` applies it, a named event as
/// `POST /v1/interactions/{id}/events/{event}` delivers it.
async fn apply(state: &AppState, tenant: &str, action: Action) -> Result<Applied, ApiError> {
    let kind = action.kind();
    match action {
        Action::Event(event) => {
            crate::interactions::require_live_plan(state, tenant, &event)?;
            let interaction = event.interaction().to_owned();
            let outcome = state
                .engine()
                .on_event(tenant, event)
                .await
                .map_err(crate::interactions::flow_failed)?;
            match outcome {
                Ok(EventAccepted::Applied(outcome)) => Ok(Applied {
                    kind,
                    interaction,
                    status: json!(outcome.interaction.status)
                        .as_str()
                        .map(str::to_owned),
                    runs: outcome.runs.into_iter().map(|r| r.id).collect(),
                    woken: Vec::new(),
                    held_until_ms: None,
                }),
                // The platform delivers out of order: an event before its interaction's
                // start is held by the engine and applied after the start (202).
                Ok(EventAccepted::Held(held)) => Ok(Applied {
                    kind,
                    interaction,
                    status: Some("held".into()),
                    runs: Vec::new(),
                    woken: Vec::new(),
                    held_until_ms: Some(held.expires_at_ms),
                }),
                // Only when the engine could not hold it: refused so that it is delivered
                // again (EventBridge retries a 409; a start arriving meanwhile makes the
                // next attempt apply).
                Err(EventError::Unknown(id)) => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "interaction-not-started",
                    format!(
                        "interaction `{id}` has not been started: its start event has not \
                         arrived yet; deliver this event again after it"
                    ),
                )),
                // A late event for an interaction that has ended (an agent's join delivered
                // after the end) changes nothing, and delivering it again never would:
                // acknowledged, so the platform stops retrying it.
                Err(EventError::Completed(_)) => Ok(Applied {
                    kind,
                    interaction,
                    status: Some("completed".into()),
                    runs: Vec::new(),
                    woken: Vec::new(),
                    held_until_ms: None,
                }),
                // Retrying cannot mend a start that contradicts the first: not a 409, which
                // EventBridge would retry for a day.
                Err(conflict @ EventError::Conflict(..)) => Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "interaction-conflict",
                    conflict.to_string(),
                )),
                Err(refused) => Err(crate::interactions::event_refused(refused)),
            }
        }
        Action::Named {
            interaction,
            event,
            payload,
            data,
        } => {
            let data: Values = data
                .iter()
                .map(|(name, value)| (name.clone(), Value::from_json(value)))
                .collect();
            let woken = state
                .engine()
                .deliver_with(tenant, &interaction, &event, payload, data)
                .await
                .map_err(crate::interactions::flow_failed)?
                .map_err(crate::interactions::event_refused)?;
            Ok(Applied {
                kind,
                interaction,
                status: None,
                runs: Vec::new(),
                woken: woken.woken,
                held_until_ms: None,
            })
        }
    }
}
