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

/// One data source to set: to a literal `value` or to the result of an `expression`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Entry {
    Expression(ExpressionEntry),
    Literal(LiteralEntry),
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExpressionEntry {
    /// The data source to set.
    #[schemars(length(min = 1, max = 256))]
    name: String,
    /// A CEL expression. It sees `data` (every data source) and each data source named like
    /// a CEL identifier as a variable: `CustomerName + " (" + CLID + ")"`,
    /// `data["Order-Total"] * 2`, `has(data.Tier) ? data.Tier : "basic"`.
    #[schemars(length(min = 1, max = 4096))]
    expression: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct LiteralEntry {
    /// The data source to set.
    #[schemars(length(min = 1, max = 256))]
    name: String,
    /// The value, any JSON literal: a string, number, boolean, null, array or object.
    value: serde_json::Value,
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
            let (name, value) = match entry {
                Entry::Literal(entry) => (&entry.name, from_json(&entry.value)),
                Entry::Expression(entry) => {
                    let what = format!("set[{i}] (`{}`)", entry.name);
                    let bad = |e: String| coda_expr::bad_expression(&what, &entry.expression, e);
                    let result = scope.eval_source(&entry.expression).map_err(bad)?;
                    (&entry.name, coda_expr::to_value(&result).map_err(bad)?)
                }
            };
            // The host refuses some names (control characters, over 256 bytes): say which entry.
            cx.set_data(name, &coda_sdk::to_json(&value))
                .map_err(|f| Failure {
                    message: format!("set[{i}] (`{name}`): {}", f.message),
                    ..f
                })?;
            scope.set(name, &value);
        }
        Ok(Outcome::exit("next"))
    }
}

coda_sdk::export_applet!(SetData);
