//! The control plane's state (workspaces, templates with their roles, rooms, sessions, the
//! webhook outbox) in one SQLite file or one PostgreSQL database, and the tokens signed with a
//! workspace's secret ([`token`]).
//!
//! Control and signaling open the same database: control writes workspaces, templates and
//! rooms; signaling verifies auth tokens, looks rooms up, and writes sessions. [`Store::open`]
//! opens a SQLite file; [`Store::connect`] takes either a `postgres://` URL or a file path.
//! Both backends run the same SQL text through a tiny value layer (`db.rs`), so every method
//! behaves the same on both (the tests run on both).
//!
//! SQLite runs in WAL mode with a busy timeout, so a reader never blocks the writer and a brief
//! write lock is waited out, not reported; its schema version lives in `PRAGMA user_version`.
//! PostgreSQL keeps its version in a `schema_version` table. Either way the missing migrations
//! are applied in one transaction when the store is opened.
//!
//! A [`Store`] is one connection: `Send`, not `Sync`. Share it behind a `Mutex`, or open one
//! per thread.
//!
//! Each kind of row lives in one module with its model and its queries: `workspace.rs`
//! (workspaces and their credentials), [`template`], `room.rs`, [`codes`], [`session`],
//! [`recording`] and [`outbox`]. `migrations.rs` is the one home of the schema (the SQLite and
//! PostgreSQL migration lists side by side, with a test that they agree); `page.rs` holds the one
//! paged query every list call goes through. The models are re-exported here ([`Workspace`],
//! [`Room`], [`Template`], [`Page`], [`Listing`], ...).
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("store-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! use std::time::{Duration, SystemTime};
//! let store = store::Store::open(&dir.join("platform.db")).unwrap();
//! let ws = store.ensure_default_workspace().unwrap();
//! let room = store.upsert_room(&ws.id, "standup", None).unwrap();
//! let token = store::token::mint_auth_token(&ws, &room.id, "alice", "host", Duration::from_secs(3600), SystemTime::now());
//! let (claims, _) = store::token::verify_auth_token(&store, &token, SystemTime::now()).unwrap();
//! let template = store.template(&room.template_id).unwrap().unwrap();
//! assert!(template.roles[&claims.role].may_publish(store::role::TrackKind::Screen));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

pub mod codes;
mod db;
mod error;
pub mod feedback;
mod ids;
mod migrations;
pub mod outbox;
mod page;
pub mod poll;
pub mod recording;
pub mod role;
mod room;
pub mod session;
pub mod template;
#[cfg(test)]
mod test_support;
pub mod time;
pub mod token;
mod workspace;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use db::Conn;

pub use db::redact_url;
pub use error::StoreError;
pub use ids::{new_id, new_uuid, random_secret};
pub use page::{Listing, Page};
pub use role::{Role, TrackKind};
pub use room::{MAX_ROOM_NAME, MAX_SESSION_SECS, Room, RoomFilter, check_room_name};
pub use template::{Template, TemplateParts};
pub use workspace::{DEFAULT_WORKSPACE, Workspace};

/// How long a statement waits for another connection's write lock before failing with "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection to the platform database (a SQLite file or a PostgreSQL database).
#[derive(Debug)]
pub struct Store {
    conn: Conn,
}

/// Whether `location` names a PostgreSQL database (a `postgres://` or `postgresql://` URL).
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers (signaling) and the writer (control) do not block each other. The mode is
        // stored in the file, so setting it on every open is cheap and idempotent.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL is durable across process crashes in WAL mode (only a power loss can lose
        // the last commits), and avoids an fsync per write.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        let store = Store { conn: Conn::Sqlite(conn) };
        store.migrate_sqlite()?;
        Ok(store)
    }

    /// Opens the database at `location`: a `postgres://user[:password]@host[:port]/dbname` URL
    /// (the database must exist; its schema is created or brought up to date), or else a
    /// SQLite file path as for [`Store::open`]. The connection is unencrypted (no TLS): use a
    /// server on this machine or a private network.
    pub fn connect(location: &str) -> Result<Store, StoreError> {
        if !is_postgres_url(location) {
            return Store::open(Path::new(location));
        }
        let fail = |reason: String| StoreError::PostgresConnect { url: redact_url(location), reason };
        let config: postgres::Config = location.parse().map_err(|e: postgres::Error| fail(e.to_string()))?;
        let conn = Conn::connect_postgres(config).map_err(|e| {
            fail(match StoreError::from(e) {
                StoreError::Postgres(m) => m,
                other => other.to_string(),
            })
        })?;
        let store = Store { conn };
        store.migrate_postgres()?;
        Ok(store)
    }

    /// Whether this store is on PostgreSQL (else SQLite).
    pub fn is_postgres(&self) -> bool {
        matches!(self.conn, Conn::Postgres { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::backends;

    #[test]
    fn a_writer_and_a_reader_share_the_database() {
        for b in backends("wal") {
            let writer = &b.store;
            let reader = b.reopen();
            let ws = writer.ensure_default_workspace().unwrap();
            // The reader sees the writer's commits, and the writer is not blocked by an open reader.
            assert_eq!(reader.workspace_by_access_key(&ws.access_key).unwrap().unwrap().id, ws.id);
            let room = writer.upsert_room(&ws.id, "shared", None).unwrap();
            assert_eq!(reader.room(&room.id).unwrap().unwrap().name, "shared");
            if let Conn::Sqlite(c) = &reader.conn {
                let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
                assert_eq!(mode, "wal");
            }
            // Opening in another thread works too: a Store is Send.
            let location = b.location.clone();
            let id = room.id.clone();
            let seen = std::thread::spawn(move || Store::connect(&location).unwrap().room(&id).unwrap().is_some())
                .join()
                .unwrap();
            assert!(seen, "{}", b.name);
        }
    }

    #[test]
    fn a_connection_the_server_closed_is_reopened_between_transactions() {
        for b in backends("revive").into_iter().filter(|b| b.name == "postgres") {
            let ws = b.store.ensure_default_workspace().unwrap();
            b.terminate_connections();
            // The client learns of the closed socket from the first failed call; the next one
            // runs on a new connection.
            let first = b.store.workspace(&ws.id);
            assert!(first.is_err(), "{first:?}");
            assert_eq!(b.store.workspace(&ws.id).unwrap().unwrap().id, ws.id);
            assert_eq!(b.store.upsert_room(&ws.id, "after", None).unwrap().name, "after");
        }
    }

    #[test]
    fn an_unreachable_server_is_named_without_its_password() {
        // Port 1 on localhost: nothing listens there.
        let err = Store::connect("postgres://me:hunter2@127.0.0.1:1/db").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::PostgresConnect { .. }), "{msg}");
        assert!(msg.contains("postgres://me:***@127.0.0.1:1/db") && !msg.contains("hunter2"), "{msg}");
    }
}
