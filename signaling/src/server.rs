//! The HTTP side: `GET /init` (auth token → WebSocket endpoint and client config) and the
//! WebSocket at `/ws` carrying JSON-RPC. Served over HTTPS by the binary; the SDK accepts
//! only an `https://` init endpoint.
//!
//! Authentication happens at `/init` (401/403 there fail the SDK's join at once; a refused
//! WebSocket handshake would make it retry for 60 s) and again on the socket, where a bad
//! token gets an `on-error` push (fatal for the SDK) and a close.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::Json;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{debug, info};
use util::LockExt;
use util::rate_limit::RateLimiter;

use crate::hub::Hub;
use crate::room::{Outbound, RoomMsg};
use crate::rpc::{self, code};

/// Largest WebSocket message read at all; the connection closes (1009) above it.
pub const MAX_WS_MESSAGE: usize = 1 << 20;
/// Largest JSON-RPC message handled; bigger ones (up to [`MAX_WS_MESSAGE`]) get an error
/// response and the connection stays. An SDP offer is a few kilobytes.
pub const MAX_RPC_MESSAGE: usize = 128 * 1024;
/// Longest peer id accepted (the SDK sends a UUID).
const MAX_PEER_ID: usize = 64;

/// What the handlers share.
pub struct App {
    pub hub: Arc<Hub>,
    pub store: Mutex<store::Store>,
    /// `wss://host:port/ws`, as returned by `/init`.
    pub ws_endpoint: String,
    next_conn: AtomicU64,
    /// Per-client-address limits on `/init` and on WebSocket upgrades.
    limits: Mutex<RateLimits>,
    /// The TURN servers `/init` hands out, with credentials minted per client.
    turn: Option<TurnServers>,
}

/// The TURN server the platform runs (the router's, "REST API for TURN" credentials):
/// its URLs and the secret its time-limited credentials are signed with
/// ([`store::token::turn_credential`]).
#[derive(Clone)]
pub struct TurnServers {
    /// `turn:host:port?transport=udp`, `turns:host:port?transport=tcp`, ...
    pub urls: Vec<String>,
    pub secret: String,
    /// How long a credential works: a call longer than this cannot allocate again on an ICE
    /// restart, so it is the session cap.
    pub ttl: std::time::Duration,
}

impl std::fmt::Debug for TurnServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServers").field("urls", &self.urls).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// What an [`App`] runs with besides its hub and store.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    pub limits: RateLimitConfig,
    pub turn: Option<TurnServers>,
}

/// Requests a minute per client address (0: no limit), taken at once or earned back evenly.
/// The defaults let a client join often and a load test ramp up 10 peers a second from one
/// address; past them a client gets 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub init_per_minute: u32,
    pub websocket_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { init_per_minute: 600, websocket_per_minute: 600 }
    }
}

#[derive(Debug)]
struct RateLimits {
    init: RateLimiter<IpAddr>,
    websocket: RateLimiter<IpAddr>,
}

impl RateLimits {
    fn new(c: RateLimitConfig) -> RateLimits {
        RateLimits {
            init: RateLimiter::per_minute(c.init_per_minute),
            websocket: RateLimiter::per_minute(c.websocket_per_minute),
        }
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("ws_endpoint", &self.ws_endpoint).finish_non_exhaustive()
    }
}

impl App {
    pub fn new(hub: Arc<Hub>, store: store::Store, ws_endpoint: String) -> Arc<App> {
        App::with_options(hub, store, ws_endpoint, AppOptions::default())
    }

    pub fn with_options(hub: Arc<Hub>, store: store::Store, ws_endpoint: String, options: AppOptions) -> Arc<App> {
        Arc::new(App {
            hub,
            store: Mutex::new(store),
            ws_endpoint,
            next_conn: AtomicU64::new(1),
            limits: Mutex::new(RateLimits::new(options.limits)),
            turn: options.turn,
        })
    }

    /// The TURN servers as RFC 9725 `Link` headers for one WHIP or WHEP client.
    pub(crate) fn ice_server_links(&self, peer: &str) -> Vec<String> {
        let Some(turn) = &self.turn else { return Vec::new() };
        let c = store::token::turn_credential(&turn.secret, peer, turn.ttl, SystemTime::now());
        let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        turn.urls
            .iter()
            .map(|url| {
                format!(
                    "<{url}>; rel=\"ice-server\"; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quote(&c.username),
                    quote(&c.credential)
                )
            })
            .collect()
    }

