//! The HTTPS side of control: the REST API under `/v2` ([`rest`], 100ms's server API shape), the
//! demo app at `/` ([`static_files`]) and the demo's small JSON API ([`demo_api`]):
//! `GET /api/config`, `POST /api/token`, `GET /api/status`; and `GET /metrics` for Prometheus
//! ([`metrics`]).
//!
//! Connections are accepted by the listener control shares with signaling ([`serve`], crate
//! `https-server`: rustls, hyper's HTTP/1.1, per-address caps and time limits), running the
//! axum [`router`]. Errors are JSON
//! `{"code": <status>, "message": "..."}` ([`rest::RestError`], [`demo_api::DemoApiError`]), the
//! shape of 100ms's REST errors.

pub mod demo_api;
pub mod headers;
pub mod hls;
pub mod limits;
pub mod metrics;
pub mod rest;
pub mod static_files;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::supervisor::Status;

/// Everything a handler needs.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<Mutex<store::Store>>,
    pub workspace: store::Workspace,
    pub template_id: String,
    /// Role names of the default template, highest priority first.
    pub roles: Vec<String>,
    /// `https://<public-host>:<signaling port>`: what the demo passes the SDK as init endpoint.
    pub init_endpoint: String,
    pub demo_dir: PathBuf,
    /// Where the built Prebuilt app is (`--prebuilt-dir`), served at `/meeting/`.
    pub prebuilt_dir: PathBuf,
    pub status: Status,
    /// Signaling's admin socket, for the active-room routes.
    pub admin: Arc<crate::signaling_admin::AdminClient>,
    /// Track recording jobs (`crate::recording`).
    pub recorder: crate::recording::Recorder,
    /// The router's control socket, for `GET /metrics`.
    pub router_socket: PathBuf,
    /// Control's own counters for `GET /metrics`.
    pub metrics: Arc<metrics::ControlMetrics>,
    /// Whether the demo's `/api/token` and `/api/room-codes` answer: control listens on
    /// loopback, or `--open-demo-tokens` was given ([`demo_api`]).
    pub demo_tokens_open: bool,
    /// Per-client-address rate limits ([`limits`]).
    pub limits: Arc<limits::RateLimits>,
}

/// Role names sorted by priority (1 first), then name.
pub fn roles_by_priority(t: &store::Template) -> Vec<String> {
    let mut roles: Vec<&store::Role> = t.roles.values().collect();
    roles.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.name.cmp(&b.name)));
    roles.into_iter().map(|r| r.name.clone()).collect()
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(demo_api::routes())
        .route("/metrics", get(metrics::serve))
        .route("/hls/{job_id}/{*path}", get(hls::serve))
        .route("/meeting", get(static_files::meeting))
        .route("/meeting/", get(static_files::meeting))
        .route("/meeting/{*rest}", get(static_files::meeting))
        .merge(rest::routes())
        .fallback(static_files::serve)
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::limit))
        .layer(axum::middleware::from_fn(headers::add))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::count_requests))
        .with_state(state)
}

/// Accepts connections on `listener` until `shutdown` turns true (the shared HTTPS listener:
/// TLS, HTTP/1.1, per-address connection caps and time limits).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: https_server::Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    https_server::serve(listener, tls, app, limits, async move { crate::shutting_down(&mut shutdown).await }).await
}
