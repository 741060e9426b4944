//! SQL on a tenant's named databases: SQLite (rusqlite, on blocking threads) and PostgreSQL
//! (tokio-postgres). Parameters are always bound, never spliced into the text; one statement
//! per call; a time limit per statement, a cap on rows and one on the result's bytes. Connections are kept per database
//! and shared by the tenant's applets, so a call may not leave session state behind
//! (an open transaction, a changed setting). What a statement may do at all is the rule of
//! `sql_policy.rs`, checked before it runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coda_types::capabilities::SqlRows;
use coda_types::{HostError, Value};
use futures_util::{TryStreamExt, pin_mut};
use rusqlite::types::{Value as SqliteValue, ValueRef};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::settings::{DatabaseUrl, SqlSettings, TenantSettings};
use crate::sql_policy;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Query,
    Execute,
}

enum Output {
    Rows(SqlRows),
    Count(u64),
}

type Key = (String, String);
type SqliteConnections = Arc<Mutex<HashMap<Key, Arc<Mutex<TenantSqlite>>>>>;

/// A tenant's SQLite connection, opened for its own file under the rule of
/// `sql_policy.rs`, and where its authorizer notes what it refused.
struct TenantSqlite {
    connection: rusqlite::Connection,
    refusals: sql_policy::SqliteRefusals,
}

/// The cached connections, keyed by tenant and database name.
#[derive(Default)]
pub(crate) struct Databases {
    sqlite: SqliteConnections,
    postgres: tokio::sync::Mutex<HashMap<Key, Arc<tokio_postgres::Client>>>,
}

impl Databases {
    pub(crate) async fn query(
        &self,
        tenant_name: &str,
        tenant: &TenantSettings,
        limits: &SqlSettings,
        database: &str,
        statement: String,
        params: Vec<Value>,
    ) -> Result<SqlRows, HostError> {
        match self
            .run(
                tenant_name,
                tenant,
                limits,
                database,
                statement,
                params,
                Kind::Query,
            )
            .await?
        {
            Output::Rows(rows) => Ok(rows),
            Output::Count(_) => Err(HostError::Unavailable("no rows came back".into())),
        }
    }

