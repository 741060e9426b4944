//! Grants, the operator's ceilings and the tenant's secrets.
//!
//! - Operator: `GET|PUT /v1/operator/tenants/{tenant}/ceiling` — the tenant's ceiling
//!   document (`ceiling`, `smtp`, `databases`; see `coda_capabilities::settings`).
//! - Tenant: `GET /v1/ceiling` (without credentials), `GET /v1/grants`,
//!   `PUT|DELETE /v1/grants/{applet}`, `GET /v1/secrets` (names only),
//!   `PUT|DELETE /v1/secrets/{name}`.
//!
//! Every decision (is a grant within the ceiling, does a grant cover what an applet
//! declares it needs) is `coda_capabilities::grants`'; this module only reads, writes and
//! answers. A secret's value is in one request body and then only in the store, sealed:
//! no answer, log line or error carries it.

use axum::Json as Reply;
use axum::extract::State;
use axum::http::StatusCode;
use coda_capabilities::SettingsError;
use coda_capabilities::ceiling_doc;
use coda_capabilities::grants::{self, Exceeds};
use coda_capabilities::settings::{AppletGrant, TenantSettings};
use coda_plan::{Catalog, Plan, Problem};
use coda_store::SecretWrite;
use coda_types::time::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{JsonBody, PathArgs};
use crate::{ApiError, AppState, Operator, Tenant};

/// The largest secret value, in bytes: credentials and keys, not documents.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_tenant_ceiling, put_tenant_ceiling))
        .routes(routes!(get_ceiling))
        .routes(routes!(list_grants))
        .routes(routes!(put_grant, delete_grant))
        .routes(routes!(list_secrets))
        .routes(routes!(put_secret, delete_secret))
}

/// The tenant's ceiling document as stored (checked when the operator wrote it), or the
/// default that allows nothing.
pub(crate) fn tenant_ceiling(state: &AppState, tenant: &str) -> Result<TenantSettings, ApiError> {
    match state.store().ceiling(tenant)? {
        None => Ok(TenantSettings::default()),
        Some(body) => TenantSettings::from_ceiling_json(tenant, &body).map_err(|e| {
            ApiError::internal(format!("the stored ceiling of tenant `{tenant}`: {e}"))
        }),
    }
}

/// A tenant's ceiling as the operator set it (database URLs with `***` in place of their
/// credentials, the SMTP server without its credentials). The operator's `PUT` takes it
/// back as it is and keeps what it hides.
#[derive(Serialize, ToSchema)]
pub struct CeilingView {
    tenant: String,
    /// Whether the operator set one; if not, this is the default that allows nothing.
    set: bool,
    /// The limits (`http_hosts`, `email`, `max_secrets`, `fuel`, `kv`, ...), as set.
    #[schema(value_type = crate::openapi::bodies::Ceiling)]
    ceiling: Json,
    /// `{host, port, tls, from, timeout_ms, authenticated}`, or null.
    smtp: Json,
    /// Database URLs by name, `***` in place of their credentials.
    databases: std::collections::BTreeMap<String, String>,
}

fn ceiling_answer(tenant: &str, settings: &TenantSettings, set: bool) -> Reply<CeilingView> {
    let mut view = settings.ceiling_view();
    Reply(CeilingView {
        tenant: tenant.to_owned(),
        set,
        ceiling: view["ceiling"].take(),
        smtp: view["smtp"].take(),
        databases: settings
            .databases
            .iter()
            .map(|(name, url)| (name.clone(), url.redacted().to_string()))
            .collect(),
    })
}

/// One applet's grant.
#[derive(Serialize, ToSchema)]
pub struct GrantEntry {
    /// The applet's name, or name@version.
    applet: String,
    #[schema(value_type = crate::openapi::bodies::AppletGrant)]
    grant: Json,
    /// When it was last set; absent in the answer to setting it.
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at_ms: Option<i64>,
}

/// The tenant's grants.
#[derive(Serialize, ToSchema)]
pub struct GrantList {
    grants: Vec<GrantEntry>,
}

/// A secret by name: its value is never shown.
#[derive(Serialize, ToSchema)]
pub struct SecretEntry {
    name: String,
    updated_at_ms: i64,
}

/// The tenant's secrets, names only.
#[derive(Serialize, ToSchema)]
pub struct SecretList {
    secrets: Vec<SecretEntry>,
}

fn unknown_tenant(tenant: &str) -> ApiError {
    ApiError::not_found("unknown-tenant", format!("tenant `{tenant}` not found"))
}

#[utoipa::path(get, path = "/v1/operator/tenants/{tenant}/ceiling", params(("tenant" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the tenant's id")), responses((status = 200, description = "The tenant's ceiling", body = CeilingView)), security(("operator" = [])))]
async fn get_tenant_ceiling(
    _: Operator,
    State(state): State<AppState>,
    PathArgs(tenant): PathArgs<String>,
) -> Result<Reply<CeilingView>, ApiError> {
    // A tenant that was never created answers 404, one without a ceiling the default.
    let Some(set) = state.store().ceiling_state(&tenant)? else {
        return Err(unknown_tenant(&tenant));
    };
    Ok(ceiling_answer(
        &tenant,
        &tenant_ceiling(&state, &tenant)?,
        set,
    ))
}

