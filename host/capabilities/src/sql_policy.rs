//! What a tenant's SQL statement may do: the one rule, and its enforcement on each engine.
//!
//! **The rule.** A tenant statement reaches its own database's rows and schema, and
//! nothing else: no setting of the connection, the session or the server; no other
//! database or file; no extension; no function that reads files, runs programs, signals
//! processes or executes SQL given as a string; no transaction control (the host runs each
//! call on its own, on a connection shared by the tenant's applets); one statement per call.
//! A statement outside the rule is refused before it runs, with `invalid` naming what was
//! refused. The rule is enforced:
//!
//! - on **SQLite** by SQLite's authorizer on every tenant connection ([`sqlite_guard`]),
//!   which sees every action a statement takes, including those behind comments, CTEs,
//!   `EXPLAIN`, triggers and views: reads and writes of tables in `main`, DDL on `main`,
//!   `SELECT`, recursive CTEs and functions other than [`SQLITE_FUNCTIONS_REFUSED`] are
//!   allowed; a `PRAGMA` only when it is one of [`SQLITE_PRAGMAS_ALLOWED`] (read-only
//!   introspection of the tenant's own schema: `hard_heap_limit`, `soft_heap_limit`,
//!   `temp_store_directory` are process-wide, `database_list` shows the host's paths); no
//!   `ATTACH`/`DETACH`, no transaction or savepoint, no virtual table, nothing in the `temp`
//!   schema (a temporary table would outlive the call on the shared connection; SQLite's own
//!   reads of the empty temp schema table are let through). `VACUUM`,
//!   which the authorizer is not asked about, is refused by its first word. The connection
//!   itself is opened defensive (`SQLITE_DBCONFIG_DEFENSIVE`, untrusted schema, no FTS3
//!   tokenizer), with no database attachable and bounded statement and value sizes
//!   ([`SQLITE_LIMITS`]). Tenant connections are opened by `sql.rs` for the tenant's own
//!   file, never shared with the host's store;
//! - on **PostgreSQL** by parsing the statement (`sqlparser`, PostgreSQL dialect) before it
//!   is sent: exactly one statement of an allowed kind ([`postgres_check`]: queries,
//!   `INSERT`/`UPDATE`/`DELETE`/`MERGE`, `CREATE`/`ALTER`/`DROP` of tables, views, indexes
//!   and sequences, `TRUNCATE`, `EXPLAIN` of one of these), and no function or relation
//!   named in [`POSTGRES_NAMES_REFUSED`] (`set_config`, `pg_read_file`, `lo_import`,
//!   `dblink`, `query_to_xml` …) as any word of it (so no form of the grammar hides a
//!   call: `FROM LATERAL f(…)`, options, defaults), no identifier written with Unicode
//!   escapes (`U&"…"`, which the server decodes and the check cannot); a statement the
//!   parser does not understand is refused rather than guessed at. After every call the session's settings are reset
//!   (`RESET ALL`, then the host's `statement_timeout` again), so a setting changed by any
//!   path the parser missed does not reach the next call. The database role the operator
//!   configures stays the authority on what exists: give tenants a role that is not a
//!   superuser, so `COPY … PROGRAM` and file functions are refused by the server as well.

use std::sync::{Arc, Mutex};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;

/// Why a statement was refused, for the message: "`{what}` is not allowed".
pub(crate) fn refusal(what: &str) -> String {
    format!("{what} is not allowed: tenant SQL reaches only its own database's tables and schema")
}

// ---- SQLite ----

/// The PRAGMAs a tenant statement may run: read-only views of its own schema. Every other
/// PRAGMA is refused, read or write, since many reach the process or the host
/// (`hard_heap_limit`, `soft_heap_limit`, `temp_store_directory`, `database_list`,
/// `mmap_size`, `cache_size`, `journal_mode`, `writable_schema` …).
pub const SQLITE_PRAGMAS_ALLOWED: [&str; 7] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

