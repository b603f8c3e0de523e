//! The store's tiny database layer: one SQL text per query, run on SQLite (rusqlite) or
//! PostgreSQL (the sync `postgres` client), with values as [`Val`] and rows as [`Row`].
//!
//! Queries are written once, in the SQL both engines accept: `?N` placeholders (rewritten to
//! `$N` for PostgreSQL by [`pg_sql`]), `ON CONFLICT`, `IS NOT DISTINCT FROM`, integers for
//! booleans, and `CAST(?N AS TEXT) IS NULL` where a parameter is only tested for NULL (PostgreSQL
//! must know every parameter's type). Every table has a `rowid` (SQLite's own; a `BIGSERIAL`
//! column in the PostgreSQL schema), so paging by `rowid` reads the same on both.
//!
//! ```text
//! let rows = conn.query("SELECT id, enabled FROM rooms WHERE workspace_id = ?1", &[ws_id.into()])?;
//! let first_enabled = rows[0].bool(1)?;
//! ```

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::types::{IsNull, Type};

use crate::StoreError;

/// One parameter or column value. Booleans are integers 0/1 on both engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}
impl From<i32> for Val {
    fn from(v: i32) -> Val {
        Val::Int(v.into())
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Val {
        Val::Int(v.into())
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::Int(v.into())
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_owned())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// Builds a `[Val; N]` from mixed arguments: `&vals![id, name, 1i64]` is the `&[Val]` queries take.
macro_rules! vals {
    ($($v:expr),* $(,)?) => { [$($crate::db::Val::from($v)),*] };
}
pub(crate) use vals;

/// One result row.
#[derive(Debug, Clone)]
pub(crate) struct Row(pub Vec<Val>);

impl Row {
    fn get(&self, i: usize) -> Result<&Val, StoreError> {
        self.0.get(i).ok_or_else(|| StoreError::BadValue(format!("no column {i}")))
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.get(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            Val::Text(t) => Err(StoreError::BadValue(format!("column {i}: expected an integer, found text {t:?}"))),
        }
    }
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?.ok_or_else(|| StoreError::BadValue(format!("column {i}: unexpected NULL")))
    }
    pub fn bool(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.int(i)? != 0)
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.get(i)? {
            Val::Null => Ok(None),
            Val::Text(t) => Ok(Some(t.clone())),
            Val::Int(v) => Err(StoreError::BadValue(format!("column {i}: expected text, found integer {v}"))),
        }
    }
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.ok_or_else(|| StoreError::BadValue(format!("column {i}: unexpected NULL")))
    }
}

/// A connection to either engine.
// One per `Store`, never in a collection: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Conn {
    Sqlite(rusqlite::Connection),
    /// The sync client needs `&mut` for every call; the store's API takes `&self` (a `Store` is
    /// `Send`, not `Sync`, so a `RefCell` suffices). Prepared statements are cached by SQL text.
    /// The `Option` is only `None` while the client is being dropped (see `Drop for Conn`).
    /// `config` reconnects a connection the server closed (restart, idle timeout), between
    /// transactions only: `in_tx` says whether one is open. `lost` is set by a call that failed
    /// because the connection itself is gone: the client may not have noticed the closed socket
    /// yet (`is_closed` still false), and its next call would fail too.
    Postgres {
        client: RefCell<Option<postgres::Client>>,
        statements: RefCell<HashMap<String, postgres::Statement>>,
        config: postgres::Config,
        in_tx: std::cell::Cell<bool>,
        lost: std::cell::Cell<bool>,
    },
}

/// The advisory lock every PostgreSQL write transaction takes first: writers go one at a time,
/// as with SQLite's single writer, so a read-then-write transaction (upsert a room by name, open
/// a session) sees no concurrent writer between its read and its write. Control-plane write
/// rates are far below what one writer handles.
const PG_WRITE_LOCK: i64 = 0x0070_6777_7269_7465;

/// Runs a call of the sync PostgreSQL client. That client drives its own small tokio runtime
/// and panics when called on a thread that is running async tasks (signaling's and control's
/// handlers call the store directly); there, the call runs on a short-lived scoped thread
/// instead. Elsewhere (tests, tools, and usually `spawn_blocking`) it runs in place.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Closing the client also blocks on its runtime: do it where that is allowed.
        if let Conn::Postgres { client, .. } = self
            && let Some(c) = client.get_mut().take()
        {
            off_runtime(move || drop(c));
        }
    }
}

