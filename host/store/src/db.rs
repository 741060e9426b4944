//! The one connection type the store's queries are written against, over either backend:
//! SQLite (rusqlite) or PostgreSQL (tokio-postgres). Its surface is the few calls the store
//! makes — `prepare_cached(sql)?.execute/query_row/query_map`, `query_row`, `execute_batch`
//! — with owned [`Value`] parameters and [`Row`]s, so every query is written once.
//!
//! SQL is written with numbered placeholders (`?1`, `?2`) and rewritten to PostgreSQL's
//! (`$1`, `$2`) once per statement text. Types are the common subset: 64-bit integers,
//! doubles, text and bytes; a parameter binds to whatever PostgreSQL inferred for its place
//! (an `Int` to `int2`/`int4`/`int8`/`bool`), and any column reads back as a [`Value`].
//!
//! PostgreSQL calls are synchronous here, like SQLite's, because the store's API is: each
//! connection's I/O is driven by a task on the store's own small runtime, and a call waits
//! for its answer with `futures::executor::block_on`, which (unlike the `postgres` crate's
//! blocking client) may be called from any thread, a tokio worker's included — blocking it
//! exactly as a SQLite read blocks it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::{Result, StoreError};

/// A parameter or a column's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

macro_rules! value_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(value: $t) -> Value {
                value.to_value()
            }
        }
    )*};
}
value_from!(String, &str, i64, u32, u64, bool, f64);

/// What can be a parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_to_value!(i64, i32, u32, u16, u8, usize);

impl ToValue for u64 {
    fn to_value(&self) -> Value {
        // Sequence numbers, sizes and fuel: far below 2^63.
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// `params![a, b, c]`: the parameters of a statement, in placeholder order.
macro_rules! params {
    () => { &[] as &[$crate::db::Value] };
    ($($x:expr),+ $(,)?) => { &[$($crate::db::ToValue::to_value(&$x)),+] as &[$crate::db::Value] };
}
pub(crate) use params;

/// What a column can be read as.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> std::result::Result<Self, String>;
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(value: &Value) -> std::result::Result<Self, String> {
                match value {
                    Value::Int(i) => <$t>::try_from(*i).map_err(|_| format!("{i} is out of range for {}", stringify!($t))),
                    other => Err(format!("expected an integer, found {other:?}")),
                }
            }
        }
    )*};
}
int_from_value!(i64, i32, u32, u64, usize, u16, u8);

