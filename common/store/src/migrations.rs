//! The one home of the schema: the SQLite and the PostgreSQL migration lists side by side, and
//! the step that brings a database up to date when a store is opened.
//!
//! The lists cannot be one text with a dialect step: SQLite files in the field went through
//! versions 1 to 3 (with `ALTER TABLE`s in between), while PostgreSQL support came later and
//! starts from the schema those leave, in one migration. Both lists keep their versions and
//! order for existing databases. Instead, a test replays each list's `CREATE TABLE` and
//! `ALTER TABLE ... ADD COLUMN` statements and checks that both end with the same tables,
//! columns and column types, and that each backend's live schema agrees; a change to one list
//! without its twin fails it.

use crate::db::vals;
use crate::{Store, StoreError};

/// SQLite schema migrations, in order; migration `i` brings `user_version` from `i` to `i + 1`.
/// A change here needs its twin in [`PG_MIGRATIONS`]; a test checks that the two agree.
const SQLITE_MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    r#"
-- Several key pairs per workspace; the first is the one workspaces.access_key names.
CREATE TABLE credentials (
    access_key   TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    secret       TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
INSERT INTO credentials (access_key, workspace_id, secret, created_at)
    SELECT access_key, id, secret, created_at FROM workspaces;
-- JSON {url, headers, secret} of the workspace's webhook endpoint, or NULL.
ALTER TABLE workspaces ADD COLUMN webhook TEXT;
-- JSON TemplateParts: settings, destinations, plugins, recordings.
ALTER TABLE templates ADD COLUMN parts TEXT NOT NULL DEFAULT '{}';
-- JSON object of the room's optional REST fields (description, region, size, webhook, ...).
ALTER TABLE rooms ADD COLUMN attrs TEXT NOT NULL DEFAULT '{}';
CREATE TABLE room_codes (
    code       TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL REFERENCES rooms(id),
    role       TEXT NOT NULL,
    enabled    INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX room_codes_by_room ON room_codes(room_id);
-- Times in milliseconds since the epoch from here on.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    room_id      TEXT NOT NULL REFERENCES rooms(id),
    active       INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    ended_at     INTEGER,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX sessions_by_room ON sessions(room_id, active);
CREATE TABLE session_peers (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    peer_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    joined_at  INTEGER NOT NULL,
    left_at    INTEGER,
    PRIMARY KEY (session_id, peer_id)
);
-- Webhook events, written in the transaction of the change that caused them, with their
-- delivery state. status: pending | delivered | failed (gave up) | unrouted (no endpoint).
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    workspace_id    TEXT NOT NULL,
    room_id         TEXT,
    type            TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    url             TEXT,
    headers         TEXT,
    secret          TEXT,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    delivered_at    INTEGER,
    last_error      TEXT
);
CREATE INDEX outbox_by_status ON outbox(status, next_attempt_at);
"#,
    r#"
-- Room names are case-insensitive: looked up by their lower-case key, in both backends (the
-- COLLATE NOCASE of rooms.name is SQLite-only).
ALTER TABLE rooms ADD COLUMN name_key TEXT;
UPDATE rooms SET name_key = lower(name);
CREATE UNIQUE INDEX rooms_by_name_key ON rooms(workspace_id, name_key);
"#,
    RECORDING_TABLES,
    JOB_KINDS,
    FEEDBACK_TABLE,
    POLL_TABLES,
];

