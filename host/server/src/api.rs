//! The handlers. Each tenant handler takes [`Tenant`] (from the token) and passes it to
//! every store read; nothing here reads a tenant from the path or the body.

use axum::Json as Reply;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use coda_flow::{EventError, FlowError, InteractionEvent, SetPostFlow};
use coda_plan::{Format, MemoryCatalog, Plan, Problem};
use coda_store::{InteractionRecord, NewToken, RunRecord, StepRecord};
use coda_types::names::{NameKind, check_name};
use coda_types::time::now_ms;
use coda_types::values_json;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::error::{JsonBody, PathArgs, body_bytes};
use crate::{ApiError, AppState, Operator, Tenant, hash_token, new_token};

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)))]
pub async fn healthz() -> Reply<Json> {
    Reply(json!({ "status": "ok" }))
}

/// Ready when the database answers a read.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "Ready (503 when its database is not)", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store().operator_token_hash() {
        Ok(_) => Reply(json!({ "status": "ready" })).into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the database does not answer: {e}"),
        )
        .into_response(),
    }
}

pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found("no-route", format!("no endpoint {method} {}", uri.path()))
}

pub async fn no_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{} does not take {method}", uri.path()),
    )
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    id: String,
}

#[utoipa::path(post, path = "/v1/operator/tenants", request_body(content = Object, content_type = "application/json", description = "The new tenant: `{\"id\"}`"), responses((status = 200, description = "Created", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("operator" = [])))]
pub async fn create_tenant(
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
        Reply(json!({ "tenant": body.id, "token_id": token_id, "token": secret })),
    )
        .into_response())
}

#[utoipa::path(post, path = "/v1/operator/tenants/{tenant}/tokens", params(("tenant" = String, Path, description = "tenant")), responses((status = 200, description = "A new token, shown once", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("operator" = [])))]
pub async fn create_token(
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
        Reply(json!({ "tenant": tenant, "token_id": token_id, "token": secret })),
    )
        .into_response())
}

fn unknown_tenant(tenant: &str) -> ApiError {
    ApiError::not_found("unknown-tenant", format!("tenant `{tenant}` not found"))
}

#[utoipa::path(delete, path = "/v1/operator/tenants/{tenant}/tokens/{token_id}", params(("tenant" = String, Path, description = "tenant"), ("token_id" = String, Path, description = "token_id")), responses((status = 200, description = "Revoked", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("operator" = [])))]
pub async fn revoke_token(
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

/// The format a plan body is in: from its Content-Type, else sniffed from its first
/// character.
fn plan_format(headers: &HeaderMap, text: &str) -> Format {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.contains("yaml") {
        Format::Yaml
    } else if content_type.contains("json") {
        Format::Json
    } else {
        Format::detect(text)
    }
}

/// The catalog a tenant's plan is validated against: the built-in applets, the tenant's
/// uploaded ones that are not retired, and the tenant's own plans (never another tenant's).
fn catalog(state: &AppState, tenant: &str) -> Result<MemoryCatalog, ApiError> {
    let mut catalog = MemoryCatalog::new();
    for info in crate::applets::usable_applets(state, tenant)? {
        catalog.insert_applet(info);
    }
    for plan in state.store().latest_plans(tenant)? {
        // A stored plan was valid when published; one that no longer deserializes is
        // simply not offered as a target.
        if let Ok(stored) = serde_json::from_value::<Plan>(plan.body) {
            catalog.insert_plan(plan.name, stored.plan_type);
        }
    }
    Ok(catalog)
}

/// The plan a request's body holds, parsed and validated for `tenant` exactly as publishing
/// it would (`POST /v1/plans/validate` and `PUT /v1/plans/{name}` share this, so that a plan
/// that validates publishes). `published_as` is the name in the path of a publish.
pub(crate) async fn checked_plan(
    state: &AppState,
    tenant: &str,
    published_as: Option<&str>,
    request: Request,
) -> Result<Plan, ApiError> {
    let headers = request.headers().clone();
    let bytes = body_bytes(request, state).await?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ApiError::bad_request("invalid-body", format!("the plan is not UTF-8: {e}"))
    })?;
    let plan =
        coda_plan::parse_as(text, plan_format(&headers, text)).map_err(ApiError::invalid_plan)?;
    if let Some(name) = published_as
        && plan.name != name
    {
        return Err(ApiError::invalid_plan(vec![Problem {
            node: None,
            field: "name".into(),
            message: format!(
                "the plan is named `{}` but is published as `{name}`",
                plan.name
            ),
        }]));
    }
    let mut catalog = catalog(state, tenant)?;
    // The plan may name itself (a loop through a route, its own type for the checks).
    catalog.insert_plan(&plan.name, plan.plan_type);
    if let Err(problems) = coda_plan::validate(&plan, &catalog) {
        let problems = crate::applets::naming_retired(state, tenant, &plan, problems)?;
        return Err(ApiError::invalid_plan(problems));
    }
    crate::grants::check_plan_grants(state, tenant, &plan, &catalog)?;
    Ok(plan)
}

