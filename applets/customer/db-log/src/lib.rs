//! Example applet: log the call's figures as one row in a database the tenant granted.
//!
//! Copy this crate to write your own applet that writes to a database. It shows:
//! - SQL that runs unchanged on SQLite and PostgreSQL (TEXT and BIGINT columns,
//!   `CREATE TABLE IF NOT EXISTS`, `INSERT … ON CONFLICT … DO NOTHING`, `$1` placeholders);
//! - values always bound as parameters, never pasted into the statement; the one name that
//!   must be pasted (the table) is checked against a strict pattern and quoted;
//! - idempotence from the data itself: the interaction id is the primary key, so a retried
//!   step, or the same plan reached twice, writes one row.
//!
//! ```yaml
//! applet: db-log@0.1.0
//! config:
//!   database: analytics
//!   table: call_log
//!   custom_fields: [OrderId, SurveyScore]
//! ```
//!
//! Exits `logged` (a new row) or `duplicate` (the interaction was logged already).

use coda_sdk::{Applet, Capability, Context, Failure, HostError, Info, Outcome, Value, log, sql};

/// A table name we are willing to paste into SQL: lower case, starting with a letter or
/// `_`, at most 63 bytes (PostgreSQL's identifier limit).
const TABLE_PATTERN: &str = r"^[a-z_][a-z0-9_]{0,62}$";

/// The node configuration.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The database to write to, by the name under which the tenant granted it.
    #[schemars(length(min = 1, max = 256))]
    database: String,
    /// The table; created on first use if missing.
    #[serde(default = "default_table")]
    #[schemars(regex(pattern = TABLE_PATTERN))]
    table: String,
    /// Further data sources to keep, stored together as one JSON object in the `custom`
    /// column (a data source that is not set is stored as null).
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 256)))]
    custom_fields: Vec<String>,
}

fn default_table() -> String {
    "call_log".into()
}

struct DbLog;

impl Applet for DbLog {
    type Config = Config;

    fn info() -> Info {
        Info::new("db-log", env!("CARGO_PKG_VERSION"))
            .description("Logs the call's figures as one row in a granted database")
            .exits(["logged", "duplicate"])
            .capabilities([Capability::Sql])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        // The schema already holds the table to the pattern, but a config can reach an
        // applet unvalidated (`coda applet invoke`), and this name goes into SQL text.
        if !is_table_name(&config.table) {
            return Err(Failure::new(
                "bad-config",
                format!("table: {:?} does not match {TABLE_PATTERN}", config.table),
            ));
        }
        let row = Row::read(cx, &config.custom_fields)?;

        // Runs every time; costs one cheap statement and spares the tenant a migration.
        sql::execute(&config.database, &create_table(&config.table), &[])
            .map_err(|e| sql_failure(&config.database, e))?;
        let inserted = sql::execute(&config.database, &insert(&config.table), &row.params())
            .map_err(|e| sql_failure(&config.database, e))?;

        if inserted == 0 {
            log::info(format!(
                "interaction {} was logged already",
                row.interaction_id
            ));
            Ok(Outcome::exit("duplicate"))
        } else {
            log::info(format!("logged interaction {}", row.interaction_id));
            Ok(Outcome::exit("logged"))
        }
    }
}

/// `CREATE TABLE IF NOT EXISTS`, in SQL both SQLite and PostgreSQL accept. The table name
/// is quoted (so a name such as `order` is not read as a keyword); quoting a lower-case name
/// changes nothing else on either database.
fn create_table(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS \"{table}\" (\
         interaction_id TEXT PRIMARY KEY, \
         clid TEXT, \
         dialed_number TEXT, \
         language TEXT, \
         outcome TEXT, \
         duration BIGINT, \
         custom TEXT, \
         logged_at_ms BIGINT)"
    )
}

/// One row, idempotent on the interaction id. `$1 … $8` appear in order: PostgreSQL binds
/// them by number, SQLite numbers `$NNN` by first appearance, so both bind the same list.
fn insert(table: &str) -> String {
    format!(
        "INSERT INTO \"{table}\" \
         (interaction_id, clid, dialed_number, language, outcome, duration, custom, logged_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (interaction_id) DO NOTHING"
    )
}