impl FromValue for bool {
    fn from_value(value: &Value) -> std::result::Result<Self, String> {
        match value {
            Value::Int(i) => Ok(*i != 0),
            other => Err(format!("expected a boolean, found {other:?}")),
        }
    }
}
impl FromValue for f64 {
    fn from_value(value: &Value) -> std::result::Result<Self, String> {
        match value {
            Value::Real(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}
impl FromValue for String {
    fn from_value(value: &Value) -> std::result::Result<Self, String> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> std::result::Result<Self, String> {
        match value {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}
impl FromValue for Value {
    fn from_value(value: &Value) -> std::result::Result<Self, String> {
        Ok(value.clone())
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> std::result::Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One row of a result.
#[derive(Debug)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T> {
        let value = self
            .values
            .get(index)
            .ok_or_else(|| StoreError::Column(format!("no column {index}")))?;
        T::from_value(value).map_err(|e| StoreError::Column(format!("column {index}: {e}")))
    }
}

/// `.optional()` on a single-row query: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(StoreError::NoRow) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// A PostgreSQL connection: the client, its prepared statements by SQL text, and the task
/// driving its socket on the store's runtime.
///
/// A round trip is the cost that counts on PostgreSQL (a statement waits on another
/// process), so what need not be waited on is not: the simple statements whose answers
/// nothing reads (`BEGIN`, `SAVEPOINT`, `RELEASE`) are deferred and sent in the same round
/// trip as the next statement that is waited on, ahead of it on the connection (the server
/// runs them in order, and an error in one is that next call's error); and a batch of
/// single-statement writes goes out as one pipeline ([`PgConn::pipeline`]).
pub(crate) struct PgConn {
    pub(crate) client: tokio_postgres::Client,
    statements: HashMap<String, tokio_postgres::Statement>,
    /// Where this connection counts its round trips (the writer's or the readers').
    trips: Arc<AtomicU64>,
    /// Simple statements sent ahead of the next exchange (`;`-separated).
    deferred: String,
    /// Whether the transaction in hand made a run due that another node may take: its
    /// commit then tells the other nodes (`listen.rs`).
    made_work: bool,
}

/// The outcome of each statement of a [`PgConn::pipeline`], and of the `COMMIT` that ended
/// it (which, after a statement failed, rolled the transaction back instead).
pub(crate) struct Pipelined {
    pub(crate) statements: Vec<Result<Vec<Row>>>,
    pub(crate) commit: Result<()>,
}

impl PgConn {
    pub(crate) fn connect(
        url: &str,
        runtime: &tokio::runtime::Handle,
        trips: Arc<AtomicU64>,
    ) -> Result<PgConn> {
        let url = url.to_owned();
        let task = runtime.spawn(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(StoreError::from)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!("PostgreSQL connection ended: {e}");
                }
            });
            Ok::<_, StoreError>(client)
        });
        let client = futures::executor::block_on(task)
            .map_err(|e| StoreError::NotCommitted(format!("connecting: {e}")))??;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            trips,
            deferred: String::new(),
            made_work: false,
        })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Sends `sql` (a simple statement, no parameters, whose answer nobody reads) with the
    /// next exchange rather than in a round trip of its own.
    pub(crate) fn defer(&mut self, sql: &str) {
        if !self.deferred.is_empty() {
            self.deferred.push(';');
        }
        self.deferred.push_str(sql);
    }

    /// Forgets what was deferred and noted (a transaction begins or was rolled back).
    pub(crate) fn clear_deferred(&mut self) {
        self.deferred.clear();
        self.made_work = false;
    }

    /// Notes that the transaction in hand made work for other nodes.
    pub(crate) fn note_made_work(&mut self) {
        self.made_work = true;
    }

    /// Whether the transaction in hand made work for other nodes, forgetting it.
    pub(crate) fn take_made_work(&mut self) -> bool {
        std::mem::take(&mut self.made_work)
    }

    /// Waits for one exchange with the server, the deferred statements sent ahead of it in
    /// the same round trip, counting it.
    fn round_trip<T>(
        client: &tokio_postgres::Client,
        trips: &AtomicU64,
        deferred: String,
        exchange: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        trips.fetch_add(1, Ordering::Relaxed);
        futures::executor::block_on(async {
            // Polled in order: the deferred statements are queued on the connection first.
            let (ahead, answer) =
                futures::future::join(send_deferred(client, &deferred), exchange).await;
            ahead?;
            Ok(answer?)
        })
    }

    fn statement(&mut self, sql: &str) -> Result<tokio_postgres::Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let text = to_postgres(sql);
        let deferred = std::mem::take(&mut self.deferred);
        let statement = Self::round_trip(
            &self.client,
            &self.trips,
            deferred,
            self.client.prepare(&text),
        )?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs `sql` (simple statements, `;`-separated) after the deferred ones, in one round
    /// trip.
    pub(crate) fn batch(&mut self, sql: &str) -> Result<()> {
        self.defer(sql);
        let all = std::mem::take(&mut self.deferred);
        Self::round_trip(&self.client, &self.trips, String::new(), async {
            self.client.batch_execute(&all).await
        })
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let statement = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let deferred = std::mem::take(&mut self.deferred);
        Self::round_trip(
            &self.client,
            &self.trips,
            deferred,
            self.client.execute(&statement, &refs),
        )
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let deferred = std::mem::take(&mut self.deferred);
        let rows = Self::round_trip(
            &self.client,
            &self.trips,
            deferred,
            self.client.query(&statement, &refs),
        )?;
        rows_of(&rows)
    }

