//! Rooms: created or fetched by a case-insensitive name, each bound to a template, and how long
//! one session of a room may last.

use std::time::Duration;

use serde::Serialize;

use crate::db::{Conn, Row, Val, vals};
use crate::ids::new_id;
use crate::page::{self, Listing, Page, PageQuery};
use crate::time::unix_now;
use crate::{Store, StoreError};

/// Longest room name accepted (100ms does not state one; this keeps rows and URLs sane).
pub const MAX_ROOM_NAME: usize = 128;

/// A room (100ms: created, or fetched, by name). `attrs` holds the optional fields of the REST
/// room object (description, region, size, max_duration_seconds, large_room, recording_info,
/// webhook, polls) as given.
#[derive(Debug, Clone, Serialize)]
pub struct Room {
    pub id: String,
    pub name: String,
    pub workspace_id: String,
    pub template_id: String,
    pub enabled: bool,
    pub attrs: serde_json::Map<String, serde_json::Value>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// Longest session (100ms: 12 hours), and what a room without `max_duration_seconds` gets.
pub const MAX_SESSION_SECS: u64 = 43_200;

impl Room {
    /// How long one session of this room may last.
    pub fn session_cap(&self) -> Duration {
        let secs = self.attrs.get("max_duration_seconds").and_then(|v| v.as_u64()).unwrap_or(MAX_SESSION_SECS);
        Duration::from_secs(secs.min(MAX_SESSION_SECS))
    }
}

/// Filters of `GET /v2/rooms`.
#[derive(Debug, Clone, Default)]
pub struct RoomFilter {
    pub enabled: Option<bool>,
    pub name: Option<String>,
    pub template_id: Option<String>,
    /// Created after / before (unix seconds).
    pub after: Option<i64>,
    pub before: Option<i64>,
}

impl Store {
    /// Creates the room `name` in `workspace_id`, or returns the existing one (names are
    /// case-insensitive, as in 100ms). `template_id` applies to a new room (the default
    /// template if `None`); given for an existing room with another template, it moves the
    /// room to that template (100ms: create is also an update).
    pub fn upsert_room(&self, workspace_id: &str, name: &str, template_id: Option<&str>) -> Result<Room, StoreError> {
        self.upsert_room_with(workspace_id, name, template_id, &serde_json::Map::new())
    }

