//! `GET /v1/runs/{id}/fixture`: one applet step of a real run as an offline test fixture
//! (`coda runs show ID --as-fixture`, run by `coda applet test`), so that a failing
//! production case becomes a test.
//!
//! The step's input (its data sources and node state) is rebuilt from the journal (the
//! run's first data and each step's change of it, `coda-store`'s `inputs.rs`); its
//! capability calls come from the effect journal, answers and request digests; the config
//! from the plan version the step ran; the expectation from what the step did. Secret
//! values never leave the service: the secrets granted to the applet are listed by name
//! with a placeholder to fill in.

use axum::Json as Reply;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use coda_store::{EffectRecord, StepRecord};
use coda_types::capabilities::CallKind;
use coda_types::values_json;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{PathArgs, QueryArgs};
use crate::runs::unknown_run;
use crate::{ApiError, AppState, Tenant};

/// What a secret's value is in a fixture taken from a run: values stay in the service.
pub const SECRET_PLACEHOLDER: &str = "(a test value: secrets are not exported)";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(fixture))
}

/// A fixture of `coda applet test`: one step's input, its recorded calls, and what it did.
#[derive(ToSchema)]
#[allow(dead_code)] // only its schema is used: the handler writes the fixture's JSON itself
pub struct Fixture {
    /// Which run, step, applet and node it came from, in words.
    description: String,
    /// `name@version`.
    applet: String,
    /// The node's config.
    config: Json,
    /// The run's data sources as the step began, by name.
    data: Map<String, Json>,
    /// The node's state as the step began, by name.
    state: Map<String, Json>,
    /// The secrets granted to the applet, each with a placeholder for a test value.
    secrets: Map<String, Json>,
    /// `{tenant, run, plan, node, idempotency_key, attempt, interaction}`.
    context: Map<String, Json>,
    /// The capability calls it made, with their recorded results.
    calls: Vec<Json>,
    /// What the step did: its exit or error and the data it set.
    expect: Map<String, Json>,
    /// When the step ran (RFC 3339).
    at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureQuery {
    /// The step's sequence number; default: the run's last failed applet step, else its
    /// last applet step.
    step: Option<u64>,
}

#[utoipa::path(get, path = "/v1/runs/{id}/fixture", params(("id" = String, Path, description = "the run's id"), ("step" = Option<u64>, Query, description = "the step's sequence number (default: the last failed applet step, else the last applet step)")), responses((status = 200, description = "The step as a test fixture for `coda applet test`", body = Fixture)), security(("tenant" = [])))]
async fn fixture(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
    QueryArgs(query): QueryArgs<FixtureQuery>,
) -> Result<Reply<Json>, ApiError> {
    let store = state.store();
    let Some(run) = store.run(&tenant, &id)? else {
        return Err(unknown_run(&id));
    };
    let journal = store.journal(&tenant, &id)?;
    let applet_steps = || journal.iter().filter(|s| !s.applet.is_empty());
    let step = match query.step {
        Some(seq) => {
            let step = journal.iter().find(|s| s.seq == seq).ok_or_else(|| {
                ApiError::not_found(
                    "unknown-step",
                    format!("run `{id}` has no step {seq} (it has {})", journal.len()),
                )
            })?;
            if step.applet.is_empty() {
                return Err(ApiError::bad_request(
                    "not-an-applet-step",
                    format!(
                        "step {seq} of run `{id}` ran no applet (the host took it: {})",
                        step.note
                    ),
                ));
            }
            step
        }
        None => applet_steps()
            .rfind(|s| s.result.get("error").is_some())
            .or_else(|| applet_steps().next_back())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "no-applet-step",
                    format!("run `{id}` has run no applet yet"),
                )
            })?,
    };
    let Some(input) = store.step_input(&tenant, &id, step.seq)? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no-step-input",
            format!(
                "step {} of run `{id}` was journaled without its input (before this version of \
                 coda kept it): it cannot be exported as a fixture",
                step.seq
            ),
        ));
    };
    let config = store
        .plan(&tenant, &step.plan, Some(step.plan_version))?
        .and_then(|(_, body)| body.get("nodes")?.get(&step.node)?.get("config").cloned())
        .unwrap_or_else(|| json!({}));
    let effects = store.effects(&id, Some(step.seq))?;
    let secrets = granted_secrets(&state, &tenant, &step.applet)?;

    let mut fixture = json!({
        "description": format!(
            "run {id}, step {} ({} at node {} of {}@{}, attempt {}): {}",
            step.seq, step.applet, step.node, step.plan, step.plan_version, step.attempt, step.note
        ),
        "applet": step.applet,
        "config": config,
        "data": values_json(&input.data),
        "state": values_json(&input.state),
        "secrets": secrets,
        "context": {
            "tenant": tenant,
            "run": id,
            "plan": step.plan,
            "node": step.node,
            "idempotency_key": coda_flow::step_key(&id, step.seq, step.attempt),
            "attempt": step.attempt,
        },
        // A request made of secrets (an Authorization header) has another digest once the
        // fixture's test values replace them: digests are exported only when the applet
        // reads no secret, where a different digest means the applet took another path.
        "calls": effects.iter().map(|e| recorded_call(e, secrets.is_empty())).collect::<Vec<_>>(),
        "expect": expectation(step),
    });
    if let Some(interaction) = &run.interaction {
        fixture["context"]["interaction"] = json!(interaction);
    }
    if let Ok(at) = jiff::Timestamp::from_millisecond(step.at_ms) {
        fixture["at"] = json!(at.to_string());
    }
    Ok(Reply(fixture))
}

