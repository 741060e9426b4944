//! Pause: parks the run durably for a while (a day before a follow-up SMS), then goes on
//! through `next`. The run costs nothing while parked: it waits in the store, not in memory.

use std::time::Duration;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

/// 30 days: the longest pause.
const MAX_SECONDS: u64 = 2_592_000;

// One struct with a `oneOf` rather than an untagged enum, so that a plan's validation names
// the field that is wrong instead of "matches no variant".
/// How long to pause: `seconds`, or a `duration` like `90s`, `10m`, `2h`, `3d`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{ "required": ["seconds"] }, { "required": ["duration"] }]))]
struct Config {
    /// 1 second to 30 days.
    #[serde(default)]
    #[schemars(with = "u64", range(min = 1, max = 2_592_000))]
    seconds: Option<u64>,
    /// Numbers each followed by a unit, `s`, `m`, `h` or `d`: `90s`, `10m`, `1h30m`, `3d`;
    /// 1 second to 30 days in all.
    #[serde(default)]
    #[schemars(
        with = "String",
        length(min = 2, max = 32),
        pattern(r"^([0-9]+[smhd])+$")
    )]
    duration: Option<String>,
}

/// Parses `1h30m`-style durations into seconds; `None` when malformed or beyond any bound
/// worth computing.
fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(digit.into())?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    // A trailing number without a unit is ambiguous: refuse rather than guess seconds.
    if number.is_some() || text.is_empty() {
        return None;
    }
    Some(total)
}

struct Pause;

impl Applet for Pause {
    type Config = Config;

    fn info() -> Info {
        Info::new("pause", env!("CARGO_PKG_VERSION"))
            .description(
                "Pause: parks the run for `seconds` or a `duration` (`90s`, `10m`, `2h`, `3d`, \
                 `1h30m`), 1 second to 30 days, then takes `next`.",
            )
            .exits(["next"])
    }

    fn run(_cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        let (field, seconds) = match (config.seconds, &config.duration) {
            (Some(seconds), None) => ("seconds", seconds),
            (None, Some(duration)) => (
                "duration",
                parse_duration(duration).ok_or_else(|| {
                    Failure::new(
                        "bad-config",
                        format!(
                            "duration: `{duration}` is not a duration like `90s`, `10m`, `2h`, \
                             `3d` or `1h30m`"
                        ),
                    )
                })?,
            ),
            _ => {
                return Err(Failure::new(
                    "bad-config",
                    "give either `seconds` or `duration`, not both or neither",
                ));
            }
        };
        if !(1..=MAX_SECONDS).contains(&seconds) {
            return Err(Failure::new(
                "bad-config",
                format!("{field}: {seconds} s is not between 1 s and 30 days"),
            ));
        }
        Ok(Outcome::pause(Duration::from_secs(seconds), "next"))
    }
}

coda_sdk::export_applet!(Pause);

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("2h"), Some(7_200));
        assert_eq!(parse_duration("3d"), Some(259_200));
        assert_eq!(parse_duration("1h30m"), Some(5_400));
        assert_eq!(parse_duration("0s"), Some(0));
        for bad in ["", "5", "h", "1x", "1 h", "99999999999999999999s", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
