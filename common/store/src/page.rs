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
/// matches no row, so its page is empty.
pub(crate) fn query<T>(conn: &Conn, q: PageQuery<T>, page: &Page) -> Result<Listing<T>, StoreError> {
    let PageQuery { table, cols, key, id, filters, mut args, row, last } = q;
    let cursor = args.len() + 1;
    let sql = format!(
        "SELECT {cols} FROM {table} WHERE ({filters})
           AND (CAST(?{cursor} AS TEXT) IS NULL OR {key} > (SELECT {key} FROM {table} WHERE {id} = ?{cursor}))
         ORDER BY {key} LIMIT {limit}",
        limit = page.limit
    );
    args.push(page.start.as_deref().into());
    let data = conn.query(&sql, &args)?.iter().map(row).collect::<Result<Vec<_>, _>>()?;
    Ok(listing(data, page.limit, last))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::RoomFilter;
    use crate::session::{Activity, PeerRecord};
    use crate::test_support::backends;

    /// Every id of a list read in pages of `limit`, and the size of each page read.
    fn walk<T>(
        limit: u32,
        mut next: impl FnMut(&Page) -> Listing<T>,
        id: fn(&T) -> &String,
    ) -> (Vec<String>, Vec<usize>) {
        let (mut ids, mut sizes) = (Vec::new(), Vec::new());
        let mut page = Page::first(limit);
        loop {
            let l = next(&page);
            sizes.push(l.data.len());
            ids.extend(l.data.iter().map(|t| id(t).clone()));
            match l.last {
                Some(last) => page.start = Some(last),
                None => return (ids, sizes),
            }
        }
    }

    #[test]
    fn lists_page_in_insertion_order_after_the_last_id_of_the_page_before() {
        for b in backends("page") {
            let s = &b.store;
            let ws = s.ensure_default_workspace().unwrap();
            let rooms: Vec<String> =
                (0..5).map(|i| s.upsert_room(&ws.id, &format!("r{i}"), None).unwrap().id).collect();
            let all = RoomFilter::default();
            let (ids, sizes) = walk(2, |p| s.rooms(&ws.id, &all, p).unwrap(), |r| &r.id);
            assert_eq!((ids, sizes), (rooms.clone(), vec![2, 2, 1]), "{}", b.name);
            // A full page names its last row even when nothing follows: the next page is empty.
            let (_, sizes) = walk(5, |p| s.rooms(&ws.id, &all, p).unwrap(), |r| &r.id);
            assert_eq!(sizes, [5, 0]);
            let unknown = Page { limit: 10, start: Some("nope".into()) };
            assert!(s.rooms(&ws.id, &all, &unknown).unwrap().data.is_empty(), "{}", b.name);

            // Room codes page by their code, webhook events by the outbox's seq.
            let codes: Vec<String> = s.create_room_codes(&rooms[0]).unwrap().into_iter().map(|c| c.code).collect();
            let (ids, sizes) = walk(2, |p| s.room_codes(&rooms[0], None, None, p).unwrap(), |c| &c.code);
            assert_eq!((ids.len(), sizes), (codes.len(), vec![2, 1]));
            for (peer, now) in [("p1", SystemTime::now()), ("p2", SystemTime::now())] {
                let joined = Activity::PeerJoined { peer: PeerRecord::new(peer, "u", "U", "host", now) };
                s.record_activity(&rooms[0], &joined, now).unwrap();
            }
            let events: Vec<String> = s
                .webhook_events(&ws.id, None, None, &Page::first(100))
                .unwrap()
                .data
                .into_iter()
                .map(|e| e.id)
                .collect();
            let (ids, sizes) = walk(2, |p| s.webhook_events(&ws.id, None, None, p).unwrap(), |e| &e.id);
            assert_eq!((ids, sizes), (events, vec![2, 1]), "{}", b.name);
        }
    }
}
