//! Tenants' own applets: upload (validated, compiled and described once), list, describe,
//! versions and retire; and the applets a tenant's plans may name.
//!
//! The server never sees wasmtime: an [`AppletInstaller`] (the `coda` binary's, over the
//! runtime) turns bytes into what the component describes. The bytes themselves go into the
//! store, so every node sharing the database can run them.
//!
//! An upload is a component (`application/wasm`) or a signed vendor package
//! (`application/vnd.coda.package`, or any body that is a ustar archive): a package is
//! verified against the operator's trusted vendor keys (`coda-package`), then its component
//! is installed exactly as an upload is, and the version keeps its vendor and manifest.
//!
//! **Architecture Invariant:** an upload is refused past the tenant's upload limit while
//! its body streams, before it is held whole; a version, once stored, never changes
//! (other bytes under the same name and version are a 409), and a name and version that a
//! built-in applet has cannot be uploaded.
//!
//! **Architecture Invariant:** a vendor package is installed only after its signature
//! verifies under a key the operator trusts for its vendor, its component is the one the
//! signed manifest pins, and the manifest declares every capability the component imports
//! or its `describe` declares; otherwise nothing is stored.

use coda_types::time::now_ms;
use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use axum::Json as Reply;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use coda_plan::{Plan, Problem, compare_versions};
use coda_store::{AppletRecord, NewApplet, PutApplet};
use coda_types::AppletInfo;
use serde::Serialize;
use serde_json::{Value as Json, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::PathArgs;
use crate::{ApiError, AppState, Tenant};

/// The largest component a tenant may upload unless the state says otherwise
/// ([`AppState::with_upload_limit`]).
pub const DEFAULT_UPLOAD_LIMIT: usize = 32 * 1024 * 1024;

/// What an installer found in a component it accepted.
#[derive(Debug, Clone)]
pub struct InspectedApplet {
    /// What its `describe` answered.
    pub info: AppletInfo,
    /// The coda interfaces it imports (`data`, `http`, ...): information for the tenant,
    /// not proof of need.
    pub coda_imports: Vec<String>,
    /// SHA-256 of the bytes, hex.
    pub digest: String,
}

/// Why an installer refused a component.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Stable, for programs: `invalid-component`, `unknown-import`, `too-large`, `trap`...
    /// The API answers with this kind as it is, so that it is the one the CLI prints for
    /// the same component.
    pub kind: &'static str,
    /// For people: what was wrong.
    pub message: String,
    /// The host failed, not the component: answered as a 500, with the message logged only.
    pub internal: bool,
}

/// Validates, compiles and describes uploaded components. The `coda` binary implements it
/// with the runtime (compiling once: the artifact cache is keyed by the digest); a server
/// with none refuses uploads.
#[async_trait]
pub trait AppletInstaller: Send + Sync {
    /// Checks `bytes` (at most `max_bytes`), compiles them and calls `describe`.
    async fn inspect(&self, bytes: &[u8], max_bytes: usize) -> Result<InspectedApplet, Refused>;
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    let (schemas, paths, upload) = routes!(upload);
    OpenApiRouter::new()
        // The router's 1 MiB body limit is for JSON; an upload's limit is the tenant's,
        // counted as the body streams in `read_limited`.
        .routes((schemas, paths, upload.layer(DefaultBodyLimit::disable())))
        .routes(routes!(list))
        .routes(routes!(versions))
        .routes(routes!(describe, retire))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        format!("the component is larger than this tenant's upload limit of {limit} bytes"),
    )
}

/// The body up to `limit` (`crate::error::read_limited`), refused as past the tenant's
/// upload limit `shown` (a package may pass the component's limit by its manifest and
/// signature).
async fn read_limited(request: Request, limit: usize, shown: usize) -> Result<Vec<u8>, ApiError> {
    let (parts, body) = request.into_parts();
    crate::error::read_limited(&parts.headers, body, limit, || too_large(shown)).await
}

