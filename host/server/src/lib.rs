//! `coda-server`: the HTTP API of `coda serve`.
//!
//! Two APIs on one router. The operator API (`/v1/operator/…`, the operator's token)
//! creates tenants and their tokens. The tenant API (`/v1/…`, a tenant's token) uploads
//! and retires applets, publishes plans, takes interaction events, post-flow actions and
//! named events for waiting runs, and shows interactions and runs.
//!
//! **Architecture Invariant:** the tenant of a request comes from its token only, never from
//! the path or the body; every store read takes that tenant, so another tenant's id answers
//! 404 exactly as an id that does not exist.
//!
//! **Architecture Invariant:** a token is stored only as its SHA-256 and looked up by it;
//! the token itself is shown once, when it is created.
//!
//! **Architecture Invariant:** whatever a request holds, the answer is a 4xx in the one
//! error shape (`{"error": {"kind", "message"}}`), never a panic; a 5xx means the host
//! itself failed (its database).

mod applets;
mod auth;
mod console;
mod error;
mod fixture;
mod grants;
mod health;
mod intake;
mod interactions;
mod metrics;
mod openapi;
mod paging;
mod plans;
mod runs;
mod serve;
mod tenants;
mod usage;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use coda_flow::Engine;
use coda_types::AppletInfo;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use applets::{AppletInstaller, DEFAULT_UPLOAD_LIMIT, InspectedApplet, Refused};
pub use auth::{
    AUTH_FAILURE_BURST, AUTH_FAILURE_REFILL_PER_SEC, AUTH_THROTTLE_SOURCES, Caller, Operator,
    Tenant,
};
pub use error::ApiError;
pub use runs::{DEFAULT_MAX_TAILS, DEFAULT_MAX_TAILS_PER_TENANT};
pub use serve::{
    ConnLimits, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_RESERVED_CONNECTIONS, DEFAULT_SHUTDOWN_GRACE, DEFAULT_WRITE_TIMEOUT, raise_fd_limit,
    serve, serve_health,
};

/// The largest request body accepted, in bytes (a plan may be up to this size too:
/// `coda_plan::MAX_PLAN_BYTES`).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<Engine>,
    /// What the built-in (and operator-installed) applets describe, for every tenant.
    applets: Vec<AppletInfo>,
    /// Validates and compiles uploaded applets; none: uploads are refused.
    installer: Option<Arc<dyn AppletInstaller>>,
    /// The largest upload, unless a tenant's own limit says otherwise (`upload_limit`).
    upload_limit: usize,
    /// The vendor keys the operator trusts: a package signed by another key is refused.
    trusted_vendors: coda_package::TrustedKeys,
    /// Refuse unsigned uploads: only verified vendor packages are installed.
    require_signed_packages: bool,
    /// The SHA-256 of the operator's token.
    operator_hash: [u8; 32],
    /// Requests answered, by status class, for `/metrics`.
    http: metrics::HttpCounts,
    /// The key tenants' secrets are sealed with; without one, secrets cannot be written.
    secrets_key: std::sync::OnceLock<coda_store::SecretsKey>,
    /// The live tails open now, bounded in all and per tenant.
    tails: Arc<runs::TailSlots>,
    /// Failed token attempts, by source: a source that fails too often is slowed down.
    auth_failures: auth::Throttle,
}

impl AppState {
    /// `operator_token_hash` is [`hash_token`] of the operator's token (hex).
    pub fn new(
        engine: Arc<Engine>,
        applets: Vec<AppletInfo>,
        operator_token_hash: &str,
    ) -> Result<AppState, String> {
        let mut operator_hash = [0u8; 32];
        hex::decode_to_slice(operator_token_hash, &mut operator_hash)
            .map_err(|e| format!("the operator token's hash is not 64 hex digits: {e}"))?;
        Ok(AppState {
            inner: Arc::new(Inner {
                engine,
                applets,
                installer: None,
                upload_limit: DEFAULT_UPLOAD_LIMIT,
                trusted_vendors: coda_package::TrustedKeys::default(),
                require_signed_packages: false,
                operator_hash,
                http: metrics::HttpCounts::default(),
                secrets_key: std::sync::OnceLock::new(),
                tails: Arc::new(runs::TailSlots::new(
                    runs::DEFAULT_MAX_TAILS,
                    runs::DEFAULT_MAX_TAILS_PER_TENANT,
                )),
                auth_failures: auth::Throttle::default(),
            }),
        })
    }