    /// The deferred statements, then `statements`, then `end` if any (a simple statement:
    /// the `COMMIT`), all sent before any answer is awaited: one round trip for all of them.
    /// Each statement's outcome is its own; after one fails the rest fail too (the
    /// transaction is aborted) and a `COMMIT` rolls back.
    pub(crate) fn pipeline(
        &mut self,
        statements: &[(&str, &[Value])],
        end: Option<&str>,
    ) -> Pipelined {
        let mut prepared = Vec::with_capacity(statements.len());
        for (sql, _) in statements {
            // Each statement is prepared once per connection; the first time costs a round
            // trip of its own.
            match self.statement(sql) {
                Ok(statement) => prepared.push(statement),
                Err(e) => {
                    let why = e.to_string();
                    return Pipelined {
                        statements: statements
                            .iter()
                            .map(|_| Err(StoreError::NotCommitted(why.clone())))
                            .collect(),
                        commit: Err(e),
                    };
                }
            }
        }
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = statements
            .iter()
            .map(|(_, params)| params.iter().map(|p| p as _).collect())
            .collect();
        let deferred = std::mem::take(&mut self.deferred);
        self.trips.fetch_add(1, Ordering::Relaxed);
        let client = &self.client;
        futures::executor::block_on(async {
            use futures::future::{FutureExt, maybe_done};
            use std::pin::Pin;
            let mut ahead = Box::pin(maybe_done(send_deferred(client, &deferred)));
            let mut queries: Vec<_> = prepared
                .iter()
                .zip(&refs)
                .map(|(statement, refs)| maybe_done(client.query(statement, refs).boxed()))
                .collect();
            // A request is queued on the connection when its future is first polled: poll
            // each once, in order, before awaiting any answer.
            futures::future::poll_fn(|cx| {
                let _ = ahead.as_mut().poll(cx);
                for query in &mut queries {
                    let _ = Pin::new(query).poll(cx);
                }
                std::task::Poll::Ready(())
            })
            .await;
            // A statement answered at once failed in the client (a parameter that does not
            // encode) and was never sent: the server has no error to abort the transaction
            // with, so it is rolled back rather than committed without it.
            let unsent = queries
                .iter()
                .any(|query| matches!(query, futures::future::MaybeDone::Done(Err(_))));
            // Without an end (the transaction goes on) nothing is rolled back here: the
            // caller rolls back to its savepoint when a statement failed.
            let end = match end {
                Some(_) if unsent => "ROLLBACK",
                Some(end) => end,
                None => "",
            };
            let mut commit = Box::pin(maybe_done(client.batch_execute(end)));
            futures::future::poll_fn(|cx| {
                let _ = commit.as_mut().poll(cx);
                std::task::Poll::Ready(())
            })
            .await;
            ahead.as_mut().await;
            for query in &mut queries {
                Pin::new(query).await;
            }
            commit.as_mut().await;
            let ahead = ahead.as_mut().take_output().unwrap_or(Ok(()));
            let statements = queries
                .iter_mut()
                .map(|query| match Pin::new(query).take_output() {
                    Some(Ok(rows)) => rows_of(&rows),
                    Some(Err(e)) => Err(e.into()),
                    None => Err(StoreError::NotCommitted("no answer".into())),
                })
                .collect();
            let commit = match (ahead, commit.as_mut().take_output()) {
                (Err(e), _) | (_, Some(Err(e))) => Err(e.into()),
                (Ok(()), Some(Ok(()))) => Ok(()),
                (Ok(()), None) => Err(StoreError::NotCommitted("no answer".into())),
            };
            Pipelined { statements, commit }
        })
    }
}

