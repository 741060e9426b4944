//! Plans beyond publish and fetch: validating one without storing it, a plan's versions, and
//! the difference between two versions.

use std::collections::BTreeSet;

use axum::Json as Reply;
use axum::extract::{Request, State};
use axum::response::Response;
use coda_plan::Plan;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::{self, checked_plan};
use crate::error::{PathArgs, QueryArgs};
use crate::{ApiError, AppState, Tenant};

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
        .routes(routes!(versions))
        .routes(routes!(diff))
}

/// Validates a plan exactly as publishing it would, storing nothing: 200 when it is valid,
/// 422 with every problem (node and field) when it is not.
#[utoipa::path(post, path = "/v1/plans/validate", request_body(content = String, content_type = "application/yaml", description = "A plan, YAML or JSON text; nothing is stored"), responses((status = 200, description = "The plan's problems", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
async fn validate(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    request: Request,
) -> Result<Reply<Json>, ApiError> {
    let plan = checked_plan(&state, &tenant, None, request).await?;
    Ok(Reply(
        json!({ "valid": true, "plan": plan.name, "type": plan.plan_type }),
    ))
}

#[utoipa::path(get, path = "/v1/plans/validate", responses((status = 200, description = "The plan named `validate`", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
async fn get_plan_named_validate(
    tenant: Tenant,
    state: State<AppState>,
) -> Result<Reply<Json>, ApiError> {
    api::get_plan(tenant, state, PathArgs("validate".into())).await
}

#[utoipa::path(put, path = "/v1/plans/validate", request_body(content = String, content_type = "application/yaml", description = "A plan named `validate`, YAML or JSON text"), responses((status = 200, description = "Published", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
async fn put_plan_named_validate(
    tenant: Tenant,
    state: State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    api::put_plan(tenant, state, PathArgs("validate".into()), request).await
}

fn unknown_plan(name: &str) -> ApiError {
    ApiError::not_found("unknown-plan", format!("plan `{name}` not found"))
}

/// Every version of a plan: its number, when it was published and the digest of its body.
#[utoipa::path(get, path = "/v1/plans/{name}/versions", params(("name" = String, Path, description = "name")), responses((status = 200, description = "A plan's versions", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
async fn versions(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
) -> Result<Reply<Json>, ApiError> {
    let versions = state.store().plan_versions(&tenant, &name)?;
    if versions.is_empty() {
        return Err(unknown_plan(&name));
    }
    let versions: Vec<Json> = versions
        .iter()
        .map(|v| json!({ "version": v.version, "created_at_ms": v.created_at_ms, "digest": v.digest }))
        .collect();
    Ok(Reply(json!({ "plan": name, "versions": versions })))
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
#[utoipa::path(get, path = "/v1/plans/{name}/diff", params(("name" = String, Path, description = "name"), ("from" = u32, Query, description = "from version"), ("to" = u32, Query, description = "to version")), responses((status = 200, description = "The unified diff", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
async fn diff(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
    QueryArgs(query): QueryArgs<DiffQuery>,
) -> Result<Reply<Json>, ApiError> {
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
    Ok(Reply(json!({
        "plan": name,
        "from": from,
        "to": to,
        "identical": unified.is_empty(),
        "unified": unified,
        "summary": summary,
    })))
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