    /// `rtcConfiguration.ice_servers` for one client: the TURN servers with a credential of
    /// its own (the SDK hands the list to `RTCPeerConnection` unchanged).
    fn ice_servers(&self, peer: &str) -> serde_json::Value {
        let Some(turn) = &self.turn else { return json!([]) };
        let c = store::token::turn_credential(&turn.secret, peer, turn.ttl, SystemTime::now());
        json!([{ "urls": turn.urls, "username": c.username, "credential": c.credential }])
    }
}

/// An authenticated client: who, in which room, with which role.
#[derive(Debug)]
pub struct Authorized {
    pub claims: store::token::AuthClaims,
    pub room: store::Room,
    pub template: store::Template,
}

/// A refused request: HTTP status and message (the body is `{code, message}` with `code`
/// equal to the status, which every SDK version reads the same way).
#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    pub status: StatusCode,
    pub message: String,
}

impl Denied {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Denied {
        Denied { status, message: message.into() }
    }
}

impl App {
    /// Checks an auth token: signature, time, type, the room (exists, same workspace,
    /// enabled) and the role (in the room's template).
    pub fn authorize(&self, token: &str) -> Result<Authorized, Denied> {
        let store = self.store.lock_unpoisoned();
        let (claims, workspace) = store::token::verify_auth_token(&store, token, SystemTime::now())
            .map_err(|e| Denied::new(StatusCode::UNAUTHORIZED, format!("invalid auth token: {e}")))?;
        let internal = |e: store::StoreError| Denied::new(StatusCode::INTERNAL_SERVER_ERROR, format!("store: {e}"));
        let room = store
            .room(&claims.room_id)
            .map_err(internal)?
            .filter(|r| r.workspace_id == workspace.id)
            .ok_or_else(|| Denied::new(StatusCode::FORBIDDEN, format!("room {} does not exist", claims.room_id)))?;
        if !room.enabled {
            return Err(Denied::new(StatusCode::FORBIDDEN, format!("room {} is disabled", room.name)));
        }
        let template = store.template(&room.template_id).map_err(internal)?.ok_or_else(|| {
            Denied::new(StatusCode::INTERNAL_SERVER_ERROR, format!("room {} has no template", room.name))
        })?;
        if !template.roles.contains_key(&claims.role) {
            return Err(Denied::new(
                StatusCode::FORBIDDEN,
                format!("role '{}' is not in the template of room {}", claims.role, room.name),
            ));
        }
        Ok(Authorized { claims, room, template })
    }
}

/// The routes. Served by `https_server::serve` (which gives each request its client address),
/// requests are rate-limited per client address ([`RateLimitConfig`]).
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/init", get(init).options(init_preflight))
        .route("/ws", get(ws))
        .route("/health", get(|| async { "ok" }))
        .merge(crate::whip::routes())
        .layer(axum::middleware::from_fn_with_state(app.clone(), rate_limit))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(app)
}

/// HSTS (signaling is HTTPS only) and no MIME sniffing on every response.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=63072000"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// 429 with `Retry-After` for a client past its limit on `/init` or `/ws`.
async fn rate_limit(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        return next.run(req).await;
    };
    let verdict = {
        let mut limits = app.limits.lock_unpoisoned();
        let now = Instant::now();
        match req.uri().path() {
            // Starting a WHIP or WHEP session costs what a join does.
            "/init" | "/whip" | "/whep" if req.method() != axum::http::Method::OPTIONS => {
                limits.init.check(peer.ip(), now)
            }
            "/ws" => limits.websocket.check(peer.ip(), now),
            _ => Ok(()),
        }
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            info!(%peer, path = req.uri().path(), "rate limited");
            let mut r = denied(Denied::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many requests from {}; retry in {} s", peer.ip(), wait.as_secs()),
            ));
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs()));
            r
        }
    }
}

fn cors(mut r: Response) -> Response {
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

fn denied(d: Denied) -> Response {
    cors((d.status, Json(json!({ "code": d.status.as_u16(), "message": d.message }))).into_response())
}

async fn init_preflight() -> Response {
    preflight("GET, OPTIONS")
}

/// A CORS preflight's answer for a route called with a bearer token from another origin.
pub(crate) fn preflight(methods: &'static str) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    cors(r)
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim)
}

#[derive(Debug, Deserialize)]
struct InitQuery {
    peer_id: Option<String>,
}