fn refused(refusal: Refused) -> ApiError {
    if refusal.internal {
        return ApiError::internal(format!("installing a component: {}", refusal.message));
    }
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        refusal.kind,
        format!("the component is refused: {}", refusal.message),
    )
}

/// A package refused: 403 when its signer is not trusted (for its vendor), 413 when its
/// component passes the upload limit, 422 for everything else wrong with it.
fn package_refused(e: coda_package::PackageError) -> ApiError {
    use coda_package::PackageError as E;
    let (status, kind) = match &e {
        E::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large"),
        E::UnknownSigner { .. } | E::VendorMismatch { .. } => (StatusCode::FORBIDDEN, e.kind()),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, e.kind()),
    };
    ApiError::new(status, kind, format!("the package is refused: {e}"))
}

/// Whether the request says its body is a package.
fn declares_package(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(coda_package::CONTENT_TYPE))
}

/// What the store keeps of a verified package: enough to show where the version came from
/// and to verify it again (the manifest exactly as signed, and the signature).
fn package_record(verified: &coda_package::Verified) -> Json {
    json!({
        "vendor": verified.manifest.vendor,
        "key": verified.key.to_string(),
        "signature": verified.signature,
        "manifest": String::from_utf8_lossy(&verified.manifest_bytes),
    })
}

/// A built-in (or operator-installed) applet: the same for every tenant.
fn builtin_json(info: &AppletInfo) -> Json {
    let mut json = serde_json::to_value(info).unwrap_or(Json::Null);
    json["origin"] = json!("built-in");
    json["retired"] = json!(false);
    json
}

/// One of the tenant's uploaded versions: what it describes, what it imports, and its
/// record.
fn uploaded_json(record: &AppletRecord) -> Json {
    let mut json = match &record.info {
        Json::Object(_) => record.info.clone(),
        _ => json!({}),
    };
    json["name"] = json!(record.name);
    json["version"] = json!(record.version);
    json["origin"] = json!("uploaded");
    json["digest"] = json!(record.digest);
    json["size"] = json!(record.size);
    json["coda_imports"] = json!(record.imports);
    json["uploaded_at_ms"] = json!(record.uploaded_at_ms);
    json["retired"] = json!(record.retired_at_ms.is_some());
    json["retired_at_ms"] = json!(record.retired_at_ms);
    // Where it came from: a vendor's signed package (its vendor, the key that signed and
    // the manifest, with why it needs each capability), or the tenant's own upload.
    let package = record.package.as_ref();
    json["vendor"] = package.map_or(Json::Null, |p| p["vendor"].clone());
    json["package"] = package.map_or(Json::Null, |p| {
        let manifest = p["manifest"]
            .as_str()
            .and_then(|m| serde_json::from_str::<Json>(m).ok())
            .unwrap_or(Json::Null);
        json!({ "vendor": p["vendor"], "signed_by": p["key"], "manifest": manifest })
    });
    json
}

fn builtin<'a>(state: &'a AppState, name: &str, version: &str) -> Option<&'a AppletInfo> {
    state
        .inner
        .applets
        .iter()
        .find(|i| i.name == name && i.version == version)
}

