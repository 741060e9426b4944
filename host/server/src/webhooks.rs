//! Outbound webhooks: a tenant's subscriptions, their delivery logs and redeliveries.
//!
//! - `POST /v1/webhooks` (the secret is in this answer only), `GET /v1/webhooks`,
//!   `GET|PUT|DELETE /v1/webhooks/{id}`, `POST /v1/webhooks/{id}/rotate` (a new secret; the
//!   old one keeps signing for a window);
//! - `GET /v1/webhooks/{id}/deliveries` (newest first, by page),
//!   `POST /v1/webhooks/{id}/deliveries/{delivery}/redeliver`,
//!   `POST /v1/webhooks/{id}/redeliver` (every failed one since a time).
//!
//! What an event is and how it is signed and sent is `coda-webhooks`'; this module checks,
//! stores and answers. Which addresses a URL may reach is decided where the http
//! capability's are (`coda_capabilities::grants`): a URL whose host is an address the
//! tenant may not reach is refused here at once, and every address a name resolves to is
//! checked again at each delivery.

use axum::Json as Reply;
use axum::extract::State;
use axum::http::StatusCode;
use coda_store::{
    DeliveryRecord, NewSubscription, SubscriptionPatch, SubscriptionWrite, WebhookSubscription,
};
use coda_types::names::{NameKind, check_name};
use coda_types::time::now_ms;
use coda_webhooks::EventKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{JsonBody, PathArgs, QueryArgs};
use crate::{ApiError, AppState, Tenant};

/// The longest URL taken.
pub const MAX_URL_LEN: usize = 2048;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, put_webhook, delete_webhook))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_deliveries))
        .routes(routes!(redeliver_one))
        .routes(routes!(redeliver_failed))
}

/// A subscription: where a tenant's run events go. Its secret is never shown again after
/// the answer that made it.
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    id: String,
    url: String,
    /// The event kinds it receives.
    events: Vec<String>,
    /// Only runs of this plan; null: every plan.
    plan: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    /// While a rotation's window lasts: until when the previous secret signs too.
    previous_secret_until_ms: Option<i64>,
}

impl From<WebhookSubscription> for WebhookView {
    fn from(s: WebhookSubscription) -> Self {
        WebhookView {
            id: s.id,
            url: s.url,
            events: s.events,
            plan: s.plan,
            created_at_ms: s.created_at_ms,
            updated_at_ms: s.updated_at_ms,
            previous_secret_until_ms: s.previous_secret_until_ms,
        }
    }
}

/// A subscription with its signing secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecret {
    webhook: WebhookView,
    /// `whsec_` and base64: give it to your Standard Webhooks library to verify.
    secret: String,
}

/// A page of subscriptions, by id.
#[derive(Serialize, ToSchema)]
pub struct WebhookPage {
    webhooks: Vec<WebhookView>,
    /// Pass as `after` for the next page; none on the last.
    next: Option<String>,
}

/// Where to send which events.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// An `http` or `https` URL.
    #[schema(min_length = 1, max_length = 2048)]
    url: String,
    /// One or more of `run.started`, `step.finished`, `step.limit_hit`, `run.done`,
    /// `run.failed`, `run.cancelled`.
    #[schema(min_items = 1)]
    events: Vec<String>,
    /// Only runs of this plan (by the plan a step ran in).
    plan: Option<String>,
}

/// A rotation: how long the secret it replaces keeps signing too.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// Milliseconds (default a day, at most a week; 0 ends the old secret now).
    #[schema(minimum = 0, maximum = 604800000)]
    previous_valid_for_ms: Option<u64>,
}

/// One delivery of an event to a subscription, as its log shows it.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    /// The `webhook-id` it is sent with, the same on every attempt.
    id: String,
    run_id: String,
    /// Its place among its run's events.
    position: u64,
    /// The CloudEvents type (`coda.run.done`, ...).
    event_type: String,
    /// `pending`, `delivered` or `failed`.
    status: String,
    attempts: u32,
    next_at_ms: Option<i64>,
    /// The receiver's last HTTP status, if it answered.
    last_status: Option<u16>,
    /// Why the last attempt failed.
    last_error: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    delivered_at_ms: Option<i64>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> Self {
        DeliveryView {
            id: d.id,
            run_id: d.run_id,
            position: d.position,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            next_at_ms: d.next_at_ms,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at_ms: d.created_at_ms,
            updated_at_ms: d.updated_at_ms,
            delivered_at_ms: d.delivered_at_ms,
        }
    }
}

/// A page of a subscription's deliveries, newest first.
#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    deliveries: Vec<DeliveryView>,
    /// Pass as `after` for the next page; none on the last.
    next: Option<String>,
}

/// Which failed deliveries to send again.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeliverBody {
    /// Those made at or after: RFC 3339, a date, ms since the epoch, or a duration ago
    /// (`2h`).
    #[schema(
        pattern = r"^(?:[0-9]{1,13}|[1-9][0-9]{0,3}[smhdw]|(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,3})?Z)?)$"
    )]
    since: String,
}

