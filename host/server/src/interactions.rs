//! Completed interactions and post-contact work: editing an interaction's details (with
//! its audit trail), cloning it into a new outbound one, each skill's post-contact work,
//! a submitted disposition, and an agent's unavailability.
//!
//! Every handler takes the tenant from the token ([`Caller`] also names the token, the
//! "who" of an audit entry and the assignee of a clone); another tenant's interaction,
//! skill or agent answers 404 exactly as a missing one.

use axum::Json as Reply;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coda_flow::{
    CloneRequest, CustomerFields, DetailsPatch, DispositionSubmission, EventAccepted, EventError,
    FlowError, InteractionEvent, NOT_EDITABLE, SetPostFlow, WorkError,
};
use coda_store::{
    Channel, DispositionOption, InteractionFilter, InteractionRecord, InteractionStatus,
    InteractionSummary, PostContact,
};
use coda_types::names::NameKind;
use coda_types::values_json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Caller;
use crate::error::{JsonBody, PathArgs, QueryArgs, body_bytes, parse_json, time_window};
use crate::paging::{list_order, page_limit};
use crate::{ApiError, AppState, Tenant};

/// The default and the largest page of `GET /v1/interactions`.
const DEFAULT_INTERACTIONS_PAGE: usize = 100;
const MAX_INTERACTIONS_PAGE: usize = 1000;

/// The longest wrap-up: an hour.
const MAX_WRAP_UP_SECONDS: u32 = 3600;
/// The most dispositions a skill offers.
const MAX_DISPOSITIONS: usize = 100;
/// The longest skill name, disposition or unavailable code, and label.
const MAX_NAME: usize = 128;
const MAX_LABEL: usize = 256;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_event))
        .routes(routes!(list_interactions))
        .routes(routes!(get_interaction))
        .routes(routes!(put_post_flow, delete_post_flow))
        .routes(routes!(deliver_event))
        .routes(routes!(patch_interaction))
        .routes(routes!(get_audit))
        .routes(routes!(clone_interaction))
        .routes(routes!(submit_disposition))
        .routes(routes!(put_post_contact, get_post_contact))
        .routes(routes!(get_agent))
}

fn refused(refused: WorkError) -> ApiError {
    let message = refused.to_string();
    match refused {
        WorkError::Unknown(id) => unknown_interaction(&id),
        WorkError::Active(_) => ApiError::new(StatusCode::CONFLICT, "interaction-active", message),
        WorkError::Invalid { .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-field", message)
        }
        WorkError::NoDispositions { .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no-dispositions", message)
        }
        WorkError::UnknownDisposition { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-disposition",
            message,
        ),
        WorkError::AlreadyDispositioned { .. } => {
            ApiError::new(StatusCode::CONFLICT, "disposition-exists", message)
        }
        WorkError::EventsFull(full) => events_full(&full),
    }
}

/// An event that would be kept past a bound: 429, to be sent again later (once events
/// were taken or expired).
fn events_full(full: &coda_store::EventsFull) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "events-full",
        full.to_string(),
    )
}

fn internal(e: coda_flow::FlowError) -> ApiError {
    ApiError::from(e)
}

/// A JSON value into `T`, a wrong type or an unknown field refused as a 400 naming the
/// field's path.
fn from_json<T: DeserializeOwned>(value: Json) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request("invalid-body", inner.to_string())
        } else {
            ApiError::bad_request("invalid-body", format!("at `{path}`: {inner}"))
        }
    })
}

/// `PATCH /v1/interactions/{id}`: a JSON merge patch of the editable details of a completed
/// interaction (subject, type, result, notes, customer, custom_fields).
#[utoipa::path(patch, path = "/v1/interactions/{id}", params(("id" = String, Path, pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$", description = "the interaction's id")), request_body = crate::openapi::bodies::DetailsPatch, responses((status = 200, description = "Edited", body = Interaction)), security(("tenant" = [])))]
async fn patch_interaction(
    caller: Caller,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
    request: Request,
) -> Result<Reply<Interaction>, ApiError> {
    let bytes = body_bytes(request, &state).await?;
    let body: serde_json::Map<String, Json> = parse_json(&bytes)?;
    // Who completed it and its activity are refused by name, not as merely unknown.
    if let Some(field) = body.keys().find(|k| NOT_EDITABLE.contains(&k.as_str())) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not-editable",
            format!(
                "`{field}` is not editable: who completed an interaction and its activity \
                 (channel, parties, events, timestamps, data sources) stay as they happened; \
                 the editable details are subject, type, result, notes, customer \
                 (name, phone, email) and custom_fields"
            ),
        ));
    }
    let patch: DetailsPatch = from_json(Json::Object(body))?;
    let (record, _) = state
        .engine()
        .edit_interaction(&caller.tenant, &id, &caller.token_id, patch)
        .await
        .map_err(internal)?
        .map_err(refused)?;
    Ok(Reply(interaction_json(&record)))
}

