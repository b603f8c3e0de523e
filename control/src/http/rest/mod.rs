//! The REST API, in the shape of 100ms's server API v2 (`/v2/...`): an app written against
//! `https://api.100ms.live/v2/` works here by changing its base URL.
//!
//! - Every route is one row of [`ROUTES`]: its method, path, summary and handler. The axum router
//!   ([`routes`]) and the OpenAPI document ([`openapi::document`]) are both built from that table,
//!   so a route cannot exist undocumented; a test checks docs/rest-api.md against it too.
//! - Calls carry `Authorization: Bearer <management token>` (HS256, signed with one of the
//!   workspace's secrets, `type: "management"`); the token's workspace scopes everything: another
//!   workspace's objects are 404, as if absent. The room-code exchange (`POST /v2/token`) is the
//!   one unauthenticated route, as with 100ms.
//! - Errors are `{code, message, details: [...]}` with 400 (validation, each bad field a detail
//!   `"<field>: <problem>"`), 401 (token), 404, 409, 503 (signaling down) and 500.
//! - A body is read into a serde struct per route ([`body`]); a field of the wrong type gets the
//!   route's own message, and a route lists every bad field at once.
//! - Lists take `limit` (10 to 100, default 10) and `start` (the previous page's `last`) and
//!   return `{limit, data, last}`.
//! - POST creates and updates; DELETE only removes roles (100ms's verbs).

pub mod active_rooms;
pub mod body;
pub mod external_streams;
pub mod jobs;
pub mod keys;
pub mod layouts;
pub mod live_streams;
pub mod openapi;
pub mod polls;
pub mod recordings;
pub mod rooms;
pub mod sessions;
pub mod templates;
pub mod webhooks;

use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde::Deserialize;
use serde_json::{Value, json};
use store::template::FieldError;
use store::{Page, Store, StoreError, Workspace};
use tracing::warn;
use util::LockExt;

use super::AppState;
pub use body::{Field, Problems, parse_body, parse_request};

/// Largest request body read (a template with many roles stays far below).
pub const MAX_BODY: usize = 1 << 20;

/// A REST error: status, message and details, rendered as 100ms renders them.
#[derive(Debug)]
pub struct RestError {
    pub status: StatusCode,
    pub message: String,
    pub details: Vec<String>,
}

impl RestError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> RestError {
        RestError { status, message: message.into(), details: Vec::new() }
    }
    pub fn bad_request(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// 400 listing each bad field.
    pub fn invalid(errors: Vec<FieldError>) -> RestError {
        RestError {
            status: StatusCode::BAD_REQUEST,
            message: "validation failed".into(),
            details: errors.iter().map(ToString::to_string).collect(),
        }
    }
    pub fn with_detail(mut self, detail: impl Into<String>) -> RestError {
        self.details.push(detail.into());
        self
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = json!({ "code": self.status.as_u16(), "message": self.message, "details": self.details });
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for RestError {
    fn from(e: StoreError) -> RestError {
        match e {
            StoreError::NoRoom(_) => RestError::not_found("room not found"),
            StoreError::NoTemplate(_) | StoreError::ForeignTemplate(_) => RestError::not_found("template not found"),
            StoreError::NoRole(r) => RestError::not_found(format!("role {r:?} not found")),
            StoreError::NoRoomCode(_) => RestError::not_found("room code not found"),
            StoreError::NoSession(_) => RestError::not_found("session not found"),
            StoreError::NoWorkspace(_) => RestError::not_found("workspace not found"),
            StoreError::BadRoomName(m) => RestError::invalid(vec![FieldError::new("name", m)]),
            e @ (StoreError::TemplateNameTaken(_) | StoreError::WorkspaceExists(_)) => {
                RestError::new(StatusCode::CONFLICT, e.to_string())
            }
            e @ StoreError::TooManyRoomCodes(_) => RestError::bad_request(e.to_string()),
            other => {
                warn!("REST: store: {other}");
                RestError::internal("internal error")
            }
        }
    }
}

pub type RestResult<T = Json<Value>> = Result<T, RestError>;

/// A response any origin may read: the routes a browser calls with a peer's credential (a room
/// code, an auth token), from an app served elsewhere. `methods` and `headers` are what its
/// preflight allows.
pub fn any_origin(
    mut r: axum::response::Response,
    methods: &'static str,
    headers: &'static str,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(headers));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    r
}

/// The workspace a request acts on, from its management token.
#[derive(Debug, Clone)]
pub struct Mgmt(pub Workspace);

impl FromRequestParts<AppState> for Mgmt {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Mgmt, RestError> {
        let unauthorized =
            |detail: &str| RestError::new(StatusCode::UNAUTHORIZED, "Token validation error").with_detail(detail);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization header (Bearer <management token>)"))?;
        let value = header.to_str().map_err(|_| unauthorized("Authorization header is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| unauthorized("Authorization must be \"Bearer <management token>\""))?
            .trim();
        let store = st.store.lock_unpoisoned();
        match store::token::verify_management_token(&store, token, SystemTime::now()) {
            Ok(ws) => Ok(Mgmt(ws)),
            Err(store::token::TokenError::Store(e)) => Err(e.into()),
            Err(e) => Err(unauthorized(&e.to_string())),
        }
    }
}

/// Runs `f` on the store off the async threads (SQLite calls block).
pub async fn db<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&Store) -> Result<T, RestError> + Send + 'static,
) -> Result<T, RestError> {
    let store = st.store.clone();
    tokio::task::spawn_blocking(move || {
        let store = store.lock_unpoisoned();
        f(&store)
    })
    .await
    .map_err(|e| RestError::internal(format!("store task: {e}")))?
}