/// Functions that reach files, extensions or the host, refused wherever they appear
/// (most are not compiled into the bundled SQLite; they are named in case they ever are).
pub const SQLITE_FUNCTIONS_REFUSED: [&str; 8] = [
    "load_extension",
    "fts3_tokenizer",
    "readfile",
    "writefile",
    "edit",
    "zipfile",
    "sqlar_compress",
    "sqlar_uncompress",
];

/// The connection limits of a tenant SQLite connection: no database attachable (nor
/// `VACUUM INTO`, which attaches), a statement's text at most 1 MB, a value at most 16 MiB
/// (`randomblob`, `zeroblob`, `printf` and string building cannot grow past it).
pub const SQLITE_LIMITS: [(Limit, i32); 3] = [
    (Limit::SQLITE_LIMIT_ATTACHED, 0),
    (Limit::SQLITE_LIMIT_SQL_LENGTH, 1_000_000),
    (Limit::SQLITE_LIMIT_LENGTH, 16 << 20),
];

/// What the authorizer last refused on a connection, so the error names it (SQLite's own
/// text is only "not authorized").
#[derive(Clone, Default)]
pub(crate) struct SqliteRefusals(Arc<Mutex<Option<String>>>);

impl SqliteRefusals {
    /// Forgets an earlier refusal: called before each statement.
    pub(crate) fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The first thing refused since [`SqliteRefusals::clear`].
    pub(crate) fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn note(&self, what: String) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(what);
        }
    }
}

/// Sets a tenant connection up under the rule: defensive, limits, and the authorizer.
/// Returns where the authorizer notes what it refused.
pub(crate) fn sqlite_guard(
    connection: &mut rusqlite::Connection,
) -> rusqlite::Result<SqliteRefusals> {
    use rusqlite::config::DbConfig;
    // Defensive: no writes to the schema table or the database file's pages by SQL.
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    // Functions and virtual tables marked unsafe may not run from the schema (a view or
    // trigger), whoever wrote it.
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, false)?;
    for (limit, value) in SQLITE_LIMITS {
        connection.set_limit(limit, value)?;
    }
    let refusals = SqliteRefusals::default();
    let noted = refusals.clone();
    connection.authorizer(Some(move |context: AuthContext<'_>| {
        match sqlite_decide(&context) {
            Ok(()) => Authorization::Allow,
            Err(what) => {
                noted.note(what);
                Authorization::Deny
            }
        }
    }))?;
    Ok(refusals)
}