fn is_table_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    matches!(bytes.first(), Some(b'a'..=b'z' | b'_'))
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// The figures of one call, read from the run's data sources.
#[derive(Debug)]
struct Row {
    interaction_id: String,
    clid: Value,
    dialed_number: Value,
    language: Value,
    outcome: Value,
    duration: Value,
    custom: Value,
    logged_at_ms: Value,
}

impl Row {
    fn read(cx: &Context, custom_fields: &[String]) -> Result<Row, Failure> {
        let get = |name: &str| cx.data_value(name);
        // The primary key: the data source the host sets, else the run's interaction.
        let interaction_id = match get("InteractionId") {
            Some(Value::Text(id)) if !id.is_empty() => id,
            _ => cx.interaction().map(str::to_string).ok_or_else(|| {
                Failure::new(
                    "no-interaction",
                    "neither the data source InteractionId nor the run names an interaction",
                )
            })?,
        };
        // The host sets InteractionOutcome when an interaction ends; `Outcome` is accepted
        // for plans that set their own.
        let outcome = get("InteractionOutcome").or_else(|| get("Outcome"));
        let custom = custom_fields
            .iter()
            .map(|name| {
                let value = get(name).map_or(serde_json::Value::Null, |v| coda_sdk::to_json(&v));
                (name.clone(), value)
            })
            .collect::<serde_json::Map<_, _>>();
        Row::new(
            interaction_id,
            [get("CLID"), get("DialedNumber"), get("Language"), outcome],
            get("Duration"),
            (!custom_fields.is_empty()).then_some(custom),
            now_ms(),
        )
    }

    /// The row from raw values; pure, so it is tested without a host.
    fn new(
        interaction_id: String,
        [clid, dialed_number, language, outcome]: [Option<Value>; 4],
        duration: Option<Value>,
        custom: Option<serde_json::Map<String, serde_json::Value>>,
        logged_at_ms: Option<i64>,
    ) -> Result<Row, Failure> {
        Ok(Row {
            interaction_id,
            clid: text(clid),
            dialed_number: text(dialed_number),
            language: text(language),
            outcome: text(outcome),
            duration: integer("Duration", duration)?,
            custom: custom.map_or(Value::Null, |map| {
                Value::Text(serde_json::Value::Object(map).to_string())
            }),
            logged_at_ms: logged_at_ms.map_or(Value::Null, Value::Integer),
        })
    }

    /// The parameters `$1 … $8`, in the order of [`insert`].
    fn params(&self) -> Vec<Value> {
        vec![
            Value::Text(self.interaction_id.clone()),
            self.clid.clone(),
            self.dialed_number.clone(),
            self.language.clone(),
            self.outcome.clone(),
            self.duration.clone(),
            self.custom.clone(),
            self.logged_at_ms.clone(),
        ]
    }
}

/// A TEXT column: text as it is, other scalars as they print, JSON as its text, absent as
/// NULL. A number typed into a CLID field is still a phone number.
fn text(value: Option<Value>) -> Value {
    match value {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Text(s)) => Value::Text(s),
        Some(Value::Integer(i)) => Value::Text(i.to_string()),
        Some(Value::Number(n)) => Value::Text(n.to_string()),
        Some(Value::Boolean(b)) => Value::Text(b.to_string()),
        Some(Value::Json(json)) => Value::Text(json),
    }
}

/// A BIGINT column: an integer, a finite number (rounded) or text holding one; absent is
/// NULL; anything else is a failure naming the data source.
fn integer(name: &str, value: Option<Value>) -> Result<Value, Failure> {
    let bad = |what: &str| Failure::new("bad-data", format!("data source {name}: {what}"));
    let from_f64 = |n: f64| {
        // `as` saturates; the range check keeps a huge number from becoming i64::MAX.
        if n.is_finite() && n.abs() < 9.2e18 {
            Ok(Value::Integer(n.round() as i64))
        } else {
            Err(bad("is not a whole number of a storable size"))
        }
    };
    match value {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::Integer(i)) => Ok(Value::Integer(i)),
        Some(Value::Number(n)) => from_f64(n),
        Some(Value::Text(s)) => match s.trim().parse::<i64>() {
            Ok(i) => Ok(Value::Integer(i)),
            Err(_) => match s.trim().parse::<f64>() {
                Ok(n) => from_f64(n),
                Err(_) => Err(bad("is text that is not a number")),
            },
        },
        Some(Value::Boolean(_) | Value::Json(_)) => Err(bad("is not a number")),
    }
}

