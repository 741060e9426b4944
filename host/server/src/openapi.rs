//! The OpenAPI document of the whole API (`GET /openapi.json`), generated from the code:
//! every handler carries `#[utoipa::path]` and every route is registered through
//! `OpenApiRouter::routes(routes!(...))`, so a route cannot exist without its entry.

use axum::Json as Reply;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The one error shape of every refusal: `{"error": {"kind", "message"}}`.
#[derive(ToSchema)]
#[allow(dead_code)] // only its schema is used: `ApiError` writes the JSON itself
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// A stable, machine-readable kind (`not-found`, `invalid-json`, `no-route`…).
    kind: String,
    /// For a person: names the field or value at fault.
    message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "coda", description = "The HTTP API of `coda serve`"),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&SecuritySchemes)
)]
pub(crate) struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("operator", "The operator's token"),
            ("tenant", "A tenant's token"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(what))
                        .build(),
                ),
            );
        }
    }
}

/// `GET /openapi.json`: the document, built once when the router is.
pub(crate) async fn document(
    axum::extract::State(doc): axum::extract::State<std::sync::Arc<serde_json::Value>>,
) -> Reply<serde_json::Value> {
    Reply((*doc).clone())
}