/// `POST /v1/applets`: the body is the component, or a signed vendor package.
#[utoipa::path(post, path = "/v1/applets", request_body(description = "A WebAssembly component (any content type but the package's), or a vendor package signed by a key the operator trusts", content((crate::openapi::bodies::Bytes = "application/wasm"), (crate::openapi::bodies::Bytes = "application/octet-stream"), (crate::openapi::bodies::Bytes = "application/vnd.coda.package"))), responses((status = 201, description = "Installed", body = AppletDescribed)), security(("tenant" = [])))]
pub async fn upload(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let limit = state.upload_limit(&tenant);
    let declared_package = declares_package(&request);
    let body_limit = if declared_package {
        limit.saturating_add(coda_package::MAX_OVERHEAD as usize)
    } else {
        limit
    };
    let bytes = read_limited(request, body_limit, limit).await?;
    let Some(installer) = state.inner.installer.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "uploads-disabled",
            "this server takes no applet uploads",
        ));
    };
    // A package by its Content-Type or by its bytes: an archive sent as wasm is still
    // verified as a package, never taken for a component.
    let mut package = if declared_package || coda_package::is_package(&bytes) {
        let verified = coda_package::Package::read(&bytes, limit as u64)
            .and_then(|p| p.verify(&state.inner.trusted_vendors))
            .map_err(package_refused)?;
        Some(verified)
    } else if state.inner.require_signed_packages {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "package-required",
            "this service installs only signed vendor packages (the operator set \
             require_signed_packages): package the component with `coda applet package` and \
             push the .codapkg",
        ));
    } else {
        None
    };
    // The component alone from here on (moved out: it may be tens of megabytes).
    let bytes = match &mut package {
        Some(verified) => std::mem::take(&mut verified.component),
        None => bytes,
    };
    let inspected = installer.inspect(&bytes, limit).await.map_err(refused)?;
    if let Some(verified) = &package {
        verified
            .manifest
            .check_component(
                &inspected.info.name,
                &inspected.info.version,
                &inspected.info.capabilities,
                &inspected.coda_imports,
            )
            .map_err(package_refused)?;
    }
    let (name, version) = (&inspected.info.name, &inspected.info.version);
    if builtin(&state, name, version).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "applet-built-in",
            format!("{name}@{version} is a built-in applet: give yours another name or version"),
        ));
    }
    let info = serde_json::to_value(&inspected.info).map_err(ApiError::internal)?;
    let put = state
        .store()
        .put_applet(
            NewApplet {
                tenant: tenant.clone(),
                name: name.clone(),
                version: version.clone(),
                digest: inspected.digest.clone(),
                info,
                imports: inspected.coda_imports.clone(),
                bytes,
                package: package.as_ref().map(package_record),
            },
            now_ms(),
        )
        .await?;
    match put {
        PutApplet::Created(record) => {
            let vendor = package.as_ref().map(|p| p.manifest.vendor.as_str());
            tracing::info!(tenant, applet = %format!("{name}@{version}"), digest = %record.digest, size = record.size, vendor, "applet uploaded");
            Ok((
                StatusCode::CREATED,
                Reply(AppletDescribed::from_json(uploaded_json(&record))),
            )
                .into_response())
        }
        PutApplet::Unchanged(record) => Ok(Reply(uploaded_json(&record)).into_response()),
        PutApplet::Conflict(record) if record.retired_at_ms.is_some() => Err(ApiError::new(
            StatusCode::CONFLICT,
            "applet-retired",
            format!("{name}@{version} was retired and stays retired: upload it as a new version"),
        )),
        PutApplet::Conflict(record) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "applet-version-exists",
            format!(
                "{name}@{version} exists with other contents (digest {}); versions are immutable: \
                 upload it as a new version",
                record.digest
            ),
        )),
    }
}

/// One version of an applet, as its name's list shows it.
#[derive(Serialize, ToSchema)]
pub struct AppletVersion {
    version: String,
    /// `built-in` or `uploaded`.
    origin: &'static str,
    /// An uploaded version's SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uploaded_at_ms: Option<i64>,
    retired: bool,
}

/// An applet name's versions, built-in and uploaded.
#[derive(Serialize, ToSchema)]
pub struct AppletEntry {
    name: String,
    /// `built-in`, `uploaded` or both.
    origins: Vec<&'static str>,
    /// In version order.
    versions: Vec<AppletVersion>,
}

/// The tenant's applets, by name.
#[derive(Serialize, ToSchema)]
pub struct AppletList {
    applets: Vec<AppletEntry>,
}

/// One version described: what it declares (`describe`: its exits, config, needs) and
/// imports, and for an upload its record (digest, size, vendor and package when signed).
#[derive(Serialize, ToSchema)]
pub struct AppletDescribed {
    name: String,
    version: String,
    /// `built-in` or `uploaded`.
    origin: String,
    retired: bool,
    /// The rest of what it describes and, for an upload, its record: `description`,
    /// `exits`, `config`, `needs`, `digest`, `size`, `coda_imports`, `uploaded_at_ms`,
    /// `retired_at_ms`, `vendor`, `package`.
    #[serde(flatten)]
    described: serde_json::Map<String, Json>,
}