    pub(crate) async fn execute(
        &self,
        tenant_name: &str,
        tenant: &TenantSettings,
        limits: &SqlSettings,
        database: &str,
        statement: String,
        params: Vec<Value>,
    ) -> Result<u64, HostError> {
        match self
            .run(
                tenant_name,
                tenant,
                limits,
                database,
                statement,
                params,
                Kind::Execute,
            )
            .await?
        {
            Output::Count(n) => Ok(n),
            Output::Rows(_) => Err(HostError::Unavailable("no count came back".into())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        tenant_name: &str,
        tenant: &TenantSettings,
        limits: &SqlSettings,
        database: &str,
        statement: String,
        params: Vec<Value>,
        kind: Kind,
    ) -> Result<Output, HostError> {
        let url = tenant.databases.get(database).ok_or_else(|| {
            HostError::Unavailable(format!(
                "database '{database}' is granted but not configured for this tenant"
            ))
        })?;
        // The rule of what a tenant statement may do (`sql_policy.rs`), before it runs.
        match url {
            DatabaseUrl::Sqlite(_) => sql_policy::sqlite_check(&statement),
            DatabaseUrl::Postgres(_) => sql_policy::postgres_check(&statement),
        }
        .map_err(|what| HostError::Invalid(format!("database '{database}': {what}")))?;
        let key = (tenant_name.to_string(), database.to_string());
        let timeout = Duration::from_millis(limits.statement_timeout_ms);
        let job = Job {
            database: database.to_string(),
            statement,
            params,
            kind,
            timeout,
            max_rows: limits.max_rows,
            max_result_bytes: limits.max_result_bytes,
            max_database_bytes: limits.max_database_bytes,
        };
        match url {
            DatabaseUrl::Sqlite(path) => {
                let cache = self.sqlite.clone();
                let path = path.clone();
                // rusqlite blocks: keep it off the async threads.
                tokio::task::spawn_blocking(move || {
                    let connection = sqlite_connection(&cache, key, &path, &job)?;
                    // A poisoned lock means a panic mid-call; the connection itself is intact.
                    let mut tenant = connection.lock().unwrap_or_else(|e| e.into_inner());
                    sqlite_run(&mut tenant, &job)
                })
                .await
                .map_err(|e| HostError::Unavailable(format!("the SQLite call failed: {e}")))?
            }
            DatabaseUrl::Postgres(url) => {
                let client = self.postgres_client(key.clone(), url, &job).await?;
                let result = postgres_run(&client, &job).await;
                // Whatever the statement did to the session's settings, by a path the
                // check missed, does not reach the next call on this connection.
                let reset = format!(
                    "RESET ALL; SET statement_timeout = {}",
                    job.timeout.as_millis()
                );
                // Bounded like the statement: a server that does not answer costs the
                // connection, not the step.
                let reset = tokio::time::timeout(job.timeout, client.batch_execute(&reset)).await;
                if !matches!(reset, Ok(Ok(()))) {
                    tracing::warn!(
                        database,
                        "resetting a PostgreSQL session failed, the connection is dropped: {reset:?}"
                    );
                    self.postgres.lock().await.remove(&key);
                }
                result
            }
        }
    }

    async fn postgres_client(
        &self,
        key: Key,
        url: &str,
        job: &Job,
    ) -> Result<Arc<tokio_postgres::Client>, HostError> {
        let mut clients = self.postgres.lock().await;
        if let Some(client) = clients.get(&key)
            && !client.is_closed()
        {
            return Ok(client.clone());
        }
        let unavailable = |why: String| {
            HostError::Unavailable(format!(
                "cannot connect to database '{}': {why}",
                job.database
            ))
        };
        // TLS to PostgreSQL is not supported yet: NoTls refuses a URL that requires it.
        let connecting = tokio_postgres::connect(url, tokio_postgres::NoTls);
        let (client, connection) = tokio::time::timeout(job.timeout, connecting)
            .await
            .map_err(|_| unavailable(format!("no answer within {} ms", job.timeout.as_millis())))?
            .map_err(|e| unavailable(pg_text(&e)))?;
        let database = job.database.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(database, "a PostgreSQL connection ended: {e}");
            }
        });
        // The server enforces the limit too, so a statement outlives no cancel that got lost.
        client
            .batch_execute(&format!(
                "SET statement_timeout = {}",
                job.timeout.as_millis()
            ))
            .await
            .map_err(|e| unavailable(pg_text(&e)))?;
        let client = Arc::new(client);
        clients.insert(key, client.clone());
        Ok(client)
    }
}

struct Job {
    database: String,
    statement: String,
    params: Vec<Value>,
    kind: Kind,
    timeout: Duration,
    max_rows: usize,
    max_result_bytes: u64,
    max_database_bytes: u64,
}

impl Job {
    /// Counts a value into the result's size, refusing the query once it passes the cap:
    /// counted as rows come in, so the host never holds more than the cap (and one value).
    fn count(&self, used: &mut u64, value: &Value) -> Result<(), HostError> {
        *used += match value {
            Value::Text(s) | Value::Json(s) => s.len() as u64,
            _ => 8,
        };
        if *used > self.max_result_bytes {
            return Err(HostError::LimitExceeded(format!(
                "the query on database '{}' returns more than {} bytes",
                self.database, self.max_result_bytes
            )));
        }
        Ok(())
    }

    fn too_many_rows(&self) -> HostError {
        HostError::LimitExceeded(format!(
            "the query on database '{}' returns more than {} rows",
            self.database, self.max_rows
        ))
    }

    fn too_long(&self) -> HostError {
        HostError::LimitExceeded(format!(
            "the statement on database '{}' ran longer than the limit of {} ms",
            self.database,
            self.timeout.as_millis()
        ))
    }

    fn error(&self, make: fn(String) -> HostError, text: &str) -> HostError {
        make(format!("database '{}': {text}", self.database))
    }
}

// ---- SQLite ----