/// `GET /v1/interactions/{id}/audit`: every change to its details, oldest first.
#[utoipa::path(get, path = "/v1/interactions/{id}/audit", params(("id" = String, Path, pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$", description = "the interaction's id")), responses((status = 200, description = "The audit trail", body = Audit)), security(("tenant" = [])))]
async fn get_audit(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<Reply<Audit>, ApiError> {
    if state.store().interaction(&tenant, &id)?.is_none() {
        return Err(unknown_interaction(&id));
    }
    let audit = state.store().interaction_audit(&tenant, &id)?;
    let audit = match json!(audit) {
        Json::Array(entries) => entries,
        _ => Vec::new(),
    };
    Ok(Reply(Audit {
        interaction: id,
        audit,
    }))
}

/// The Clone Interaction form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloneBody {
    /// voice, sms, email or task.
    channel: Channel,
    queue: String,
    /// The original's when left out.
    #[serde(default)]
    subject: Option<String>,
    /// Changes to the customer prefilled from the original (`null` clears a field).
    #[serde(default)]
    customer: Option<CustomerFields>,
}

/// `POST /v1/interactions/{id}/clone`: a new active outbound interaction, assigned to the
/// caller. An `Idempotency-Key` header makes a repeated request answer the same clone.
#[utoipa::path(post, path = "/v1/interactions/{id}/clone", params(("id" = String, Path, pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$", description = "the interaction's id")), request_body = crate::openapi::bodies::CloneRequest, responses((status = 201, description = "Cloned", body = Interaction)), security(("tenant" = [])))]
async fn clone_interaction(
    caller: Caller,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CloneBody>,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= 255 => key.to_owned(),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid-header",
                    "Idempotency-Key: 1 to 255 characters of visible ASCII",
                ));
            }
        },
        None => crate::new_token("").map_err(ApiError::internal)?,
    };
    let request = CloneRequest {
        channel: body.channel,
        queue: body.queue,
        subject: body.subject,
        customer: body.customer,
        // Per token: one caller's key never finds another's clone.
        idempotency_key: format!("api/{}/{key}", caller.token_id),
    };
    let record = state
        .engine()
        .clone_interaction(&caller.tenant, &id, &caller.token_id, request)
        .await
        .map_err(internal)?
        .map_err(refused)?;
    Ok((StatusCode::CREATED, Reply(interaction_json(&record))).into_response())
}

/// `POST /v1/interactions/{id}/disposition`.
#[utoipa::path(post, path = "/v1/interactions/{id}/disposition", params(("id" = String, Path, pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$", description = "the interaction's id")), request_body = crate::openapi::bodies::Disposition, responses((status = 200, description = "Submitted", body = DispositionSubmitted)), security(("tenant" = [])))]
async fn submit_disposition(
    caller: Caller,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
    JsonBody(body): JsonBody<DispositionSubmission>,
) -> Result<Reply<DispositionSubmitted>, ApiError> {
    let (record, woken) = state
        .engine()
        .submit_disposition(&caller.tenant, &id, &caller.token_id, body)
        .await
        .map_err(internal)?
        .map_err(refused)?;
    Ok(Reply(DispositionSubmitted {
        interaction: record.id,
        disposition: json!(record.disposition),
        kept: woken.is_empty(),
        woken,
    }))
}

/// A skill's post-contact work: a timed wrap-up, or dispositions to submit.
#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    WrapUp,
    Dispositions,
}

/// A skill's post-contact work, flat so that every field's error names it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostContactBody {
    mode: Mode,
    #[serde(default)]
    seconds: Option<u32>,
    #[serde(default)]
    unavailable_code: Option<String>,
    #[serde(default)]
    dispositions: Option<Vec<DispositionBody>>,
}

