//! Plans: publishing a version, listing and fetching them, validating one without storing
//! it, a plan's versions, and the difference between two versions.

use std::collections::BTreeSet;

use axum::Json as Reply;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coda_plan::{Format, MemoryCatalog, Plan, Problem};
use coda_types::time::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{PathArgs, QueryArgs, body_bytes};
use crate::{ApiError, AppState, Tenant};

/// A plan published: its name and the version it became.
#[derive(Serialize, ToSchema)]
pub struct Published {
    plan: String,
    version: u32,
}

/// A valid plan (an invalid one is refused with every problem).
#[derive(Serialize, ToSchema)]
pub struct Validated {
    valid: bool,
    plan: String,
    /// The plan's type (`post-interaction`, ...).
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    plan_type: coda_plan::PlanType,
}

/// A plan's latest version, as listed.
#[derive(Serialize, ToSchema)]
pub struct PlanEntry {
    name: String,
    version: u32,
    /// The plan's type, as published.
    #[serde(rename = "type")]
    plan_type: Option<Json>,
    created_at_ms: i64,
}

/// The tenant's plans.
#[derive(Serialize, ToSchema)]
pub struct PlanList {
    plans: Vec<PlanEntry>,
}

/// One version of a plan, with its body (the plan as JSON).
#[derive(Serialize, ToSchema)]
pub struct PlanVersion {
    plan: String,
    version: u32,
    /// The plan, in its canonical JSON form.
    body: Json,
}

/// One published version: when, and the digest of its body.
#[derive(Serialize, ToSchema)]
pub struct VersionEntry {
    version: u32,
    created_at_ms: i64,
    digest: String,
}

/// A plan's versions, oldest first.
#[derive(Serialize, ToSchema)]
pub struct VersionList {
    plan: String,
    versions: Vec<VersionEntry>,
}

/// The difference between two versions of a plan.
#[derive(Serialize, ToSchema)]
pub struct PlanDiff {
    plan: String,
    from: u32,
    to: u32,
    identical: bool,
    /// A unified diff of the two bodies, pretty-printed JSON.
    unified: String,
    /// What changed, node by node (`nodes_added`, `nodes_removed`, `nodes_changed`, and
    /// `start`, `type`, `post_interaction`, `description` as `{from, to}` when changed);
    /// null when a stored body no longer parses.
    summary: Json,
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // `validate` is a fixed segment where a plan's name would be, and fixed segments
        // win: GET and PUT of a plan named `validate` are answered here as they would be on
        // `/v1/plans/{name}`, so that the name stays usable.
        .routes(routes!(
            validate,
            get_plan_named_validate,
            put_plan_named_validate
        ))
        .routes(routes!(list_plans))
        .routes(routes!(put_plan, get_plan))
        .routes(routes!(get_plan_version))
        .routes(routes!(versions))
        .routes(routes!(diff))
}

/// Validates a plan exactly as publishing it would, storing nothing: 200 when it is valid,
/// 422 with every problem (node and field) when it is not.
#[utoipa::path(post, path = "/v1/plans/validate", request_body(content = String, content_type = "application/yaml", description = "A plan, YAML or JSON text; nothing is stored"), responses((status = 200, description = "Valid (an invalid plan: 422 with its problems)", body = Validated)), security(("tenant" = [])))]
async fn validate(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    request: Request,
) -> Result<Reply<Validated>, ApiError> {
    let plan = checked_plan(&state, &tenant, None, request).await?;
    Ok(Reply(Validated {
        valid: true,
        plan: plan.name,
        plan_type: plan.plan_type,
    }))
}

#[utoipa::path(get, path = "/v1/plans/validate", responses((status = 200, description = "The plan named `validate`", body = PlanVersion)), security(("tenant" = [])))]
async fn get_plan_named_validate(
    tenant: Tenant,
    state: State<AppState>,
) -> Result<Reply<PlanVersion>, ApiError> {
    get_plan(tenant, state, PathArgs("validate".into())).await
}