/// The rule for one action SQLite asks about: `Err` names what is refused.
fn sqlite_decide(context: &AuthContext<'_>) -> Result<(), String> {
    // The schema an action is in; `None` for actions not about a table.
    let in_main = |schema: Option<&str>| match schema {
        None | Some("main") => Ok(()),
        Some(other) => Err(format!("using the schema '{other}'")),
    };
    // SQLite reads and rewrites the temp schema's own table while it alters a table of
    // `main` (temporary triggers on it), and asks about writing it before it asks about
    // creating a temporary object (refused then): harmless, since user SQL cannot write
    // that table and nothing can be created in `temp`.
    let temp_schema_table = |table: &str| {
        context.database_name == Some("temp")
            && matches!(table, "sqlite_temp_master" | "sqlite_temp_schema")
    };
    let temp = || {
        "a temporary table, index, view or trigger (it would outlive the call on a shared connection)"
            .to_string()
    };
    match context.action {
        AuthAction::Select | AuthAction::Recursive => Ok(()),
        AuthAction::Read { table_name, .. }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
            if temp_schema_table(table_name) =>
        {
            Ok(())
        }
        AuthAction::Read { .. }
        | AuthAction::Insert { .. }
        | AuthAction::Update { .. }
        | AuthAction::Delete { .. }
        | AuthAction::CreateTable { .. }
        | AuthAction::CreateIndex { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::CreateTrigger { .. }
        | AuthAction::DropTable { .. }
        | AuthAction::DropIndex { .. }
        | AuthAction::DropView { .. }
        | AuthAction::DropTrigger { .. }
        | AuthAction::Reindex { .. }
        | AuthAction::Analyze { .. } => in_main(context.database_name),
        AuthAction::AlterTable { database_name, .. } => in_main(Some(database_name)),
        AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempView { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::DropTempTable { .. }
        | AuthAction::DropTempIndex { .. }
        | AuthAction::DropTempView { .. }
        | AuthAction::DropTempTrigger { .. } => Err(temp()),
        AuthAction::Pragma { pragma_name, .. } => {
            let name = pragma_name.to_ascii_lowercase();
            if SQLITE_PRAGMAS_ALLOWED.contains(&name.as_str()) {
                in_main(context.database_name)
            } else {
                Err(format!("PRAGMA {name}"))
            }
        }
        AuthAction::Function { function_name } => {
            let name = function_name.to_ascii_lowercase();
            if SQLITE_FUNCTIONS_REFUSED.contains(&name.as_str()) {
                Err(format!("the function {name}()"))
            } else {
                Ok(())
            }
        }
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Err(
            "transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE): each call runs on its own"
                .into(),
        ),
        AuthAction::Attach { .. } => Err("ATTACH".into()),
        AuthAction::Detach { .. } => Err("DETACH".into()),
        AuthAction::CreateVtable { module_name, .. } => {
            Err(format!("a virtual table (module {module_name})"))
        }
        AuthAction::DropVtable { .. } => Err("dropping a virtual table".into()),
        // Whatever SQLite adds later is refused until the rule names it.
        _ => Err(format!("the action {:?}", context.action)),
    }
}

/// The check before a SQLite statement is prepared, for what the authorizer never sees:
/// `VACUUM` (plain, it rewrites the file under the tenant's other connections; `INTO`, it
/// writes a file of its choosing), and an empty statement. Comments before the first word
/// are skipped.
pub(crate) fn sqlite_check(statement: &str) -> Result<(), String> {
    let word = first_word(statement);
    if word.is_empty() {
        return Err("the statement is empty".into());
    }
    if word == "vacuum" {
        return Err(refusal("VACUUM"));
    }
    Ok(())
}

/// The statement's first word, lower case, after leading comments.
fn first_word(statement: &str) -> String {
    let mut rest = statement.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase()
}

// ---- PostgreSQL ----

/// Functions and relations a tenant statement on PostgreSQL may not name (compared on every
/// word of the statement, lower case, quoted or not). Names ending in `*` are prefixes: every `pg_`
/// function or catalog view (files, settings, signals, other sessions, the server's
/// configuration) but those in [`POSTGRES_PG_ALLOWED`], large objects (`lo_import`,
/// `lo_export` reach the server's files), `dblink`; and by name, the functions that
/// change or read settings and those that run SQL given as text (which the parser cannot
/// see into).
pub const POSTGRES_NAMES_REFUSED: [&str; 18] = [
    "pg_*",
    "lo_*",
    "dblink*",
    "set_config",
    "current_setting",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml*",
    "database_to_xml*",
    "xmlparse",
    "ts_stat",
    "txid_current_snapshot",
];

/// `pg_` functions that only describe a value.
/// `pg_catalog` is the schema of the built-in functions (`pg_catalog.lower(…)`): naming it
/// reaches nothing by itself, the function named after it is checked on its own.
pub const POSTGRES_PG_ALLOWED: [&str; 3] = ["pg_typeof", "pg_column_size", "pg_catalog"];

fn postgres_name_refused(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if POSTGRES_PG_ALLOWED.contains(&name.as_str()) {
        return false;
    }
    POSTGRES_NAMES_REFUSED
        .iter()
        .any(|refused| match refused.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *refused,
        })
}

/// The rule on PostgreSQL, before the statement is sent: `Err` says what is refused.
pub(crate) fn postgres_check(statement: &str) -> Result<(), String> {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;
    // The statement named by its first word, as its author wrote it: `SET`, `COPY`, `DO` …
    let word = first_word(statement).to_ascii_uppercase();
    if word.is_empty() {
        return Err("the statement is empty".into());
    }
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, statement).map_err(|e| {
        format!(
            "a statement of kind {word} that the host cannot check ({e}) is not run; tenant SQL is one query, INSERT, UPDATE, DELETE, MERGE, or CREATE/ALTER/DROP of a table, view, index or sequence"
        )
    })?;
    let [parsed] = parsed.as_slice() else {
        return Err(format!(
            "one statement per call: the text holds {}",
            parsed.len()
        ));
    };
    if !postgres_kind_allowed(parsed) {
        return Err(refusal(&format!("a statement of kind {word}")));
    }
    postgres_names(statement)
}

