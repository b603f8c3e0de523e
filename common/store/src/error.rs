//! The store's one error type: database failures of either backend, and the refusals of the
//! repositories (no such room, a name taken, ...), which control maps to HTTP statuses.

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A PostgreSQL failure: the server's SQLSTATE and message, or the connection problem.
    #[error("PostgreSQL error: {0}")]
    Postgres(String),
    /// Cannot reach or log in to the PostgreSQL server (`url` has no password).
    #[error("cannot connect to PostgreSQL at {url}: {reason}")]
    PostgresConnect { url: String, reason: String },
    /// A column held another type than the query expects (a schema out of step with the code).
    #[error("unexpected database value: {0}")]
    BadValue(String),
    #[error("stored JSON is not valid: {0}")]
    BadJson(#[from] serde_json::Error),
    #[error("database schema version {found} is newer than this binary knows ({known}); upgrade it")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("no such workspace: {0}")]
    NoWorkspace(String),
    #[error("workspace {0:?} already exists")]
    WorkspaceExists(String),
    #[error("no such key {0} in this workspace")]
    NoCredential(String),
    #[error("key {0} is the workspace's last: add another before revoking it")]
    LastCredential(String),
    #[error("no such template: {0}")]
    NoTemplate(String),
    #[error("template {0} belongs to another workspace")]
    ForeignTemplate(String),
    #[error("a template named {0:?} already exists")]
    TemplateNameTaken(String),
    #[error("invalid room name: {0}")]
    BadRoomName(String),
    #[error("no such room: {0}")]
    NoRoom(String),
    #[error("another room is named {0:?}")]
    RoomNameTaken(String),
    #[error("no such role: {0}")]
    NoRole(String),
    #[error("no such room code: {0}")]
    NoRoomCode(String),
    #[error("a room has at most {0} room codes")]
    TooManyRoomCodes(usize),
    #[error("no such session: {0}")]
    NoSession(String),
}
