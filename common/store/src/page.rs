//! Pagination: a [`Page`] in, a [`Listing`] out, and the one query every list call pages
//! through.

use serde::Serialize;

use crate::StoreError;
use crate::db::{Conn, Row, Val};

/// Where a list starts and how long it is (100ms pagination: `limit` 10 to 100, default 10;
/// `start` is the `last` of the previous page).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: u32,
    pub start: Option<String>,
}

impl Page {
    pub const DEFAULT_LIMIT: u32 = 10;
    pub const MIN_LIMIT: u32 = 10;
    pub const MAX_LIMIT: u32 = 100;
    pub fn first(limit: u32) -> Page {
        Page { limit, start: None }
    }
}

/// One page of a list: `last` is the id to pass as `start` for the next one (`None` when this
/// page is the last).
#[derive(Debug, Clone, Serialize)]
pub struct Listing<T> {
    pub data: Vec<T>,
    pub last: Option<String>,
}

/// Wraps a page of rows: `last` is set when the page is full (there may be more).
fn listing<T>(data: Vec<T>, limit: u32, id: impl Fn(&T) -> &String) -> Listing<T> {
    let last = if data.len() as u32 >= limit { data.last().map(|t| id(t).clone()) } else { None };
    Listing { data, last }
}

/// One list call: which rows of `table` it selects and how a row becomes a `T`. Every list
/// pages the same way: in `key` order (the insertion order), starting after the row whose
/// `id` column is the page's `start`, at most `limit` rows.
pub(crate) struct PageQuery<T> {
    pub table: &'static str,
    pub cols: &'static str,
    /// The column lists are ordered by: `rowid` (SQLite's own, a `BIGSERIAL` on PostgreSQL), or
    /// the outbox's `seq`.
    pub key: &'static str,
    /// The column a cursor names (what `last` holds): `id`, or a room code's `code`.
    pub id: &'static str,
    /// SQL conditions on the placeholders `?1` to `?N`, bound to `args` in order.
    pub filters: &'static str,
    pub args: Vec<Val>,
    pub row: fn(&Row) -> Result<T, StoreError>,
    pub last: fn(&T) -> &String,
}

/// One page of `q`. The cursor is the placeholder after the filters' own; an unknown `start`
/// matches no row, so the page is empty, as each list call's own query had it.
pub(crate) fn query<T>(conn: &Conn, q: PageQuery<T>, page: &Page) -> Result<Listing<T>, StoreError> {
    let PageQuery { table, cols, key, id, filters, mut args, row, last } = q;
    let cursor = args.len() + 1;
    let sql = format!(
        "SELECT {cols} FROM {table} WHERE {filters}
           AND (CAST(?{cursor} AS TEXT) IS NULL OR {key} > (SELECT {key} FROM {table} WHERE {id} = ?{cursor}))
         ORDER BY {key} LIMIT {limit}",
        limit = page.limit
    );
    args.push(page.start.as_deref().into());
    let data = conn.query(&sql, &args)?.iter().map(row).collect::<Result<Vec<_>, _>>()?;
    Ok(listing(data, page.limit, last))
}