/// How many failed deliveries were queued again.
#[derive(Serialize, ToSchema)]
pub struct Redelivered {
    queued: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    after: Option<String>,
    limit: Option<usize>,
}

fn unknown_webhook(id: &str) -> ApiError {
    ApiError::not_found("unknown-webhook", format!("no webhook `{id}`"))
}

fn invalid(kind: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, kind, message)
}

fn secrets_key(state: &AppState) -> Result<&coda_store::SecretsKey, ApiError> {
    state.secrets_key().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-secrets-key",
            "this server has no key to seal webhook secrets with",
        )
    })
}

/// The body's fields as stored, each checked: a URL the tenant may send to, known event
/// kinds (each once), a plan name.
fn checked(
    state: &AppState,
    tenant: &str,
    body: WebhookBody,
) -> Result<(String, Vec<String>, Option<String>), ApiError> {
    if body.url.len() > MAX_URL_LEN {
        return Err(invalid(
            "invalid-url",
            format!("`url` is longer than {MAX_URL_LEN} characters"),
        ));
    }
    let url = url::Url::parse(&body.url)
        .map_err(|e| invalid("invalid-url", format!("`url` does not parse: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(
            "invalid-url",
            "`url` must be an http or https URL with a host",
        ));
    }
    let ceiling = crate::grants::tenant_ceiling(state, tenant)?;
    let allowed = coda_webhooks::allowed_ranges(tenant, ceiling);
    coda_capabilities::outbound::check_literal(&url, &allowed)
        .map_err(|why| invalid("address-not-allowed", format!("`url`: {why}")))?;
    if body.events.is_empty() {
        return Err(invalid("invalid-events", "`events` names no event"));
    }
    let mut events = Vec::new();
    for name in body.events {
        if EventKind::parse(&name).is_none() {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(invalid(
                "invalid-events",
                format!(
                    "`events`: `{name}` is not an event; they are {}",
                    known.join(", ")
                ),
            ));
        }
        if !events.contains(&name) {
            events.push(name);
        }
    }
    if let Some(plan) = &body.plan {
        check_name(NameKind::Plan, plan)
            .map_err(|e| invalid("invalid-plan-name", format!("`plan`: {e}")))?;
    }
    Ok((body.url, events, body.plan))
}

#[utoipa::path(post, path = "/v1/webhooks", request_body = WebhookBody, responses((status = 201, description = "Subscribed; the secret is shown this once", body = WebhookWithSecret)), security(("tenant" = [])))]
async fn create_webhook(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<WebhookBody>,
) -> Result<(StatusCode, Reply<WebhookWithSecret>), ApiError> {
    let (url, events, plan) = checked(&state, &tenant, body)?;
    let key = secrets_key(&state)?;
    let secret = coda_webhooks::signing::new_secret().map_err(ApiError::internal)?;
    let id = crate::new_token("wh_")
        .map_err(ApiError::internal)?
        .chars()
        .take(3 + 16)
        .collect();
    let new = NewSubscription {
        id,
        url,
        events,
        plan,
        secret: secret.clone(),
    };
    let max = coda_webhooks::MAX_SUBSCRIPTIONS_PER_TENANT;
    match state
        .store()
        .create_webhook(&tenant, new, key, max, now_ms())
        .await?
    {
        SubscriptionWrite::Created(webhook) => Ok((
            StatusCode::CREATED,
            Reply(WebhookWithSecret {
                webhook: webhook.into(),
                secret,
            }),
        )),
        SubscriptionWrite::TooMany { max } => Err(invalid(
            "too-many-webhooks",
            format!("a tenant has at most {max} webhooks"),
        )),
    }
}