fn sqlite_connection(
    cache: &SqliteConnections,
    key: Key,
    path: &std::path::Path,
    job: &Job,
) -> Result<Arc<Mutex<TenantSqlite>>, HostError> {
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(connection) = cache.get(&key) {
        return Ok(connection.clone());
    }
    let unavailable =
        |e: rusqlite::Error| job.error(HostError::Unavailable, &format!("cannot open: {e}"));
    // A connection of the tenant's own, to its own file: never one of the store's.
    let mut connection = rusqlite::Connection::open(path).map_err(unavailable)?;
    connection.busy_timeout(job.timeout).map_err(unavailable)?;
    // However its path is spelled (a link, another name), the host's store is not a tenant
    // database: its file says so.
    let id: i32 = connection
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(unavailable)?;
    if id == coda_types::STORE_APPLICATION_ID {
        return Err(job.error(
            HostError::Unavailable,
            "the file configured for it is the host's own store, not a tenant database: the operator must configure another file",
        ));
    }
    // The file grows to the operator's cap at most (set before the guard, which refuses
    // every PRAGMA a tenant could use to change it). SQLite never sets the cap below the
    // pages in use: a larger file keeps its rows and takes no more.
    let page_size: i64 = connection
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .map_err(unavailable)?;
    let pages =
        i64::try_from(job.max_database_bytes / page_size.max(512) as u64).unwrap_or(i64::MAX);
    connection
        .pragma_update_and_check(None, "max_page_count", pages, |_| Ok(()))
        .map_err(unavailable)?;
    let refusals = sql_policy::sqlite_guard(&mut connection).map_err(unavailable)?;
    let connection = Arc::new(Mutex::new(TenantSqlite {
        connection,
        refusals,
    }));
    cache.insert(key, connection.clone());
    Ok(connection)
}

fn sqlite_run(tenant: &mut TenantSqlite, job: &Job) -> Result<Output, HostError> {
    let TenantSqlite {
        connection,
        refusals,
    } = tenant;
    let deadline = Instant::now() + job.timeout;
    // SQLite calls this every 1000 virtual-machine steps; true interrupts the statement.
    // Without the handler there is no time limit: refuse rather than run unbounded.
    connection
        .progress_handler(1000, Some(move || Instant::now() >= deadline))
        .map_err(|e| {
            job.error(
                HostError::Unavailable,
                &format!("cannot set the time limit: {e}"),
            )
        })?;
    refusals.clear();
    let result = sqlite_statement(connection, job).map_err(|e| match refusals.take() {
        // SQLite's own text is "not authorized": name what the rule refused.
        Some(what) => job.error(HostError::Invalid, &sql_policy::refusal(&what)),
        None => e,
    });
    let _ = connection.progress_handler(0, None::<fn() -> bool>);
    // Backstop to the authorizer: no transaction may outlive the call.
    if !connection.is_autocommit() {
        let _ = connection.execute_batch("ROLLBACK");
        return Err(HostError::Invalid(
            "a transaction may not stay open after the call".into(),
        ));
    }
    result
}

/// Binds the call's parameters. Statements are written for both databases with PostgreSQL's
/// `$1, $2 …`; SQLite takes `$1` as a *named* parameter numbered by first appearance, so
/// `$2 … $1` would bind in the wrong order by position. Each `$N` (or `?N`) is bound to the
/// N-th value by its number; a bare `?` takes the next position.
fn bind_sqlite(statement: &mut rusqlite::Statement<'_>, job: &Job) -> Result<(), HostError> {
    let count = statement.parameter_count();
    let mut numbers = Vec::with_capacity(count);
    for index in 1..=count {
        let number = match statement.parameter_name(index) {
            None => index,
            Some(name) => name
                .strip_prefix('$')
                .or_else(|| name.strip_prefix('?'))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    HostError::Invalid(format!(
                        "parameter {name} is not numbered: write $1, $2 … (bound in that order)"
                    ))
                })?,
        };
        numbers.push(number);
    }
    let wanted = numbers.iter().copied().max().unwrap_or(0);
    if wanted != job.params.len() {
        return Err(HostError::Invalid(format!(
            "the statement takes {wanted} parameter(s) and {} were given",
            job.params.len()
        )));
    }
    for (index, number) in numbers.into_iter().enumerate() {
        let value = to_sqlite(&job.params[number - 1]);
        statement
            .raw_bind_parameter(index + 1, value)
            .map_err(|e| sqlite_error(e, job))?;
    }
    Ok(())
}