impl AppletDescribed {
    fn from_json(json: Json) -> AppletDescribed {
        let mut described = match json {
            Json::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let mut text = |key: &str| match described.remove(key) {
            Some(Json::String(s)) => s,
            _ => String::new(),
        };
        let (name, version, origin) = (text("name"), text("version"), text("origin"));
        let retired = described
            .remove("retired")
            .and_then(|r| r.as_bool())
            .unwrap_or(false);
        AppletDescribed {
            name,
            version,
            origin,
            retired,
            described,
        }
    }
}

/// One applet name's versions, built-in and uploaded, in version order.
fn version_entries(builtins: &[&AppletInfo], uploaded: &[&AppletRecord]) -> Vec<AppletVersion> {
    let mut entries: Vec<AppletVersion> = builtins
        .iter()
        .map(|i| AppletVersion {
            version: i.version.clone(),
            origin: "built-in",
            digest: None,
            uploaded_at_ms: None,
            retired: false,
        })
        .chain(uploaded.iter().map(|r| AppletVersion {
            version: r.version.clone(),
            origin: "uploaded",
            digest: Some(r.digest.clone()),
            uploaded_at_ms: Some(r.uploaded_at_ms),
            retired: r.retired_at_ms.is_some(),
        }))
        .collect();
    entries.sort_by(|a, b| compare_versions(&a.version, &b.version));
    entries
}

/// The tenant's view of the applets, by name (`{name, origins, versions}` each): built-ins
/// and its own uploads.
fn by_name(state: &AppState, tenant: &str) -> Result<BTreeMap<String, AppletEntry>, ApiError> {
    let records = state.store().tenant_applets(tenant)?;
    let mut names: BTreeSet<&str> = state
        .inner
        .applets
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    names.extend(records.iter().map(|r| r.name.as_str()));
    let mut answer = BTreeMap::new();
    for name in names {
        let builtins: Vec<&AppletInfo> = state
            .inner
            .applets
            .iter()
            .filter(|i| i.name == name)
            .collect();
        let uploaded: Vec<&AppletRecord> = records.iter().filter(|r| r.name == name).collect();
        let mut origins = Vec::new();
        if !builtins.is_empty() {
            origins.push("built-in");
        }
        if !uploaded.is_empty() {
            origins.push("uploaded");
        }
        let versions = version_entries(&builtins, &uploaded);
        answer.insert(
            name.to_owned(),
            AppletEntry {
                name: name.to_owned(),
                origins,
                versions,
            },
        );
    }
    Ok(answer)
}

/// `GET /v1/applets`.
#[utoipa::path(get, path = "/v1/applets", responses((status = 200, description = "The tenant's applets", body = AppletList)), security(("tenant" = [])))]
pub async fn list(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<Reply<AppletList>, ApiError> {
    let applets = by_name(&state, &tenant)?.into_values().collect();
    Ok(Reply(AppletList { applets }))
}

fn unknown_applet(name: &str, version: Option<&str>) -> ApiError {
    ApiError::not_found(
        "unknown-applet",
        match version {
            Some(version) => format!("applet `{name}` version `{version}` not found"),
            None => format!("applet `{name}` not found"),
        },
    )
}

/// `GET /v1/applets/{name}`.
#[utoipa::path(get, path = "/v1/applets/{name}", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the applet's name")), responses((status = 200, description = "An applet's versions", body = AppletEntry)), security(("tenant" = [])))]
pub async fn versions(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs(name): PathArgs<String>,
) -> Result<Reply<AppletEntry>, ApiError> {
    match by_name(&state, &tenant)?.remove(&name) {
        Some(entry) => Ok(Reply(entry)),
        None => Err(unknown_applet(&name, None)),
    }
}

/// `GET /v1/applets/{name}/versions/{version}`.
#[utoipa::path(get, path = "/v1/applets/{name}/versions/{version}", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the applet's name"), ("version" = String, Path, description = "an exact version (1.2.0)")), responses((status = 200, description = "One version described", body = AppletDescribed)), security(("tenant" = [])))]
pub async fn describe(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs((name, version)): PathArgs<(String, String)>,
) -> Result<Reply<AppletDescribed>, ApiError> {
    if let Some(info) = builtin(&state, &name, &version) {
        return Ok(Reply(AppletDescribed::from_json(builtin_json(info))));
    }
    match state.store().tenant_applet(&tenant, &name, &version)? {
        Some(record) => Ok(Reply(AppletDescribed::from_json(uploaded_json(&record)))),
        None => Err(unknown_applet(&name, Some(&version))),
    }
}

/// `DELETE /v1/applets/{name}/versions/{version}`: retires the version. Plan versions
/// published before and runs in flight keep running it; publishing a plan that names it
/// is refused from now on.
#[utoipa::path(delete, path = "/v1/applets/{name}/versions/{version}", params(("name" = String, Path, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$", description = "the applet's name"), ("version" = String, Path, description = "an exact version (1.2.0)")), responses((status = 200, description = "Retired", body = AppletDescribed)), security(("tenant" = [])))]
pub async fn retire(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathArgs((name, version)): PathArgs<(String, String)>,
) -> Result<Reply<AppletDescribed>, ApiError> {
    if builtin(&state, &name, &version).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "applet-built-in",
            format!("{name}@{version} is a built-in applet: built-in applets cannot be retired"),
        ));
    }
    match state
        .store()
        .retire_applet(&tenant, &name, &version, now_ms())
        .await?
    {
        Some(record) => Ok(Reply(AppletDescribed::from_json(uploaded_json(&record)))),
        None => Err(unknown_applet(&name, Some(&version))),
    }
}

