//! `GET /v1/usage?since=&until=`: what the tenant used in a time window, for billing —
//! applet invocations, the fuel they burnt, and the capability calls they made (emails,
//! HTTP, SQL, follow-ups), from the steps journal and the effect journal.

use axum::Json as Reply;
use axum::extract::State;
use coda_types::capabilities::CallKind;
use coda_types::time::{self, format_time, month_start};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{QueryArgs, check_window, time_window};
use crate::{ApiError, AppState, Tenant};

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
#[utoipa::path(get, path = "/v1/usage", params(("since" = Option<String>, Query, description = "RFC 3339, a date, ms since the epoch, or a duration ago (7d)"), ("until" = Option<String>, Query, description = "RFC 3339, a date, ms since the epoch, or a duration ago (7d)")), responses((status = 200, description = "The tenant's usage", body = Object)), security(("tenant" = [])))]
async fn usage(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    QueryArgs(query): QueryArgs<UsageQuery>,
) -> Result<Reply<Json>, ApiError> {
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
    Ok(Reply(json!({
        "tenant": tenant,
        "since": format_time(since),
        "until": format_time(until),
        "invocations": usage.invocations,
        "fuel_used": usage.fuel_used,
        "invocation_ms": usage.duration_us / 1000,
        "emails_sent": email.succeeded,
        "email_calls": email.calls,
        "http_calls": calls(CallKind::Http),
        "sql_calls": calls(CallKind::SqlQuery) + calls(CallKind::SqlExecute),
        "follow_ups": calls(CallKind::Interactions),
        "kv_calls": calls(CallKind::Kv),
        "effects": usage.effects,
    })))
}
