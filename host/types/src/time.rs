//! Time as the host keeps it and the API reads it: milliseconds since the Unix epoch, one
//! wall clock, and one meaning for every `since`/`until` a caller gives.
//!
//! A time parameter is any of: an RFC 3339 time with its offset (`2026-11-01T09:00:00Z`,
//! `2026-11-01T10:00:00.5+01:00`), a date (`2026-11-01`, midnight UTC), milliseconds since
//! the Unix epoch (`1790000000000`), or a duration ago (`30m`, `2h`, `7d`, `1w`, `1h30m`).
//! `GET /v1/runs`, `GET /v1/usage` and the CLI all read it here, so `since=7d` means the same
//! everywhere. Calendar units in a duration (days, weeks, months) count in UTC.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

/// The forms a time parameter takes, as messages name them.
pub const TIME_FORMS: &str = "an RFC 3339 time like 2026-11-01T09:00:00Z, a date like 2026-11-01, milliseconds since the Unix epoch, or a duration ago like 30m, 2h or 7d";

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Now on the wall clock, in milliseconds since the Unix epoch (0 on a clock set before
/// 1970, the largest time on one past the year 292 million).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A time parameter that is none of the forms [`parse_time`] takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{parameter}` is not a time: `{text}` (give {TIME_FORMS})")]
pub struct TimeError {
    /// The parameter, as the caller named it (`since`, `until`).
    pub parameter: String,
    pub text: String,
}

/// Reads the time parameter `parameter` (named in the error) given as `text`, in
/// milliseconds since the Unix epoch; a duration counts back from `now_ms`.
pub fn parse_time(parameter: &str, text: &str, now_ms: i64) -> Result<i64, TimeError> {
    let refused = || TimeError {
        parameter: parameter.to_owned(),
        text: text.to_owned(),
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().map_err(|_| refused());
    }
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at.as_millisecond());
    }
    // A date alone (`Date`'s own parser would also take a date-time without its offset).
    if let Ok(date) = Date::strptime("%Y-%m-%d", text) {
        return date
            .to_zoned(TimeZone::UTC)
            .map(|at| at.timestamp().as_millisecond())
            .map_err(|_| refused());
    }
    // A duration ago: a positive span only (a negative one, `-1h` or `1h ago`, would be a
    // time in the future, which nobody means by "since").
    let span = text.parse::<Span>().map_err(|_| refused())?;
    if span.is_negative() || span.is_zero() {
        return Err(refused());
    }
    Timestamp::from_millisecond(now_ms)
        .map_err(|_| refused())?
        .to_zoned(TimeZone::UTC)
        .checked_sub(span)
        .map(|at| at.timestamp().as_millisecond())
        .map_err(|_| refused())
}

/// `ms` as RFC 3339 in UTC, with milliseconds (`2026-11-22T08:17:08.500Z`).
pub fn format_time(ms: i64) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(at) => at.strftime("%Y-%m-%dT%H:%M:%S.%3fZ").to_string(),
        // Out of jiff's range (years past 9999 or before -9999): the number itself.
        Err(_) => ms.to_string(),
    }
}

/// Midnight UTC on the first of the month `ms` falls in.
pub fn month_start(ms: i64) -> i64 {
    let Ok(at) = Timestamp::from_millisecond(ms) else {
        return ms;
    };
    let date = at.to_zoned(TimeZone::UTC).date().first_of_month();
    date.to_zoned(TimeZone::UTC)
        .map_or(ms, |at| at.timestamp().as_millisecond())
}

/// The wait before a retry that follows `failures` failed retries: `first_ms` doubled that
/// many times, at most `max_ms` (a step's retries, a webhook's redeliveries).
pub fn backoff_ms(first_ms: u64, failures: u32, max_ms: u64) -> u64 {
    first_ms
        .saturating_mul(1u64 << failures.min(62))
        .min(max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_335_428_500; // 2026-11-22T08:17:08.500Z

    fn parse(text: &str) -> Result<i64, TimeError> {
        parse_time("since", text, NOW)
    }

    #[test]
    fn times_parse_in_every_accepted_form() {
        assert_eq!(parse("0").unwrap(), 0);
        assert_eq!(parse("1970-01-02").unwrap(), DAY_MS);
        assert_eq!(parse("2026-11-22T08:17:08Z").unwrap(), 1_795_335_428_000);
        assert_eq!(parse("2026-11-22T10:17:08.5+02:00").unwrap(), NOW);
        assert_eq!(parse("2026-11-22 08:17:08.5z").unwrap(), NOW);
        assert_eq!(
            parse("2024-02-29T00:00:00-00:30").unwrap(),
            parse("2024-02-29T00:30:00Z").unwrap()
        );
        assert_eq!(parse("1795335428500").unwrap(), NOW);
        // Durations ago, calendar units in UTC.
        assert_eq!(parse("30m").unwrap(), NOW - 30 * 60_000);
        assert_eq!(parse("2h").unwrap(), NOW - 2 * 3_600_000);
        assert_eq!(parse("7d").unwrap(), NOW - 7 * DAY_MS);
        assert_eq!(parse("1h30m").unwrap(), NOW - 90 * 60_000);
        assert_eq!(parse("1 day").unwrap(), NOW - DAY_MS);
        assert_eq!(format_time(NOW), "2026-11-22T08:17:08.500Z");
        assert_eq!(month_start(NOW), parse("2026-11-01").unwrap());
    }

    #[test]
    fn a_bad_time_is_refused_naming_the_parameter_and_the_forms() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2025-02-29",
            "2026-11-22T25:00:00Z",
            "2026-11-22T08:17:08",
            "2026-11-22T08:17:08+2",
            "-5",
            "-1h",
            "1h ago",
            "0s",
            "99999999999999999999999",
        ] {
            let error = parse_time("until", bad, NOW).unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with("`until` is not a time"),
                "{bad}: {message}"
            );
            assert!(
                message.contains("RFC 3339") && message.contains("30m"),
                "{message}"
            );
        }
    }

    #[test]
    fn the_clock_is_after_the_epoch() {
        assert!(now_ms() > 1_700_000_000_000);
    }

    #[test]
    fn a_backoff_doubles_from_its_first_wait_up_to_its_most() {
        let waits: Vec<u64> = (0..5).map(|n| backoff_ms(5, n, 50)).collect();
        assert_eq!(waits, [5, 10, 20, 40, 50]);
        assert_eq!(backoff_ms(u64::MAX / 2, 70, u64::MAX), u64::MAX);
    }
}