#[utoipa::path(put, path = "/v1/plans/validate", request_body(content = String, content_type = "application/yaml", description = "A plan named `validate`, YAML or JSON text"), responses((status = 201, description = "Published", body = Published)), security(("tenant" = [])))]
async fn put_plan_named_validate(
    tenant: Tenant,
    state: State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    put_plan(tenant, state, PathArgs("validate".into()), request).await
}

fn unknown_plan(name: &str) -> ApiError {
    ApiError::not_found("unknown-plan", format!("plan `{name}` not found"))
}

/// Every version of a plan: its number, when it was published and the digest of its body.
#[utoipa::path(get, path = "/v1/plans/{name}/versions", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the plan's name")), responses((status = 200, description = "A plan's versions", body = VersionList)), security(("tenant" = [])))]
async fn versions(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
) -> Result<Reply<VersionList>, ApiError> {
    let versions = state.store().plan_versions(&tenant, &name)?;
    if versions.is_empty() {
        return Err(unknown_plan(&name));
    }
    let versions = versions
        .iter()
        .map(|v| VersionEntry {
            version: v.version,
            created_at_ms: v.created_at_ms,
            digest: v.digest.clone(),
        })
        .collect();
    Ok(Reply(VersionList {
        plan: name,
        versions,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

/// A version number from the query, or a 400 naming the parameter.
fn version_param(param: &str, value: Option<&str>) -> Result<u32, ApiError> {
    let Some(value) = value else {
        return Err(ApiError::bad_request(
            "invalid-query",
            format!("the query parameter `{param}` (a version number) is required"),
        ));
    };
    match value.parse::<u32>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(ApiError::bad_request(
            "invalid-query",
            format!("`{param}` must be a version number (1, 2, ...), not `{value}`"),
        )),
    }
}

/// The difference between two versions of a plan: a unified diff of their stored bodies
/// (pretty-printed JSON, the canonical form) and what changed in the graph.
#[utoipa::path(get, path = "/v1/plans/{name}/diff", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the plan's name"), ("from" = u32, Query, minimum = 1, description = "from version"), ("to" = u32, Query, minimum = 1, description = "to version")), responses((status = 200, description = "The unified diff", body = PlanDiff)), security(("tenant" = [])))]
async fn diff(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
    QueryArgs(query): QueryArgs<DiffQuery>,
) -> Result<Reply<PlanDiff>, ApiError> {
    let from = version_param("from", query.from.as_deref())?;
    let to = version_param("to", query.to.as_deref())?;
    let store = state.store();
    let body = |version: u32| -> Result<Json, ApiError> {
        match store.plan(&tenant, &name, Some(version))? {
            Some((_, body)) => Ok(body),
            // The plan itself missing is told apart from one of its versions missing.
            None if store.plan(&tenant, &name, None)?.is_none() => Err(unknown_plan(&name)),
            None => Err(ApiError::not_found(
                "unknown-plan",
                format!("plan `{name}` version `{version}` not found"),
            )),
        }
    };
    let (old, new) = (body(from)?, body(to)?);
    let pretty = |body: &Json| serde_json::to_string_pretty(body).map_err(ApiError::internal);
    let (old_text, new_text) = (pretty(&old)? + "\n", pretty(&new)? + "\n");
    let unified = similar::TextDiff::from_lines(&old_text, &new_text)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name}@{from}"), &format!("{name}@{to}"))
        .to_string();
    // Stored bodies were valid plans when published; one that no longer parses still gets
    // its text diff, only no summary.
    let summary = match (
        serde_json::from_value::<Plan>(old),
        serde_json::from_value::<Plan>(new),
    ) {
        (Ok(old), Ok(new)) => summary(&old, &new),
        _ => Json::Null,
    };
    Ok(Reply(PlanDiff {
        plan: name,
        from,
        to,
        identical: unified.is_empty(),
        unified,
        summary,
    }))
}

/// What changed between two versions of a plan, node by node.
fn summary(old: &Plan, new: &Plan) -> Json {
    let old_nodes: BTreeSet<&String> = old.nodes.keys().collect();
    let new_nodes: BTreeSet<&String> = new.nodes.keys().collect();
    let added: Vec<&String> = new_nodes.difference(&old_nodes).copied().collect();
    let removed: Vec<&String> = old_nodes.difference(&new_nodes).copied().collect();
    let changed: Vec<Json> = old_nodes
        .intersection(&new_nodes)
        .filter_map(|id| {
            let (a, b) = (&old.nodes[*id], &new.nodes[*id]);
            let mut fields = Vec::new();
            if a.applet.name() != b.applet.name() {
                fields.push("applet");
            }
            if a.applet.version() != b.applet.version() {
                fields.push("version");
            }
            if a.config != b.config {
                fields.push("config");
            }
            if a.exits != b.exits {
                fields.push("exits");
            }
            if a.error != b.error {
                fields.push("error");
            }
            (!fields.is_empty()).then(|| {
                json!({
                    "node": id,
                    "changed": fields,
                    "from": { "applet": a.applet.to_string() },
                    "to": { "applet": b.applet.to_string() },
                })
            })
        })
        .collect();
    let field = |a: Json, b: Json| (a != b).then(|| json!({ "from": a, "to": b }));
    json!({
        "nodes_added": added,
        "nodes_removed": removed,
        "nodes_changed": changed,
        "start": field(json!(old.start), json!(new.start)),
        "type": field(json!(old.plan_type), json!(new.plan_type)),
        "post_interaction": field(json!(old.post_interaction), json!(new.post_interaction)),
        "description": field(json!(old.description), json!(new.description)),
    })
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

#[utoipa::path(put, path = "/v1/plans/{name}", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the plan's name")), request_body(content = String, content_type = "application/yaml", description = "A plan, YAML or JSON text"), responses((status = 201, description = "Published", body = Published)), security(("tenant" = [])))]
async fn put_plan(
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
        Reply(Published {
            plan: plan.name,
            version,
        }),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/plans", responses((status = 200, description = "The tenant's plans", body = PlanList)), security(("tenant" = [])))]
async fn list_plans(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<Reply<PlanList>, ApiError> {
    let plans = state
        .store()
        .latest_plans(&tenant)?
        .into_iter()
        .map(|p| PlanEntry {
            plan_type: p.body.get("type").cloned(),
            name: p.name,
            version: p.version,
            created_at_ms: p.created_at_ms,
        })
        .collect();
    Ok(Reply(PlanList { plans }))
}

fn plan_answer(
    state: &AppState,
    tenant: &str,
    name: &str,
    version: Option<u32>,
    asked: Option<&str>,
) -> Result<Reply<PlanVersion>, ApiError> {
    match state.store().plan(tenant, name, version)? {
        Some((version, body)) => Ok(Reply(PlanVersion {
            plan: name.to_owned(),
            version,
            body,
        })),
        None => Err(ApiError::not_found(
            "unknown-plan",
            match asked {
                Some(v) => format!("plan `{name}` version `{v}` not found"),
                None => format!("plan `{name}` not found"),
            },
        )),
    }
}

#[utoipa::path(get, path = "/v1/plans/{name}", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the plan's name")), responses((status = 200, description = "The plan's current version", body = PlanVersion)), security(("tenant" = [])))]
async fn get_plan(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
) -> Result<Reply<PlanVersion>, ApiError> {
    plan_answer(&state, &tenant, &name, None, None)
}

#[utoipa::path(get, path = "/v1/plans/{name}/versions/{version}", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the plan's name"), ("version" = u32, Path, minimum = 1, description = "the version")), responses((status = 200, description = "One version of a plan", body = PlanVersion)), security(("tenant" = [])))]
async fn get_plan_version(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs((name, version)): PathArgs<(String, String)>,
) -> Result<Reply<PlanVersion>, ApiError> {
    // A version that is not a number is a version that does not exist: the same 404.
    match version.parse::<u32>() {
        Ok(v) if v > 0 => plan_answer(&state, &tenant, &name, Some(v), Some(&version)),
        _ => Err(ApiError::not_found(
            "unknown-plan",
            format!("plan `{name}` version `{version}` not found"),
        )),
    }
}