/// PostgreSQL schema migrations, in order, tracked in `schema_version`. The first is the whole
/// schema as of SQLite migration 3, in PostgreSQL types: integers (and 0/1 booleans) as BIGINT,
/// and a `rowid BIGSERIAL` on every table so paging by `rowid` reads the same as on SQLite.
const PG_MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE workspaces (
    rowid               BIGSERIAL NOT NULL UNIQUE,
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    access_key          TEXT NOT NULL UNIQUE,
    secret              TEXT NOT NULL,
    default_template_id TEXT,
    created_at          BIGINT NOT NULL,
    webhook             TEXT
);
CREATE TABLE credentials (
    rowid        BIGSERIAL NOT NULL UNIQUE,
    access_key   TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    secret       TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE TABLE templates (
    rowid        BIGSERIAL NOT NULL UNIQUE,
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name         TEXT NOT NULL,
    roles        TEXT NOT NULL,
    parts        TEXT NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);
CREATE TABLE rooms (
    rowid        BIGSERIAL NOT NULL UNIQUE,
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name         TEXT NOT NULL,
    name_key     TEXT NOT NULL,
    template_id  TEXT NOT NULL REFERENCES templates(id),
    enabled      BIGINT NOT NULL DEFAULT 1,
    attrs        TEXT NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (workspace_id, name_key)
);
CREATE TABLE room_codes (
    rowid      BIGSERIAL NOT NULL UNIQUE,
    code       TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL REFERENCES rooms(id),
    role       TEXT NOT NULL,
    enabled    BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX room_codes_by_room ON room_codes(room_id);
CREATE TABLE sessions (
    rowid        BIGSERIAL NOT NULL UNIQUE,
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    room_id      TEXT NOT NULL REFERENCES rooms(id),
    active       BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX sessions_by_room ON sessions(room_id, active);
CREATE TABLE session_peers (
    rowid      BIGSERIAL NOT NULL UNIQUE,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    peer_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    joined_at  BIGINT NOT NULL,
    left_at    BIGINT,
    PRIMARY KEY (session_id, peer_id)
);
CREATE TABLE outbox (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    workspace_id    TEXT NOT NULL,
    room_id         TEXT,
    type            TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    url             TEXT,
    headers         TEXT,
    secret          TEXT,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    delivered_at    BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_by_status ON outbox(status, next_attempt_at);
"#,
    PG_RECORDING_TABLES,
    JOB_KINDS,
    PG_FEEDBACK_TABLE,
    PG_POLL_TABLES,
];

/// The advisory lock key PostgreSQL migrations run under (any constant; "pgstore" in ASCII).
const PG_MIGRATION_LOCK: i64 = 0x0070_6773_746f_7265;

/// The recording tables (SQLite and PostgreSQL spell them the same, but for the rowid and the
/// integer type): SQLite migration 4, PostgreSQL migration 2.
const RECORDING_TABLES: &str = r#"
CREATE TABLE recordings (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    tap          INTEGER NOT NULL UNIQUE,
    status       TEXT NOT NULL,
    started_by   TEXT NOT NULL,
    stopped_by   TEXT NOT NULL,
    error        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    stopped_at   INTEGER,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX recordings_by_room ON recordings(workspace_id, room_id);
CREATE TABLE recording_assets (
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES recordings(id),
    workspace_id TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    type         TEXT NOT NULL,
    status       TEXT NOT NULL,
    path         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    metadata     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (job_id, path)
);
"#;

/// What a job makes (`track` files, or a `composite`) and its settings as JSON (resolution):
/// SQLite migration 5, PostgreSQL migration 3. Jobs from before were all track recordings.
const JOB_KINDS: &str = r#"
ALTER TABLE recordings ADD COLUMN kind TEXT NOT NULL DEFAULT 'track';
ALTER TABLE recordings ADD COLUMN spec TEXT NOT NULL DEFAULT '{}';
"#;

/// What peers said of a session when they left (Prebuilt's feedback form, the SDK's
/// `submitSessionFeedback`): SQLite migration 6, PostgreSQL migration 4. `body` is the JSON the
/// client sent.
const FEEDBACK_TABLE: &str = r#"
CREATE TABLE feedback (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    peer_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    role         TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX feedback_by_room ON feedback(workspace_id, room_id);
"#;

/// Polls and their responses (`poll/`): SQLite migration 7, PostgreSQL migration 5. A poll's
/// settings, questions and who-and-when are its JSON `body`.
const POLL_TABLES: &str = r#"
CREATE TABLE polls (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    state        TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX polls_by_room ON polls(workspace_id, room_id);
CREATE TABLE poll_responses (
    id         TEXT PRIMARY KEY,
    poll_id    TEXT NOT NULL REFERENCES polls(id),
    session_id TEXT NOT NULL,
    peer_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    username   TEXT NOT NULL,
    question   INTEGER NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (poll_id, peer_id, question)
);
"#;

const PG_POLL_TABLES: &str = r#"
CREATE TABLE polls (
    rowid        BIGSERIAL NOT NULL UNIQUE,
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    state        TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX polls_by_room ON polls(workspace_id, room_id);
CREATE TABLE poll_responses (
    rowid      BIGSERIAL NOT NULL UNIQUE,
    id         TEXT PRIMARY KEY,
    poll_id    TEXT NOT NULL REFERENCES polls(id),
    session_id TEXT NOT NULL,
    peer_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    username   TEXT NOT NULL,
    question   BIGINT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (poll_id, peer_id, question)
);
"#;

const PG_FEEDBACK_TABLE: &str = r#"
CREATE TABLE feedback (
    rowid        BIGSERIAL NOT NULL UNIQUE,
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    peer_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    role         TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX feedback_by_room ON feedback(workspace_id, room_id);
"#;

const PG_RECORDING_TABLES: &str = r#"
CREATE TABLE recordings (
    rowid        BIGSERIAL NOT NULL UNIQUE,
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    tap          BIGINT NOT NULL UNIQUE,
    status       TEXT NOT NULL,
    started_by   TEXT NOT NULL,
    stopped_by   TEXT NOT NULL,
    error        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    started_at   BIGINT,
    stopped_at   BIGINT,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX recordings_by_room ON recordings(workspace_id, room_id);
CREATE TABLE recording_assets (
    rowid        BIGSERIAL NOT NULL UNIQUE,
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES recordings(id),
    workspace_id TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    type         TEXT NOT NULL,
    status       TEXT NOT NULL,
    path         TEXT NOT NULL,
    size         BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    metadata     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (job_id, path)
);
"#;

impl Store {
    pub(crate) fn migrate_sqlite(&self) -> Result<(), StoreError> {
        let known = SQLITE_MIGRATIONS.len() as i64;
        // IMMEDIATE: take the write lock before reading the version, so two processes opening a
        // fresh file at once do not both run migration 0.
        self.conn.with_tx(|tx| {
            let found = tx.query_one("PRAGMA user_version", &[])?.int(0)?;
            if found > known {
                return Err(StoreError::SchemaTooNew { found, known });
            }
            for (i, sql) in SQLITE_MIGRATIONS.iter().enumerate().skip(found as usize) {
                tx.batch(sql)?;
                tx.batch(&format!("PRAGMA user_version = {}", i + 1))?;
            }
            Ok(())
        })
    }

    pub(crate) fn migrate_postgres(&self) -> Result<(), StoreError> {
        let known = PG_MIGRATIONS.len() as i64;
        // The advisory lock (held to the end of the transaction) makes a second process that
        // starts at the same moment wait, then find the schema current.
        self.conn.with_tx(|tx| {
            tx.execute("SELECT pg_advisory_xact_lock(?1)", &vals![PG_MIGRATION_LOCK])?;
            tx.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
            let found = match tx.query_opt("SELECT version FROM schema_version", &[])? {
                Some(r) => r.int(0)?,
                None => {
                    tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])?;
                    0
                }
            };
            if found > known {
                return Err(StoreError::SchemaTooNew { found, known });
            }
            for (i, sql) in PG_MIGRATIONS.iter().enumerate().skip(found as usize) {
                tx.batch(sql)?;
                tx.execute("UPDATE schema_version SET version = ?1", &vals![i as i64 + 1])?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rusqlite::Connection;

    use super::*;
    use crate::db::Conn;
    use crate::ids::new_id;
    use crate::test_support::backends;

    #[test]
    fn two_processes_opening_a_fresh_database_at_once_migrate_it_once() {
        for b in backends("race") {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let location = b.location.clone();
                    std::thread::spawn(move || Store::connect(&location).and_then(|s| s.ensure_default_workspace()))
                })
                .collect();
            let ids: Vec<String> = threads.into_iter().map(|t| t.join().unwrap().unwrap().id).collect();
            assert!(ids.iter().all(|id| *id == ids[0]), "{}: one default workspace", b.name);
        }
    }

    #[test]
    fn a_schema_newer_than_the_binary_is_refused() {
        for b in backends("version") {
            match &b.store.conn {
                Conn::Sqlite(c) => c.pragma_update(None, "user_version", 99).unwrap(),
                Conn::Postgres { .. } => {
                    b.store.conn.execute("UPDATE schema_version SET version = 99", &[]).unwrap();
                }
            }
            assert!(
                matches!(Store::connect(&b.location), Err(StoreError::SchemaTooNew { found: 99, .. })),
                "{}",
                b.name
            );
        }
    }

    #[test]
    fn an_old_sqlite_file_gains_case_insensitive_name_keys() {
        let dir = std::env::temp_dir().join(format!("store-test-upgrade-{}-{}", std::process::id(), new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("platform.db");
        {
            // A database as the previous release left it: schema version 2, a room without a key.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SQLITE_MIGRATIONS[0]).unwrap();
            c.execute_batch(SQLITE_MIGRATIONS[1]).unwrap();
            c.execute_batch(
                "PRAGMA user_version = 2;
                 INSERT INTO workspaces (id, name, access_key, secret, default_template_id, created_at)
                   VALUES ('w', 'default', 'k', 's', 't', 0);
                 INSERT INTO templates (id, workspace_id, name, roles, created_at, updated_at)
                   VALUES ('t', 'w', 'default', '{}', 0, 0);
                 INSERT INTO rooms (id, workspace_id, name, template_id, created_at, updated_at)
                   VALUES ('r', 'w', 'Old-Room', 't', 0, 0);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.upsert_room("w", "old-room", None).unwrap().id, "r");
    }

    /// Table name to column name to type, as a migration list leaves them: its `CREATE TABLE`
    /// and `ALTER TABLE ... ADD COLUMN` statements replayed in order. Table constraints
    /// (`UNIQUE (..)`, `PRIMARY KEY (..)`) are not columns.
    type Columns = BTreeMap<String, BTreeMap<String, String>>;

    /// The two dialects' names for one column type: SQLite's `INTEGER` is PostgreSQL's `BIGINT`,
    /// and a `BIGSERIAL` is a `BIGINT` with a sequence.
    fn base_type(ty: &str) -> String {
        match ty.to_ascii_uppercase().as_str() {
            "INTEGER" | "BIGSERIAL" => "BIGINT".into(),
            other => other.into(),
        }
    }

    fn declared(migrations: &[&str]) -> Columns {
        let sql: Vec<&str> =
            migrations.iter().flat_map(|m| m.lines()).map(|l| l.split("--").next().unwrap_or_default()).collect();
        let mut tables = Columns::new();
        for stmt in sql.join("\n").split(';') {
            let words: Vec<&str> = stmt.split_whitespace().collect();
            match words.as_slice() {
                ["CREATE", "TABLE", name, ..] => {
                    let body = &stmt[stmt.find('(').unwrap() + 1..stmt.rfind(')').unwrap()];
                    let mut defs = Vec::new();
                    let (mut depth, mut from) = (0, 0);
                    for (i, c) in body.char_indices() {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            ',' if depth == 0 => {
                                defs.push(&body[from..i]);
                                from = i + 1;
                            }
                            _ => {}
                        }
                    }
                    defs.push(&body[from..]);
                    let cols = tables.entry(name.trim_end_matches('(').to_owned()).or_default();
                    for def in defs {
                        let w: Vec<&str> = def.split_whitespace().collect();
                        if !matches!(w[0], "UNIQUE" | "PRIMARY" | "FOREIGN" | "CHECK" | "CONSTRAINT") {
                            cols.insert(w[0].to_owned(), base_type(w[1]));
                        }
                    }
                }
                ["ALTER", "TABLE", table, "ADD", "COLUMN", column, ty, ..] => {
                    tables.get_mut(*table).unwrap().insert((*column).to_owned(), base_type(ty));
                }
                _ => {}
            }
        }
        tables
    }

    #[test]
    fn both_migration_lists_define_the_same_tables_and_columns() {
        let sqlite = declared(SQLITE_MIGRATIONS);
        let mut pg = declared(PG_MIGRATIONS);
        // SQLite's rowid is implicit; PostgreSQL declares one on every table the lists page by
        // rowid (all but the outbox, paged by its seq).
        for (table, cols) in &mut pg {
            if table != "outbox" {
                assert_eq!(cols.remove("rowid").as_deref(), Some("BIGINT"), "{table}: PostgreSQL needs a rowid");
            }
        }
        assert_eq!(sqlite, pg);
        let tables: Vec<&str> = sqlite.keys().map(String::as_str).collect();
        assert_eq!(
            tables,
            [
                "credentials",
                "feedback",
                "outbox",
                "poll_responses",
                "polls",
                "recording_assets",
                "recordings",
                "room_codes",
                "rooms",
                "session_peers",
                "sessions",
                "templates",
                "workspaces"
            ]
        );
        assert_eq!(sqlite["rooms"]["name_key"], "TEXT", "ALTER TABLE ... ADD COLUMN is replayed");
        assert_eq!(sqlite["recordings"]["kind"], "TEXT", "ALTER TABLE ... ADD COLUMN is replayed");
    }

    #[test]
    fn every_backend_has_the_columns_its_migration_list_declares() {
        for b in backends("schema") {
            let (sql, list) = match &b.store.conn {
                Conn::Sqlite(_) => (
                    "SELECT m.name, p.name, p.type FROM sqlite_master m JOIN pragma_table_info(m.name) p
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
                    SQLITE_MIGRATIONS,
                ),
                Conn::Postgres { .. } => (
                    "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
                     WHERE table_schema = 'public' AND table_name <> 'schema_version'",
                    PG_MIGRATIONS,
                ),
            };
            let mut live = Columns::new();
            for r in b.store.conn.query(sql, &[]).unwrap() {
                live.entry(r.text(0).unwrap()).or_default().insert(r.text(1).unwrap(), base_type(&r.text(2).unwrap()));
            }
            assert_eq!(live, declared(list), "{}", b.name);
        }
    }
}
