//! The control plane's state (workspaces, templates with their roles, rooms) in one SQLite file,
//! and the tokens signed with a workspace's secret ([`token`]).
//!
//! Control owns the file and writes it; signaling opens the same file to verify auth tokens and
//! to look up a room and its template's roles. The database runs in WAL mode with a busy
//! timeout, so a reader never blocks the writer and a brief write lock is waited out, not
//! reported. The schema version lives in `PRAGMA user_version`; [`Store::open`] applies the
//! missing migrations in one transaction.
//!
//! A [`Store`] is one connection: `Send`, not `Sync`. Share it behind a `Mutex`, or open one
//! per thread.
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

pub mod role;
pub mod token;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub use role::{Role, TrackKind};

/// How long a statement waits for another connection's write lock before failing with "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest room name accepted (100ms does not state one; this keeps rows and URLs sane).
pub const MAX_ROOM_NAME: usize = 128;

/// Name of the workspace created on first run.
pub const DEFAULT_WORKSPACE: &str = "default";

/// Schema migrations, in order; migration `i` brings `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE workspaces (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    access_key          TEXT NOT NULL UNIQUE,
    secret              TEXT NOT NULL,
    default_template_id TEXT,
    created_at          INTEGER NOT NULL
);
CREATE TABLE templates (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name         TEXT NOT NULL,
    roles        TEXT NOT NULL,  -- JSON: {"<role name>": HMSRole}
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (workspace_id, name)
);
CREATE TABLE rooms (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    -- 100ms room names are case-insensitive.
    name         TEXT NOT NULL COLLATE NOCASE,
    template_id  TEXT NOT NULL REFERENCES templates(id),
    enabled      INTEGER NOT NULL DEFAULT 1,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (workspace_id, name)
);
"#];

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored template roles are not valid JSON: {0}")]
    BadRoles(#[from] serde_json::Error),
    #[error("database schema version {found} is newer than this binary knows ({known}); upgrade it")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("no such workspace: {0}")]
    NoWorkspace(String),
    #[error("no such template: {0}")]
    NoTemplate(String),
    #[error("template {0} belongs to another workspace")]
    ForeignTemplate(String),
    #[error("invalid room name: {0}")]
    BadRoomName(String),
    #[error("no such room: {0}")]
    NoRoom(String),
}

/// A tenant: its rooms, templates, and the access key and secret that sign its tokens.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub access_key: String,
    pub secret: String,
}

/// A room (100ms: created, or fetched, by name).
#[derive(Debug, Clone, Serialize)]
pub struct Room {
    pub id: String,
    pub name: String,
    pub workspace_id: String,
    pub template_id: String,
    pub enabled: bool,
}

/// A template: the roles a room's peers may have.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub workspace_id: String,
    pub roles: BTreeMap<String, Role>,
}