/// `limit` and `start` of a list request.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub start: Option<String>,
}

impl PageQuery {
    pub fn page(&self) -> Result<Page, RestError> {
        let limit = match &self.limit {
            None => Page::DEFAULT_LIMIT,
            Some(l) => {
                l.parse::<u32>().ok().filter(|l| (Page::MIN_LIMIT..=Page::MAX_LIMIT).contains(l)).ok_or_else(|| {
                    RestError::invalid(vec![FieldError::new(
                        "limit",
                        format!("must be a number from {} to {}", Page::MIN_LIMIT, Page::MAX_LIMIT),
                    )])
                })?
            }
        };
        Ok(Page { limit, start: self.start.clone().filter(|s| !s.is_empty()) })
    }
}

/// A query string parsed leniently into a map, so a bad value gets our error shape, not axum's.
pub type QueryMap = Query<std::collections::HashMap<String, String>>;

pub fn page_of(q: &std::collections::HashMap<String, String>) -> Result<Page, RestError> {
    PageQuery { limit: q.get("limit").cloned(), start: q.get("start").cloned() }.page()
}

/// `true`/`false` query values.
pub fn bool_param(q: &std::collections::HashMap<String, String>, key: &str) -> Result<Option<bool>, RestError> {
    match q.get(key).map(String::as_str) {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(RestError::invalid(vec![FieldError::new(key, "must be true or false")])),
    }
}

/// RFC 3339 query values, as milliseconds.
pub fn time_param(q: &std::collections::HashMap<String, String>, key: &str) -> Result<Option<i64>, RestError> {
    match q.get(key).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => store::time::parse_ms(s).map(Some).ok_or_else(|| {
            RestError::invalid(vec![FieldError::new(key, "must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z")])
        }),
    }
}

/// `{limit, data, last}`.
pub fn paginated(limit: u32, data: Vec<Value>, last: Option<String>) -> Json<Value> {
    Json(json!({ "limit": limit, "data": data, "last": last }))
}

