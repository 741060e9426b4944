//! Schedule Router: routes on the time of day in a schedule's time zone: `holiday` on one of
//! its holidays, `open` within its weekly open hours, `closed` otherwise.
//!
//! Open hours are local wall time: `09:00`–`17:00` in Europe/Berlin is 09:00 to 17:00 on the
//! clocks in Berlin on both sides of a daylight-saving change, because "now" is converted to
//! local time (always one well-defined wall time) and compared there. No local time is ever
//! converted back to an instant, so a time that does not exist (the spring-forward gap) or
//! happens twice (fall back) cannot be ambiguous: 02:30 on a fall-back night is within
//! `02:00`–`03:00` both times it happens.
//!
//! "Now" is the sandbox's wall clock, which the host sets to the step's time on the flow's
//! clock, so a virtual clock moves it too.

use std::time::SystemTime;

use coda_sdk::{Applet, Context, Failure, Info, Outcome, log};
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;

// One struct with a `oneOf` rather than an untagged enum, so that a plan's validation names
// the field that is wrong (`schedule/weekly/monday/0/open`) instead of "matches no variant".
/// The schedule inline, or the name of a data source holding one.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{ "required": ["schedule"] }, { "required": ["schedule_source"] }]))]
struct Config {
    #[serde(default)]
    #[schemars(with = "Schedule")]
    schedule: Option<Schedule>,
    /// The data source holding the schedule (an object shaped like `schedule`, or that object
    /// as JSON text), e.g. a tenant's named schedule that an earlier step put there.
    #[serde(default)]
    #[schemars(with = "String", length(min = 1, max = 256))]
    schedule_source: Option<String>,
}

/// Weekly open hours and holidays, in one time zone.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Schedule {
    /// An IANA time zone name: `Europe/Berlin`, `America/New_York`, `UTC`.
    #[schemars(length(min = 1, max = 64))]
    time_zone: String,
    /// Open hours per day of the week; a day not listed is closed all day.
    #[serde(default)]
    weekly: Weekly,
    /// Whole days, in the schedule's time zone, that are holidays whatever the open hours.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    holidays: Vec<Holiday>,
}

#[derive(Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Weekly {
    #[serde(default)]
    #[schemars(length(max = 24))]
    monday: Vec<Interval>,
    #[serde(default)]
    #[schemars(length(max = 24))]
    tuesday: Vec<Interval>,
    #[serde(default)]
    #[schemars(length(max = 24))]
    wednesday: Vec<Interval>,
    #[serde(default)]
    #[schemars(length(max = 24))]
    thursday: Vec<Interval>,
    #[serde(default)]
    #[schemars(length(max = 24))]
    friday: Vec<Interval>,
    #[serde(default)]
    #[schemars(length(max = 24))]
    saturday: Vec<Interval>,
    #[serde(default)]
    #[schemars(length(max = 24))]
    sunday: Vec<Interval>,
}

/// Open from `open` up to (not including) `close`, local wall time. An overnight shift is
/// two intervals: `22:00`–`24:00` and, the next day, `00:00`–`06:00`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Interval {
    /// `HH:MM`, 24-hour clock.
    #[schemars(pattern(r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    open: String,
    /// `HH:MM`, after `open`; `24:00` is the end of the day.
    #[schemars(pattern(r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"))]
    close: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Holiday {
    /// `YYYY-MM-DD`.
    #[schemars(pattern(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
    date: String,
    /// What the day is, for people reading the plan and the log.
    #[serde(default)]
    #[schemars(length(max = 256))]
    name: Option<String>,
}

/// The data source the exit taken is written to.
const STATUS: &str = "ScheduleStatus";

fn bad_config(field: impl std::fmt::Display, why: impl std::fmt::Display) -> Failure {
    Failure::new("bad-config", format!("{field}: {why}"))
}

/// Seconds since midnight of an `HH:MM` time; `24:00` only when `end_of_day` may be.
fn parse_time(text: &str, end_of_day: bool) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (0..=23, 0..=59) => Some(h * 3600 + m * 60),
        (24, 0) if end_of_day => Some(24 * 3600),
        _ => None,
    }
}

/// A schedule checked once, fields named as `at` says they appear in the config or data.
struct Checked {
    time_zone: TimeZone,
    /// Open intervals, in seconds since local midnight, Monday first.
    weekly: [Vec<(u32, u32)>; 7],
    holidays: Vec<(Date, Option<String>)>,
}