/// One connection to the platform database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
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
        let mut store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        // IMMEDIATE: take the write lock before reading the version, so two processes opening a
        // fresh file at once do not both run migration 0.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > known {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The workspace named [`DEFAULT_WORKSPACE`]; on first run, creates it with a fresh access
    /// key and secret and the default template ([`role::default_roles`]).
    pub fn ensure_default_workspace(&self) -> Result<Workspace, StoreError> {
        if let Some(ws) = self.workspace_where("name", DEFAULT_WORKSPACE)? {
            return Ok(ws);
        }
        let ws = Workspace {
            id: new_id(),
            name: DEFAULT_WORKSPACE.to_owned(),
            access_key: new_id(),
            secret: random_secret(),
        };
        let template_id = new_id();
        let roles = serde_json::to_string(&role::default_roles())?;
        let now = unix_now();
        let tx = self.conn.unchecked_transaction()?;
        // OR IGNORE: another process may have created it since we looked; then we read theirs.
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO workspaces (id, name, access_key, secret, default_template_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![ws.id, ws.name, ws.access_key, ws.secret, template_id, now],
        )?;
        if inserted == 1 {
            tx.execute(
                "INSERT INTO templates (id, workspace_id, name, roles, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![template_id, ws.id, role::DEFAULT_TEMPLATE_NAME, roles, now],
            )?;
        }
        tx.commit()?;
        self.workspace_where("name", DEFAULT_WORKSPACE)?
            .ok_or_else(|| StoreError::NoWorkspace(DEFAULT_WORKSPACE.into()))
    }

    /// The workspace whose access key is `access_key`.
    pub fn workspace_by_access_key(&self, access_key: &str) -> Result<Option<Workspace>, StoreError> {
        self.workspace_where("access_key", access_key)
    }

    fn workspace_where(&self, column: &'static str, value: &str) -> Result<Option<Workspace>, StoreError> {
        // `column` is one of our literals, never input.
        let sql = format!("SELECT id, name, access_key, secret FROM workspaces WHERE {column} = ?1");
        Ok(self
            .conn
            .query_row(&sql, [value], |r| {
                Ok(Workspace { id: r.get(0)?, name: r.get(1)?, access_key: r.get(2)?, secret: r.get(3)? })
            })
            .optional()?)
    }

    /// The template `template_id`, with its roles.
    pub fn template(&self, template_id: &str) -> Result<Option<Template>, StoreError> {
        let row = self
            .conn
            .query_row("SELECT id, name, workspace_id, roles FROM templates WHERE id = ?1", [template_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
            })
            .optional()?;
        match row {
            None => Ok(None),
            Some((id, name, workspace_id, roles)) => {
                Ok(Some(Template { id, name, workspace_id, roles: serde_json::from_str(&roles)? }))
            }
        }
    }

    /// The template new rooms of `workspace_id` get when none is named.
    pub fn default_template(&self, workspace_id: &str) -> Result<Template, StoreError> {
        let id: Option<Option<String>> = self
            .conn
            .query_row("SELECT default_template_id FROM workspaces WHERE id = ?1", [workspace_id], |r| r.get(0))
            .optional()?;
        let id = id.ok_or_else(|| StoreError::NoWorkspace(workspace_id.into()))?;
        let id = id.ok_or_else(|| StoreError::NoTemplate(format!("default of workspace {workspace_id}")))?;
        self.template(&id)?.ok_or(StoreError::NoTemplate(id))
    }

    /// Creates the room `name` in `workspace_id`, or returns the existing one (names are
    /// case-insensitive, as in 100ms). `template_id` applies to a new room (the default
    /// template if `None`); given for an existing room with another template, it moves the
    /// room to that template (100ms: create is also an update).
    pub fn upsert_room(&self, workspace_id: &str, name: &str, template_id: Option<&str>) -> Result<Room, StoreError> {
        check_room_name(name)?;
        let template_id = match template_id {
            Some(id) => {
                let t = self.template(id)?.ok_or_else(|| StoreError::NoTemplate(id.into()))?;
                if t.workspace_id != workspace_id {
                    return Err(StoreError::ForeignTemplate(id.into()));
                }
                Some(t.id)
            }
            None => None,
        };
        let tx = self.conn.unchecked_transaction()?;
        let existing = room_where(&tx, "workspace_id = ?1 AND name = ?2", params![workspace_id, name])?;
        let room = match existing {
            Some(mut room) => {
                if let Some(t) = template_id.filter(|t| *t != room.template_id) {
                    tx.execute(
                        "UPDATE rooms SET template_id = ?1, updated_at = ?2 WHERE id = ?3",
                        params![t, unix_now(), room.id],
                    )?;
                    room.template_id = t;
                }
                room
            }
            None => {
                let template_id = match template_id {
                    Some(t) => t,
                    None => self.default_template(workspace_id)?.id,
                };
                let room = Room {
                    id: new_id(),
                    name: name.to_owned(),
                    workspace_id: workspace_id.to_owned(),
                    template_id,
                    enabled: true,
                };
                tx.execute(
                    "INSERT INTO rooms (id, workspace_id, name, template_id, enabled, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)",
                    params![room.id, room.workspace_id, room.name, room.template_id, unix_now()],
                )?;
                room
            }
        };
        tx.commit()?;
        Ok(room)
    }

    /// The room `room_id`.
    pub fn room(&self, room_id: &str) -> Result<Option<Room>, StoreError> {
        room_where(&self.conn, "id = ?1", params![room_id])
    }

    /// Enables or disables a room (a disabled room refuses new joins).
    pub fn set_room_enabled(&self, room_id: &str, enabled: bool) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE rooms SET enabled = ?1, updated_at = ?2 WHERE id = ?3",
            params![enabled, unix_now(), room_id],
        )?;
        if n == 0 {
            return Err(StoreError::NoRoom(room_id.into()));
        }
        Ok(())
    }
}