/// Sets the tenant's ceiling. The answer of `GET` may be changed and sent back as it is:
/// what it shows in place of a credential keeps the stored one. An `smtp` without
/// `username` and `password` keeps the stored pair (`"authenticated": false` drops it); a
/// database URL exactly as `GET` shows it (`***` in place of its credentials) keeps the
/// stored URL. Credentials given replace the stored ones.
#[utoipa::path(put, path = "/v1/operator/tenants/{tenant}/ceiling", params(("tenant" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the tenant's id")), request_body = crate::openapi::bodies::CeilingSettings, responses((status = 200, description = "Set", body = CeilingView)), security(("operator" = [])))]
async fn put_tenant_ceiling(
    _: Operator,
    State(state): State<AppState>,
    PathArgs(tenant): PathArgs<String>,
    JsonBody(body): JsonBody<Json>,
) -> Result<Reply<CeilingView>, ApiError> {
    if state.store().ceiling_state(&tenant)?.is_none() {
        return Err(unknown_tenant(&tenant));
    }
    // What the GET showed in place of a credential keeps the stored one (`ceiling_doc`), so
    // the answer of GET can be changed and written back without retyping passwords.
    let stored = state.store().ceiling(&tenant)?;
    let body = ceiling_doc::with_kept_credentials(&tenant, &body, stored.as_ref())
        .map_err(invalid_ceiling)?;
    let settings = TenantSettings::from_ceiling_json(&tenant, &body).map_err(invalid_ceiling)?;
    if !state.store().set_ceiling(&tenant, &body, now_ms()).await? {
        return Err(unknown_tenant(&tenant));
    }
    Ok(ceiling_answer(&tenant, &settings, true))
}

fn invalid_ceiling(e: SettingsError) -> ApiError {
    let at = if e.path.is_empty() {
        String::new()
    } else {
        format!("at `{}`: ", e.path)
    };
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-ceiling",
        format!("{at}{}", e.message),
    )
}

#[utoipa::path(get, path = "/v1/ceiling", responses((status = 200, description = "The tenant's own ceiling", body = CeilingView)), security(("tenant" = [])))]
async fn get_ceiling(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<Reply<CeilingView>, ApiError> {
    let set = state.store().ceiling(&tenant)?.is_some();
    Ok(ceiling_answer(
        &tenant,
        &tenant_ceiling(&state, &tenant)?,
        set,
    ))
}

#[utoipa::path(get, path = "/v1/grants", responses((status = 200, description = "Grants per applet", body = GrantList)), security(("tenant" = [])))]
async fn list_grants(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<Reply<GrantList>, ApiError> {
    let grants = state
        .store()
        .grants(&tenant)?
        .into_iter()
        .map(|g| GrantEntry {
            applet: g.applet,
            grant: g.body,
            updated_at_ms: Some(g.updated_at_ms),
        })
        .collect();
    Ok(Reply(GrantList { grants }))
}

fn check_grant_key(applet: &str) -> Result<(), ApiError> {
    if grants::is_valid_grant_key(applet) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid-applet",
            format!("`{applet}` is not an applet name, optionally with @version"),
        ))
    }
}

#[utoipa::path(put, path = "/v1/grants/{applet}", params(("applet" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}(?:@(?:0|[1-9][0-9]{0,8})\.(?:0|[1-9][0-9]{0,8})\.(?:0|[1-9][0-9]{0,8}))?$", description = "an applet's name, or name@version for one version")), request_body = crate::openapi::bodies::AppletGrant, responses((status = 200, description = "Granted", body = GrantEntry)), security(("tenant" = [])))]
async fn put_grant(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(applet): PathArgs<String>,
    JsonBody(grant): JsonBody<AppletGrant>,
) -> Result<Reply<GrantEntry>, ApiError> {
    check_grant_key(&applet)?;
    // The secrets a grant names follow the secrets' own rule: a grant cannot name a secret
    // the secrets API would refuse.
    grant
        .check_names()
        .map_err(|e| ApiError::bad_request("invalid-secret-name", e.to_string()))?;
    let ceiling = tenant_ceiling(&state, &tenant)?;
    let exceeds = grants::exceeds(&ceiling.ceiling, &grant);
    if !exceeds.is_empty() {
        return Err(exceeds_ceiling(&applet, exceeds));
    }
    let body = serde_json::to_value(&grant).map_err(ApiError::internal)?;
    state
        .store()
        .put_grant(&tenant, &applet, &body, now_ms())
        .await?;
    Ok(Reply(GrantEntry {
        applet,
        grant: body,
        updated_at_ms: None,
    }))
}

fn exceeds_ceiling(applet: &str, exceeds: Vec<Exceeds>) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "exceeds-ceiling",
        format!(
            "the grant for `{applet}` exceeds the operator's ceiling: {}",
            exceeds
                .iter()
                .map(|e| format!("{} ({})", e.message, e.field))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    );
    error.problems = exceeds
        .into_iter()
        .map(|e| Problem {
            node: None,
            field: e.field,
            message: e.message,
        })
        .collect();
    error
}