/// One disposition a skill offers.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DispositionBody {
    code: String,
    label: String,
    #[serde(default)]
    amount: bool,
}

fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-post-contact",
        format!("`{field}`: {message}"),
    )
}

/// A name (skill, code) the API takes: 1 to 128 characters, no control characters, not
/// only spaces.
fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.len() > MAX_NAME || value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("`{value}` is not a name: 1 to {MAX_NAME} characters, no control characters"),
        ));
    }
    Ok(())
}

impl PostContactBody {
    fn validate(self) -> Result<PostContact, ApiError> {
        match self.mode {
            Mode::WrapUp => {
                if self.dispositions.is_some() {
                    return Err(invalid("dispositions", "only with mode `dispositions`"));
                }
                let seconds = self
                    .seconds
                    .ok_or_else(|| invalid("seconds", "wrap-up needs its length in seconds"))?;
                if !(1..=MAX_WRAP_UP_SECONDS).contains(&seconds) {
                    return Err(invalid(
                        "seconds",
                        format!("{seconds} is not between 1 and {MAX_WRAP_UP_SECONDS}"),
                    ));
                }
                let code = self.unavailable_code.ok_or_else(|| {
                    invalid(
                        "unavailable_code",
                        "wrap-up needs the unavailable code the agent is under",
                    )
                })?;
                check_name("unavailable_code", &code)?;
                Ok(PostContact::WrapUp {
                    seconds,
                    unavailable_code: code,
                })
            }
            Mode::Dispositions => {
                if self.seconds.is_some() {
                    return Err(invalid("seconds", "only with mode `wrap-up`"));
                }
                if self.unavailable_code.is_some() {
                    return Err(invalid("unavailable_code", "only with mode `wrap-up`"));
                }
                let list = self.dispositions.ok_or_else(|| {
                    invalid("dispositions", "dispositions mode needs the list to offer")
                })?;
                if list.is_empty() || list.len() > MAX_DISPOSITIONS {
                    return Err(invalid(
                        "dispositions",
                        format!(
                            "offers 1 to {MAX_DISPOSITIONS} dispositions, not {}",
                            list.len()
                        ),
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                let mut dispositions = Vec::with_capacity(list.len());
                for (i, d) in list.into_iter().enumerate() {
                    check_name(&format!("dispositions[{i}].code"), &d.code)?;
                    if d.label.trim().is_empty() || d.label.len() > MAX_LABEL {
                        return Err(invalid(
                            &format!("dispositions[{i}].label"),
                            format!("1 to {MAX_LABEL} characters"),
                        ));
                    }
                    if !seen.insert(d.code.clone()) {
                        return Err(invalid(
                            &format!("dispositions[{i}].code"),
                            format!("`{}` is listed twice", d.code),
                        ));
                    }
                    dispositions.push(DispositionOption {
                        code: d.code,
                        label: d.label,
                        amount: d.amount,
                    });
                }
                Ok(PostContact::Dispositions { dispositions })
            }
        }
    }
}

fn post_contact_json(skill: &str, config: &PostContact) -> PostContactAnswer {
    PostContactAnswer {
        skill: skill.to_owned(),
        config: match serde_json::to_value(config) {
            Ok(Json::Object(map)) => map,
            _ => serde_json::Map::new(),
        },
    }
}

/// `PUT /v1/skills/{skill}/post-contact`: automatic wrap-up or dispositions.
#[utoipa::path(put, path = "/v1/skills/{skill}/post-contact", params(("skill" = String, Path, pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$", description = "the skill's name")), request_body = PostContactBody, responses((status = 200, description = "Set", body = PostContactAnswer)), security(("tenant" = [])))]
async fn put_post_contact(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(skill): PathArgs<String>,
    JsonBody(body): JsonBody<PostContactBody>,
) -> Result<Reply<PostContactAnswer>, ApiError> {
    crate::error::check_name(coda_types::names::NameKind::Skill, &skill)?;
    let config = body.validate()?;
    state
        .store()
        .set_post_contact(&tenant, &skill, &config, state.engine().now_ms())
        .await?;
    Ok(Reply(post_contact_json(&skill, &config)))
}

/// `GET /v1/skills/{skill}/post-contact`.
#[utoipa::path(get, path = "/v1/skills/{skill}/post-contact", params(("skill" = String, Path, pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$", description = "the skill's name")), responses((status = 200, description = "The skill's post-contact work", body = PostContactAnswer)), security(("tenant" = [])))]
async fn get_post_contact(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(skill): PathArgs<String>,
) -> Result<Reply<PostContactAnswer>, ApiError> {
    match state.store().post_contact(&tenant, &skill)? {
        Some(config) => Ok(Reply(post_contact_json(&skill, &config))),
        None => Err(ApiError::not_found(
            "unknown-skill",
            format!("skill `{skill}` has no post-contact work set"),
        )),
    }
}

/// `GET /v1/agents/{agent}`: whether post-contact work keeps the agent unavailable, under
/// which code and until when (`until_ms` null: until a disposition is submitted).
#[utoipa::path(get, path = "/v1/agents/{agent}", params(("agent" = String, Path, pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$", description = "the agent's id")), responses((status = 200, description = "The agent", body = Agent)), security(("tenant" = [])))]
async fn get_agent(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(agent): PathArgs<String>,
) -> Result<Reply<Agent>, ApiError> {
    let Some(view) = state.engine().agent(&tenant, &agent).map_err(internal)? else {
        return Err(ApiError::not_found(
            "unknown-agent",
            format!("agent `{agent}` has no post-contact state"),
        ));
    };
    Ok(Reply(Agent {
        agent,
        state: if view.unavailable {
            "unavailable"
        } else {
            "available"
        },
        unavailable_code: view.state.unavailable_code,
        interaction: view.state.interaction,
        since_ms: view.state.since_ms,
        until_ms: view.state.until_ms,
    }))
}

#[utoipa::path(post, path = "/v1/interactions/events", request_body = crate::openapi::bodies::InteractionEvent, responses((status = 200, description = "Recorded; the runs it started", body = EventRecorded), (status = 202, description = "Held: its interaction has not started; it is applied after the start, in arrival order, or dropped at `held_until_ms`", body = EventRecorded)), security(("tenant" = [])))]
async fn post_event(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    JsonBody(event): JsonBody<InteractionEvent>,
) -> Result<axum::response::Response, ApiError> {
    require_live_plan(&state, &tenant, &event)?;
    let outcome = state
        .engine()
        .on_event(&tenant, event)
        .await
        .map_err(flow_failed)?;
    match outcome {
        Ok(EventAccepted::Applied(outcome)) => Ok(Reply(EventRecorded {
            status: json!(outcome.interaction.status),
            interaction: outcome.interaction.id,
            runs: outcome.runs.into_iter().map(|r| r.id).collect(),
            reconciled: outcome.reconciled,
            held_until_ms: None,
        })
        .into_response()),
        Ok(EventAccepted::Held(held)) => Ok((
            StatusCode::ACCEPTED,
            Reply(EventRecorded {
                interaction: held.interaction,
                status: json!("held"),
                runs: Vec::new(),
                reconciled: 0,
                held_until_ms: Some(held.expires_at_ms),
            }),
        )
            .into_response()),
        Err(refused) => Err(event_refused(refused)),
    }
}

/// An event or a change the interaction's state refuses.
pub(crate) fn event_refused(refused: EventError) -> ApiError {
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
        EventError::EventsFull(full) => events_full(full),
    }
}

/// The live plan a start names must exist when the interaction starts: found missing only
/// at its end, the interaction would be stored and its post-interaction process silently
/// lost. The events endpoint and platform intake both check through here.
pub(crate) fn require_live_plan(
    state: &AppState,
    tenant: &str,
    event: &InteractionEvent,
) -> Result<(), ApiError> {
    if let InteractionEvent::Started {
        plan: Some(plan), ..
    } = event
        && state.store().plan(tenant, plan, None)?.is_none()
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-plan",
            format!("plan `{plan}` not found"),
        ));
    }
    Ok(())
}

