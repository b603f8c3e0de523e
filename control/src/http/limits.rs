//! Per-client-address rate limits on the HTTPS endpoints that take a secret, so nobody can
//! guess one by trying: the room-code exchange (`POST /v2/token`) and the demo's
//! `/api/room-codes` and `/api/token` are limited per request; the REST API (`/v2/...`) per
//! authentication failure (a 401 or 403 spends one; once they are spent every `/v2` request
//! from that address gets 429 until one is earned back). A refused request gets 429 with
//! `Retry-After` and the usual `{code, message}` body.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::info;
use util::LockExt;
use util::rate_limit::RateLimiter;

use super::AppState;

/// Requests a minute per client address (0: no limit), taken at once or earned back evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Room-code exchanges and demo token/code requests.
    pub room_code_per_minute: u32,
    /// Failed authentications on the REST API.
    pub auth_failures_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { room_code_per_minute: 60, auth_failures_per_minute: 30 }
    }
}

/// The limiters, shared by every connection.
#[derive(Debug)]
pub struct RateLimits {
    room_code: Mutex<RateLimiter<IpAddr>>,
    auth_failures: Mutex<RateLimiter<IpAddr>>,
}

impl RateLimits {
    pub fn new(c: RateLimitConfig) -> RateLimits {
        RateLimits {
            room_code: Mutex::new(RateLimiter::per_minute(c.room_code_per_minute)),
            auth_failures: Mutex::new(RateLimiter::per_minute(c.auth_failures_per_minute)),
        }
    }
}

/// The middleware. Requests without a client address (none in production: [`super::serve`]
/// adds it) pass.
pub async fn limit(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        return next.run(req).await;
    };
    let ip = peer.ip();
    let path = req.uri().path();
    let now = Instant::now();
    let secret_taking =
        matches!(path, "/v2/token" | "/api/token" | "/api/room-codes") && req.method() == axum::http::Method::POST;
    if secret_taking && let Err(wait) = st.limits.room_code.lock_unpoisoned().check(ip, now) {
        return too_many(peer, path, wait.as_secs());
    }
    let rest = path.starts_with("/v2/") && !secret_taking;
    if rest && let Err(wait) = st.limits.auth_failures.lock_unpoisoned().would_allow(&ip, now) {
        return too_many(peer, path, wait.as_secs());
    }
    let response = next.run(req).await;
    if rest && matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        st.limits.auth_failures.lock_unpoisoned().spend(ip, Instant::now());
    }
    response
}

fn too_many(peer: SocketAddr, path: &str, wait_secs: u64) -> Response {
    info!(%peer, path, "rate limited");
    let body = serde_json::json!({
        "code": 429,
        "message": format!("too many requests from {}; retry in {wait_secs} s", peer.ip()),
    });
    let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait_secs));
    r
}
