//! The OpenAPI document of the whole API (`GET /openapi.json`), generated from the code:
//! every handler carries `#[utoipa::path]` and every route is registered through
//! `OpenApiRouter::routes(routes!(...))`, so a route cannot exist without its entry.
//!
//! A handler's `#[utoipa::path]` declares its successes only. The error answers every
//! route shares (a 4XX refusal and a 5XX failure of the host, both in the one error shape)
//! are declared once, here ([`declare_errors`]); the tidy test keeps them out of the
//! handlers.

use axum::Json as Reply;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
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

/// The error answers of every operation, as `{"error": {"kind", "message"}}`: a refusal
/// (4XX: the request's fault, its kind and message naming what was wrong) and the host's
/// own failure (5XX: its database). Declared here for every route, once the routes are
/// merged, rather than in each handler's `#[utoipa::path]`.
pub(crate) fn declare_errors(openapi: &mut utoipa::openapi::OpenApi) {
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    let refused = error("Refused: the one error shape");
    let failed = error("The host itself failed (its database)");
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            responses.insert("4XX".into(), refused.clone().into());
            responses.insert("5XX".into(), failed.clone().into());
        }
    }
}

/// `GET /openapi.json`: the document, built once when the router is.
pub(crate) async fn document(
    axum::extract::State(doc): axum::extract::State<std::sync::Arc<serde_json::Value>>,
) -> Reply<serde_json::Value> {
    Reply((*doc).clone())
}
