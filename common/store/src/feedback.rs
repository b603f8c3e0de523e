//! What peers said of a session as they left: Prebuilt's feedback form, sent by the SDK's
//! `submitSessionFeedback` to the event endpoint (`POST /v2/client/feedback`). Kept as the
//! client sent it, with the peer the auth token names, and listed per room.

use serde::Serialize;
use serde_json::Value;

use crate::db::{Row, Val, vals};
use crate::ids::new_id;
use crate::page::{self, Listing, Page, PageQuery};
use crate::{Store, StoreError};

/// The largest feedback body kept.
pub const MAX_FEEDBACK_BYTES: usize = 16 * 1024;

/// One peer's feedback.
#[derive(Debug, Clone, Serialize)]
pub struct Feedback {
    pub id: String,
    pub room_id: String,
    pub session_id: String,
    pub peer_id: String,
    pub user_id: String,
    pub role: String,
    /// What the client sent: `{peer: {...}, payload: {question, rating, reasons, comment, ...}}`.
    pub body: Value,
    /// Unix milliseconds.
    pub created_at: i64,
}

const COLS: &str = "id, room_id, session_id, peer_id, user_id, role, body, created_at";

fn row(r: &Row) -> Result<Feedback, StoreError> {
    Ok(Feedback {
        id: r.text(0)?,
        room_id: r.text(1)?,
        session_id: r.text(2)?,
        peer_id: r.text(3)?,
        user_id: r.text(4)?,
        role: r.text(5)?,
        body: serde_json::from_str(&r.text(6)?)?,
        created_at: r.int(7)?,
    })
}

impl Store {
    /// Keeps one peer's feedback; `f.id` and `f.created_at` are set here.
    pub fn add_feedback(&self, workspace_id: &str, f: &Feedback) -> Result<Feedback, StoreError> {
        let stored =
            Feedback { id: new_id(), created_at: crate::time::unix_ms(std::time::SystemTime::now()), ..f.clone() };
        let body = serde_json::to_string(&stored.body)?;
        self.conn.execute(
            &format!("INSERT INTO feedback (workspace_id, {COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            &vals![
                workspace_id,
                &stored.id,
                &stored.room_id,
                &stored.session_id,
                &stored.peer_id,
                &stored.user_id,
                &stored.role,
                &body,
                stored.created_at
            ],
        )?;
        Ok(stored)
    }

    /// The workspace's feedback, oldest first, of one room if `room_id` is given.
    pub fn feedback(
        &self,
        workspace_id: &str,
        room_id: Option<&str>,
        page: &Page,
    ) -> Result<Listing<Feedback>, StoreError> {
        let args: Vec<Val> = vals![workspace_id, room_id].into();
        let q = PageQuery {
            table: "feedback",
            cols: COLS,
            key: "rowid",
            id: "id",
            filters: "workspace_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR room_id = ?2)",
            args,
            row,
            last: |f| &f.id,
        };
        page::query(&self.conn, q, page)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_support::backends;

    #[test]
    fn feedback_is_kept_as_sent_and_listed_by_room() {
        for b in backends("feedback") {
            let s = &b.store;
            let f = |room: &str, rating: u8| Feedback {
                id: String::new(),
                room_id: room.into(),
                session_id: "s1".into(),
                peer_id: "p1".into(),
                user_id: "u1".into(),
                role: "guest".into(),
                body: json!({ "payload": { "rating": rating, "comment": "ok" } }),
                created_at: 0,
            };
            s.add_feedback("ws", &f("r1", 4)).unwrap();
            s.add_feedback("ws", &f("r2", 2)).unwrap();
            s.add_feedback("other", &f("r1", 1)).unwrap();
            let r1 = s.feedback("ws", Some("r1"), &Page::first(10)).unwrap().data;
            assert_eq!(r1.len(), 1);
            assert_eq!(r1[0].body["payload"]["rating"], 4);
            assert!(r1[0].created_at > 0);
            assert_eq!(s.feedback("ws", None, &Page::first(10)).unwrap().data.len(), 2);
        }
    }
}
