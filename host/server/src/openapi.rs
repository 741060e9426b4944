//! The OpenAPI document of the whole API (`GET /openapi.json`), generated from the code:
//! every handler carries `#[utoipa::path]` and every route is registered through
//! `OpenApiRouter::routes(routes!(...))`, so a route cannot exist without its entry.
//!
//! A handler's `#[utoipa::path]` declares its successes only. The error answers every
//! route shares (a 4XX refusal and a 5XX failure of the host, both in the one error shape)
//! are declared once, here ([`declare_errors`]); the tidy test keeps them out of the
//! handlers.

use axum::Json as Reply;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
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
        // A platform's delivery (`POST /v1/intake/{adapter}/{connection}`) carries no coda
        // token: Twilio signs it, the other platforms send the header their connection names.
        components.add_security_scheme(
            "platform",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Twilio-Signature",
                "The platform's own: Twilio's X-Twilio-Signature, or the header (and secret \
                 value) the intake connection names",
            ))),
        );
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

/// The schemas of request bodies whose Rust types live in crates that know nothing of
/// OpenAPI (coda-flow, coda-capabilities, coda-store). Each mirrors its type field for field
/// (`deny_unknown_fields` as it does, so the document refuses what the server refuses);
/// only the schema is used, the handlers deserialize the real type.
#[allow(dead_code)]
pub(crate) mod bodies {
    use serde::Deserialize;
    use serde_json::Value as Json;
    use utoipa::ToSchema;