fn sqlite_statement(connection: &rusqlite::Connection, job: &Job) -> Result<Output, HostError> {
    let map = |e| sqlite_error(e, job);
    let mut statement = connection.prepare(&job.statement).map_err(map)?;
    bind_sqlite(&mut statement, job)?;
    match job.kind {
        Kind::Execute => {
            let changed = statement.raw_execute().map_err(map)?;
            Ok(Output::Count(changed as u64))
        }
        Kind::Query => {
            let columns: Vec<String> = statement.column_names().map(String::from).collect();
            let mut rows = statement.raw_query();
            let mut out = Vec::new();
            let mut bytes = 0;
            while let Some(row) = rows.next().map_err(map)? {
                if out.len() == job.max_rows {
                    return Err(job.too_many_rows());
                }
                let mut values = Vec::with_capacity(columns.len());
                for (i, column) in columns.iter().enumerate() {
                    let value = from_sqlite(row.get_ref(i).map_err(map)?, column)?;
                    job.count(&mut bytes, &value)?;
                    values.push(value);
                }
                out.push(values);
            }
            Ok(Output::Rows(SqlRows { columns, rows: out }))
        }
    }
}

fn to_sqlite(value: &Value) -> SqliteValue {
    match value {
        Value::Null => SqliteValue::Null,
        Value::Boolean(b) => SqliteValue::Integer(i64::from(*b)),
        Value::Integer(i) => SqliteValue::Integer(*i),
        Value::Number(n) => SqliteValue::Real(*n),
        Value::Text(s) | Value::Json(s) => SqliteValue::Text(s.clone()),
    }
}

fn from_sqlite(value: ValueRef<'_>, column: &str) -> Result<Value, HostError> {
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Number(r),
        ValueRef::Text(bytes) => Value::Text(String::from_utf8(bytes.to_vec()).map_err(|_| {
            HostError::Invalid(format!("column '{column}' holds text that is not UTF-8"))
        })?),
        ValueRef::Blob(_) => {
            return Err(HostError::Invalid(format!(
                "column '{column}' is a blob, which sql results cannot carry; select hex({column}) instead"
            )));
        }
    })
}

fn sqlite_error(error: rusqlite::Error, job: &Job) -> HostError {
    use rusqlite::ErrorCode as C;
    match &error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            // SQLite's own text ("UNIQUE constraint failed: t.id") names columns, never values.
            let text = message.clone().unwrap_or_else(|| failure.to_string());
            match failure.code {
                C::ConstraintViolation => job.error(HostError::Rejected, &text),
                C::OperationInterrupted => job.too_long(),
                // The cap the host put on the file (`max_page_count`), or the disk itself.
                C::DiskFull => job.error(
                    HostError::LimitExceeded,
                    &format!(
                        "{text}: a tenant's SQLite database holds at most {} bytes (sql.max_database_bytes)",
                        job.max_database_bytes
                    ),
                ),
                C::DatabaseBusy
                | C::DatabaseLocked
                | C::CannotOpen
                | C::SystemIoFailure
                | C::OutOfMemory
                | C::ReadOnly
                | C::DatabaseCorrupt
                | C::NotADatabase
                | C::FileLockingProtocolFailed => job.error(HostError::Unavailable, &text),
                _ => job.error(HostError::Invalid, &text),
            }
        }
        rusqlite::Error::MultipleStatement => job.error(
            HostError::Invalid,
            "one statement per call: the text holds more than one",
        ),
        rusqlite::Error::ExecuteReturnedResults => job.error(
            HostError::Invalid,
            "the statement returns rows: use query, not execute",
        ),
        rusqlite::Error::InvalidParameterCount(given, expected) => job.error(
            HostError::Invalid,
            &format!("the statement takes {expected} parameters, {given} given"),
        ),
        other => job.error(HostError::Invalid, &other.to_string()),
    }
}

