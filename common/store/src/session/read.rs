//! Sessions as the REST API reads them (`GET /v2/sessions`): one session with its peers, or a
//! page of a workspace's sessions.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::db::{Row, vals};
use crate::page::{self, Listing, Page, PageQuery};
use crate::{Store, StoreError};

/// A peer of a session (REST shape; times in ms since the epoch, formatted by the API).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionPeer {
    pub id: String,
    pub session_id: String,
    pub name: String,
    pub role: String,
    pub user_id: String,
    pub joined_at: i64,
    pub left_at: Option<i64>,
}

/// A session with all its peers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Session {
    pub id: String,
    pub room_id: String,
    pub workspace_id: String,
    pub active: bool,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub updated_at: i64,
    pub peers: BTreeMap<String, SessionPeer>,
}

/// Filters of `GET /v2/sessions`.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub active: Option<bool>,
    pub room_id: Option<String>,
    /// Started after / before (ms since the epoch).
    pub after: Option<i64>,
    pub before: Option<i64>,
}

impl Store {
    /// The session `id` of `workspace_id`, with all its peers.
    pub fn session(&self, workspace_id: &str, id: &str) -> Result<Option<Session>, StoreError> {
        let sql = format!("SELECT {SESSION_COLS} FROM sessions WHERE workspace_id = ?1 AND id = ?2");
        let mut found = self.conn.query_opt(&sql, &vals![workspace_id, id])?.as_ref().map(session_row).transpose()?;
        self.add_peers(found.as_mut_slice())?;
        Ok(found)
    }

    /// A page of a workspace's sessions, oldest first.
    pub fn sessions(
        &self,
        workspace_id: &str,
        filter: &SessionFilter,
        page: &Page,
    ) -> Result<Listing<Session>, StoreError> {
        let q = PageQuery {
            table: "sessions",
            cols: SESSION_COLS,
            key: "rowid",
            id: "id",
            filters:
                "workspace_id = ?1
                AND (CAST(?2 AS BIGINT) IS NULL OR active = ?2) AND (CAST(?3 AS TEXT) IS NULL OR room_id = ?3)
                AND (CAST(?4 AS BIGINT) IS NULL OR started_at > ?4) AND (CAST(?5 AS BIGINT) IS NULL OR started_at < ?5)",
            args: vals![workspace_id, filter.active, filter.room_id.as_deref(), filter.after, filter.before].into(),
            row: session_row,
            last: |s| &s.id,
        };
        let mut listing = page::query(&self.conn, q, page)?;
        self.add_peers(&mut listing.data)?;
        Ok(listing)
    }

    /// Fills in each session's peers.
    fn add_peers(&self, sessions: &mut [Session]) -> Result<(), StoreError> {
        for s in sessions {
            let rows = self.conn.query(
                "SELECT peer_id, session_id, name, role, user_id, joined_at, left_at FROM session_peers WHERE session_id = ?1",
                &vals![&s.id],
            )?;
            for r in &rows {
                let p = SessionPeer {
                    id: r.text(0)?,
                    session_id: r.text(1)?,
                    name: r.text(2)?,
                    role: r.text(3)?,
                    user_id: r.text(4)?,
                    joined_at: r.int(5)?,
                    left_at: r.opt_int(6)?,
                };
                s.peers.insert(p.id.clone(), p);
            }
        }
        Ok(())
    }
}

const SESSION_COLS: &str = "id, room_id, workspace_id, active, started_at, ended_at, updated_at";

/// A session without its peers ([`Store::add_peers`] reads those).
fn session_row(r: &Row) -> Result<Session, StoreError> {
    Ok(Session {
        id: r.text(0)?,
        room_id: r.text(1)?,
        workspace_id: r.text(2)?,
        active: r.bool(3)?,
        started_at: r.int(4)?,
        ended_at: r.opt_int(5)?,
        updated_at: r.int(6)?,
        peers: BTreeMap::new(),
    })
}
