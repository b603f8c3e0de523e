//! Room codes: short codes (`abc-defg-hij`) bound to one room and one role, which a client
//! exchanges for an auth token (`POST /v2/token {code, user_id}`), as with 100ms. They never
//! expire; their one state is `enabled`. At most [`MAX_CODES_PER_ROOM`] per room.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("codes-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let store = store::Store::open(&dir.join("platform.db")).unwrap();
//! let ws = store.ensure_default_workspace().unwrap();
//! let room = store.upsert_room(&ws.id, "town-hall", None).unwrap();
//! let code = store.create_room_code(&room.id, "guest").unwrap();
//! assert!(store::codes::looks_like_code(&code.code));
//! assert_eq!(store.room_code(&code.code).unwrap().unwrap().role, "guest");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use serde::Serialize;

use crate::db::{Row, vals};
use crate::ids::random_bytes;
use crate::page::{self, Listing, Page, PageQuery};
use crate::time::unix_now;
use crate::{Store, StoreError};

/// 100ms's cap.
pub const MAX_CODES_PER_ROOM: usize = 100;

const CODE_COLS: &str = "code, room_id, role, enabled, created_at, updated_at";

/// One room code, in the REST shape (times in unix seconds; the API formats them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomCode {
    pub code: String,
    pub room_id: String,
    pub role: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Letters only, lower case, in the 3-4-3 shape.
fn new_code() -> String {
    let mut b = [0u8; 10];
    random_bytes(&mut b);
    // `x % 26` makes the first 22 letters slightly likelier (10 byte values against 9): harmless,
    // a code is an identifier bound to a role, and the space is still about 26^10.
    let letters: String = b.iter().map(|x| char::from(b'a' + x % 26)).collect();
    format!("{}-{}-{}", &letters[..3], &letters[3..7], &letters[7..])
}

/// Whether `s` has the shape of a room code (a cheap check before a lookup).
pub fn looks_like_code(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && [3, 4, 3].iter().zip(&parts).all(|(n, p)| p.len() == *n && p.bytes().all(|c| c.is_ascii_lowercase()))
}

impl Store {
    /// Creates one enabled code for `role` in `room_id` (the role must exist in the room's
    /// template).
    pub fn create_room_code(&self, room_id: &str, role: &str) -> Result<RoomCode, StoreError> {
        let room = self.room(room_id)?.ok_or_else(|| StoreError::NoRoom(room_id.into()))?;
        let template =
            self.template(&room.template_id)?.ok_or_else(|| StoreError::NoTemplate(room.template_id.clone()))?;
        if !template.roles.contains_key(role) {
            return Err(StoreError::NoRole(role.into()));
        }
        let count =
            self.conn.query_one("SELECT COUNT(*) FROM room_codes WHERE room_id = ?1", &vals![room_id])?.int(0)?;
        if count as usize >= MAX_CODES_PER_ROOM {
            return Err(StoreError::TooManyRoomCodes(MAX_CODES_PER_ROOM));
        }
        let now = unix_now();
        // A collision in 26^10 is as good as impossible; retry anyway rather than fail.
        for _ in 0..4 {
            let code = new_code();
            let n = self.conn.execute(
                "INSERT INTO room_codes (code, room_id, role, enabled, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 1, ?4, ?4) ON CONFLICT DO NOTHING",
                &vals![&code, room_id, role, now],
            )?;
            if n == 1 {
                return Ok(RoomCode {
                    code,
                    room_id: room_id.into(),
                    role: role.into(),
                    enabled: true,
                    created_at: now,
                    updated_at: now,
                });
            }
        }
        Err(StoreError::Sqlite(rusqlite::Error::StatementChangedRows(0)))
    }

    /// Makes sure every role of the room's template has an enabled code (creating the missing
    /// ones), and disables the codes of roles the template no longer has (100ms's "create codes
    /// for the room"). Returns the room's enabled codes.
    pub fn create_room_codes(&self, room_id: &str) -> Result<Vec<RoomCode>, StoreError> {
        let room = self.room(room_id)?.ok_or_else(|| StoreError::NoRoom(room_id.into()))?;
        let template =
            self.template(&room.template_id)?.ok_or_else(|| StoreError::NoTemplate(room.template_id.clone()))?;
        let existing = self.room_codes(room_id, None, Some(true), &Page::first(MAX_CODES_PER_ROOM as u32))?.data;
        for code in &existing {
            if !template.roles.contains_key(&code.role) {
                self.set_room_code_enabled(&code.code, false)?;
            }
        }
        for role in template.roles.keys() {
            if !existing.iter().any(|c| &c.role == role) {
                self.create_room_code(room_id, role)?;
            }
        }
        Ok(self.room_codes(room_id, None, Some(true), &Page::first(MAX_CODES_PER_ROOM as u32))?.data)
    }

