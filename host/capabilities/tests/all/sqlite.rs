//! SQL on SQLite in a temporary directory; [`exercise`] is also run on PostgreSQL.

use coda_types::Value;
use coda_types::capabilities::Capabilities;

use crate::support::*;

/// Settings with database `calls` at `url`: statements limited to 500 ms, queries to 5 rows.
pub fn settings(url: &str) -> String {
    format!(
        r#"
sql:
  statement_timeout_ms: 500
  max_rows: 5
tenants:
  acme:
    ceiling:
      databases: [calls]
    grants:
      logger:
        sql: [calls]
      sms: {{}}
    databases:
      calls: "{url}"
"#
    )
}

/// How the engines differ in what comes back.
pub struct Dialect {
    /// A BOOLEAN column read back: SQLite stores 1, PostgreSQL has a boolean.
    pub true_value: Value,
    /// `$1` as JSON read back: PostgreSQL's jsonb is JSON, SQLite's text is text.
    pub json_select: &'static str,
    pub json_back: fn(&str) -> Value,
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// The same checks on any engine: create, insert with bound parameters, select, the row cap,
/// the time limit, constraints, one statement per call, grants.
pub async fn exercise(caps: &dyn Capabilities, dialect: &Dialect) {
    let cx = cx();
    let db = || "calls".to_string();
    let execute = |statement: &str, params: Vec<Value>| {
        caps.sql_execute(&cx, db(), statement.to_string(), params)
    };
    execute(
        "CREATE TABLE calls (id INTEGER PRIMARY KEY, caller TEXT NOT NULL UNIQUE, minutes REAL, answered BOOLEAN, note TEXT)",
        vec![],
    )
    .await
    .unwrap();
    // A value that would break a spliced statement goes in intact: it is bound.
    let tricky = "+1555'); DROP TABLE calls; --";
    let inserted = execute(
        "INSERT INTO calls (id, caller, minutes, answered, note) VALUES ($1, $2, $3, $4, $5)",
        vec![
            Value::Integer(1),
            text(tricky),
            Value::Number(2.5),
            Value::Boolean(true),
            Value::Null,
        ],
    )
    .await
    .unwrap();
    assert_eq!(inserted, 1);
    for id in 2..=6 {
        execute(
            "INSERT INTO calls (id, caller) VALUES ($1, $2)",
            vec![Value::Integer(id), text(&format!("+1555000{id}"))],
        )
        .await
        .unwrap();
    }
    let rows = caps
        .sql_query(
            &cx,
            db(),
            "SELECT id, caller, minutes, answered, note FROM calls WHERE id = $1".into(),
            vec![Value::Integer(1)],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.columns,
        ["id", "caller", "minutes", "answered", "note"]
    );
    assert_eq!(
        rows.rows,
        [vec![
            Value::Integer(1),
            text(tricky),
            Value::Number(2.5),
            dialect.true_value.clone(),
            Value::Null
        ]]
    );
    let updated = execute(
        "UPDATE calls SET note = $1 WHERE id > $2",
        vec![text("later"), Value::Integer(3)],
    )
    .await
    .unwrap();
    assert_eq!(updated, 3);

    // `$N` binds the N-th value whatever order the placeholders appear in (SQLite alone
    // would number them by first appearance).
    let rows = caps
        .sql_query(
            &cx,
            db(),
            "SELECT id FROM calls WHERE caller = $2 AND id = $1".into(),
            vec![Value::Integer(4), text("+15550004")],
        )
        .await
        .unwrap();
    assert_eq!(rows.rows, [vec![Value::Integer(4)]]);

    // JSON both ways.
    let rows = caps
        .sql_query(
            &cx,
            db(),
            dialect.json_select.into(),
            vec![Value::Json(r#"{"a":[1,2]}"#.into())],
        )
        .await
        .unwrap();
    assert_eq!(rows.rows, [vec![(dialect.json_back)(r#"{"a":[1,2]}"#)]]);

    // Row cap: 5 rows are fine, 6 are an error rather than a silent cut.
    let five = caps
        .sql_query(
            &cx,
            db(),
            "SELECT id FROM calls ORDER BY id LIMIT 5".into(),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(five.rows.len(), 5);
    let m = expect_err(
        caps.sql_query(&cx, db(), "SELECT id FROM calls".into(), vec![])
            .await,
        limit,
        "limit-exceeded",
    );
    assert!(m.contains("more than 5 rows"), "{m}");

    // Time limit: a recursive CTE that never ends.
    let started = std::time::Instant::now();
    let m = expect_err(
        caps.sql_query(
            &cx,
            db(),
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
                .into(),
            vec![],
        )
        .await,
        limit,
        "limit-exceeded",
    );
    assert!(m.contains("500 ms"), "{m}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The connection is usable after the interruption.
    caps.sql_query(&cx, db(), "SELECT 1 AS one".into(), vec![])
        .await
        .unwrap();

    // Constraint violation: rejected, and the message names the constraint, not the value.
    let m = expect_err(
        execute(
            "INSERT INTO calls (id, caller) VALUES ($1, $2)",
            vec![Value::Integer(7), text("+15550002")],
        )
        .await,
        rejected,
        "rejected",
    );
    assert!(!m.contains("+15550002"), "{m}");
    assert!(m.contains("calls"), "{m}");

    // One statement per call.
    let m = expect_err(
        execute("DELETE FROM calls; DROP TABLE calls", vec![]).await,
        invalid,
        "invalid",
    );
    assert!(m.contains("database 'calls'"), "{m}");
    let count = caps
        .sql_query(&cx, db(), "SELECT count(*) AS n FROM calls".into(), vec![])
        .await
        .unwrap();
    assert_eq!(count.rows, [vec![Value::Integer(6)]]);

    // Bad statements and session control.
    let m = expect_err(
        caps.sql_query(&cx, db(), "SELECT * FROM nowhere".into(), vec![])
            .await,
        invalid,
        "invalid",
    );
    assert!(m.contains("nowhere"), "{m}");
    expect_err(execute("SELEC 1", vec![]).await, invalid, "invalid");
    expect_err(execute("BEGIN", vec![]).await, invalid, "invalid");
    expect_err(
        execute("SELECT $1", vec![Value::Integer(1), Value::Integer(2)]).await,
        invalid,
        "invalid",
    );

    // Grants: another database, and an applet without sql.
    let m = expect_err(
        caps.sql_query(&cx, "other".into(), "SELECT 1".into(), vec![])
            .await,
        not_granted,
        "not-granted",
    );
    assert!(m.contains("database 'other'"), "{m}");
}

#[tokio::test]
async fn sqlite_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("calls.db").display());
    let host = host(&settings(&url));
    let logger = applet(&host, "acme", "logger");
    exercise(
        &*logger,
        &Dialect {
            true_value: Value::Integer(1),
            json_select: "SELECT $1 AS j",
            json_back: |s| Value::Text(s.into()),
        },
    )
    .await;

    let sms = applet(&host, "acme", "sms");
    expect_err(
        sms.sql_query(&cx(), "calls".into(), "SELECT 1".into(), vec![])
            .await,
        not_granted,
        "not-granted",
    );
}

#[tokio::test]
async fn sqlite_reaches_no_other_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("calls.db").display());
    let host = host(&settings(&url));
    let logger = applet(&host, "acme", "logger");
    let outside = dir.path().join("elsewhere.db");
    for statement in [
        format!("ATTACH DATABASE '{}' AS other", outside.display()),
        format!("VACUUM INTO '{}'", outside.display()),
    ] {
        let result = logger
            .sql_execute(&cx(), "calls".into(), statement.clone(), vec![])
            .await;
        assert!(result.is_err(), "{statement}: {result:?}");
    }
    assert!(!outside.exists());
    let m = expect_err(
        logger
            .sql_query(&cx(), "calls".into(), "SELECT x'00ff' AS b".into(), vec![])
            .await,
        invalid,
        "invalid",
    );
    assert!(m.contains("column 'b'"), "{m}");
}