    /// The state while it is being built: builder methods are called before it is shared.
    fn building(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner)
            .expect("AppState's builder methods are called before the state is cloned")
    }

    /// Takes applet uploads, checked and compiled by `installer`.
    pub fn with_installer(mut self, installer: Arc<dyn AppletInstaller>) -> AppState {
        self.building().installer = Some(installer);
        self
    }

    /// The default largest upload, in bytes ([`DEFAULT_UPLOAD_LIMIT`] unless set).
    pub fn with_upload_limit(mut self, bytes: usize) -> AppState {
        self.building().upload_limit = bytes;
        self
    }

    /// Vendor packages are verified against these keys (none: every package is refused as
    /// from an unknown signer).
    pub fn with_trusted_vendors(mut self, keys: coda_package::TrustedKeys) -> AppState {
        self.building().trusted_vendors = keys;
        self
    }

    /// Whether unsigned uploads are refused: then only verified vendor packages install.
    pub fn with_require_signed_packages(mut self, required: bool) -> AppState {
        self.building().require_signed_packages = required;
        self
    }

    /// The largest component `tenant` may upload, in bytes, as
    /// `coda_capabilities::grants::upload_limit` decides it from the tenant's ceiling; this
    /// server's default when the ceiling cannot be read.
    pub fn upload_limit(&self, tenant: &str) -> usize {
        match grants::tenant_ceiling(self, tenant) {
            Ok(settings) => {
                coda_capabilities::grants::upload_limit(&settings.ceiling, self.inner.upload_limit)
            }
            Err(_) => self.inner.upload_limit,
        }
    }

    /// The most live tails (`GET /v1/runs/{id}/tail`) open at once, in all and for one
    /// tenant; past either, a new tail is answered 429.
    pub fn with_tail_limits(mut self, total: usize, per_tenant: usize) -> AppState {
        self.building().tails = Arc::new(runs::TailSlots::new(total, per_tenant));
        self
    }

    /// Seals tenants' secrets with `key` (the operator's: see `coda serve`).
    pub fn with_secrets_key(self, key: coda_store::SecretsKey) -> Self {
        // Set once, at start; a second key would make the first one's secrets unreadable.
        let _ = self.inner.secrets_key.set(key);
        self
    }

    pub(crate) fn secrets_key(&self) -> Option<&coda_store::SecretsKey> {
        self.inner.secrets_key.get()
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    pub(crate) fn store(&self) -> &coda_store::Store {
        self.inner.engine.store()
    }
}

/// A new secret token: `prefix` and 32 random bytes as hex.
pub fn new_token(prefix: &str) -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a token: {e}"))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// How a token is stored and looked up: its SHA-256, as hex.
pub fn hash_token(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The API.
pub fn router(state: AppState) -> Router {
    let (router, doc) = api_router().split_for_parts();
    let doc = Arc::new(serde_json::to_value(&doc).unwrap_or_default());
    router
        // Unauthenticated and outside the document it describes.
        .route(
            "/openapi.json",
            axum::routing::get(openapi::document).with_state(doc),
        )
        // The web UI at `/` (console.rs): not API, so outside the document too.
        .merge(console::routes())
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::no_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_request,
        ))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// Every route, each registered with its OpenAPI entry: each resource module's `routes()`
/// takes its handlers' `#[utoipa::path]` through `routes!`, so a route cannot be served
/// without being documented.
fn api_router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(health::routes())
        .merge(tenants::routes())
        .merge(metrics::routes())
        .merge(usage::routes())
        .merge(plans::routes())
        .merge(runs::routes())
        .merge(fixture::routes())
        .merge(applets::routes())
        .merge(interactions::routes())
        .merge(intake::routes())
        .merge(grants::routes())
        .merge(webhooks::routes());
    openapi::declare_errors(router.get_openapi_mut());
    router
}

/// The OpenAPI document of the whole API, as `GET /openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().into_openapi()
}

/// One log line per request (`CODA_LOG=info`): method, path, status and time. Headers are
/// never logged: they carry the tokens.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}