#[utoipa::path(delete, path = "/v1/grants/{applet}", params(("applet" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}(?:@(?:0|[1-9][0-9]{0,8})\.(?:0|[1-9][0-9]{0,8})\.(?:0|[1-9][0-9]{0,8}))?$", description = "an applet's name, or name@version for one version")), responses((status = 204, description = "Revoked")), security(("tenant" = [])))]
async fn delete_grant(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(applet): PathArgs<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store().delete_grant(&tenant, &applet).await? {
        return Err(ApiError::not_found(
            "unknown-grant",
            format!("no grant for `{applet}`"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A secret's value: write-only, never shown again.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    value: String,
}

fn check_secret_name(name: &str) -> Result<(), ApiError> {
    coda_types::names::check_name(coda_types::names::NameKind::Secret, name)
        .map_err(|e| ApiError::bad_request("invalid-secret-name", e.to_string()))
}

#[utoipa::path(put, path = "/v1/secrets/{name}", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the secret's name")), request_body = SecretBody, responses((status = 204, description = "Stored")), security(("tenant" = [])))]
async fn put_secret(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
    JsonBody(body): JsonBody<SecretBody>,
) -> Result<StatusCode, ApiError> {
    check_secret_name(&name)?;
    if body.value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "secret-too-large",
            format!("`value` is longer than {MAX_SECRET_BYTES} bytes"),
        ));
    }
    let key = state.secrets_key().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-secrets-key",
            "this server has no key to seal secrets with",
        )
    })?;
    // Deny by default: a tenant whose ceiling says nothing may store no secret.
    let max = tenant_ceiling(&state, &tenant)?
        .ceiling
        .max_secrets
        .unwrap_or(0);
    match state
        .store()
        .put_secret(&tenant, &name, &body.value, key, max, now_ms())
        .await?
    {
        SecretWrite::Created | SecretWrite::Replaced => Ok(StatusCode::NO_CONTENT),
        SecretWrite::TooMany { max } => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too-many-secrets",
            format!(
                "the operator's ceiling allows this tenant {max} secret(s) (ceiling.max_secrets), and it has them: delete one or ask for more"
            ),
        )),
        SecretWrite::UnknownTenant => Err(unknown_tenant(&tenant)),
    }
}

#[utoipa::path(get, path = "/v1/secrets", responses((status = 200, description = "Secret names only", body = SecretList)), security(("tenant" = [])))]
async fn list_secrets(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<Reply<SecretList>, ApiError> {
    let secrets = state
        .store()
        .secret_names(&tenant)?
        .into_iter()
        .map(|s| SecretEntry {
            name: s.name,
            updated_at_ms: s.updated_at_ms,
        })
        .collect();
    Ok(Reply(SecretList { secrets }))
}

#[utoipa::path(delete, path = "/v1/secrets/{name}", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the secret's name")), responses((status = 204, description = "Deleted")), security(("tenant" = [])))]
async fn delete_secret(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store().delete_secret(&tenant, &name).await? {
        return Err(ApiError::not_found(
            "unknown-secret",
            format!("secret `{name}` not found"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Refuses a plan that uses an applet whose declared needs (its `describe`, as the node's
/// config selects them) the tenant has not granted it, naming each node, applet and missing grant. An applet the catalog does
/// not know is the plan validator's to report, not this check's.
pub(crate) fn check_plan_grants(
    state: &AppState,
    tenant: &str,
    plan: &Plan,
    catalog: &impl Catalog,
) -> Result<(), ApiError> {
    let stored = state.store().grants(tenant)?;
    let mut granted = std::collections::BTreeMap::new();
    for record in stored {
        // Stored grants were checked when written; one that no longer parses grants nothing.
        if let Ok(grant) = serde_json::from_value::<AppletGrant>(record.body) {
            granted.insert(record.applet, grant);
        }
    }
    let mut problems = Vec::new();
    for (id, node) in &plan.nodes {
        let Some(info) = catalog.applet(&node.applet) else {
            continue;
        };
        let grant = grants::grant_for(&granted, node.applet.name(), node.applet.version());
        // What this node's config needs, not all the applet may use (`AppletInfo::needs`).
        let missing = grants::missing_needs(grant, &info.needs(&node.config));
        if missing.is_empty() {
            continue;
        }
        let needs: Vec<&str> = missing.iter().map(|c| c.name()).collect();
        problems.push(Problem {
            node: Some(id.clone()),
            field: "applet".into(),
            message: format!(
                "node `{id}` uses {}, which needs {} and is not granted it: grant it with PUT /v1/grants/{}",
                node.applet,
                needs.join(", "),
                node.applet.name()
            ),
        });
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut error = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "not-granted",
        problems
            .iter()
            .map(|p| p.message.clone())
            .collect::<Vec<_>>()
            .join("; "),
    );
    error.problems = problems;
    Err(error)
}
