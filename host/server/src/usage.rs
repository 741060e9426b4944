//! `GET /v1/usage?since=&until=`: what the tenant used in a time window, for billing —
//! applet invocations, the fuel they burnt, and the capability calls they made (emails,
//! HTTP, SQL, follow-ups), from the steps journal and the effect journal.

use axum::Json as Reply;
use axum::extract::State;
use axum::http::StatusCode;
use coda_types::capabilities::CallKind;
use coda_types::time::{self, format_time, month_start};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{QueryArgs, check_window, time_window};
use crate::{ApiError, AppState, Tenant};

/// The most buckets one answer holds: a month by the hour (744) fits, a year by the hour
/// does not (ask for days).
pub const MAX_USAGE_BUCKETS: i64 = 1000;

/// What a tenant used in `[since, until)`.
#[derive(Serialize, ToSchema)]
pub struct UsageAnswer {
    tenant: String,
    /// RFC 3339.
    since: String,
    /// RFC 3339.
    until: String,
    #[serde(flatten)]
    totals: UsageCounts,
    /// Capability calls by kind (`http`, `email`, `sql-query`, `sql-execute`,
    /// `interactions`, `kv`).
    effects: std::collections::BTreeMap<String, Calls>,
    /// With `bucket`: the window cut into hours or days from `since` (the last one cut
    /// short at `until`), oldest first, every one present; their counts add up to the
    /// totals above.
    #[serde(skip_serializing_if = "Option::is_none")]
    buckets: Option<Vec<UsageBucket>>,
}

/// The counts of a window or of one of its buckets.
#[derive(Serialize, ToSchema)]
pub struct UsageCounts {
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
}

/// One bucket of the series: `[since, until)`.
#[derive(Serialize, ToSchema)]
pub struct UsageBucket {
    /// RFC 3339.
    since: String,
    /// RFC 3339.
    until: String,
    #[serde(flatten)]
    counts: UsageCounts,
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
    bucket: Option<String>,
}

/// A bucket's width in ms, from `bucket`.
fn bucket_width(bucket: &str) -> Result<i64, ApiError> {
    match bucket {
        "hour" => Ok(3_600_000),
        "day" => Ok(86_400_000),
        other => Err(ApiError::bad_request(
            "invalid-query",
            format!("`bucket` must be `hour` or `day`, not `{other}`"),
        )),
    }
}

fn counts(usage: &coda_store::Usage) -> UsageCounts {
    let calls = |kind: CallKind| usage.effects.get(kind.as_str()).map_or(0, |c| c.calls);
    let email = usage
        .effects
        .get(CallKind::Email.as_str())
        .copied()
        .unwrap_or_default();
    UsageCounts {
        invocations: usage.invocations,
        fuel_used: usage.fuel_used,
        invocation_ms: usage.duration_us / 1000,
        emails_sent: email.succeeded,
        email_calls: email.calls,
        http_calls: calls(CallKind::Http),
        sql_calls: calls(CallKind::SqlQuery) + calls(CallKind::SqlExecute),
        follow_ups: calls(CallKind::Interactions),
        kv_calls: calls(CallKind::Kv),
    }
}

/// The window `[since, until)`: `until` defaults to now, `since` to the start of `until`'s
/// month (UTC), the usual billing period. With `bucket=hour` or `bucket=day`, also the
/// series of the window's hours or days counted from `since` (at most 1000: more is a 422
/// naming the limit).
#[utoipa::path(get, path = "/v1/usage", params(("since" = Option<String>, Query, pattern = r"^(?:[0-9]{1,13}|[1-9][0-9]{0,3}[smhdw]|(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,3})?Z)?)$", description = "RFC 3339, a date, ms since the epoch, or a duration ago (7d)"), ("until" = Option<String>, Query, pattern = r"^(?:[0-9]{1,13}|[1-9][0-9]{0,3}[smhdw]|(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,3})?Z)?)$", description = "RFC 3339, a date, ms since the epoch, or a duration ago (7d)"), ("bucket" = Option<String>, Query, pattern = r"^(?:hour|day)$", description = "`hour` or `day`: also the series of the window's hours or days from `since`, at most 1000")), responses((status = 200, description = "The tenant's usage", body = UsageAnswer)), security(("tenant" = [])))]
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
    let width = query.bucket.as_deref().map(bucket_width).transpose()?;
    let store = state.store();
    let usage = store.usage(&tenant, since, until)?;
    let buckets = match width {
        None => None,
        Some(width) => {
            let count = coda_store::bucket_count(since, until, width);
            if count > MAX_USAGE_BUCKETS {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "too-many-buckets",
                    format!(
                        "the window holds {count} buckets of a {}; at most {MAX_USAGE_BUCKETS} are answered (shorten the window or ask for bigger buckets)",
                        query.bucket.as_deref().unwrap_or_default()
                    ),
                ));
            }
            let series = store.usage_series(&tenant, since, until, width)?;
            let buckets = series
                .iter()
                .zip(0..)
                .map(|(usage, i)| {
                    let start = since + i * width;
                    UsageBucket {
                        since: format_time(start),
                        until: format_time((start + width).min(until)),
                        counts: counts(usage),
                    }
                })
                .collect();
            Some(buckets)
        }
    };
    Ok(Reply(UsageAnswer {
        tenant,
        since: format_time(since),
        until: format_time(until),
        totals: counts(&usage),
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
        buckets,
    }))
}
