//! Lists read a page at a time by keyset, never by OFFSET: a page is the rows after the
//! previous page's last row in the list's order, `(created_at, id)`, so each page costs one
//! index range however deep the list, and a row is never missed or repeated across pages.
//!
//! The statements are built here once, for runs and interactions alike: only the conditions
//! asked for are in the text (so each backend picks the index that fits), and every value is
//! bound, never formatted in.

use crate::db::Value;

/// Which end of a list comes first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// Creation order (the API's default).
    #[default]
    OldestFirst,
    NewestFirst,
}

impl ListOrder {
    fn direction(self) -> &'static str {
        match self {
            ListOrder::OldestFirst => "ASC",
            ListOrder::NewestFirst => "DESC",
        }
    }
    fn beyond(self) -> &'static str {
        match self {
            ListOrder::OldestFirst => ">",
            ListOrder::NewestFirst => "<",
        }
    }
}

/// A `SELECT ... WHERE tenant = ?1 AND ...` built up condition by condition.
pub(crate) struct PageQuery {
    sql: String,
    pub(crate) args: Vec<Value>,
}

impl PageQuery {
    /// `SELECT {columns} FROM {table} WHERE tenant = ?1`.
    pub(crate) fn new(columns: &str, table: &str, tenant: &str) -> PageQuery {
        PageQuery {
            sql: format!("SELECT {columns} FROM {table} WHERE tenant = ?1"),
            args: vec![tenant.to_owned().into()],
        }
    }

    /// Adds `AND {column} {op} ?n`.
    pub(crate) fn condition(&mut self, column: &str, op: &str, value: Value) {
        self.args.push(value);
        self.sql
            .push_str(&format!(" AND {column} {op} ?{}", self.args.len()));
    }

    /// Keeps only the rows after `(created_at, id)` in `order`. Written as a range on
    /// `created_at` plus a tie-break (not a row-value comparison), so that SQLite and
    /// PostgreSQL both use it as the index range it is.
    pub(crate) fn after(&mut self, order: ListOrder, created_at: i64, id: &str) {
        let beyond = order.beyond();
        self.args.push(created_at.into());
        let at = self.args.len();
        self.args.push(id.to_owned().into());
        let key = self.args.len();
        self.sql.push_str(&format!(
            " AND created_at {beyond}= ?{at} AND (created_at {beyond} ?{at} OR id {beyond} ?{key})"
        ));
    }

    /// Ends the statement: `ORDER BY created_at, id` in `order`, at most `limit` rows.
    pub(crate) fn finish(mut self, order: ListOrder, limit: usize) -> (String, Vec<Value>) {
        let direction = order.direction();
        self.args.push((limit.min(i64::MAX as usize) as i64).into());
        self.sql.push_str(&format!(
            " ORDER BY created_at {direction}, id {direction} LIMIT ?{}",
            self.args.len()
        ));
        (self.sql, self.args)
    }
}