    /// [`Store::upsert_room`], also merging `attrs` into the room's optional fields.
    pub fn upsert_room_with(
        &self,
        workspace_id: &str,
        name: &str,
        template_id: Option<&str>,
        attrs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Room, StoreError> {
        check_room_name(name)?;
        let template_id = match template_id {
            Some(id) => Some(self.owned_template(workspace_id, id)?),
            None => None,
        };
        let id = self.conn.with_tx(|tx| {
            let existing = room_where(tx, "workspace_id = ?1 AND name_key = lower(?2)", &vals![workspace_id, name])?;
            Ok(match existing {
                Some(room) => {
                    let template = template_id.unwrap_or(room.template_id);
                    let mut merged = room.attrs;
                    merged.extend(attrs.clone());
                    tx.execute(
                        "UPDATE rooms SET template_id = ?1, attrs = ?2, updated_at = ?3 WHERE id = ?4",
                        &vals![template, serde_json::to_string(&merged)?, unix_now(), &room.id],
                    )?;
                    room.id
                }
                None => {
                    let template_id = match template_id {
                        Some(t) => t,
                        None => self.default_template(workspace_id)?.id,
                    };
                    let id = new_id();
                    tx.execute(
                        "INSERT INTO rooms (id, workspace_id, name, name_key, template_id, enabled, attrs, created_at, updated_at)
                         VALUES (?1, ?2, ?3, lower(?3), ?4, 1, ?5, ?6, ?6)",
                        &vals![&id, workspace_id, name, template_id, serde_json::to_string(attrs)?, unix_now()],
                    )?;
                    id
                }
            })
        })?;
        self.room(&id)?.ok_or(StoreError::NoRoom(id))
    }

    fn owned_template(&self, workspace_id: &str, id: &str) -> Result<String, StoreError> {
        let t = self.template(id)?.ok_or_else(|| StoreError::NoTemplate(id.into()))?;
        if t.workspace_id != workspace_id {
            return Err(StoreError::ForeignTemplate(id.into()));
        }
        Ok(t.id)
    }

    /// Updates a room: its name, template, enabled flag (each when given) and merges `attrs`.
    /// A name another room of the workspace has (in any case) is [`StoreError::RoomNameTaken`].
    pub fn update_room(
        &self,
        room_id: &str,
        name: Option<&str>,
        template_id: Option<&str>,
        enabled: Option<bool>,
        attrs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Room, StoreError> {
        let room = self.room(room_id)?.ok_or_else(|| StoreError::NoRoom(room_id.into()))?;
        if let Some(n) = name {
            check_room_name(n)?;
        }
        let template = match template_id {
            Some(t) => self.owned_template(&room.workspace_id, t)?,
            None => room.template_id.clone(),
        };
        let mut merged = room.attrs.clone();
        merged.extend(attrs.clone());
        let name = name.unwrap_or(&room.name);
        self.conn.with_tx(|tx| {
            let taken = tx.query_opt(
                "SELECT id FROM rooms WHERE workspace_id = ?1 AND name_key = lower(?2) AND id <> ?3",
                &vals![&room.workspace_id, name, room_id],
            )?;
            if taken.is_some() {
                return Err(StoreError::RoomNameTaken(name.into()));
            }
            tx.execute(
                "UPDATE rooms SET name = ?1, name_key = lower(?1), template_id = ?2, enabled = ?3, attrs = ?4, updated_at = ?5
                 WHERE id = ?6",
                &vals![name, template, enabled.unwrap_or(room.enabled), serde_json::to_string(&merged)?, unix_now(), room_id],
            )?;
            Ok(())
        })?;
        self.room(room_id)?.ok_or_else(|| StoreError::NoRoom(room_id.into()))
    }

    /// The room `room_id`.
    pub fn room(&self, room_id: &str) -> Result<Option<Room>, StoreError> {
        room_where(&self.conn, "id = ?1", &vals![room_id])
    }

    /// The room `room_id` if it belongs to `workspace_id`.
    pub fn room_in(&self, workspace_id: &str, room_id: &str) -> Result<Option<Room>, StoreError> {
        Ok(self.room(room_id)?.filter(|r| r.workspace_id == workspace_id))
    }

    /// A page of a workspace's rooms matching `filter`, oldest first.
    pub fn rooms(&self, workspace_id: &str, filter: &RoomFilter, page: &Page) -> Result<Listing<Room>, StoreError> {
        let q = PageQuery {
            table: "rooms",
            cols: ROOM_COLS,
            key: "rowid",
            id: "id",
            filters:
                "workspace_id = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR enabled = ?2)
                AND (CAST(?3 AS TEXT) IS NULL OR name_key = lower(?3))
                AND (CAST(?4 AS TEXT) IS NULL OR template_id = ?4)
                AND (CAST(?5 AS BIGINT) IS NULL OR created_at > ?5) AND (CAST(?6 AS BIGINT) IS NULL OR created_at < ?6)",
            args: vals![
                workspace_id,
                filter.enabled,
                filter.name.as_deref(),
                filter.template_id.as_deref(),
                filter.after,
                filter.before
            ]
            .into(),
            row: room_row,
            last: |r| &r.id,
        };
        page::query(&self.conn, q, page)
    }

    /// Enables or disables a room (a disabled room refuses new joins).
    pub fn set_room_enabled(&self, room_id: &str, enabled: bool) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE rooms SET enabled = ?1, updated_at = ?2 WHERE id = ?3",
            &vals![enabled, unix_now(), room_id],
        )?;
        if n == 0 {
            return Err(StoreError::NoRoom(room_id.into()));
        }
        Ok(())
    }
}

fn room_row(r: &Row) -> Result<Room, StoreError> {
    Ok(Room {
        id: r.text(0)?,
        name: r.text(1)?,
        workspace_id: r.text(2)?,
        template_id: r.text(3)?,
        enabled: r.bool(4)?,
        attrs: serde_json::from_str(&r.text(5)?)?,
        created_at: r.int(6)?,
        updated_at: r.int(7)?,
    })
}

const ROOM_COLS: &str = "id, name, workspace_id, template_id, enabled, attrs, created_at, updated_at";

pub(crate) fn room_where(conn: &Conn, filter: &'static str, args: &[Val]) -> Result<Option<Room>, StoreError> {
    let sql = format!("SELECT {ROOM_COLS} FROM rooms WHERE {filter}");
    conn.query_opt(&sql, args)?.as_ref().map(room_row).transpose()
}

/// 100ms room names: 1 to [`MAX_ROOM_NAME`] characters of `a-zA-Z0-9.-:_`.
pub fn check_room_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ROOM_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadRoomName(format!(
            "{name:?}: 1 to {MAX_ROOM_NAME} characters of a-z, A-Z, 0-9, '.', '-', ':', '_'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::backends;

    #[test]
    fn upsert_room_creates_then_returns_the_same_room_case_insensitively() {
        for b in backends("room") {
            let store = &b.store;
            let ws = store.ensure_default_workspace().unwrap();
            let a = store.upsert_room(&ws.id, "Daily-Standup", None).unwrap();
            assert!(a.enabled);
            assert_eq!(a.template_id, store.default_template(&ws.id).unwrap().id);
            let b2 = store.upsert_room(&ws.id, "daily-standup", None).unwrap();
            assert_eq!(a.id, b2.id, "{}", b.name);
            assert_eq!(b2.name, "Daily-Standup");
            let c = store.upsert_room(&ws.id, "other", None).unwrap();
            assert_ne!(a.id, c.id);
            assert_eq!(store.room(&a.id).unwrap().unwrap().name, "Daily-Standup");
            assert!(store.room("missing").unwrap().is_none());
            let by_name = RoomFilter { name: Some("DAILY-standup".into()), ..Default::default() };
            let found = store.rooms(&ws.id, &by_name, &Page::first(10)).unwrap().data;
            assert_eq!(found.iter().map(|r| &r.id).collect::<Vec<_>>(), [&a.id], "{}", b.name);
        }
    }

    #[test]
    fn renaming_a_room_to_a_taken_name_in_any_case_is_refused() {
        for b in backends("rename") {
            let store = &b.store;
            let ws = store.ensure_default_workspace().unwrap();
            let a = store.upsert_room(&ws.id, "alpha", None).unwrap();
            store.upsert_room(&ws.id, "beta", None).unwrap();
            let none = serde_json::Map::new();
            let err = store.update_room(&a.id, Some("BETA"), None, None, &none).unwrap_err();
            assert!(matches!(err, StoreError::RoomNameTaken(_)), "{}: {err}", b.name);
            // Its own name in another case is fine, and the lookup key follows the rename.
            let renamed = store.update_room(&a.id, Some("Alpha"), None, Some(false), &none).unwrap();
            assert_eq!((renamed.name.as_str(), renamed.enabled), ("Alpha", false));
            let renamed = store.update_room(&a.id, Some("gamma"), None, None, &none).unwrap();
            assert_eq!(store.upsert_room(&ws.id, "GAMMA", None).unwrap().id, renamed.id, "{}", b.name);
            assert_ne!(store.upsert_room(&ws.id, "alpha", None).unwrap().id, a.id);
        }
    }

    #[test]
    fn rooms_page_in_creation_order_with_filters() {
        for b in backends("pages") {
            let store = &b.store;
            let ws = store.ensure_default_workspace().unwrap();
            let ids: Vec<String> =
                (0..25).map(|i| store.upsert_room(&ws.id, &format!("room-{i}"), None).unwrap().id).collect();
            store.set_room_enabled(&ids[3], false).unwrap();
            let mut seen = Vec::new();
            let mut page = Page::first(10);
            loop {
                let l = store.rooms(&ws.id, &RoomFilter::default(), &page).unwrap();
                seen.extend(l.data.into_iter().map(|r| r.id));
                match l.last {
                    Some(last) => page.start = Some(last),
                    None => break,
                }
            }
            assert_eq!(seen, ids, "{}", b.name);
            let disabled = RoomFilter { enabled: Some(false), ..Default::default() };
            let l = store.rooms(&ws.id, &disabled, &Page::first(10)).unwrap();
            assert_eq!(l.data.iter().map(|r| &r.id).collect::<Vec<_>>(), [&ids[3]], "{}", b.name);
            let future = RoomFilter { after: Some(unix_now() + 3600), ..Default::default() };
            assert!(store.rooms(&ws.id, &future, &Page::first(10)).unwrap().data.is_empty());
        }
    }

    #[test]
    fn room_names_are_checked_and_templates_must_exist() {
        for b in backends("names") {
            let store = &b.store;
            let ws = store.ensure_default_workspace().unwrap();
            for bad in ["", "has space", "slash/", "ünïcode", &"x".repeat(MAX_ROOM_NAME + 1)] {
                assert!(matches!(store.upsert_room(&ws.id, bad, None), Err(StoreError::BadRoomName(_))), "{bad:?}");
            }
            assert!(store.upsert_room(&ws.id, "a.b-c:d_e", None).is_ok());
            assert!(matches!(store.upsert_room(&ws.id, "r", Some("nope")), Err(StoreError::NoTemplate(_))));
            assert!(matches!(store.upsert_room("nope", "r", None), Err(StoreError::NoWorkspace(_))), "{}", b.name);
        }
    }

    #[test]
    fn disabling_a_room_persists() {
        for b in backends("enable") {
            let store = &b.store;
            let ws = store.ensure_default_workspace().unwrap();
            let room = store.upsert_room(&ws.id, "r1", None).unwrap();
            store.set_room_enabled(&room.id, false).unwrap();
            assert!(!store.room(&room.id).unwrap().unwrap().enabled);
            assert!(!store.upsert_room(&ws.id, "r1", None).unwrap().enabled);
            store.set_room_enabled(&room.id, true).unwrap();
            assert!(store.room(&room.id).unwrap().unwrap().enabled);
            assert!(matches!(store.set_room_enabled("missing", true), Err(StoreError::NoRoom(_))));
        }
    }

    /// Not a check: times a 1000-room insert and list on each backend (docs/decisions.md).
    /// `cargo test -p store --release -- --ignored --nocapture thousand_rooms`
    #[test]
    #[ignore]
    fn thousand_rooms_timing() {
        for b in backends("timing") {
            let store = &b.store;
            let ws = store.ensure_default_workspace().unwrap();
            let t0 = std::time::Instant::now();
            for i in 0..1000 {
                store.upsert_room(&ws.id, &format!("room-{i}"), None).unwrap();
            }
            let insert = t0.elapsed();
            let t1 = std::time::Instant::now();
            let mut page = Page::first(100);
            let mut n = 0;
            loop {
                let l = store.rooms(&ws.id, &RoomFilter::default(), &page).unwrap();
                n += l.data.len();
                match l.last {
                    Some(last) => page.start = Some(last),
                    None => break,
                }
            }
            assert_eq!(n, 1000);
            eprintln!("{}: 1000 upserts {:?}, list in pages of 100 {:?}", b.name, insert, t1.elapsed());
        }
    }
}