async fn init(State(app): State<Arc<App>>, Query(q): Query<InitQuery>, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else {
        return denied(Denied::new(StatusCode::UNAUTHORIZED, "missing header Authorization: Bearer <auth token>"));
    };
    match app.authorize(token) {
        Ok(auth) => {
            debug!(room = %auth.room.id, user = %auth.claims.user_id, role = %auth.claims.role, "init");
            // The TURN username names the peer (for the TURN server's log); an odd peer id
            // gets the room's id instead.
            let peer = q.peer_id.filter(|p| valid_peer_id(p)).unwrap_or_else(|| auth.room.id.clone());
            cors(
                Json(json!({
                    "endpoint": app.ws_endpoint,
                    "rtcConfiguration": { "ice_servers": app.ice_servers(&peer) },
                    // Required by the SDK. `simulcast`: it publishes the role's simulcast layers
                    // and asks for layers; `subscribeDegradation`: it shows the layer updates
                    // of bandwidth allocation (100MS-PROTOCOL.md §2.3, docs/simulcast.md).
                    "config": { "enabledFlags": ["simulcast", "subscribeDegradation"] },
                }))
                .into_response(),
            )
        }
        Err(d) => {
            info!(status = d.status.as_u16(), message = %d.message, "init refused");
            denied(d)
        }
    }
}

#[derive(Debug, Deserialize)]
struct WsQuery {
    peer: Option<String>,
    token: Option<String>,
}

async fn ws(State(app): State<Arc<App>>, Query(q): Query<WsQuery>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| run_socket(app, socket, q))
}

async fn refuse_socket(mut socket: WebSocket, code_: i64, close: u16, message: String) {
    info!(%message, "socket refused");
    let _ =
        socket.send(Message::Text(rpc::push("on-error", json!({ "code": code_, "message": message })).into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: close,
            reason: message.chars().take(120).collect::<String>().into(),
        })))
        .await;
}

fn valid_peer_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_PEER_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn run_socket(app: Arc<App>, mut socket: WebSocket, q: WsQuery) {
    let _open = app.hub.socket_opened();
    let Some(peer_id) = q.peer.filter(|p| valid_peer_id(p)) else {
        return refuse_socket(socket, code::BAD_REQUEST, 4400, "missing or invalid peer query parameter".into()).await;
    };
    let Some(token) = q.token else {
        return refuse_socket(socket, code::UNAUTHORIZED, 4401, "missing token query parameter".into()).await;
    };
    let auth = match app.authorize(&token) {
        Ok(a) => a,
        Err(d) => return refuse_socket(socket, d.status.as_u16().into(), 4000 + d.status.as_u16(), d.message).await,
    };
    let conn = app.next_conn.fetch_add(1, Ordering::Relaxed);
    let room = app.hub.room(&auth.room, &auth.template);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let attach = RoomMsg::Attach {
        peer_id: peer_id.clone(),
        conn,
        user_id: auth.claims.user_id.clone(),
        role: auth.claims.role.clone(),
        out: out_tx.clone(),
    };
    if room.send(attach).is_err() {
        return refuse_socket(socket, code::INTERNAL, 1011, "room is shutting down".into()).await;
    }
    debug!(peer = %peer_id, room = %auth.room.id, conn, "socket open");
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        let _ = out_tx.send(Outbound::Text(rpc::error_response(&serde_json::Value::Null, code::BAD_REQUEST, "binary messages are not supported; send JSON text")));
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        debug!(peer = %peer_id, error = %e, "socket error");
                        break;
                    }
                };
                if text.len() > MAX_RPC_MESSAGE {
                    let id = rpc::parse_incoming(&text).ok().and_then(|m| match m { rpc::Incoming::Request { id, .. } => Some(id), _ => None }).unwrap_or_default();
                    let _ = out_tx.send(Outbound::Text(rpc::error_response(&id, code::TOO_LARGE, &format!("message of {} bytes exceeds the limit of {MAX_RPC_MESSAGE}", text.len()))));
                    continue;
                }
                match rpc::parse_incoming(&text) {
                    Ok(msg) => {
                        if room.send(RoomMsg::Rpc { peer_id: peer_id.clone(), conn, msg, received: std::time::Instant::now() }).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = out_tx.send(Outbound::Text(rpc::error_response(&serde_json::Value::Null, e.code(), &e.to_string())));
                    }
                }
            }
            out = out_rx.recv() => match out {
                Some(Outbound::Text(t)) => {
                    if socket.send(Message::Text(t.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    break;
                }
                None => break,
            },
        }
    }
    debug!(peer = %peer_id, conn, "socket closed");
    let _ = room.send(RoomMsg::Detach { peer_id, conn });
}
