//! The same SQL checks on PostgreSQL, in a database of its own on the server named by
//! `CODA_TEST_POSTGRES`.

use coda_types::Value;

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