    /// A page of a room's codes, filtered by role and enabled state.
    pub fn room_codes(
        &self,
        room_id: &str,
        role: Option<&str>,
        enabled: Option<bool>,
        page: &Page,
    ) -> Result<Listing<RoomCode>, StoreError> {
        let q = PageQuery {
            table: "room_codes",
            cols: CODE_COLS,
            key: "rowid",
            id: "code",
            filters: "room_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR role = ?2)
                AND (CAST(?3 AS BIGINT) IS NULL OR enabled = ?3)",
            args: vals![room_id, role, enabled].into(),
            row: code_row,
            last: |c| &c.code,
        };
        page::query(&self.conn, q, page)
    }

    /// The code `code`, enabled or not.
    pub fn room_code(&self, code: &str) -> Result<Option<RoomCode>, StoreError> {
        self.conn
            .query_opt(&format!("SELECT {CODE_COLS} FROM room_codes WHERE code = ?1"), &vals![code])?
            .as_ref()
            .map(code_row)
            .transpose()
    }

    /// Enables or disables a code.
    pub fn set_room_code_enabled(&self, code: &str, enabled: bool) -> Result<RoomCode, StoreError> {
        let n = self.conn.execute(
            "UPDATE room_codes SET enabled = ?1, updated_at = ?2 WHERE code = ?3",
            &vals![enabled, unix_now(), code],
        )?;
        if n == 0 {
            return Err(StoreError::NoRoomCode(code.into()));
        }
        self.room_code(code)?.ok_or_else(|| StoreError::NoRoomCode(code.into()))
    }
}

fn code_row(r: &Row) -> Result<RoomCode, StoreError> {
    Ok(RoomCode {
        code: r.text(0)?,
        room_id: r.text(1)?,
        role: r.text(2)?,
        enabled: r.bool(3)?,
        created_at: r.int(4)?,
        updated_at: r.int(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::backends;

    #[test]
    fn codes_per_role_and_their_state() {
        for b in backends("codes") {
            let s = &b.store;
            let ws = s.ensure_default_workspace().unwrap();
            let room = s.upsert_room(&ws.id, "r", None).unwrap();
            let all = s.create_room_codes(&room.id).unwrap();
            let mut roles: Vec<&str> = all.iter().map(|c| c.role.as_str()).collect();
            roles.sort();
            assert_eq!(roles, ["audio-only", "guest", "host"]);
            assert!(all.iter().all(|c| looks_like_code(&c.code) && c.enabled));
            // Idempotent: no second code per role.
            assert_eq!(s.create_room_codes(&room.id).unwrap().len(), 3);
            let host = all.iter().find(|c| c.role == "host").unwrap();
            assert!(!s.set_room_code_enabled(&host.code, false).unwrap().enabled);
            let page = s.room_codes(&room.id, None, Some(false), &Page::first(10)).unwrap();
            assert_eq!(page.data.len(), 1);
            assert_eq!(s.room_codes(&room.id, Some("guest"), None, &Page::first(10)).unwrap().data.len(), 1);
            assert!(matches!(s.create_room_code(&room.id, "ghost"), Err(StoreError::NoRole(_))));
            assert!(matches!(s.set_room_code_enabled("abc-defg-hij", true), Err(StoreError::NoRoomCode(_))));
            assert!(
                !looks_like_code("ABC-defg-hij") && !looks_like_code("abc-def-hij") && !looks_like_code("abcdefghij")
            );
        }
    }

    #[test]
    fn at_most_a_hundred_codes_per_room() {
        for b in backends("codecap") {
            let s = &b.store;
            let ws = s.ensure_default_workspace().unwrap();
            let room = s.upsert_room(&ws.id, "r", None).unwrap();
            for _ in 0..MAX_CODES_PER_ROOM {
                s.create_room_code(&room.id, "guest").unwrap();
            }
            assert!(matches!(s.create_room_code(&room.id, "guest"), Err(StoreError::TooManyRoomCodes(100))));
            let first = s.room_codes(&room.id, None, None, &Page::first(60)).unwrap();
            assert_eq!(first.data.len(), 60);
            let rest = s.room_codes(&room.id, None, None, &Page { limit: 60, start: first.last.clone() }).unwrap();
            assert_eq!(rest.data.len(), 40);
            assert!(rest.last.is_none());
        }
    }
}