/// Whether the statement is of a kind the rule allows.
fn postgres_kind_allowed(statement: &sqlparser::ast::Statement) -> bool {
    use sqlparser::ast::{ObjectType, Statement as S};
    match statement {
        S::Query(_)
        | S::Insert(_)
        | S::Update(_)
        | S::Delete(_)
        | S::Merge(_)
        | S::CreateTable(_)
        | S::CreateIndex(_)
        | S::CreateView(_)
        | S::CreateSequence { .. }
        | S::AlterTable(_)
        | S::AlterIndex { .. }
        | S::Truncate(_) => true,
        S::Drop { object_type, .. } => matches!(
            object_type,
            ObjectType::Table
                | ObjectType::View
                | ObjectType::MaterializedView
                | ObjectType::Index
                | ObjectType::Sequence
        ),
        S::Explain { statement, .. } => postgres_kind_allowed(statement),
        _ => false,
    }
}

/// Refuses a name on [`POSTGRES_NAMES_REFUSED`] anywhere in the statement, and identifiers
/// written with Unicode escapes. The check reads the statement's words, not its syntax
/// tree: a function can only be reached by writing its name, so no form of the grammar the
/// tree's visitors miss (`FROM LATERAL f(…)`, a table function in a join, an option's
/// expression) lets one through. The price: a tenant's own table or column may not be named
/// like a refused function (`pg_…`, `lo_…`). `U&"\0073et_config"` spells `set_config` in an
/// escape (with any escape character, `UESCAPE`) the check would have to decode the way the
/// server does: it is refused instead.
fn postgres_names(statement: &str) -> Result<(), String> {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, statement)
        .tokenize()
        .map_err(|e| format!("a statement the host cannot read ({e}) is not run"))?;
    for (i, token) in tokens.iter().enumerate() {
        let Token::Word(word) = token else { continue };
        // `U&"…"`: the word `U`, then `&` and a quoted identifier, with nothing between.
        if word.quote_style.is_none()
            && word.value.eq_ignore_ascii_case("u")
            && matches!(tokens.get(i + 1), Some(Token::Ampersand))
            && matches!(tokens.get(i + 2), Some(Token::Word(w)) if w.quote_style.is_some())
        {
            return Err(refusal(
                "an identifier written with Unicode escapes (U&\"…\")",
            ));
        }
        if postgres_name_refused(&word.value) {
            let called = tokens[i + 1..]
                .iter()
                .find(|t| !matches!(t, Token::Whitespace(_)))
                .is_some_and(|t| matches!(t, Token::LParen));
            let name = word.value.to_lowercase();
            return Err(refusal(&if called {
                format!("the function {name}()")
            } else {
                name
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_allows_the_data_statements() {
        for ok in [
            "SELECT 1",
            "select id, caller from calls where id = $1",
            "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
            "INSERT INTO calls (id, caller) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id",
            "UPDATE calls SET note = $1 WHERE id > $2",
            "DELETE FROM calls WHERE id = $1",
            "CREATE TABLE IF NOT EXISTS calls (id BIGINT PRIMARY KEY, caller TEXT NOT NULL UNIQUE, at TIMESTAMPTZ DEFAULT now())",
            "CREATE INDEX calls_caller ON calls (caller)",
            "ALTER TABLE calls ADD COLUMN note TEXT",
            "DROP TABLE IF EXISTS calls",
            "TRUNCATE calls",
            "SELECT $1::jsonb AS j",
            "SELECT pg_typeof(1)",
            "EXPLAIN SELECT * FROM calls",
            "SELECT pg_catalog.lower('A')",
            "SELECT txid_current(), current_user, version()",
            r"SELECT 'set_config' AS name, U&'d\0061t\+000061' AS escaped_text",
        ] {
            assert_eq!(postgres_check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn postgres_refuses_settings_files_programs_and_sessions() {
        for (bad, named) in [
            ("SET statement_timeout = 0", "SET"),
            ("set local work_mem = '1GB'", "SET"),
            ("RESET ALL", "RESET"),
            ("ALTER SYSTEM SET work_mem = '1GB'", "ALTER"),
            (
                "SELECT set_config('statement_timeout', '0', false)",
                "set_config",
            ),
            ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
            ("select PG_CATALOG.PG_LS_DIR('.')", "pg_ls_dir"),
            ("SELECT * FROM pg_ls_dir('.')", "pg_ls_dir"),
            ("SELECT * FROM pg_settings", "pg_settings"),
            ("SELECT lo_import('/etc/passwd')", "lo_import"),
            (
                "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)",
                "dblink",
            ),
            ("COPY calls TO PROGRAM 'id'", "COPY"),
            ("COPY calls FROM '/etc/passwd'", "COPY"),
            ("DO $$ BEGIN PERFORM 1; END $$", "DO"),
            ("BEGIN", "BEGIN"),
            ("COMMIT", ""),
            ("SAVEPOINT a", ""),
            ("LISTEN x", ""),
            ("NOTIFY x", ""),
            ("LOAD 'auto_explain'", ""),
            (
                "CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql",
                "",
            ),
            ("CREATE EXTENSION dblink", ""),
            ("DROP DATABASE postgres", "DROP"),
            ("DROP FUNCTION f", "DROP"),
            ("SELECT 1; SELECT 2", "one statement per call"),
            (
                "SELECT 1; SET statement_timeout = 0",
                "one statement per call",
            ),
            ("-- hidden\nSET statement_timeout = 0", "SET"),
            (
                "WITH x AS (SELECT set_config('a.b', 'c', false)) SELECT * FROM x",
                "set_config",
            ),
            ("EXPLAIN ANALYZE SELECT pg_sleep(10)", "pg_sleep"),
            (
                "CREATE TABLE t (x text DEFAULT pg_read_file('/etc/passwd'))",
                "pg_read_file",
            ),
            (
                "SELECT query_to_xml('select set_config(''a.b'',''c'',false)', true, true, '')",
                "query_to_xml",
            ),
            // Issue 14's review, second round: forms the syntax tree's visitors missed.
            (
                r#"SELECT U&"\0073et_config"('a.b', 'c', false)"#,
                "Unicode escapes",
            ),
            (r#"select 1 + u&"\0070g_backend_pid"()"#, "Unicode escapes"),
            (
                "SELECT * FROM LATERAL set_config('a.b', 'c', false)",
                "set_config()",
            ),
            (
                "SELECT * FROM calls, LATERAL pg_ls_dir('.') AS f",
                "pg_ls_dir()",
            ),
            (
                r#"SELECT "pg_catalog"."set_config"('a.b', 'c', false)"#,
                "set_config()",
            ),
            ("SELECT * FROM pg_catalog.pg_authid", "pg_authid"),
            ("", "empty"),
            ("  /* only a comment */ ", "empty"),
        ] {
            let why = postgres_check(bad).expect_err(bad);
            assert!(why.contains(named), "{bad}: {why}");
        }
    }

    #[test]
    fn sqlite_refuses_vacuum_and_empty_statements() {
        for bad in ["VACUUM", "/* x */ vacuum INTO '/tmp/x'", "", "  -- only\n"] {
            assert!(sqlite_check(bad).is_err(), "{bad:?}");
        }
        for ok in ["select 1", "-- note\nINSERT INTO t VALUES (1)"] {
            assert_eq!(sqlite_check(ok), Ok(()), "{ok:?}");
        }
    }
}