#[utoipa::path(put, path = "/v1/plans/{name}", params(("name" = String, Path, description = "name")), request_body(content = String, content_type = "application/yaml", description = "A plan, YAML or JSON text"), responses((status = 200, description = "Published", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
pub async fn put_plan(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let plan = checked_plan(&state, &tenant, Some(&name), request).await?;
    let body = serde_json::to_value(&plan).map_err(ApiError::internal)?;
    let version = state
        .store()
        .publish_plan(&tenant, &plan.name, &body, now_ms())
        .await?;
    Ok((
        StatusCode::CREATED,
        Reply(json!({ "plan": plan.name, "version": version })),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/plans", responses((status = 200, description = "The tenant's plans", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
pub async fn list_plans(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<Reply<Json>, ApiError> {
    let plans: Vec<Json> = state
        .store()
        .latest_plans(&tenant)?
        .into_iter()
        .map(|p| {
            json!({
                "name": p.name,
                "version": p.version,
                "type": p.body.get("type"),
                "created_at_ms": p.created_at_ms,
            })
        })
        .collect();
    Ok(Reply(json!({ "plans": plans })))
}

fn plan_answer(
    state: &AppState,
    tenant: &str,
    name: &str,
    version: Option<u32>,
    asked: Option<&str>,
) -> Result<Reply<Json>, ApiError> {
    match state.store().plan(tenant, name, version)? {
        Some((version, body)) => Ok(Reply(
            json!({ "plan": name, "version": version, "body": body }),
        )),
        None => Err(ApiError::not_found(
            "unknown-plan",
            match asked {
                Some(v) => format!("plan `{name}` version `{v}` not found"),
                None => format!("plan `{name}` not found"),
            },
        )),
    }
}

#[utoipa::path(get, path = "/v1/plans/{name}", params(("name" = String, Path, description = "name")), responses((status = 200, description = "The plan's current version", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
pub async fn get_plan(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
) -> Result<Reply<Json>, ApiError> {
    plan_answer(&state, &tenant, &name, None, None)
}

#[utoipa::path(get, path = "/v1/plans/{name}/versions/{version}", params(("name" = String, Path, description = "name"), ("version" = u32, Path, description = "version")), responses((status = 200, description = "One version of a plan", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
pub async fn get_plan_version(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs((name, version)): PathArgs<(String, String)>,
) -> Result<Reply<Json>, ApiError> {
    // A version that is not a number is a version that does not exist: the same 404.
    match version.parse::<u32>() {
        Ok(v) if v > 0 => plan_answer(&state, &tenant, &name, Some(v), Some(&version)),
        _ => Err(ApiError::not_found(
            "unknown-plan",
            format!("plan `{name}` version `{version}` not found"),
        )),
    }
}

#[utoipa::path(post, path = "/v1/interactions/events", request_body(content = Object, content_type = "application/json", description = "An interaction event"), responses((status = 200, description = "Recorded; the runs it started", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
pub async fn post_event(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    JsonBody(event): JsonBody<InteractionEvent>,
) -> Result<Reply<Json>, ApiError> {
    // The live plan must exist when the interaction starts: found missing only at its end,
    // the interaction would be stored and its post-interaction process silently lost.
    if let InteractionEvent::Started {
        plan: Some(plan), ..
    } = &event
        && state.store().plan(&tenant, plan, None)?.is_none()
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-plan",
            format!("plan `{plan}` not found"),
        ));
    }
    let outcome = state
        .engine()
        .on_event(&tenant, event)
        .await
        .map_err(flow_failed)?;
    match outcome {
        Ok(outcome) => Ok(Reply(json!({
            "interaction": outcome.interaction.id,
            "status": outcome.interaction.status,
            "runs": outcome.runs.iter().map(|r| &r.id).collect::<Vec<_>>(),
        }))),
        Err(refused) => Err(event_refused(refused)),
    }
}

/// An event or a change the interaction's state refuses.
fn event_refused(refused: EventError) -> ApiError {
    match &refused {
        EventError::Unknown(_) => ApiError::not_found("unknown-interaction", refused.to_string()),
        EventError::Completed(_) => ApiError::new(
            StatusCode::CONFLICT,
            "interaction-completed",
            refused.to_string(),
        ),
        EventError::Conflict(..) => ApiError::new(
            StatusCode::CONFLICT,
            "interaction-conflict",
            refused.to_string(),
        ),
        EventError::InvocationData(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-invocation-data",
            refused.to_string(),
        ),
        EventError::QueueFull(full) => ApiError::queue_full(full),
        EventError::InvalidName(_) => ApiError::bad_request("invalid-name", refused.to_string()),
    }
}

/// The engine's failure: a plan that is not there is the request's (422), anything else
/// the host's.
fn flow_failed(e: FlowError) -> ApiError {
    match e {
        FlowError::PlanNotFound { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-plan",
            e.to_string(),
        ),
        e => ApiError::from(e),
    }
}

pub(crate) fn unknown_interaction(id: &str) -> ApiError {
    event_refused(EventError::Unknown(id.to_owned()))
}

pub(crate) fn interaction_json(record: &InteractionRecord) -> Json {
    json!({
        "id": record.id,
        "channel": record.channel,
        "plan": record.plan,
        "status": record.status,
        "present": record.present,
        "agent_reached": record.agent_reached,
        "data": values_json(&record.data),
        "post_flow": record.post_flow,
        "post_flow_fired": record.post_flow_fired,
        "updated_at_ms": record.updated_at_ms,
        "skill": record.skill,
        "agent": record.agent,
        "completed_by": record.completed_by,
        "completed_at_ms": record.completed_at_ms,
        "details": record.details,
        "follow_up": record.follow_up,
        "post_contact": record.post_contact,
        "disposition": record.disposition,
    })
}

#[utoipa::path(get, path = "/v1/interactions/{id}", params(("id" = String, Path, description = "id")), responses((status = 200, description = "The interaction", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
pub async fn get_interaction(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<Reply<Json>, ApiError> {
    match state.store().interaction(&tenant, &id)? {
        Some(record) => Ok(Reply(interaction_json(&record))),
        None => Err(unknown_interaction(&id)),
    }
}

/// Sets or replaces the post-flow action of a live interaction.
#[utoipa::path(put, path = "/v1/interactions/{id}/post-flow", params(("id" = String, Path, description = "id")), request_body(content = Object, content_type = "application/json", description = "The post-flow action"), responses((status = 200, description = "Set", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
pub async fn put_post_flow(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
    JsonBody(action): JsonBody<SetPostFlow>,
) -> Result<Reply<Json>, ApiError> {
    // The interaction first: another tenant's is a 404 whatever plan the action names.
    if state.store().interaction(&tenant, &id)?.is_none() {
        return Err(unknown_interaction(&id));
    }
    let record = state
        .engine()
        .set_post_flow_with(&tenant, &id, Some(action))
        .await
        .map_err(flow_failed)?
        .map_err(event_refused)?;
    Ok(Reply(interaction_json(&record)))
}

#[utoipa::path(delete, path = "/v1/interactions/{id}/post-flow", params(("id" = String, Path, description = "id")), responses((status = 200, description = "Cleared", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
pub async fn delete_post_flow(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<StatusCode, ApiError> {
    state
        .engine()
        .set_post_flow_with(&tenant, &id, None)
        .await
        .map_err(flow_failed)?
        .map_err(event_refused)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delivers a named event (an agent's disposition, a survey reply) to the interaction's
/// runs waiting for it; the body, any JSON, is their data source `Event`.
#[utoipa::path(post, path = "/v1/interactions/{id}/events/{event}", params(("id" = String, Path, description = "id"), ("event" = String, Path, description = "event")), request_body(content = Object, content_type = "application/json", description = "Any JSON: the waiting runs' data source `Event` (may be empty)"), responses((status = 200, description = "The runs woken", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
pub async fn deliver_event(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs((id, event)): PathArgs<(String, String)>,
    request: Request,
) -> Result<Reply<Json>, ApiError> {
    // Both become store keys and are echoed back: the naming rule, before anything else.
    crate::error::check_name(NameKind::Interaction, &id)?;
    crate::error::check_name(NameKind::Event, &event)?;
    let bytes = body_bytes(request, &state).await?;
    let payload: Json = if bytes.iter().all(u8::is_ascii_whitespace) {
        Json::Null
    } else {
        crate::error::parse_json(&bytes)?
    };
    // Woken runs are found by tenant already; this makes an interaction that is another
    // tenant's (or nobody's) a 404 rather than a quiet "nothing woken".
    if state.store().interaction(&tenant, &id)?.is_none() {
        return Err(unknown_interaction(&id));
    }
    let woken = state
        .engine()
        .deliver(&tenant, &id, &event, payload)
        .await
        .map_err(flow_failed)?;
    Ok(Reply(
        json!({ "interaction": id, "event": event, "woken": woken }),
    ))
}

pub(crate) fn run_json(run: &RunRecord) -> Json {
    json!({
        "id": run.id,
        "plan": run.plan,
        "plan_version": run.plan_version,
        "interaction": run.interaction,
        "status": run.status,
        "node": run.node,
        "attempt": run.attempt,
        "due_at_ms": run.due_at_ms,
        "wait": run.wait,
        "created_at_ms": run.created_at_ms,
        "updated_at_ms": run.updated_at_ms,
    })
}

#[utoipa::path(get, path = "/v1/runs/{id}", params(("id" = String, Path, description = "id")), responses((status = 200, description = "The run with its journal", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
pub async fn get_run(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<Reply<Json>, ApiError> {
    let store = state.store();
    let Some(run) = store.run(&tenant, &id)? else {
        return Err(unknown_run(&id));
    };
    let journal = store.journal(&tenant, &id)?;
    // `effects` takes no tenant: the run was found under this tenant just above.
    let effects = store.effects(&id, None)?;
    let mut answer = run_json(&run);
    answer["data"] = values_json(&run.data);
    answer["journal"] = journal.iter().map(step_json).collect();
    answer["effects"] = serde_json::to_value(&effects).unwrap_or(Json::Null);
    Ok(Reply(answer))
}

pub(crate) fn unknown_run(id: &str) -> ApiError {
    ApiError::not_found("unknown-run", format!("run `{id}` not found"))
}

/// A journal step as the API shows it (in a run, and in its live tail).
pub(crate) fn step_json(step: &StepRecord) -> Json {
    let mut json = serde_json::to_value(step).unwrap_or(Json::Null);
    json["data_changes"] = values_json(&step.data_changes);
    json
}