fn room_where(
    conn: &Connection,
    filter: &'static str,
    args: impl rusqlite::Params,
) -> Result<Option<Room>, StoreError> {
    let sql = format!("SELECT id, name, workspace_id, template_id, enabled FROM rooms WHERE {filter}");
    Ok(conn
        .query_row(&sql, args, |r| {
            Ok(Room {
                id: r.get(0)?,
                name: r.get(1)?,
                workspace_id: r.get(2)?,
                template_id: r.get(3)?,
                enabled: r.get(4)?,
            })
        })
        .optional()?)
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

/// Fills `buf` from the system's secure random source.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    // aws-lc's RNG fails only if the kernel's entropy source is unusable; nothing can run then.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(buf).expect("system random source unavailable");
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A new object id: 24 random hex characters, like 100ms's (Mongo ObjectId-shaped) ids.
pub fn new_id() -> String {
    let mut b = [0u8; 12];
    random_bytes(&mut b);
    hex(&b)
}

/// A workspace secret: 32 random bytes as 64 hex characters (the HMAC key is the string's bytes,
/// as with 100ms's app secret).
fn random_secret() -> String {
    let mut b = [0u8; 32];
    random_bytes(&mut b);
    hex(&b)
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("store-test-{tag}-{}-{}", std::process::id(), new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("platform.db")
    }

    #[test]
    fn default_workspace_is_created_once_and_survives_reopen() {
        let path = temp_db("ws");
        let store = Store::open(&path).unwrap();
        let ws = store.ensure_default_workspace().unwrap();
        assert_eq!(ws.name, "default");
        assert_eq!(ws.access_key.len(), 24);
        assert_eq!(ws.secret.len(), 64);
        let again = store.ensure_default_workspace().unwrap();
        assert_eq!((again.id.clone(), again.secret.clone()), (ws.id.clone(), ws.secret.clone()));
        drop(store);
        let store = Store::open(&path).unwrap();
        let reopened = store.ensure_default_workspace().unwrap();
        assert_eq!(reopened.access_key, ws.access_key);
        assert_eq!(store.workspace_by_access_key(&ws.access_key).unwrap().unwrap().id, ws.id);
        assert!(store.workspace_by_access_key("nope").unwrap().is_none());
        let t = store.default_template(&ws.id).unwrap();
        assert_eq!(t.name, "default");
        assert_eq!(t.roles.keys().collect::<Vec<_>>(), ["audio-only", "guest", "host"]);
        assert_eq!(store.template(&t.id).unwrap().unwrap().roles, t.roles);
        assert!(store.template("0000").unwrap().is_none());
    }

    #[test]
    fn upsert_room_creates_then_returns_the_same_room_case_insensitively() {
        let store = Store::open(&temp_db("room")).unwrap();
        let ws = store.ensure_default_workspace().unwrap();
        let a = store.upsert_room(&ws.id, "Daily-Standup", None).unwrap();
        assert!(a.enabled);
        assert_eq!(a.template_id, store.default_template(&ws.id).unwrap().id);
        let b = store.upsert_room(&ws.id, "daily-standup", None).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(b.name, "Daily-Standup");
        let c = store.upsert_room(&ws.id, "other", None).unwrap();
        assert_ne!(a.id, c.id);
        assert_eq!(store.room(&a.id).unwrap().unwrap().name, "Daily-Standup");
        assert!(store.room("missing").unwrap().is_none());
    }

    #[test]
    fn room_names_are_checked_and_templates_must_exist() {
        let store = Store::open(&temp_db("names")).unwrap();
        let ws = store.ensure_default_workspace().unwrap();
        for bad in ["", "has space", "slash/", "ünïcode", &"x".repeat(MAX_ROOM_NAME + 1)] {
            assert!(matches!(store.upsert_room(&ws.id, bad, None), Err(StoreError::BadRoomName(_))), "{bad:?}");
        }
        assert!(store.upsert_room(&ws.id, "a.b-c:d_e", None).is_ok());
        assert!(matches!(store.upsert_room(&ws.id, "r", Some("nope")), Err(StoreError::NoTemplate(_))));
        assert!(matches!(store.upsert_room("nope", "r", None), Err(StoreError::NoWorkspace(_))));
    }

    #[test]
    fn disabling_a_room_persists() {
        let store = Store::open(&temp_db("enable")).unwrap();
        let ws = store.ensure_default_workspace().unwrap();
        let room = store.upsert_room(&ws.id, "r1", None).unwrap();
        store.set_room_enabled(&room.id, false).unwrap();
        assert!(!store.room(&room.id).unwrap().unwrap().enabled);
        assert!(!store.upsert_room(&ws.id, "r1", None).unwrap().enabled);
        store.set_room_enabled(&room.id, true).unwrap();
        assert!(store.room(&room.id).unwrap().unwrap().enabled);
        assert!(matches!(store.set_room_enabled("missing", true), Err(StoreError::NoRoom(_))));
    }

    #[test]
    fn a_writer_and_a_reader_share_the_file() {
        let path = temp_db("wal");
        let writer = Store::open(&path).unwrap();
        let reader = Store::open(&path).unwrap();
        let ws = writer.ensure_default_workspace().unwrap();
        // The reader sees the writer's commits, and the writer is not blocked by an open reader.
        assert_eq!(reader.workspace_by_access_key(&ws.access_key).unwrap().unwrap().id, ws.id);
        let room = writer.upsert_room(&ws.id, "shared", None).unwrap();
        assert_eq!(reader.room(&room.id).unwrap().unwrap().name, "shared");
        let mode: String = reader.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        // Opening in another thread works too: a Store is Send.
        let p = path.clone();
        let id = room.id.clone();
        let seen = std::thread::spawn(move || Store::open(&p).unwrap().room(&id).unwrap().is_some()).join().unwrap();
        assert!(seen);
    }

    #[test]
    fn a_schema_newer_than_the_binary_is_refused() {
        let path = temp_db("version");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(Store::open(&path), Err(StoreError::SchemaTooNew { found: 99, .. })));
    }
}