fn check(schedule: &Schedule, at: &str) -> Result<Checked, Failure> {
    let time_zone = TimeZone::get(&schedule.time_zone).map_err(|_| {
        bad_config(
            format!("{at}time_zone"),
            format!(
                "`{}` is not an IANA time zone name (like `Europe/Berlin`)",
                schedule.time_zone
            ),
        )
    })?;
    let w = &schedule.weekly;
    let days = [
        ("monday", &w.monday),
        ("tuesday", &w.tuesday),
        ("wednesday", &w.wednesday),
        ("thursday", &w.thursday),
        ("friday", &w.friday),
        ("saturday", &w.saturday),
        ("sunday", &w.sunday),
    ];
    let mut weekly: [Vec<(u32, u32)>; 7] = Default::default();
    for ((day, intervals), out) in days.into_iter().zip(&mut weekly) {
        for (i, interval) in intervals.iter().enumerate() {
            let field = format!("{at}weekly.{day}[{i}]");
            let open = parse_time(&interval.open, false).ok_or_else(|| {
                bad_config(
                    format!("{field}.open"),
                    format!("`{}` is not a time `HH:MM` (00:00 to 23:59)", interval.open),
                )
            })?;
            let close = parse_time(&interval.close, true).ok_or_else(|| {
                bad_config(
                    format!("{field}.close"),
                    format!(
                        "`{}` is not a time `HH:MM` (00:00 to 24:00)",
                        interval.close
                    ),
                )
            })?;
            if close <= open {
                return Err(bad_config(
                    format!("{field}.close"),
                    format!(
                        "{} is not after open {}; split an overnight interval at 24:00",
                        interval.close, interval.open
                    ),
                ));
            }
            out.push((open, close));
        }
    }
    let mut holidays = Vec::with_capacity(schedule.holidays.len());
    for (i, holiday) in schedule.holidays.iter().enumerate() {
        let date = strict_date(&holiday.date).ok_or_else(|| {
            bad_config(
                format!("{at}holidays[{i}].date"),
                format!("`{}` is not a date `YYYY-MM-DD`", holiday.date),
            )
        })?;
        holidays.push((date, holiday.name.clone()));
    }
    Ok(Checked {
        time_zone,
        weekly,
        holidays,
    })
}

/// `YYYY-MM-DD` and nothing else (jiff's parser also takes a time or an offset after it).
fn strict_date(text: &str) -> Option<Date> {
    let bytes = text.as_bytes();
    let shape = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shape {
        return None;
    }
    text.parse().ok()
}

fn weekday_index(day: Weekday) -> usize {
    usize::try_from(day.to_monday_zero_offset()).unwrap_or(0)
}

/// The exit for local date and time `date`, `time`, and why.
fn decide(schedule: &Checked, date: Date, time: Time) -> (&'static str, String) {
    if let Some((_, name)) = schedule.holidays.iter().find(|(d, _)| *d == date) {
        let name = name.as_deref().unwrap_or("a holiday");
        return ("holiday", format!("{date} is {name}"));
    }
    let second = u32::from(time.hour().unsigned_abs()) * 3600
        + u32::from(time.minute().unsigned_abs()) * 60
        + u32::from(time.second().unsigned_abs());
    let intervals = &schedule.weekly[weekday_index(date.weekday())];
    match intervals
        .iter()
        .find(|(open, close)| (*open..*close).contains(&second))
    {
        Some(_) => ("open", format!("{time} is within open hours")),
        None => ("closed", format!("{time} is outside open hours")),
    }
}

struct ScheduleRouter;

impl Applet for ScheduleRouter {
    type Config = Config;