// ---- PostgreSQL ----

async fn postgres_run(client: &tokio_postgres::Client, job: &Job) -> Result<Output, HostError> {
    match tokio::time::timeout(job.timeout, postgres_statement(client, job)).await {
        Ok(result) => result,
        Err(_) => {
            // Stop the server's work too, not only our wait for it.
            let token = client.cancel_token();
            tokio::spawn(async move {
                let _ = token.cancel_query(tokio_postgres::NoTls).await;
            });
            Err(job.too_long())
        }
    }
}

async fn postgres_statement(
    client: &tokio_postgres::Client,
    job: &Job,
) -> Result<Output, HostError> {
    let map = |e: tokio_postgres::Error| pg_error(&e, job);
    // The extended protocol takes one statement: a second is the server's syntax error.
    let statement = client.prepare(&job.statement).await.map_err(map)?;
    let types = statement.params();
    if types.len() != job.params.len() {
        return Err(job.error(
            HostError::Invalid,
            &format!(
                "the statement takes {} parameters, {} given",
                types.len(),
                job.params.len()
            ),
        ));
    }
    let mut bound: Vec<Box<dyn ToSql + Sync + Send>> = Vec::with_capacity(types.len());
    for (i, (value, ty)) in job.params.iter().zip(types).enumerate() {
        bound.push(to_postgres(i + 1, value, ty).map_err(|e| job.error(HostError::Invalid, &e))?);
    }
    let params = bound.iter().map(|p| &**p as &(dyn ToSql + Sync));
    match job.kind {
        Kind::Execute => Ok(Output::Count(
            client.execute_raw(&statement, params).await.map_err(map)?,
        )),
        Kind::Query => {
            let columns: Vec<String> = statement
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect();
            let stream = client.query_raw(&statement, params).await.map_err(map)?;
            pin_mut!(stream);
            let mut rows = Vec::new();
            let mut bytes = 0;
            while let Some(row) = stream.try_next().await.map_err(map)? {
                if rows.len() == job.max_rows {
                    return Err(job.too_many_rows());
                }
                let mut values = Vec::with_capacity(columns.len());
                for (i, column) in statement.columns().iter().enumerate() {
                    let value = from_postgres(&row, i, column, job)?;
                    job.count(&mut bytes, &value)?;
                    values.push(value);
                }
                rows.push(values);
            }
            Ok(Output::Rows(SqlRows { columns, rows }))
        }
    }
}

/// A NULL of whatever type the server expects.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn is_text(ty: &Type) -> bool {
    [
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::NAME,
        Type::UNKNOWN,
    ]
    .contains(ty)
}

/// Encodes parameter `n` as the type the server inferred. Messages name the parameter and
/// types, never the value.
fn to_postgres(n: usize, value: &Value, ty: &Type) -> Result<Box<dyn ToSql + Sync + Send>, String> {
    let does_not_fit = || format!("parameter ${n} does not fit in {ty}");
    Ok(match value {
        Value::Null => Box::new(Null),
        Value::Boolean(b) if *ty == Type::BOOL => Box::new(*b),
        Value::Integer(i) if *ty == Type::INT2 => {
            Box::new(i16::try_from(*i).map_err(|_| does_not_fit())?)
        }
        Value::Integer(i) if *ty == Type::INT4 => {
            Box::new(i32::try_from(*i).map_err(|_| does_not_fit())?)
        }
        Value::Integer(i) if *ty == Type::INT8 => Box::new(*i),
        Value::Integer(i) if *ty == Type::FLOAT8 => Box::new(*i as f64),
        Value::Integer(i) if *ty == Type::FLOAT4 => Box::new(*i as f32),
        Value::Number(x) if *ty == Type::FLOAT8 => Box::new(*x),
        Value::Number(x) if *ty == Type::FLOAT4 => Box::new(*x as f32),
        Value::Text(s) | Value::Json(s) if *ty == Type::JSON || *ty == Type::JSONB => {
            let json: serde_json::Value = serde_json::from_str(s)
                .map_err(|_| format!("parameter ${n} is not valid JSON for {ty}"))?;
            Box::new(json)
        }
        Value::Text(s) | Value::Json(s) if is_text(ty) => Box::new(s.clone()),
        Value::Boolean(b) if is_text(ty) => Box::new(b.to_string()),
        Value::Integer(i) if is_text(ty) => Box::new(i.to_string()),
        Value::Number(x) if is_text(ty) => Box::new(x.to_string()),
        other => {
            let kind = match other {
                Value::Boolean(_) => "a boolean",
                Value::Integer(_) => "an integer",
                Value::Number(_) => "a number",
                Value::Json(_) => "JSON",
                _ => "text",
            };
            return Err(format!(
                "parameter ${n} is {kind} but the statement expects {ty}; pass text and cast it in the statement, e.g. (${n}::text)::{ty}"
            ));
        }
    })
}

