//! `GET /v1/usage?since=&until=`: what the tenant used in a time window, for billing —
//! applet invocations, the fuel they burnt, and the capability calls they made (emails,
//! HTTP, SQL, follow-ups), from the steps journal and the effect journal.

use axum::Json as Reply;
use axum::extract::State;
use coda_types::capabilities::CallKind;
use coda_types::time::{self, format_time, month_start};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{QueryArgs, check_window, time_window};
use crate::{ApiError, AppState, Tenant};

/// What a tenant used in `[since, until)`.
#[derive(Serialize, ToSchema)]
pub struct UsageAnswer {
    tenant: String,
    /// RFC 3339.
    since: String,
    /// RFC 3339.
    until: String,
    /// Steps that ran an applet.
    invocations: u64,
    /// Fuel those invocations used.
    fuel_used: u64,
    /// Wall time those invocations took.
    invocation_ms: u64,
    emails_sent: u64,
    email_calls: u64,
    http_calls: u64,
    sql_calls: u64,
    follow_ups: u64,
    kv_calls: u64,
    /// Capability calls by kind (`http`, `email`, `sql-query`, `sql-execute`,
    /// `interactions`, `kv`).
    effects: std::collections::BTreeMap<String, Calls>,
}

/// Capability calls of one kind.
#[derive(Serialize, ToSchema)]
pub struct Calls {
    /// Calls made, whatever their result.
    calls: u64,
    /// Calls that succeeded; the rest answered a host error.
    succeeded: u64,
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(usage))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    since: Option<String>,
    until: Option<String>,
}

/// The window `[since, until)`: `until` defaults to now, `since` to the start of `until`'s
/// month (UTC), the usual billing period.
#[utoipa::path(get, path = "/v1/usage", params(("since" = Option<String>, Query, pattern = r"^(?:[0-9]{1,13}|[1-9][0-9]{0,3}[smhdw]|(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,3})?Z)?)$", description = "RFC 3339, a date, ms since the epoch, or a duration ago (7d)"), ("until" = Option<String>, Query, pattern = r"^(?:[0-9]{1,13}|[1-9][0-9]{0,3}[smhdw]|(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,3})?Z)?)$", description = "RFC 3339, a date, ms since the epoch, or a duration ago (7d)")), responses((status = 200, description = "The tenant's usage", body = UsageAnswer)), security(("tenant" = [])))]
async fn usage(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    QueryArgs(query): QueryArgs<UsageQuery>,
) -> Result<Reply<UsageAnswer>, ApiError> {
    let now = time::now_ms();
    let (since, until) = time_window(query.since.as_deref(), query.until.as_deref(), now)?;
    let until = until.unwrap_or(now);
    let since = since.unwrap_or(month_start(until));
    // Checked again with the defaults: `until` alone may be its month's first instant.
    check_window(since, until)?;
    let usage = state.store().usage(&tenant, since, until)?;
    let calls = |kind: CallKind| usage.effects.get(kind.as_str()).map_or(0, |c| c.calls);
    let email = usage
        .effects
        .get(CallKind::Email.as_str())
        .copied()
        .unwrap_or_default();
    Ok(Reply(UsageAnswer {
        tenant,
        since: format_time(since),
        until: format_time(until),
        invocations: usage.invocations,
        fuel_used: usage.fuel_used,
        invocation_ms: usage.duration_us / 1000,
        emails_sent: email.succeeded,
        email_calls: email.calls,
        http_calls: calls(CallKind::Http),
        sql_calls: calls(CallKind::SqlQuery) + calls(CallKind::SqlExecute),
        follow_ups: calls(CallKind::Interactions),
        kv_calls: calls(CallKind::Kv),
        effects: usage
            .effects
            .iter()
            .map(|(kind, c)| {
                let calls = Calls {
                    calls: c.calls,
                    succeeded: c.succeeded,
                };
                (kind.clone(), calls)
            })
            .collect(),
    }))
}