/// The engine's failure: a plan that is not there is the request's (422), anything else
/// the host's.
pub(crate) fn flow_failed(e: FlowError) -> ApiError {
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

/// An interaction: its state, parties, data sources, post-flow action, and once
/// completed its details, post-contact work and disposition.
#[derive(Serialize, ToSchema)]
pub struct Interaction {
    id: String,
    #[schema(value_type = crate::openapi::bodies::Channel)]
    channel: Json,
    /// The live plan.
    plan: Option<String>,
    /// `active` or `completed`.
    #[schema(value_type = String)]
    status: Json,
    /// The parties present now (`caller`, `agent`).
    #[schema(value_type = Vec<crate::openapi::bodies::Party>)]
    present: Json,
    agent_reached: bool,
    /// Its data sources, by name.
    data: serde_json::Map<String, Json>,
    /// `{target, action, plan, invocation_data}`, or null.
    post_flow: Json,
    post_flow_fired: bool,
    updated_at_ms: i64,
    skill: Option<String>,
    agent: Option<String>,
    /// Whose token completed it.
    completed_by: Option<String>,
    completed_at_ms: Option<i64>,
    /// Its editable details once completed (subject, type, result, notes, customer,
    /// custom_fields), or null.
    details: Json,
    /// The interaction it was cloned from, for a follow-up; or null.
    follow_up: Json,
    /// The post-contact work it began, or null.
    post_contact: Json,
    /// The submitted disposition, or null.
    disposition: Json,
}

pub(crate) fn interaction_json(record: &InteractionRecord) -> Interaction {
    Interaction {
        id: record.id.clone(),
        channel: json!(record.channel),
        plan: record.plan.clone(),
        status: json!(record.status),
        present: json!(record.present),
        agent_reached: record.agent_reached,
        data: match values_json(&record.data) {
            Json::Object(map) => map,
            _ => serde_json::Map::new(),
        },
        post_flow: json!(record.post_flow),
        post_flow_fired: record.post_flow_fired,
        updated_at_ms: record.updated_at_ms,
        skill: record.skill.clone(),
        agent: record.agent.clone(),
        completed_by: record.completed_by.clone(),
        completed_at_ms: record.completed_at_ms,
        details: json!(record.details),
        follow_up: json!(record.follow_up),
        post_contact: json!(record.post_contact),
        disposition: json!(record.disposition),
    }
}

/// An interaction's audit trail.
#[derive(Serialize, ToSchema)]
pub struct Audit {
    interaction: String,
    /// Every change to its details, oldest first: who, when, and each field's old and new
    /// value.
    audit: Vec<Json>,
}

/// A disposition submitted.
#[derive(Serialize, ToSchema)]
pub struct DispositionSubmitted {
    interaction: String,
    /// The disposition as recorded.
    disposition: Json,
    /// The runs waiting for it that it woke.
    woken: Vec<String>,
    /// True when no run was waiting for it: kept as the interaction's `disposition` event
    /// until a run's wait for it takes it, or it expires.
    kept: bool,
}

/// An agent's post-contact state.
#[derive(Serialize, ToSchema)]
pub struct Agent {
    agent: String,
    /// `available` or `unavailable`.
    state: &'static str,
    unavailable_code: String,
    interaction: String,
    since_ms: i64,
    /// Null: until a disposition is submitted.
    until_ms: Option<i64>,
}

/// An interaction event recorded: the interaction's status and the runs it started; or,
/// answered 202, held until its interaction starts.
#[derive(Serialize, ToSchema)]
pub struct EventRecorded {
    interaction: String,
    /// `active` or `completed`; `held` when the interaction has not started (202): the
    /// event is kept and applied right after the interaction's start, in arrival order.
    #[schema(value_type = String)]
    status: Json,
    runs: Vec<String>,
    /// For a start: how many events held for the interaction were applied after it (the
    /// runs they started are in `runs`).
    reconciled: usize,
    /// For a held event: when it is dropped if its interaction has not started by then (ms
    /// since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    held_until_ms: Option<i64>,
}

/// A named event delivered: stored with the interaction, and either taken by the runs
/// waiting for it (`woken`) or kept for a later wait (`kept`).
#[derive(Serialize, ToSchema)]
pub struct EventDelivered {
    interaction: String,
    event: String,
    /// The runs that were waiting for it: each took it and goes on.
    woken: Vec<String>,
    /// True when no run was waiting: the event is kept until a run's wait for it takes it
    /// (the oldest untaken event of the name first, one per wait), or until `kept_until_ms`.
    kept: bool,
    /// Its place among the interaction's named events (arrival order, from 1).
    seq: u64,
    /// When it is dropped, taken or not (ms since the Unix epoch).
    kept_until_ms: i64,
}

/// A skill's post-contact work, as set.
#[derive(Serialize, ToSchema)]
pub struct PostContactAnswer {
    skill: String,
    /// `{mode, seconds, unavailable_code, dispositions}` as set.
    #[serde(flatten)]
    config: serde_json::Map<String, Json>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractionsQuery {
    status: Option<String>,
    channel: Option<String>,
    skill: Option<String>,
    since: Option<String>,
    until: Option<String>,
    order: Option<String>,
    /// The last interaction id of the previous page.
    after: Option<String>,
    limit: Option<usize>,
}

/// A filter value read by the store's own (serde) names: `completed`, `sms`.
fn named<T: DeserializeOwned>(
    param: &str,
    value: Option<String>,
    allowed: &str,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            serde_json::from_value(Json::String(v.clone())).map_err(|_| {
                ApiError::bad_request(
                    "invalid-query",
                    format!("`{param}` must be one of {allowed}, not `{v}`"),
                )
            })
        })
        .transpose()
}