/// Whether `e` means the connection is gone (the server ended it, the socket broke), not only
/// that one statement failed: a server error of severity FATAL or PANIC ends the session, and an
/// I/O error leaves the protocol stream in an unknown state.
fn connection_lost(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        Some(db) => matches!(db.severity(), "FATAL" | "PANIC"),
        None => std::error::Error::source(e).is_some_and(|src| src.is::<std::io::Error>()),
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Sqlite(c) => f.debug_tuple("Sqlite").field(c).finish(),
            Conn::Postgres { .. } => f.write_str("Postgres"),
        }
    }
}

/// Rewrites `?N` placeholders to PostgreSQL's `$N` (our SQL has no `?` inside string literals,
/// but quoted text is skipped anyway).
pub(crate) fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

impl postgres::types::ToSql for Val {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            // Encoded as the type the server inferred for the parameter.
            Val::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    v.to_string().as_str().to_sql(ty, out)
                }
                _ => Err(format!("cannot send an integer as a {ty} parameter").into()),
            },
            Val::Text(t) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => t.as_str().to_sql(ty, out),
                _ => Err(format!("cannot send text as a {ty} parameter").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn sqlite_value(v: rusqlite::types::ValueRef<'_>) -> Val {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        // The schema has no REAL columns; an aggregate could still produce one.
        ValueRef::Real(f) => Val::Int(f as i64),
        ValueRef::Text(t) | ValueRef::Blob(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

fn pg_value(row: &postgres::Row, i: usize) -> Result<Val, StoreError> {
    let ty = row.columns()[i].type_();
    let bad = |e: postgres::Error| StoreError::BadValue(format!("column {i} ({ty}): {e}"));
    Ok(match *ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(bad)?.map_or(Val::Null, Val::Int),
        Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(bad)?.map_or(Val::Null, Val::from),
        Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(bad)?.map_or(Val::Null, |v| Val::Int(v.into())),
        Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(bad)?.map_or(Val::Null, Val::from),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            row.try_get::<_, Option<String>>(i).map_err(bad)?.map_or(Val::Null, Val::Text)
        }
        _ => return Err(StoreError::BadValue(format!("column {i} has unsupported type {ty}"))),
    })
}

impl Conn {
    /// A PostgreSQL connection to `config`.
    pub fn connect_postgres(config: postgres::Config) -> Result<Conn, postgres::Error> {
        let client = off_runtime(|| config.connect(postgres::NoTls))?;
        Ok(Conn::Postgres {
            client: RefCell::new(Some(client)),
            statements: RefCell::new(HashMap::new()),
            config,
            in_tx: std::cell::Cell::new(false),
            lost: std::cell::Cell::new(false),
        })
    }

    /// Reconnects a PostgreSQL connection the server closed, unless a transaction was open
    /// (its statements are lost with the connection: that is an error, not a silent retry).
    fn revive(&self) -> Result<(), StoreError> {
        let Conn::Postgres { client, statements, config, in_tx, lost } = self else { return Ok(()) };
        let closed = lost.get() || client.borrow().as_ref().is_some_and(postgres::Client::is_closed);
        if !closed || in_tx.get() {
            return Ok(());
        }
        let fresh = off_runtime(|| config.connect(postgres::NoTls))?;
        let old = client.borrow_mut().replace(fresh);
        off_runtime(move || drop(old));
        statements.borrow_mut().clear();
        lost.set(false);
        Ok(())
    }

    /// One call of the PostgreSQL client, off the async runtime; a call that lost the
    /// connection marks it for [`Conn::revive`].
    fn pg_call<T: Send>(
        &self,
        call: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        let Conn::Postgres { client, lost, .. } = self else {
            return Err(StoreError::BadValue("not a PostgreSQL connection".into()));
        };
        let mut c = std::cell::RefMut::filter_map(client.borrow_mut(), Option::as_mut)
            .map_err(|_| StoreError::Postgres("the connection is closed".into()))?;
        let c = &mut *c;
        off_runtime(|| call(c)).map_err(|e| {
            if connection_lost(&e) {
                lost.set(true);
            }
            e.into()
        })
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, args: &[Val]) -> Result<u64, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(args.iter()))? as u64)
            }
            Conn::Postgres { .. } => {
                self.revive()?;
                let stmt = self.pg_statement(sql)?;
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|a| a as _).collect();
                self.pg_call(|c| c.execute(&stmt, &params))
            }
        }
    }

    /// Runs a query; all its rows.
    pub fn query(&self, sql: &str, args: &[Val]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let n = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        vals.push(sqlite_value(r.get_ref(i)?));
                    }
                    out.push(Row(vals));
                }
                Ok(out)
            }
            Conn::Postgres { .. } => {
                self.revive()?;
                let stmt = self.pg_statement(sql)?;
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|a| a as _).collect();
                let rows = self.pg_call(|c| c.query(&stmt, &params))?;
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| pg_value(r, i)).collect::<Result<Vec<_>, _>>().map(Row))
                    .collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&self, sql: &str, args: &[Val]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The one row of a query that always returns one (`COUNT(*)`, `MIN(..)`).
    pub fn query_one(&self, sql: &str, args: &[Val]) -> Result<Row, StoreError> {
        self.query_opt(sql, args)?.ok_or_else(|| StoreError::BadValue(format!("no row from {sql}")))
    }

    /// Runs several statements (migrations).
    pub fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres { .. } => {
                self.revive()?;
                self.pg_call(|c| c.batch_execute(sql))
            }
        }
    }

    fn pg_statement(&self, sql: &str) -> Result<postgres::Statement, StoreError> {
        let Conn::Postgres { statements, .. } = self else {
            return Err(StoreError::BadValue("not a PostgreSQL connection".into()));
        };
        if let Some(s) = statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let translated = pg_sql(sql);
        let stmt = self.pg_call(|c| c.prepare(&translated))?;
        statements.borrow_mut().insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    /// Runs `f` in a write transaction: committed if it returns `Ok`, rolled back otherwise
    /// (and if it panics). SQLite takes the write lock at once (`BEGIN IMMEDIATE`): a deferred
    /// transaction that read first would fail with SQLITE_BUSY_SNAPSHOT, not wait, when another
    /// process committed in between. PostgreSQL takes [`PG_WRITE_LOCK`] first, the same one
    /// writer at a time.
    pub fn with_tx<T>(&self, f: impl FnOnce(&Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        match self {
            Conn::Sqlite(_) => self.batch("BEGIN IMMEDIATE")?,
            Conn::Postgres { .. } => self.batch("BEGIN")?,
        }
        let mut guard = Rollback { conn: self, armed: true };
        if let Conn::Postgres { in_tx, .. } = self {
            in_tx.set(true);
            self.execute("SELECT pg_advisory_xact_lock(?1)", &[Val::Int(PG_WRITE_LOCK)])?;
        }
        let out = f(self)?;
        guard.armed = false;
        let committed = self.batch("COMMIT");
        if let Conn::Postgres { in_tx, .. } = self {
            in_tx.set(false);
        }
        committed?;
        Ok(out)
    }
}

/// Rolls back an open transaction when the closure failed or panicked.
struct Rollback<'a> {
    conn: &'a Conn,
    armed: bool,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Nothing more to do if even the rollback fails: the connection is broken, and the
            // server (or SQLite) discards the unfinished transaction.
            let _ = self.conn.batch("ROLLBACK");
        }
        if let Conn::Postgres { in_tx, .. } = self.conn {
            in_tx.set(false);
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        // `Display` of a server error is only "db error"; the message is in its source.
        match e.as_db_error() {
            Some(db) => StoreError::Postgres(format!("{}: {}", db.code().code(), db.message())),
            None => StoreError::Postgres(match std::error::Error::source(&e) {
                Some(src) => format!("{e}: {src}"),
                None => e.to_string(),
            }),
        }
    }
}

/// `url` with its password (if any) replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(pg_sql("SELECT ?1, '?', ?12 WHERE a = ?2"), "SELECT $1, '?', $12 WHERE a = $2");
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgresql://h"), "postgresql://h");
    }

    #[test]
    fn row_getters_check_types() {
        let r = Row(vec![Val::Int(1), Val::Text("x".into()), Val::Null]);
        assert!(r.bool(0).unwrap());
        assert_eq!(r.text(1).unwrap(), "x");
        assert_eq!(r.opt_text(2).unwrap(), None);
        assert!(r.int(1).is_err() && r.text(0).is_err() && r.int(2).is_err() && r.int(9).is_err());
    }
}
