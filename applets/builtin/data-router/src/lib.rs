//! Data Router: routes on the run's data. Each rule is a CEL condition and the exit to take
//! when it holds; the first rule that holds wins, and `default` is taken when none does.

use coda_expr::Scope;
use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Tried in order: the first whose condition holds names the exit. None holds: `default`.
    #[schemars(length(min = 1, max = 100))]
    rules: Vec<Rule>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Rule {
    /// A CEL expression giving a bool, over `data` (every data source) and each data source
    /// named like a CEL identifier: `InteractionOutcome == "abandoned"`,
    /// `has(data.Order) && data.Order.total > 100`.
    #[schemars(length(min = 1, max = 4096))]
    when: String,
    /// The exit to take, wired in the node's `exits` like any other.
    #[schemars(pattern(r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
    exit: String,
}

/// The rule exit's syntax, as in the schema; checked here too because an applet must not
/// trust that every host validated the config.
fn valid_exit(exit: &str) -> bool {
    let bytes = exit.as_bytes();
    (1..=64).contains(&bytes.len())
        && matches!(bytes[0], b'a'..=b'z' | b'0'..=b'9')
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
        // Every node's error exit is wired apart; a rule cannot take it.
        && exit != "error"
}

struct DataRouter;

impl Applet for DataRouter {
    type Config = Config;

    fn info() -> Info {
        Info::new("data-router", env!("CARGO_PKG_VERSION"))
            .description(
                "Data Router: tries its rules in order and takes the exit of the first whose CEL \
                 condition over the run's data sources is true, else `default`. Rule exits are \
                 named by the node config (exit `*`). A condition that does not parse, fails to \
                 evaluate or is not a bool fails the step with code `bad-expression`.",
            )
            // `*`: this applet also takes the exits its node config names.
            .exits(["default", "*"])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        let scope = Scope::new(cx);
        // Every rule is compiled before any is evaluated, so a typo in a late rule fails the
        // step whatever the data, not only on the day an early rule stops matching.
        let mut programs = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            if !valid_exit(&rule.exit) {
                return Err(Failure::new(
                    "bad-config",
                    format!(
                        "rules[{i}].exit: `{}` is not an exit name (a-z, 0-9, _ and -, at most \
                         64, not `error`)",
                        rule.exit
                    ),
                ));
            }
            let program = scope.compile(&rule.when).map_err(|e| {
                coda_expr::bad_expression(format!("rules[{i}].when"), &rule.when, e)
            })?;
            programs.push(program);
        }
        for (i, (rule, program)) in config.rules.iter().zip(&programs).enumerate() {
            let bad =
                |e: String| coda_expr::bad_expression(format!("rules[{i}].when"), &rule.when, e);
            if scope.eval_bool(program).map_err(bad)? {
                return Ok(Outcome::exit(rule.exit.clone()));
            }
        }
        Ok(Outcome::exit("default"))
    }
}

// The CEL standard library is registered at load, not in every step (`coda_expr::init`).
coda_sdk::export_applet!(DataRouter, init = coda_expr::init);