/// The tenant's interactions, a page at a time by keyset (`after` the previous page's
/// `next`), oldest first unless `order=newest`, by when each was first seen.
#[utoipa::path(get, path = "/v1/interactions", params(("status" = Option<String>, Query, pattern = r"^(?:active|completed)$", description = "active or completed"), ("channel" = Option<String>, Query, pattern = r"^(?:voice|chat|sms|email|task)$", description = "voice, chat, sms, email or task"), ("skill" = Option<String>, Query, min_length = 1, description = "the skill it was routed by"), ("since" = Option<String>, Query, pattern = r"^(?:[0-9]{1,13}|[1-9][0-9]{0,3}[smhdw]|(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,3})?Z)?)$", description = "first seen at or after: RFC 3339, a date, ms since the epoch, or a duration ago (7d)"), ("until" = Option<String>, Query, pattern = r"^(?:[0-9]{1,13}|[1-9][0-9]{0,3}[smhdw]|(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,3})?Z)?)$", description = "first seen before: RFC 3339, a date, ms since the epoch, or a duration ago (7d)"), ("order" = Option<String>, Query, pattern = r"^(?:oldest|newest)$", description = "`oldest` (the default) or `newest` first, by when first seen"), ("after" = Option<String>, Query, description = "the last interaction id of the previous page (`next` of the previous page), in the same order"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "the most interactions on the page (default 100)")), responses((status = 200, description = "A page of interactions", body = InteractionPage)), security(("tenant" = [])))]
async fn list_interactions(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    QueryArgs(query): QueryArgs<InteractionsQuery>,
) -> Result<Reply<InteractionPage>, ApiError> {
    let limit = page_limit(
        query.limit,
        DEFAULT_INTERACTIONS_PAGE,
        MAX_INTERACTIONS_PAGE,
    )?;
    let order = list_order(query.order.as_deref())?;
    let (since_ms, until_ms) = time_window(
        query.since.as_deref(),
        query.until.as_deref(),
        coda_types::time::now_ms(),
    )?;
    if query.skill.as_deref() == Some("") {
        return Err(ApiError::bad_request("invalid-query", "`skill` is empty"));
    }
    let filter = InteractionFilter {
        status: named::<InteractionStatus>("status", query.status, "active, completed")?,
        channel: named::<Channel>("channel", query.channel, "voice, chat, sms, email, task")?,
        skill: query.skill,
        since_ms,
        until_ms,
    };
    let found =
        state
            .store()
            .find_interactions(&tenant, &filter, order, query.after.as_deref(), limit)?;
    // A full page may have a next one; the client passes this as `after`.
    let next = (found.len() == limit)
        .then(|| found.last().map(|i| i.record.id.clone()))
        .flatten();
    Ok(Reply(InteractionPage {
        interactions: found.iter().map(entry_json).collect(),
        next,
    }))
}