#[utoipa::path(get, path = "/v1/webhooks", params(("after" = Option<String>, Query, description = "the last webhook id of the previous page (`next` of the previous page)"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "the most webhooks on the page (default 100)")), responses((status = 200, description = "A page of the tenant's webhooks, by id", body = WebhookPage)), security(("tenant" = [])))]
async fn list_webhooks(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    QueryArgs(query): QueryArgs<PageQuery>,
) -> Result<Reply<WebhookPage>, ApiError> {
    let limit = crate::paging::page_limit(query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let webhooks = state
        .store()
        .webhooks(&tenant, query.after.as_deref(), limit, now_ms())?;
    let next = (webhooks.len() == limit)
        .then(|| webhooks.last().map(|w| w.id.clone()))
        .flatten();
    Ok(Reply(WebhookPage {
        webhooks: webhooks.into_iter().map(Into::into).collect(),
        next,
    }))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", params(("id" = String, Path, description = "the webhook's id")), responses((status = 200, description = "The webhook", body = WebhookView)), security(("tenant" = [])))]
async fn get_webhook(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<Reply<WebhookView>, ApiError> {
    match state.store().webhook(&tenant, &id, now_ms())? {
        Some(webhook) => Ok(Reply(webhook.into())),
        None => Err(unknown_webhook(&id)),
    }
}

#[utoipa::path(put, path = "/v1/webhooks/{id}", params(("id" = String, Path, description = "the webhook's id")), request_body = WebhookBody, responses((status = 200, description = "Changed (its secret is kept)", body = WebhookView)), security(("tenant" = [])))]
async fn put_webhook(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
    JsonBody(body): JsonBody<WebhookBody>,
) -> Result<Reply<WebhookView>, ApiError> {
    let (url, events, plan) = checked(&state, &tenant, body)?;
    let patch = SubscriptionPatch {
        url: Some(url),
        events: Some(events),
        plan: Some(plan),
    };
    match state
        .store()
        .update_webhook(&tenant, &id, patch, now_ms())
        .await?
    {
        Some(webhook) => Ok(Reply(webhook.into())),
        None => Err(unknown_webhook(&id)),
    }
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", params(("id" = String, Path, description = "the webhook's id")), responses((status = 204, description = "Deleted, with its deliveries")), security(("tenant" = [])))]
async fn delete_webhook(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<StatusCode, ApiError> {
    if state.store().delete_webhook(&tenant, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_webhook(&id))
    }
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate", params(("id" = String, Path, description = "the webhook's id")), request_body = RotateBody, responses((status = 200, description = "A new secret, shown this once; the previous one signs too until `previous_secret_until_ms`", body = WebhookWithSecret)), security(("tenant" = [])))]
async fn rotate_secret(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
    JsonBody(body): JsonBody<RotateBody>,
) -> Result<Reply<WebhookWithSecret>, ApiError> {
    let window = match body.previous_valid_for_ms {
        None => coda_webhooks::DEFAULT_ROTATION_WINDOW_MS,
        Some(ms) => i64::try_from(ms)
            .ok()
            .filter(|ms| *ms <= coda_webhooks::MAX_ROTATION_WINDOW_MS)
            .ok_or_else(|| {
                invalid(
                    "invalid-window",
                    format!(
                        "`previous_valid_for_ms` is at most {}",
                        coda_webhooks::MAX_ROTATION_WINDOW_MS
                    ),
                )
            })?,
    };
    let key = secrets_key(&state)?;
    let secret = coda_webhooks::signing::new_secret().map_err(ApiError::internal)?;
    let now = now_ms();
    match state
        .store()
        .rotate_webhook_secret(&tenant, &id, &secret, key, now + window, now)
        .await?
    {
        Some(webhook) => Ok(Reply(WebhookWithSecret {
            webhook: webhook.into(),
            secret,
        })),
        None => Err(unknown_webhook(&id)),
    }
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", params(("id" = String, Path, description = "the webhook's id"), ("after" = Option<String>, Query, description = "the last delivery id of the previous page (`next` of the previous page)"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "the most deliveries on the page (default 100)")), responses((status = 200, description = "A page of the webhook's deliveries, newest first", body = DeliveryPage)), security(("tenant" = [])))]
async fn list_deliveries(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
    QueryArgs(query): QueryArgs<PageQuery>,
) -> Result<Reply<DeliveryPage>, ApiError> {
    let limit = crate::paging::page_limit(query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let Some(deliveries) =
        state
            .store()
            .webhook_deliveries(&tenant, &id, query.after.as_deref(), limit)?
    else {
        return Err(unknown_webhook(&id));
    };
    let next = (deliveries.len() == limit)
        .then(|| deliveries.last().map(|d| d.id.clone()))
        .flatten();
    Ok(Reply(DeliveryPage {
        deliveries: deliveries.into_iter().map(Into::into).collect(),
        next,
    }))
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery}/redeliver", params(("id" = String, Path, description = "the webhook's id"), ("delivery" = String, Path, description = "the delivery's id (its `webhook-id`)")), responses((status = 202, description = "Queued to be sent again now, with a new retry window", body = DeliveryView)), security(("tenant" = [])))]
async fn redeliver_one(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs((id, delivery)): PathArgs<(String, String)>,
) -> Result<(StatusCode, Reply<DeliveryView>), ApiError> {
    match state
        .store()
        .redeliver(&tenant, &id, &delivery, now_ms())
        .await?
    {
        Some(delivery) => Ok((StatusCode::ACCEPTED, Reply(delivery.into()))),
        None => Err(ApiError::not_found(
            "unknown-delivery",
            format!("webhook `{id}` has no delivery `{delivery}`"),
        )),
    }
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/redeliver", params(("id" = String, Path, description = "the webhook's id")), request_body = RedeliverBody, responses((status = 202, description = "Every failed delivery made since then, queued to be sent again", body = Redelivered)), security(("tenant" = [])))]
async fn redeliver_failed(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
    JsonBody(body): JsonBody<RedeliverBody>,
) -> Result<(StatusCode, Reply<Redelivered>), ApiError> {
    let now = now_ms();
    let since = coda_types::time::parse_time("since", &body.since, now)
        .map_err(|e| ApiError::bad_request("invalid-since", e.to_string()))?;
    match state
        .store()
        .redeliver_failed(&tenant, &id, since, now)
        .await?
    {
        Some(queued) => Ok((StatusCode::ACCEPTED, Reply(Redelivered { queued }))),
        None => Err(unknown_webhook(&id)),
    }
}
