//! Hostile: runs the SQL statement its node config gives on the database it names, as any
//! tenant's own applet could, and takes `done`; a host error fails the step with it (the
//! SDK's `?`), so the plan's error exit sees what the host said. Issue 14's poison pill was
//! `PRAGMA hard_heap_limit=65536`: it set SQLite's heap limit for the whole host process.

use coda_sdk::{Applet, Capability, Context, Failure, Info, Outcome, sql};

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The database, by the name under which the tenant granted it.
    database: String,
    /// The statement, run with `execute`.
    statement: String,
}

struct SqlStatement;

impl Applet for SqlStatement {
    type Config = Config;

    fn info() -> Info {
        Info::new("sql-statement", env!("CARGO_PKG_VERSION"))
            .description("Runs the SQL statement its config gives")
            .exits(["done"])
            .capabilities([Capability::Sql])
    }

    fn run(_cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        sql::execute(&config.database, &config.statement, &[])?;
        Ok(Outcome::exit("done"))
    }
}

coda_sdk::export_applet!(SqlStatement);