/// A page of interactions.
#[derive(Serialize, ToSchema)]
pub struct InteractionPage {
    interactions: Vec<InteractionEntry>,
    /// Pass as `after` for the next page; none on the last.
    next: Option<String>,
}

/// An interaction as its list shows it (`GET /v1/interactions/{id}` has the rest).
#[derive(Serialize, ToSchema)]
pub struct InteractionEntry {
    id: String,
    /// `active` or `completed`.
    #[schema(value_type = String)]
    status: Json,
    #[schema(value_type = crate::openapi::bodies::Channel)]
    channel: Json,
    /// The skill it was routed by.
    skill: Option<String>,
    /// The agent who last joined it.
    agent: Option<String>,
    /// The live plan.
    plan: Option<String>,
    /// When it was first seen (ms since the epoch).
    created_at_ms: i64,
    updated_at_ms: i64,
    completed_at_ms: Option<i64>,
    /// The parties present now.
    parties: usize,
    /// The runs it started.
    runs: u64,
    /// The edits in its audit trail.
    edits: u64,
    /// The submitted disposition's code, if any.
    disposition: Option<String>,
    /// The interaction it was cloned from, for a follow-up.
    follow_up_of: Option<String>,
}

fn entry_json(found: &InteractionSummary) -> InteractionEntry {
    let record = &found.record;
    InteractionEntry {
        id: record.id.clone(),
        status: json!(record.status),
        channel: json!(record.channel),
        skill: record.skill.clone(),
        agent: record.agent.clone(),
        plan: record.plan.clone(),
        created_at_ms: found.created_at_ms,
        updated_at_ms: record.updated_at_ms,
        completed_at_ms: record.completed_at_ms,
        parties: record.present.len(),
        runs: found.runs,
        edits: found.edits,
        disposition: record.disposition.as_ref().map(|d| d.code.clone()),
        follow_up_of: record.follow_up.as_ref().map(|f| f.source.clone()),
    }
}

