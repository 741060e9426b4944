//! `GET /v1/usage?since=&until=`: what the tenant used in a time window, for billing —
//! applet invocations, the fuel they burnt, and the capability calls they made (emails,
//! HTTP, SQL, follow-ups), from the steps journal and the effect journal.

use axum::Json as Reply;
use axum::extract::State;
use coda_types::capabilities::CallKind;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::QueryArgs;
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

const DAY_MS: i64 = 86_400_000;

/// The window `[since, until)`: `until` defaults to now, `since` to the start of `until`'s
/// month (UTC), the usual billing period.
#[utoipa::path(get, path = "/v1/usage", params(("since" = Option<String>, Query, description = "RFC 3339"), ("until" = Option<String>, Query, description = "RFC 3339")), responses((status = 200, description = "The tenant's usage", body = Object), (status = "4XX", description = "Refused: the one error shape", body = crate::openapi::ErrorBody), (status = "5XX", description = "The host itself failed (its database)", body = crate::openapi::ErrorBody)), security(("tenant" = [])))]
async fn usage(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    QueryArgs(query): QueryArgs<UsageQuery>,
) -> Result<Reply<Json>, ApiError> {
    let until = match query.until.as_deref() {
        Some(text) => parse_time("until", text)?,
        None => crate::api::now_ms(),
    };
    let since = match query.since.as_deref() {
        Some(text) => parse_time("since", text)?,
        None => month_start(until),
    };
    if since >= until {
        return Err(ApiError::bad_request(
            "invalid-query",
            format!(
                "since ({}) must be before until ({})",
                format_time(since),
                format_time(until)
            ),
        ));
    }
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

/// A time in a query: RFC 3339 (`2026-11-01T00:00:00Z`, fractions and offsets allowed), a
/// date (`2026-11-01`, midnight UTC), or milliseconds since the Unix epoch. A bad value is
/// a 400 naming the parameter.
pub(crate) fn parse_time(parameter: &str, text: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid-query",
            format!(
                "`{parameter}` is not a time: `{text}` (use RFC 3339 like 2026-11-01T00:00:00Z, a date like 2026-11-01, or milliseconds since the Unix epoch)"
            ),
        )
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().map_err(|_| bad());
    }
    rfc3339_ms(text).ok_or_else(bad)
}

fn rfc3339_ms(text: &str) -> Option<i64> {
    let digits = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (year, month, day) = (digits(y)?, digits(m)?, digits(d)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * DAY_MS;
    let Some(time) = time else {
        return Some(ms);
    };
    // The offset: `Z`, or `+hh:mm` / `-hh:mm`.
    let (clock, offset_ms) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (clock, offset) = time.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (oh, om) = offset[1..].split_once(':')?;
        if oh.len() != 2 || om.len() != 2 {
            return None;
        }
        let (oh, om) = (digits(oh)?, digits(om)?);
        if oh > 23 || om > 59 {
            return None;
        }
        (clock, sign * (oh * 60 + om) * 60_000)
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, fraction)) => (hms, Some(fraction)),
        None => (clock, None),
    };
    let mut fields = hms.split(':');
    let (h, mi, s) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || h.len() != 2 || mi.len() != 2 || s.len() != 2 {
        return None;
    }
    let (h, mi, s) = (digits(h)?, digits(mi)?, digits(s)?);
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    ms += ((h * 60 + mi) * 60 + s) * 1000;
    if let Some(fraction) = fraction {
        digits(fraction)?;
        // Milliseconds: the first three digits, padded.
        let millis: String = fraction.chars().chain("000".chars()).take(3).collect();
        ms += digits(&millis)?;
    }
    Some(ms - offset_ms)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Midnight UTC on the first of the month `ms` falls in.
fn month_start(ms: i64) -> i64 {
    let (year, month, _) = civil_from_days(ms.div_euclid(DAY_MS));
    days_from_civil(year, month, 1) * DAY_MS
}

/// RFC 3339 in UTC, with milliseconds.
pub(crate) fn format_time(ms: i64) -> String {
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    let in_day = ms.rem_euclid(DAY_MS);
    let (h, mi, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_accepted_form() {
        assert_eq!(parse_time("since", "0").unwrap(), 0);
        assert_eq!(parse_time("since", "1970-01-02").unwrap(), DAY_MS);
        assert_eq!(
            parse_time("since", "2026-11-22T08:17:08Z").unwrap(),
            1_795_335_428_000
        );
        assert_eq!(
            parse_time("since", "2026-11-22T10:17:08.5+02:00").unwrap(),
            1_795_335_428_500
        );
        assert_eq!(
            parse_time("since", "2024-02-29T00:00:00-00:30").unwrap(),
            parse_time("since", "2024-02-29T00:30:00Z").unwrap()
        );
        assert_eq!(format_time(1_795_335_428_500), "2026-11-22T08:17:08.500Z");
        assert_eq!(
            month_start(1_795_335_428_500),
            parse_time("since", "2026-11-01").unwrap()
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2025-02-29",
            "2026-11-22T25:00:00Z",
            "2026-11-22T08:17:08",
            "2026-11-22T08:17:08+2",
            "-5",
            "99999999999999999999999",
        ] {
            let error = parse_time("until", bad).unwrap_err();
            assert!(
                error.message.contains("`until`"),
                "{bad}: {}",
                error.message
            );
        }
    }
}