    fn info() -> Info {
        Info::new("schedule-router", env!("CARGO_PKG_VERSION"))
            .description(
                "Schedule Router: takes `holiday` on a holiday of the schedule (a whole day in \
                 its time zone), `open` within its weekly open hours (local wall time, across \
                 daylight-saving changes), `closed` otherwise, and sets the data source \
                 `ScheduleStatus` to the exit taken. The schedule is inline or in a data source \
                 (`schedule_source`).",
            )
            .exits(["open", "closed", "holiday"])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        let checked = match (&config.schedule, &config.schedule_source) {
            (Some(schedule), None) => check(schedule, "schedule.")?,
            (None, Some(name)) => {
                let at = format!("schedule_source (data source `{name}`): ");
                let mut json: coda_sdk::serde_json::Value = cx
                    .data(name)?
                    .ok_or_else(|| bad_config(&at, "the data source is not set"))?;
                // A schedule fetched as a response body may have been stored as JSON text.
                if let Some(text) = json.as_str() {
                    json = coda_sdk::serde_json::from_str(text)
                        .map_err(|e| bad_config(&at, format!("text that is not JSON: {e}")))?;
                }
                let schedule: Schedule = coda_sdk::serde_json::from_value(json)
                    .map_err(|e| bad_config(&at, format!("not a schedule: {e}")))?;
                check(&schedule, &at)?
            }
            _ => {
                return Err(bad_config(
                    "config",
                    "give either `schedule` or `schedule_source`, not both or neither",
                ));
            }
        };
        let now = jiff::Timestamp::try_from(SystemTime::now())
            .map_err(|e| Failure::new("clock", format!("the wall clock is out of range: {e}")))?;
        let local = now.to_zoned(checked.time_zone.clone());
        let (exit, why) = decide(&checked, local.date(), local.time());
        log::info(format!("{local}: {exit} ({why})"));
        cx.set_data(STATUS, exit)?;
        Ok(Outcome::exit(exit))
    }
}

/// The pre-initialization: opens the bundled time-zone database (jiff's global handle and
/// its index of names) and formats a local time once, so a step only parses the one zone
/// it asks for. Parsing every zone here would save a step that parse but make a heap of a
/// few MiB that every step's instance maps and writes into, which costs more time than
/// the parse (BENCHMARKS.md).
fn init() {
    let db = jiff::tz::db();
    let _ = db.available().count();
    if let Ok(utc) = TimeZone::get("UTC") {
        let _ = jiff::Timestamp::UNIX_EPOCH.to_zoned(utc).to_string();
    }
}

coda_sdk::export_applet!(ScheduleRouter, init = init);

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(json: &str) -> Result<Checked, Failure> {
        let schedule: Schedule = coda_sdk::serde_json::from_str(json).unwrap();
        check(&schedule, "schedule.")
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!(parse_time("09:30", false), Some(34_200));
        assert_eq!(parse_time("24:00", true), Some(86_400));
        for bad in [
            "24:00", "9:30", "09:60", "25:00", "0930", "+9:30", "09:3a", "",
        ] {
            assert_eq!(parse_time(bad, false), None, "{bad}");
        }
        assert_eq!(parse_time("24:01", true), None);
    }

    #[test]
    fn bad_config_names_the_field() {
        let err = |json| schedule(json).err().unwrap().message;
        assert!(err(r#"{"time_zone":"Mars/Olympus"}"#).starts_with("schedule.time_zone: "));
        assert!(
            err(r#"{"time_zone":"UTC","weekly":{"friday":[{"open":"17:00","close":"09:00"}]}}"#)
                .starts_with("schedule.weekly.friday[0].close: ")
        );
        assert!(
            err(r#"{"time_zone":"UTC","holidays":[{"date":"2026-02-30"}]}"#)
                .starts_with("schedule.holidays[0].date: ")
        );
    }

    #[test]
    fn holidays_win_and_hours_are_local_wall_time() {
        let s = schedule(
            r#"{"time_zone":"Europe/Berlin",
                "weekly":{"monday":[{"open":"09:00","close":"17:00"}]},
                "holidays":[{"date":"2026-12-28","name":"Bridge day"}]}"#,
        )
        .unwrap();
        let at = |ts: &str| {
            let local = ts
                .parse::<jiff::Timestamp>()
                .unwrap()
                .to_zoned(s.time_zone.clone());
            decide(&s, local.date(), local.time()).0
        };
        // Mondays in winter (UTC+1) and summer (UTC+2): 09:00 local either way.
        assert_eq!(at("2026-03-23T07:59:59Z"), "closed");
        assert_eq!(at("2026-03-23T08:00:00Z"), "open");
        assert_eq!(at("2026-03-30T07:00:00Z"), "open");
        assert_eq!(at("2026-03-30T06:59:59Z"), "closed");
        assert_eq!(at("2026-03-30T15:00:00Z"), "closed");
        assert_eq!(at("2026-12-28T10:00:00Z"), "holiday");
    }
}