#[utoipa::path(get, path = "/v1/interactions/{id}", params(("id" = String, Path, pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$", description = "the interaction's id")), responses((status = 200, description = "The interaction", body = Interaction)), security(("tenant" = [])))]
async fn get_interaction(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<Reply<Interaction>, ApiError> {
    match state.store().interaction(&tenant, &id)? {
        Some(record) => Ok(Reply(interaction_json(&record))),
        None => Err(unknown_interaction(&id)),
    }
}

/// Sets or replaces the post-flow action of a live interaction.
#[utoipa::path(put, path = "/v1/interactions/{id}/post-flow", params(("id" = String, Path, pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$", description = "the interaction's id")), request_body = crate::openapi::bodies::SetPostFlow, responses((status = 200, description = "Set", body = Interaction)), security(("tenant" = [])))]
async fn put_post_flow(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
    JsonBody(action): JsonBody<SetPostFlow>,
) -> Result<Reply<Interaction>, ApiError> {
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

#[utoipa::path(delete, path = "/v1/interactions/{id}/post-flow", params(("id" = String, Path, pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$", description = "the interaction's id")), responses((status = 204, description = "Cleared")), security(("tenant" = [])))]
async fn delete_post_flow(
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

/// Delivers a named event (an agent's disposition, a survey reply): stored with the
/// interaction, it wakes the runs waiting for it in the same write, or is kept until a
/// run's wait for it takes it; the body, any JSON, is that run's data source `Event`.
#[utoipa::path(post, path = "/v1/interactions/{id}/events/{event}", params(("id" = String, Path, pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$", description = "the interaction's id"), ("event" = String, Path, pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,14}[^\s/\\\x00-\x1f\x7f-\x9f])?$", description = "the event's name")), request_body(content = Option<crate::openapi::bodies::EventPayload>, content_type = "application/json", description = "Any JSON: the waiting runs' data source `Event`; optional"), responses((status = 200, description = "Stored: the runs it woke, or kept for a later wait", body = EventDelivered), (status = 429, description = "The tenant or the interaction keeps as many untaken events as it may: nothing was stored")), security(("tenant" = [])))]
async fn deliver_event(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs((id, event)): PathArgs<(String, String)>,
    request: Request,
) -> Result<Reply<EventDelivered>, ApiError> {
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
    let delivery = state
        .engine()
        .deliver(&tenant, &id, &event, payload)
        .await
        .map_err(flow_failed)?
        .map_err(event_refused)?;
    Ok(Reply(EventDelivered {
        interaction: id,
        event,
        woken: delivery.woken,
        kept: delivery.kept,
        seq: delivery.seq,
        kept_until_ms: delivery.expires_at_ms,
    }))
}