    /// An interaction's channel.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum Channel {
        Voice,
        Chat,
        Sms,
        Email,
        Task,
    }

    /// An intake connection (`coda_intake::ConnectionConfig`): which platform delivers, the
    /// tenant secret its deliveries are authenticated with, the live plan interactions start
    /// under, and how its attributes map to data sources.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct IntakeConnection {
        adapter: IntakeAdapter,
        /// The tenant secret holding Twilio's auth token, or the header value the platform
        /// sends.
        #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
        secret: String,
        /// The header carrying the secret: required for every adapter but `twilio`, refused
        /// for `twilio`.
        #[serde(default)]
        #[schema(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")]
        header: Option<String>,
        /// `twilio` only: the Event Callback URL exactly as configured in the Workspace.
        #[serde(default)]
        #[schema(pattern = r"^https?://\S{1,2040}$")]
        public_url: Option<String>,
        /// The live plan each interaction starts under.
        #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
        plan: String,
        /// The channel when the payload names none coda knows.
        #[serde(default)]
        channel: Option<Channel>,
        /// The named event a wrap-up is delivered as (`disposition` by default).
        #[serde(default)]
        #[schema(min_length = 1, max_length = 64)]
        wrapup_event: Option<String>,
        /// Data source name to a JSON pointer (or a list tried in order) in the payload,
        /// over the adapter's defaults (the server also takes `null` for a name, dropping
        /// its default).
        #[serde(default)]
        #[schema(value_type = Option<std::collections::HashMap<String, MappingSources>>)]
        mapping: Option<Json>,
    }

    /// A data source's places in the payload: a JSON pointer (`/detail/queueInfo/queueArn`),
    /// or several tried in order.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub enum MappingSources {
        One(String),
        Many(Vec<String>),
    }

    /// The platforms an intake connection can take events from.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum IntakeAdapter {
        Twilio,
        AmazonConnect,
        Genesys,
        Cloudevents,
    }

    /// A platform's JSON event, as it sends it: an EventBridge event (Amazon Connect, or
    /// Genesys Cloud through its EventBridge integration), a Genesys Cloud notification, or
    /// a structured CloudEvent.
    #[derive(Deserialize, ToSchema)]
    #[schema(value_type = std::collections::HashMap<String, Json>)]
    pub struct IntakePayload(serde_json::Map<String, Json>);

    /// A Twilio TaskRouter event callback: its form fields (`EventType`, `TaskSid`, …).
    #[derive(Deserialize, ToSchema)]
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub struct IntakeForm(std::collections::HashMap<String, String>);

    /// A party of an interaction.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum Party {
        Caller,
        Agent,
    }

    /// An event about an interaction, as a contact center sends it (`type` says which).
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub enum InteractionEvent {
        Started(Started),
        PartyJoined(PartyJoined),
        PartyDisconnected(PartyDisconnected),
        Ended(Ended),
    }

    /// The one `type` of each event.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum StartedType {
        Started,
    }
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum PartyJoinedType {
        PartyJoined,
    }
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum PartyDisconnectedType {
        PartyDisconnected,
    }
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum EndedType {
        Ended,
    }

    /// The interaction started.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Started {
        #[serde(rename = "type")]
        kind: StartedType,
        #[schema(
            pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$"
        )]
        interaction: String,
        channel: Channel,
        /// The live plan; its `post_interaction` plan starts when the interaction ends.
        #[serde(default)]
        #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
        plan: Option<String>,
        /// Data sources: CLID, DialedNumber, Language and custom ones.
        #[serde(default)]
        data: serde_json::Map<String, Json>,
        /// The skill it was routed by.
        #[serde(default)]
        #[schema(
            pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$"
        )]
        skill: Option<String>,
    }

    /// A party joined.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct PartyJoined {
        #[serde(rename = "type")]
        kind: PartyJoinedType,
        #[schema(
            pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$"
        )]
        interaction: String,
        party: Party,
        /// Which agent joined (an agent party).
        #[serde(default)]
        #[schema(
            pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$"
        )]
        agent: Option<String>,
    }

    /// A party left.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct PartyDisconnected {
        #[serde(rename = "type")]
        kind: PartyDisconnectedType,
        #[schema(
            pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$"
        )]
        interaction: String,
        party: Party,
    }

    /// The interaction ended: its post-interaction plan starts.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Ended {
        #[serde(rename = "type")]
        kind: EndedType,
        #[schema(
            pattern = r"^[^\s/\\\x00-\x1f\x7f-\x9f](?:[^/\\\x00-\x1f\x7f-\x9f]{0,30}[^\s/\\\x00-\x1f\x7f-\x9f])?$"
        )]
        interaction: String,
        #[serde(default)]
        outcome: Option<String>,
    }

    /// The started run's data source `InvocationData`: a JSON value, or an expression
    /// over the interaction's data sources.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    pub enum InvocationData {
        Json(InvocationJson),
        Expression(InvocationExpression),
    }

    /// A JSON value, as given.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct InvocationJson {
        json: Json,
    }

    /// An expression over the interaction's data sources, evaluated when the action is set.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct InvocationExpression {
        expression: String,
    }

    /// A host pattern: `api.example.com`, `*.example.com`, `*`, each with an optional
    /// `:port` or `:*` (the server also takes `[IPv6]:port`).
    #[derive(Deserialize, ToSchema)]
    #[schema(
        pattern = r"^(?:\*|(?:\*\.)?[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?)(?::(?:\*|[1-9][0-9]{0,3}))?$"
    )]
    pub struct HostPattern(String);

    /// An IPv4 address range (`10.20.0.0/16`; the server also takes IPv6 ranges).
    #[derive(Deserialize, ToSchema)]
    #[schema(
        pattern = r"^(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}/(?:3[0-2]|[12]?[0-9])$"
    )]
    pub struct AddressRange(String);

    /// A named event's payload: any JSON but `null` (the body is optional: leave it out for
    /// none), the waiting runs' data source `Event`. Written by hand: `null` must be no
    /// payload, or the optional body's `oneOf [payload, null]` would match it twice.
    pub struct EventPayload;

    impl utoipa::PartialSchema for EventPayload {
        fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
            use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
            let any_but_null = [
                Type::Object,
                Type::Array,
                Type::String,
                Type::Number,
                Type::Boolean,
            ];
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter(any_but_null))
                .description(Some(
                    "Any JSON but null: the waiting runs' data source `Event`",
                ))
                .into()
        }
    }

    impl ToSchema for EventPayload {
        fn name() -> std::borrow::Cow<'static, str> {
            "EventPayload".into()
        }
    }

    /// Bytes as sent: a component or a package.
    #[derive(ToSchema)]
    #[schema(value_type = String, format = Binary)]
    pub struct Bytes(Vec<u8>);

    /// A secret's name.
    #[derive(Deserialize, ToSchema)]
    #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub struct SecretName(String);

    /// The customer's contact in a patch or a clone; `null` clears a field.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct CustomerFields {
        name: Option<String>,
        /// Digits, spaces and `+-().`, at most 32.
        #[schema(pattern = r"^[ +().-]{0,16}[0-9][0-9 +().-]{0,15}$")]
        phone: Option<String>,
        email: Option<String>,
    }

    /// A JSON merge patch of a completed interaction's editable details; `null` clears.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct DetailsPatch {
        subject: Option<String>,
        #[serde(rename = "type")]
        interaction_type: Option<String>,
        result: Option<String>,
        notes: Option<String>,
        /// `null` clears the whole contact.
        customer: Option<CustomerFields>,
        /// By name; a `null` value removes that field, `null` for the map removes all.
        custom_fields: Option<serde_json::Map<String, Json>>,
    }

    /// A new outbound interaction cloned from a completed one.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct CloneRequest {
        channel: Channel,
        queue: String,
        /// The original's when left out.
        #[serde(default)]
        subject: Option<String>,
        /// Changes to the customer prefilled from the original.
        #[serde(default)]
        customer: Option<CustomerFields>,
    }

    /// A disposition an agent submits.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Disposition {
        code: String,
        #[serde(default)]
        amount: Option<f64>,
        #[serde(default)]
        notes: Option<String>,
    }

    /// Which disconnect fires a post-flow action.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum PostFlowTarget {
        Agent,
        Caller,
        Any,
    }

    /// A post-flow action to set on a live interaction.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct SetPostFlow {
        target: PostFlowTarget,
        /// What kind of flow it starts (`inbound-call-flow`, `voice-survey-flow`).
        action: String,
        #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
        plan: String,
        invocation_data: InvocationData,
    }

    /// What a tenant grants one applet; each field at most what the operator's ceiling
    /// allows (more: 422).
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct AppletGrant {
        #[serde(default)]
        http: Vec<HostPattern>,
        #[serde(default)]
        email: bool,
        /// Database names.
        #[serde(default)]
        sql: Vec<String>,
        #[serde(default)]
        secrets: Vec<SecretName>,
        #[serde(default)]
        interactions: bool,
        /// Key prefixes of the tenant's key-value store (`contact/`); `""`: every key.
        #[serde(default)]
        kv: Vec<String>,
    }

    /// What the operator allows a tenant at most; everything defaults to nothing.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Ceiling {
        /// Host patterns the tenant's HTTP calls may reach.
        #[serde(default)]
        http_hosts: Vec<HostPattern>,
        /// Address ranges otherwise refused (loopback, private, link-local) that the
        /// tenant's HTTP calls may reach.
        #[serde(default)]
        allow_private: Vec<AddressRange>,
        #[serde(default)]
        email: bool,
        #[serde(default)]
        max_recipients: Option<u32>,
        #[serde(default)]
        databases: Vec<String>,
        /// Secret names: for a settings file; the service's tenants name their own (cap
        /// how many with `max_secrets`), so it is always empty here.
        #[serde(default)]
        #[schema(max_items = 0)]
        secrets: Vec<String>,
        #[serde(default)]
        interactions: bool,
        #[serde(default)]
        email_per_hour: Option<u32>,
        #[serde(default)]
        max_secrets: Option<u32>,
        #[serde(default)]
        fuel: Option<u64>,
        #[serde(default)]
        memory_bytes: Option<u64>,
        #[serde(default)]
        upload_bytes: Option<u64>,
        #[serde(default)]
        concurrency: Option<u32>,
        /// The tenant's key-value store and its limits (`{}` for the defaults); none: no
        /// key-value store.
        #[serde(default)]
        kv: Option<serde_json::Map<String, Json>>,
    }

    /// A tenant's ceiling as the operator sets it, with the SMTP server and databases it
    /// may use. The answer of `GET` is accepted back as it is: what it shows in place of a
    /// credential keeps the stored one.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct CeilingSettings {
        /// As `GET` shows it: if given, the tenant of the path.
        #[serde(default)]
        #[schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
        tenant: Option<String>,
        /// As `GET` shows it; ignored.
        #[serde(default)]
        set: Option<bool>,
        #[serde(default)]
        ceiling: Option<Ceiling>,
        /// `{host, port, tls, username, password, from, timeout_ms, authenticated}`.
        /// Without `username` and `password` the stored ones are kept;
        /// `"authenticated": false` drops them; given, they replace them.
        #[serde(default)]
        smtp: Option<serde_json::Map<String, Json>>,
        /// Database URLs by name (`sqlite:PATH`, `postgres://...`). A URL exactly as `GET`
        /// shows it (`***` in place of its credentials) keeps the stored URL; any other
        /// replaces it.
        #[serde(default)]
        databases: std::collections::BTreeMap<String, String>,
    }
}