/// The secrets granted to the applet (by name, or by name@version), each with the
/// placeholder: the applet reads them, and the fixture's author supplies test values.
fn granted_secrets(
    state: &AppState,
    tenant: &str,
    applet: &str,
) -> Result<Map<String, Json>, ApiError> {
    let name = applet.split('@').next().unwrap_or(applet);
    let mut secrets = Map::new();
    for grant in state.store().grants(tenant)? {
        if grant.applet != name && grant.applet != applet {
            continue;
        }
        let names = grant.body.get("secrets").and_then(Json::as_array);
        for secret in names.into_iter().flatten().filter_map(Json::as_str) {
            secrets.insert(secret.to_owned(), json!(SECRET_PLACEHOLDER));
        }
    }
    Ok(secrets)
}

/// One effect journal record as a fixture call: `{kind: {digest?, response | error}}`.
fn recorded_call(effect: &EffectRecord, with_digest: bool) -> Json {
    let mut recorded = json!({});
    if with_digest {
        recorded["digest"] = json!(effect.digest);
    }
    match (effect.result.get("Ok"), effect.result.get("Err")) {
        (_, Some(error)) => recorded["error"] = error.clone(),
        (Some(response), None) => {
            recorded["response"] = match effect.kind.parse() {
                Ok(CallKind::Http) => http_response(response),
                Ok(CallKind::SqlQuery) => sql_rows(response),
                // The journal's form is the fixture's for the others.
                _ => response.clone(),
            }
        }
        (None, None) => {
            recorded["error"] = json!({
                "kind": "unavailable",
                "message": "the journaled result of this call could not be read",
            })
        }
    }
    json!({ effect.kind.clone(): recorded })
}

/// A journaled HTTP response (base64 body, header pairs) as a fixture writes it: headers
/// as a map, a text body as text.
fn http_response(response: &Json) -> Json {
    let mut headers = Map::new();
    for pair in response["headers"].as_array().into_iter().flatten() {
        if let (Some(name), Some(value)) = (pair[0].as_str(), pair[1].as_str()) {
            headers.insert(name.to_ascii_lowercase(), json!(value));
        }
    }
    let mut out = json!({ "status": response["status"], "headers": headers });
    let body = response["body"]
        .as_str()
        .and_then(|b| BASE64.decode(b).ok())
        .unwrap_or_default();
    match String::from_utf8(body) {
        Ok(text) if text.is_empty() => {}
        Ok(text) => out["body"] = json!(text),
        Err(bytes) => out["body_base64"] = json!(BASE64.encode(bytes.into_bytes())),
    }
    out
}

/// Journaled rows (values in their tagged storage form) as plain JSON.
fn sql_rows(response: &Json) -> Json {
    let rows: Option<coda_types::capabilities::SqlRows> =
        serde_json::from_value(response.clone()).ok();
    match rows {
        Some(rows) => json!({
            "columns": rows.columns,
            "rows": rows.rows.iter()
                .map(|row| row.iter().map(coda_types::Value::to_json).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
        }),
        None => response.clone(),
    }
}

/// What the step did, as the fixture's expectation: its outcome or error, and the data it
/// set. A failing step's fixture therefore passes until the applet is fixed; edit `expect`
/// to what it should do instead.
fn expectation(step: &StepRecord) -> Json {
    let mut expect = json!({ "data": values_json(&step.data_changes) });
    match step.result.get("error") {
        Some(error) => {
            let mut want = Map::new();
            for field in ["kind", "code", "retryable"] {
                if let Some(value) = error.get(field) {
                    want.insert(field.to_owned(), value.clone());
                }
            }
            expect["error"] = Json::Object(want);
        }
        None => expect["outcome"] = step.result.clone(),
    }
    expect
}