/// What a tenant's plan may name: the built-in applets and the tenant's uploaded versions
/// that are not retired (never another tenant's).
pub(crate) fn usable_applets(state: &AppState, tenant: &str) -> Result<Vec<AppletInfo>, ApiError> {
    let mut infos = state.inner.applets.clone();
    for record in state.store().tenant_applets(tenant)? {
        if record.retired_at_ms.is_some() {
            continue;
        }
        // Stored from a describe that parsed; one that no longer does is not offered.
        match serde_json::from_value::<AppletInfo>(record.info) {
            Ok(info) => infos.push(info),
            Err(e) => tracing::warn!(
                tenant,
                applet = %format!("{}@{}", record.name, record.version),
                "a stored applet's describe does not parse: {e}"
            ),
        }
    }
    Ok(infos)
}

/// A plan's validation problems, with "not installed" said as "retired" for each node that
/// names one of the tenant's retired versions.
pub(crate) fn naming_retired(
    state: &AppState,
    tenant: &str,
    plan: &Plan,
    mut problems: Vec<Problem>,
) -> Result<Vec<Problem>, ApiError> {
    let retired: BTreeSet<String> = state
        .store()
        .tenant_applets(tenant)?
        .into_iter()
        .filter(|r| r.retired_at_ms.is_some())
        .map(|r| format!("{}@{}", r.name, r.version))
        .collect();
    if retired.is_empty() {
        return Ok(problems);
    }
    for problem in &mut problems {
        let Some(node_id) = &problem.node else {
            continue;
        };
        let Some(node) = plan.nodes.get(node_id) else {
            continue;
        };
        let applet = node.applet.to_string();
        // The only `.applet` problem of a node whose applet is not in the catalog is the
        // unknown-applet one (the others need what the applet describes).
        if problem.field == format!("nodes.{node_id}.applet") && retired.contains(&applet) {
            problem.message = format!(
                "the applet {applet} is retired: plans published from now on cannot use it \
                 (runs and plan versions published before keep it)"
            );
        }
    }
    Ok(problems)
}