fn from_postgres(
    row: &tokio_postgres::Row,
    i: usize,
    column: &tokio_postgres::Column,
    job: &Job,
) -> Result<Value, HostError> {
    let ty = column.type_();
    let map = |e: tokio_postgres::Error| pg_error(&e, job);
    fn or_null<T>(value: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
        value.map_or(Value::Null, f)
    }
    Ok(match *ty {
        Type::BOOL => or_null(
            row.try_get::<_, Option<bool>>(i).map_err(map)?,
            Value::Boolean,
        ),
        Type::INT2 => or_null(row.try_get::<_, Option<i16>>(i).map_err(map)?, |v| {
            Value::Integer(v.into())
        }),
        Type::INT4 => or_null(row.try_get::<_, Option<i32>>(i).map_err(map)?, |v| {
            Value::Integer(v.into())
        }),
        Type::INT8 => or_null(
            row.try_get::<_, Option<i64>>(i).map_err(map)?,
            Value::Integer,
        ),
        Type::OID => or_null(row.try_get::<_, Option<u32>>(i).map_err(map)?, |v| {
            Value::Integer(v.into())
        }),
        Type::FLOAT4 => or_null(row.try_get::<_, Option<f32>>(i).map_err(map)?, |v| {
            Value::Number(v.into())
        }),
        Type::FLOAT8 => or_null(
            row.try_get::<_, Option<f64>>(i).map_err(map)?,
            Value::Number,
        ),
        Type::JSON | Type::JSONB => or_null(
            row.try_get::<_, Option<serde_json::Value>>(i)
                .map_err(map)?,
            |v| Value::Json(v.to_string()),
        ),
        _ if is_text(ty) => or_null(
            row.try_get::<_, Option<String>>(i).map_err(map)?,
            Value::Text,
        ),
        _ => {
            let name = column.name();
            return Err(job.error(
                HostError::Invalid,
                &format!(
                    "column '{name}' has type {ty}, which sql results cannot carry; cast it in the statement, e.g. {name}::text"
                ),
            ));
        }
    })
}

/// The server's message alone: its detail ("Key (id)=(7) already exists") may hold values.
fn pg_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut text = error.to_string();
            if let Some(source) = std::error::Error::source(error) {
                text = format!("{text}: {source}");
            }
            text
        }
    }
}

fn pg_error(error: &tokio_postgres::Error, job: &Job) -> HostError {
    let text = pg_text(error);
    let Some(db) = error.as_db_error() else {
        return job.error(HostError::Unavailable, &text);
    };
    let code = db.code().code();
    if code == "57014" {
        // query_canceled: our cancel or the server's statement_timeout.
        return job.too_long();
    }
    match code.get(..2).unwrap_or("") {
        "23" => job.error(HostError::Rejected, &text),
        // Connection, resources, operator intervention, transaction rollback (serialization,
        // deadlock), object in use, system and internal errors: worth retrying.
        "08" | "40" | "53" | "55" | "57" | "58" | "XX" => job.error(HostError::Unavailable, &text),
        _ => job.error(HostError::Invalid, &text),
    }
}