fn now_ms() -> Option<i64> {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    i64::try_from(since_epoch.as_millis()).ok()
}

/// A refused SQL call as the step's failure, naming the database: `unavailable` (the
/// database is down) is retryable, the rest (not granted, a bad statement, a constraint) is
/// not.
fn sql_failure(database: &str, error: HostError) -> Failure {
    let mut failure = Failure::from(error);
    failure.message = format!("database `{database}`: {}", failure.message);
    failure
}

coda_sdk::export_applet!(DbLog);

#[cfg(test)]
mod tests {
    use super::*;

    /// `Value` (generated) has no `PartialEq`; its `Debug` tells the variants apart.
    macro_rules! assert_same {
        ($left:expr, $right:expr) => {
            assert_eq!(format!("{:?}", $left), format!("{:?}", $right))
        };
    }

    fn row(duration: Option<Value>) -> Result<Row, Failure> {
        Row::new(
            "i-1".into(),
            [
                Some(Value::Text("+15550100".into())),
                Some(Value::Integer(15550199)),
                None,
                Some(Value::Text("Sale".into())),
            ],
            duration,
            None,
            Some(1_700_000_000_000),
        )
    }

    #[test]
    fn table_names() {
        for good in ["call_log", "_x", "a", "t2", &"a".repeat(63)] {
            assert!(is_table_name(good), "{good}");
        }
        for bad in [
            "",
            "Call_log",
            "2t",
            "call-log",
            "x;drop",
            "a b",
            "\"x\"",
            &"a".repeat(64),
        ] {
            assert!(!is_table_name(bad), "{bad}");
        }
    }

    #[test]
    fn placeholders_appear_in_order() {
        // SQLite numbers `$NNN` by first appearance: the statement must list them in order.
        let sql = insert("call_log");
        let positions: Vec<usize> = (1..=8)
            .map(|i| sql.find(&format!("${i}")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{sql}");
        assert!(!sql.contains("$9"));
        assert_eq!(row(None).unwrap().params().len(), 8);
    }

    #[test]
    fn absent_values_are_null_and_scalars_are_text() {
        let row = row(None).unwrap();
        assert_same!(row.clid, Value::Text("+15550100".into()));
        assert_same!(row.dialed_number, Value::Text("15550199".into()));
        assert_same!(row.language, Value::Null);
        assert_same!(row.duration, Value::Null);
        assert_same!(row.custom, Value::Null);
    }

    #[test]
    fn durations() {
        let d = |v| row(Some(v)).map(|r| r.duration);
        assert_same!(d(Value::Integer(184)).unwrap(), Value::Integer(184));
        assert_same!(d(Value::Number(183.6)).unwrap(), Value::Integer(184));
        assert_same!(d(Value::Text(" 184 ".into())).unwrap(), Value::Integer(184));
        assert_same!(d(Value::Text("12.4".into())).unwrap(), Value::Integer(12));
        for bad in [
            Value::Text("three minutes".into()),
            Value::Number(f64::INFINITY),
            Value::Number(1e300),
            Value::Boolean(true),
            Value::Json("[1]".into()),
        ] {
            let failure = d(bad).unwrap_err();
            assert_eq!(failure.code, "bad-data");
            assert!(failure.message.contains("Duration"), "{}", failure.message);
        }
    }

    #[test]
    fn custom_fields_are_one_json_text() {
        let mut custom = serde_json::Map::new();
        custom.insert("OrderId".into(), "A-1".into());
        custom.insert("Score".into(), serde_json::Value::Null);
        let row = Row::new(
            "i".into(),
            [None, None, None, None],
            None,
            Some(custom),
            None,
        )
        .unwrap();
        assert_same!(
            row.custom,
            Value::Text(r#"{"OrderId":"A-1","Score":null}"#.into())
        );
        assert_same!(row.logged_at_ms, Value::Null);
    }

    #[test]
    fn only_an_unavailable_database_is_retried() {
        let f = sql_failure("analytics", HostError::Unavailable("down".into()));
        assert!(f.retryable);
        assert_eq!(f.message, "database `analytics`: down");
        let f = sql_failure("analytics", HostError::Rejected("constraint".into()));
        assert!(!f.retryable);
        assert_eq!(f.code, "rejected");
    }
}