/// One documented route.
pub struct Route {
    pub method: &'static str,
    /// axum syntax: `{id}` for a path parameter.
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Whether it needs a management token.
    pub auth: bool,
    pub handler: fn() -> MethodRouter<AppState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

macro_rules! route {
    ($method:literal, $path:literal, $tag:literal, $summary:literal, $handler:path) => {
        route!($method, $path, $tag, $summary, $handler, true)
    };
    ($method:literal, $path:literal, $tag:literal, $summary:literal, $handler:path, $auth:expr) => {
        Route {
            method: $method,
            path: $path,
            tag: $tag,
            summary: $summary,
            auth: $auth,
            handler: || match $method {
                "GET" => axum::routing::get($handler),
                "DELETE" => axum::routing::delete($handler),
                _ => axum::routing::post($handler),
            },
        }
    };
}

/// Every REST route.
pub const ROUTES: &[Route] = &[
    route!(
        "POST",
        "/v2/templates",
        "Templates",
        "Create a template (a name already used overwrites that template)",
        templates::create
    ),
    route!("GET", "/v2/templates", "Templates", "List templates", templates::list),
    route!("GET", "/v2/templates/{template_id}", "Templates", "Retrieve a template", templates::get_one),
    route!("POST", "/v2/templates/{template_id}", "Templates", "Update a template (full replace)", templates::update),
    route!("GET", "/v2/templates/{template_id}/roles/{role}", "Templates", "Retrieve a role", templates::get_role),
    route!(
        "POST",
        "/v2/templates/{template_id}/roles/{role}",
        "Templates",
        "Create or update a role (a new `name` renames it)",
        templates::put_role
    ),
    route!("DELETE", "/v2/templates/{template_id}/roles/{role}", "Templates", "Delete a role", templates::delete_role),
    route!(
        "GET",
        "/v2/templates/{template_id}/settings",
        "Templates",
        "Retrieve the settings",
        templates::get_settings
    ),
    route!(
        "POST",
        "/v2/templates/{template_id}/settings",
        "Templates",
        "Replace the settings",
        templates::set_settings
    ),
    route!(
        "GET",
        "/v2/templates/{template_id}/destinations",
        "Templates",
        "Retrieve the destinations",
        templates::get_destinations
    ),
    route!(
        "POST",
        "/v2/templates/{template_id}/destinations",
        "Templates",
        "Replace the destinations",
        templates::set_destinations
    ),
    route!(
        "GET",
        "/v2/templates/{template_id}/recordings",
        "Templates",
        "Retrieve the recording configs",
        templates::get_recordings
    ),
    route!(
        "POST",
        "/v2/templates/{template_id}/recordings",
        "Templates",
        "Replace the recording configs (at most one)",
        templates::set_recordings
    ),
    route!(
        "GET",
        "/v2/templates/{template_id}/layouts",
        "Layouts",
        "Retrieve the Prebuilt layout of every role",
        layouts::list
    ),
    route!(
        "GET",
        "/v2/templates/{template_id}/layouts/{role}",
        "Layouts",
        "Retrieve a role's Prebuilt layout",
        layouts::get_one
    ),
    route!(
        "POST",
        "/v2/templates/{template_id}/layouts/{role}",
        "Layouts",
        "Replace a role's Prebuilt layout",
        layouts::set
    ),
    route!(
        "DELETE",
        "/v2/templates/{template_id}/layouts/{role}",
        "Layouts",
        "Reset a role's Prebuilt layout to the default",
        layouts::reset
    ),
    route!(
        "GET",
        "/v2/layouts/ui",
        "Layouts",
        "Every role's Prebuilt layout for the auth token's room, its role first (an auth token, not a management token; what Prebuilt calls)",
        layouts::ui,
        false
    ),
    route!(
        "POST",
        "/v2/client/feedback",
        "Layouts",
        "Keep a peer's session feedback (an auth token; the SDK's event endpoint)",
        layouts::feedback,
        false
    ),
    route!("POST", "/v2/polls", "Polls", "Create a poll or quiz", polls::create),
    route!("GET", "/v2/polls/{poll_id}", "Polls", "Retrieve a poll", polls::get_one),
    route!("POST", "/v2/polls/{poll_id}", "Polls", "Rewrite a poll (before any room starts it)", polls::update),
    route!("GET", "/v2/polls/{poll_id}/responses", "Polls", "List a poll's responses", polls::responses),
    route!(
        "GET",
        "/v2/polls/{poll_id}/results",
        "Polls",
        "A poll's counts per question, and a quiz's ranking",
        polls::results
    ),
    route!("POST", "/v2/rooms", "Rooms", "Create a room (or update the room of that name)", rooms::create),
    route!("GET", "/v2/rooms", "Rooms", "List rooms", rooms::list),
    route!("GET", "/v2/rooms/{room_id}", "Rooms", "Retrieve a room", rooms::get_one),
    route!("POST", "/v2/rooms/{room_id}", "Rooms", "Update, enable or disable a room", rooms::update),
    route!(
        "POST",
        "/v2/room-codes/room/{room_id}",
        "Room codes",
        "Create a code for every role of the room",
        rooms::create_codes
    ),
    route!(
        "POST",
        "/v2/room-codes/room/{room_id}/role/{role}",
        "Room codes",
        "Create a code for one role",
        rooms::create_code
    ),
    route!("GET", "/v2/room-codes/room/{room_id}", "Room codes", "List the room's codes", rooms::list_codes),
    route!("POST", "/v2/room-codes/code", "Room codes", "Enable or disable a code", rooms::update_code),
    route!(
        "POST",
        "/v2/token",
        "Room codes",
        "Exchange a room code for an auth token (no management token; what the SDK calls)",
        rooms::exchange_code,
        false
    ),
    route!("POST", "/v2/auth-tokens", "Tokens", "Mint a client auth token for a room and role", rooms::auth_token),
    route!("GET", "/v2/sessions", "Sessions", "List sessions", sessions::list),
    route!("GET", "/v2/sessions/{session_id}", "Sessions", "Retrieve a session with all its peers", sessions::get_one),
    route!(
        "GET",
        "/v2/active-rooms/{room_id}",
        "Active rooms",
        "Whether the room is live, and its current session",
        active_rooms::get_room
    ),
    route!(
        "GET",
        "/v2/active-rooms/{room_id}/peers",
        "Active rooms",
        "List the connected peers",
        active_rooms::list_peers
    ),
    route!(
        "GET",
        "/v2/active-rooms/{room_id}/peers/{peer_id}",
        "Active rooms",
        "Retrieve a connected peer with its tracks",
        active_rooms::get_peer
    ),
    route!(
        "POST",
        "/v2/active-rooms/{room_id}/peers/{peer_id}",
        "Active rooms",
        "Update a peer's name, role or metadata",
        active_rooms::update_peer
    ),
    route!(
        "POST",
        "/v2/active-rooms/{room_id}/send-message",
        "Active rooms",
        "Send a message to everyone, a role or a peer",
        active_rooms::send_message
    ),
    route!(
        "POST",
        "/v2/active-rooms/{room_id}/remove-peers",
        "Active rooms",
        "Remove a peer, or every peer of a role",
        active_rooms::remove_peers
    ),
    route!(
        "POST",
        "/v2/active-rooms/{room_id}/end-room",
        "Active rooms",
        "End the session (lock: also disable the room)",
        active_rooms::end_room
    ),
    route!(
        "POST",
        "/v2/recordings/room/{room_id}/start",
        "Recordings",
        "Start track recording of the room's active session",
        recordings::start
    ),
    route!(
        "POST",
        "/v2/recordings/room/{room_id}/stop",
        "Recordings",
        "Stop every recording running in the room",
        recordings::stop_room
    ),
    route!("POST", "/v2/recordings/{recording_id}/stop", "Recordings", "Stop one recording", recordings::stop_one),
    route!(
        "POST",
        "/v2/recordings/room/{room_id}/pause",
        "Recordings",
        "Pause the room's composite recording",
        recordings::pause
    ),
    route!(
        "POST",
        "/v2/recordings/room/{room_id}/resume",
        "Recordings",
        "Resume the room's composite recording",
        recordings::resume
    ),
    route!("GET", "/v2/recordings", "Recordings", "List recording jobs", recordings::list),
    route!("GET", "/v2/recordings/{recording_id}", "Recordings", "Retrieve a job with its assets", recordings::get_one),
    route!(
        "POST",
        "/v2/live-streams/room/{room_id}/start",
        "Live streams",
        "Start an HLS live stream of the room",
        live_streams::start
    ),
    route!(
        "POST",
        "/v2/live-streams/room/{room_id}/stop",
        "Live streams",
        "Stop the room's live streams",
        live_streams::stop_room
    ),
    route!("POST", "/v2/live-streams/{id}/stop", "Live streams", "Stop one live stream", live_streams::stop_one),
    route!(
        "POST",
        "/v2/live-streams/{id}/timed-metadata",
        "Live streams",
        "Put timed metadata (an EXT-X-DATERANGE) into a live stream",
        live_streams::timed_metadata
    ),
    route!(
        "POST",
        "/v2/live-streams/{id}/pause-recording",
        "Live streams",
        "Pause the live stream's VOD recording (viewers go on watching)",
        live_streams::pause_recording
    ),
    route!(
        "POST",
        "/v2/live-streams/{id}/resume-recording",
        "Live streams",
        "Resume the live stream's VOD recording",
        live_streams::resume_recording
    ),
    route!("GET", "/v2/live-streams", "Live streams", "List live streams", live_streams::list),
    route!(
        "GET",
        "/v2/live-streams/{id}",
        "Live streams",
        "Retrieve a live stream with its assets",
        live_streams::get_one
    ),
    route!(
        "POST",
        "/v2/external-streams/room/{room_id}/start",
        "External streams",
        "Start streaming the room to RTMP URLs",
        external_streams::start
    ),
    route!(
        "POST",
        "/v2/external-streams/room/{room_id}/stop",
        "External streams",
        "Stop the room's external streams",
        external_streams::stop_room
    ),
    route!(
        "POST",
        "/v2/external-streams/{id}/stop",
        "External streams",
        "Stop one external stream",
        external_streams::stop_one
    ),
    route!("GET", "/v2/external-streams", "External streams", "List external streams", external_streams::list),
    route!(
        "GET",
        "/v2/external-streams/{id}",
        "External streams",
        "Retrieve an external stream with its assets",
        external_streams::get_one
    ),
    route!("GET", "/v2/recording-assets", "Recording assets", "List recorded files", recordings::list_assets),
    route!("GET", "/v2/recording-assets/{asset_id}", "Recording assets", "Retrieve one asset", recordings::get_asset),
    route!(
        "GET",
        "/v2/recording-assets/{asset_id}/presigned-url",
        "Recording assets",
        "A short-lived download URL for the file",
        recordings::presigned_url
    ),
    route!(
        "GET",
        "/v2/recording-assets/{asset_id}/download",
        "Recording assets",
        "Download the file (no management token: the presigned URL's signature)",
        recordings::download,
        false
    ),
    route!("GET", "/v2/webhooks", "Webhooks", "The workspace's webhook endpoint", webhooks::get_endpoint),
    route!(
        "POST",
        "/v2/webhooks",
        "Webhooks",
        "Set the workspace's webhook endpoint (url, headers)",
        webhooks::set_endpoint
    ),
    route!("DELETE", "/v2/webhooks", "Webhooks", "Remove the workspace's webhook endpoint", webhooks::delete_endpoint),
    route!(
        "GET",
        "/v2/webhooks/events",
        "Webhooks",
        "List webhook events and their delivery state",
        webhooks::list_events
    ),
    route!("GET", "/v2/workspace/keys", "Workspace", "List the workspace's access keys", keys::list),
    route!("POST", "/v2/workspace/keys", "Workspace", "Add a key pair (its secret is shown once)", keys::add),
    route!(
        "POST",
        "/v2/workspace/keys/{access_key}/revoke",
        "Workspace",
        "Revoke a key pair: its tokens are refused at once",
        keys::revoke
    ),
    route!("GET", "/v2/openapi.json", "Meta", "This API as an OpenAPI 3 document", openapi::serve, false),
];

/// The `/v2` routes, built from [`ROUTES`]; anything else under `/v2` is a JSON 404, and a known
/// path with another method a JSON 405.
pub fn routes() -> Router<AppState> {
    let mut by_path: std::collections::BTreeMap<&str, MethodRouter<AppState>> = Default::default();
    for r in ROUTES {
        let handler = (r.handler)();
        let merged = match by_path.remove(r.path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(r.path, merged);
    }
    let mut router = Router::new();
    for (path, mr) in by_path {
        let mr = match path {
            "/v2/token" => mr.options(rooms::token_preflight),
            "/v2/layouts/ui" | "/v2/client/feedback" => mr.options(layouts::client_preflight),
            _ => mr,
        };
        router = router.route(path, mr.fallback(method_not_allowed));
    }
    router.route("/v2/{*rest}", axum::routing::any(no_such_route))
}

async fn method_not_allowed() -> RestError {
    RestError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this path")
}

async fn no_such_route() -> RestError {
    RestError::not_found("no such API endpoint")
}

/// Unix seconds to RFC 3339.
pub fn ts(secs: i64) -> String {
    store::time::format_secs(secs)
}
