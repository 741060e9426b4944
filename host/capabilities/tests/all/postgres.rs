//! The same SQL checks on PostgreSQL, in a database of its own on the server named by
//! `CODA_TEST_POSTGRES`.

use coda_types::Value;
use coda_types::capabilities::CapabilitiesExt as _;

use crate::sqlite::{Dialect, exercise, settings};
use crate::support::*;

const HOW: &str = "CODA_TEST_POSTGRES is not set: the PostgreSQL tests need a server. \
    Run `./dev test`, which starts a throwaway cluster, or start one yourself and set e.g. \
    CODA_TEST_POSTGRES=postgres://coda@127.0.0.1:54329/postgres";

#[tokio::test]
async fn postgres_end_to_end() {
    let admin_url = std::env::var("CODA_TEST_POSTGRES").unwrap_or_else(|_| panic!("{HOW}"));
    let (admin, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to CODA_TEST_POSTGRES={admin_url}: {e}"));
    tokio::spawn(connection);
    let name = format!(
        "coda_caps_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&format!("/{name}"));

    let result = tokio::spawn({
        let url = url.to_string();
        async move {
            let host = host(&settings(&url));
            let logger = applet(&host, "acme", "logger");
            exercise(
                &*logger,
                &Dialect {
                    true_value: Value::Boolean(true),
                    json_select: "SELECT $1::jsonb AS j",
                    json_back: |s| Value::Json(s.into()),
                },
            )
            .await;
            // Types the host does not carry are named, with the way out.
            let m = expect_err(
                logger
                    .sql_query(&cx(), "calls".into(), "SELECT now() AS at".into(), vec![])
                    .await,
                invalid,
                "invalid",
            );
            assert!(m.contains("column 'at'") && m.contains("::text"), "{m}");
            let rows = logger
                .sql_query(
                    &cx(),
                    "calls".into(),
                    "SELECT now()::text AS at".into(),
                    vec![],
                )
                .await
                .unwrap();
            assert!(matches!(rows.rows[0][0], Value::Text(_)));
            refuses_what_reaches_beyond_the_database(&*logger).await;
        }
    })
    .await;
    // Drop the database whatever happened, then report.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The tenant SQL rule on PostgreSQL: settings, files, programs, other sessions, dynamic
/// SQL and transaction control are refused before they reach the server, with `invalid`
/// naming what was refused; the session's settings are the host's afterwards.
async fn refuses_what_reaches_beyond_the_database(
    logger: &dyn coda_types::capabilities::Capabilities,
) {
    let timeout = || async {
        logger
            .sql_query(
                &cx(),
                "calls".into(),
                "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'statement_timeout'"
                    .into(),
                vec![],
            )
            .await
    };
    // Catalog views are refused too: `pg_settings` shows the server's configuration.
    expect_err(timeout().await, invalid, "invalid");
    for (statement, named) in [
        ("SET statement_timeout = 0", "SET"),
        ("RESET statement_timeout", "RESET"),
        (
            "SELECT set_config('statement_timeout', '0', false)",
            "set_config()",
        ),
        (
            "select current_setting('data_directory')",
            "current_setting()",
        ),
        ("SELECT pg_read_file('/etc/passwd')", "pg_read_file()"),
        ("SELECT * FROM pg_ls_dir('.')", "pg_ls_dir"),
        ("SELECT lo_import('/etc/passwd')", "lo_import()"),
        ("COPY calls TO PROGRAM 'id'", "COPY"),
        ("COPY calls FROM '/etc/passwd'", "COPY"),
        (
            "DO $$ BEGIN PERFORM set_config('a.b', 'c', false); END $$",
            "DO",
        ),
        ("BEGIN", "BEGIN"),
        ("SELECT 1; SELECT 2", "one statement per call"),
        ("/* hidden */ SET work_mem = '1GB'", "SET"),
        (
            "WITH x AS (SELECT set_config('a.b', 'c', false) AS v) SELECT v FROM x",
            "set_config()",
        ),
        ("EXPLAIN ANALYZE SELECT pg_sleep(10)", "pg_sleep()"),
        ("SELECT pg_terminate_backend(1)", "pg_terminate_backend()"),
        ("LISTEN calls", "LISTEN"),
        // Forms the syntax tree's visitors missed (issue 14's second round): a table
        // function after LATERAL, a name spelled in Unicode escapes.
        (
            "SELECT * FROM LATERAL set_config('statement_timeout', '0', false)",
            "set_config()",
        ),
        (
            r#"SELECT * FROM calls, LATERAL pg_ls_dir('.') AS f"#,
            "pg_ls_dir()",
        ),
        (
            r#"SELECT U&"\0073et_config"('statement_timeout', '0', false)"#,
            "Unicode escapes",
        ),
    ] {
        let m = expect_err(
            logger
                .sql_execute(&cx(), "calls".into(), statement.into(), vec![])
                .await,
            invalid,
            "invalid",
        );
        assert!(
            m.contains(named) && m.contains("database 'calls'"),
            "{statement}: {m}"
        );
    }
    // The host's own limit still holds on the connection: a long statement is stopped.
    let m = expect_err(
        logger
            .sql_query(
                &cx(),
                "calls".into(),
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
                    .into(),
                vec![],
            )
            .await,
        limit,
        "limit-exceeded",
    );
    assert!(m.contains("500 ms"), "{m}");
}
