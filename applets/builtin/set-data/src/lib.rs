//! Set Data Source: sets data sources, in order, each to a JSON literal or to the result of a
//! CEL expression over the run's data sources (see `coda-expr` for what an expression sees).

use coda_expr::Scope;
use coda_sdk::{Applet, Context, Failure, Info, Outcome, from_json, serde_json};

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The data sources to set, applied in order: an expression sees what the entries
    /// before it set.
    #[schemars(length(min = 1, max = 100))]
    set: Vec<Entry>,
}

// One struct with a `oneOf` rather than an untagged enum, so that a plan's validation names
// the field that is wrong instead of "matches no variant".
/// One data source to set: to a literal `value` or to the result of an `expression`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{ "required": ["value"] }, { "required": ["expression"] }]))]
struct Entry {
    /// The data source to set.
    #[schemars(length(min = 1, max = 256))]
    name: String,
    /// The value, any JSON literal: a string, number, boolean, null, array or object.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "serde_json::Value")]
    value: Option<serde_json::Value>,
    /// A CEL expression. It sees `data` (every data source) and each data source named like
    /// a CEL identifier as a variable: `CustomerName + " (" + CLID + ")"`,
    /// `data["Order-Total"] * 2`, `has(data.Tier) ? data.Tier : "basic"`.
    #[serde(default)]
    #[schemars(with = "String", length(min = 1, max = 4096))]
    expression: Option<String>,
}

/// `value: null` is a value (set the data source to null), not a missing field.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

struct SetData;

impl Applet for SetData {
    type Config = Config;

    fn info() -> Info {
        Info::new("set-data", env!("CARGO_PKG_VERSION"))
            .description(
                "Set Data Source: sets data sources in order, each to a JSON literal or to the \
                 result of a CEL expression over the run's data sources (`data` holds them all; \
                 those named like identifiers are variables too). A bad expression fails the \
                 step with code `bad-expression`.",
            )
            .exits(["next"])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        let mut scope = Scope::new(cx);
        for (i, entry) in config.set.iter().enumerate() {
            let name = &entry.name;
            let what = || format!("set[{i}] (`{name}`)");
            let value = match (&entry.value, &entry.expression) {
                (Some(value), None) => from_json(value),
                (None, Some(expression)) => {
                    let bad = |e: String| coda_expr::bad_expression(what(), expression, e);
                    let result = scope.eval_source(expression).map_err(bad)?;
                    coda_expr::to_value(&result).map_err(bad)?
                }
                _ => {
                    return Err(Failure::new(
                        "bad-config",
                        format!("{}: give either `value` or `expression`", what()),
                    ));
                }
            };
            // The host refuses some names (control characters, over 256 bytes): say which entry.
            cx.set_data(name, &coda_sdk::to_json(&value))
                .map_err(|f| Failure {
                    message: format!("{}: {}", what(), f.message),
                    ..f
                })?;
            scope.set(name, &value);
        }
        Ok(Outcome::exit("next"))
    }
}

// The CEL standard library is registered at load, not in every step (`coda_expr::init`).
coda_sdk::export_applet!(SetData, init = coda_expr::init);