/// The deferred statements, if any (nothing is sent for none).
async fn send_deferred(
    client: &tokio_postgres::Client,
    deferred: &str,
) -> std::result::Result<(), tokio_postgres::Error> {
    if deferred.is_empty() {
        Ok(())
    } else {
        client.batch_execute(deferred).await
    }
}

fn rows_of(rows: &[tokio_postgres::Row]) -> Result<Vec<Row>> {
    rows.iter()
        .map(|row| {
            let values = (0..row.len())
                .map(|i| row.try_get::<_, Value>(i))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(Row { values })
        })
        .collect()
}

/// `?N` placeholders to `$N`, outside string literals and quoted names.
pub(crate) fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            None => out.push(c),
        }
    }
    out
}

/// A connection of either backend, as the store's queries see it.
pub enum Conn<'a> {
    Sqlite(&'a rusqlite::Connection),
    Pg(RefCell<&'a mut PgConn>),
}

impl<'a> Conn<'a> {
    pub(crate) fn pg(conn: &'a mut PgConn) -> Conn<'a> {
        Conn::Pg(RefCell::new(conn))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Conn::Pg(_))
    }

    /// On PostgreSQL, takes the lock of `name` in `space` (a key-value key, an
    /// interaction's events) for the rest of the transaction: several nodes write through
    /// writers of their own, and a read-modify-write must not interleave with another
    /// node's on the same name, absent rows included. An advisory lock on a hash of space,
    /// tenant and name; a collision only serializes two names. SQLite's one writer
    /// serializes every write already, so there it does nothing.
    pub(crate) fn lock_name(&self, space: &str, tenant: &str, name: &str) -> Result<()> {
        if !self.is_postgres() {
            return Ok(());
        }
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(space.as_bytes())
            .chain_update(b"\0")
            .chain_update(tenant.as_bytes())
            .chain_update(b"\0")
            .chain_update(name.as_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        self.prepare_cached("SELECT 1 FROM (SELECT pg_advisory_xact_lock(?1)) AS locked")?
            .query_row(params![i64::from_be_bytes(first)], |_| Ok(()))
    }

    /// The statement `sql`, prepared once per connection (both backends cache it).
    pub fn prepare_cached<'c>(&'c self, sql: &str) -> Result<Statement<'c, 'a>> {
        if let Conn::Sqlite(conn) = self {
            // Prepared now so a syntax error surfaces here, as with rusqlite.
            conn.prepare_cached(sql)?;
        }
        Ok(Statement {
            conn: self,
            sql: sql.to_owned(),
        })
    }

    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        match self {
            Conn::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                Ok(statement.execute(rusqlite::params_from_iter(params.iter()))? as u64)
            }
            Conn::Pg(conn) => conn.borrow_mut().execute(sql, params),
        }
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        match self {
            Conn::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                let columns = statement.column_count();
                let mut rows = statement.query(rusqlite::params_from_iter(params.iter()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let values = (0..columns)
                        .map(|i| row.get::<_, Value>(i))
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    out.push(Row { values });
                }
                Ok(out)
            }
            Conn::Pg(conn) => conn.borrow_mut().query(sql, params),
        }
    }

    /// The first row mapped by `f`; [`StoreError::NoRow`] when there is none (see
    /// [`OptionalExtension::optional`]).
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        let rows = self.query(sql, params)?;
        match rows.first() {
            Some(row) => f(row),
            None => Err(StoreError::NoRow),
        }
    }

    /// A simple statement (no parameters) whose answer nothing reads: on SQLite run now
    /// (cached, as a batch runs it for every write), on PostgreSQL sent with the next
    /// statement, in its round trip ([`PgConn::defer`]). Its error, if any, is that next
    /// statement's.
    pub(crate) fn defer(&self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(conn) => {
                conn.prepare_cached(sql)?.execute([])?;
                Ok(())
            }
            Conn::Pg(conn) => {
                conn.borrow_mut().defer(sql);
                Ok(())
            }
        }
    }

    /// Notes that this write made a run due that another node sharing the database may
    /// take (a new run, a woken one, a released claim): on PostgreSQL the transaction's
    /// commit then wakes the other nodes' schedulers (`listen.rs`). Nothing on SQLite,
    /// which one process owns.
    pub(crate) fn made_work(&self) {
        if let Conn::Pg(conn) = self {
            conn.borrow_mut().made_work = true;
        }
    }
}

/// A statement of a [`Conn`].
pub struct Statement<'c, 'a> {
    conn: &'c Conn<'a>,
    sql: String,
}

impl Statement<'_, '_> {
    pub fn execute(&mut self, params: &[Value]) -> Result<u64> {
        self.conn.execute(&self.sql, params)
    }

    pub fn query_row<T>(
        &mut self,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        self.conn.query_row(&self.sql, params, f)
    }

    /// Every row mapped by `f`, as an iterator of results (collect it).
    pub fn query_map<T>(
        &mut self,
        params: &[Value],
        f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let rows = self.conn.query(&self.sql, params)?;
        Ok(rows.iter().map(f).collect::<Vec<_>>().into_iter())
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl rusqlite::types::FromSql for Value {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::ValueRef;
        Ok(match value {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Int(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        })
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(format!("an integer cannot be bound to {ty}").into()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => f.to_sql(ty, out),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
                | Type::BYTEA
        )
    }

    to_sql_checked!();
}

impl<'r> FromSql<'r> for Value {
    fn from_sql(
        ty: &Type,
        raw: &'r [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::BYTEA => Value::Blob(Vec::<u8>::from_sql(ty, raw)?),
            _ => Value::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::BYTEA
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
        )
    }
}

/// The store's PostgreSQL side: its runtime (driving every connection's socket), the URL,
/// and the read connections.
pub(crate) struct Pg {
    pub(crate) url: String,
    runtime: Option<tokio::runtime::Runtime>,
    readers: std::sync::Mutex<Vec<PgConn>>,
    /// Round trips made by the writer's connection and by the read connections.
    pub(crate) write_trips: Arc<AtomicU64>,
    pub(crate) read_trips: Arc<AtomicU64>,
    /// This store's id among the nodes sharing the database: its notices of new work
    /// carry it, so that its own listener passes over them (`listen.rs`).
    pub(crate) id: String,
}

impl Pg {
    pub(crate) fn start(url: &str) -> Result<Arc<Pg>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("coda-store-pg")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::NotCommitted(format!("starting the PostgreSQL runtime: {e}"))
            })?;
        Ok(Arc::new(Pg {
            url: url.to_owned(),
            runtime: Some(runtime),
            readers: std::sync::Mutex::new(Vec::new()),
            write_trips: Arc::default(),
            read_trips: Arc::default(),
            id: uuid::Uuid::now_v7().simple().to_string(),
        }))
    }

    /// A connection for the writer (its round trips counted as the writer's).
    pub(crate) fn connect_writer(&self) -> Result<PgConn> {
        self.connect(self.write_trips.clone())
    }

    /// Runs `task` on the store's runtime, for as long as the store is open.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(task);
        }
    }

    fn connect(&self, trips: Arc<AtomicU64>) -> Result<PgConn> {
        let handle = self
            .runtime
            .as_ref()
            .map(|r| r.handle().clone())
            .ok_or(StoreError::WriterGone)?;
        PgConn::connect(&self.url, &handle, trips)
    }

    /// Runs `f` on a read connection: a pooled one, or a new one (a broken connection is
    /// dropped, not returned to the pool).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match pooled {
            Some(conn) if !conn.is_closed() => conn,
            _ => self.connect(self.read_trips.clone())?,
        };
        let result = f(&Conn::pg(&mut conn));
        if !conn.is_closed() {
            let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            if readers.len() < 8 {
                readers.push(conn);
            }
        }
        result
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        // Dropping a runtime from async code panics; shutting it down in the background
        // does not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
