//! WHIP ingest (RFC 9725) and WHEP playback over HTTPS, beside `/init` and `/ws`.
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /whip` (`application/sdp` offer, `Authorization: Bearer <auth token>`, optional `?name=`) | 201, the answer, `Location: /whip/<room>/<peer>` |
//! | `POST /whep` (a receive-only offer, the bearer, optional `?peer=<peer id>`) | 201, the answer, `Location: /whep/<room>/<peer>` |
//! | `PATCH <resource>` (trickled candidates) | 204: the router is ICE-lite and learns the client's addresses from its checks; an ICE restart (a new `a=ice-ufrag`) is 422, as RFC 9725 says for a server with trickle but no restarts |
//! | `DELETE <resource>` | 200: the peer leaves |
//!
//! The auth token is the SDK's (its room, role and user). Refusals: 401 without a valid
//! token, 403 when the role may not publish what is offered (or watch whom it names), 400 for
//! an offer that cannot be answered, 415 for a body that is not `application/sdp`, 404 for a
//! resource that is not the caller's (or is gone), 409 for a WHEP request with nothing to
//! watch, 413 above [`MAX_OFFER`], 429 past the `/init` rate limit. The room side is
//! `crate::room::http_peers`. Any origin may call these (CORS), as a player page is often
//! served elsewhere; the bearer token is the credential.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use tokio::sync::oneshot;
use tracing::info;

use crate::room::{HttpOp, HttpPeerKind, HttpReply, Refusal, RoomMsg};
use crate::server::{App, Authorized, Denied};

/// Largest offer accepted (the same bound as a JSON-RPC message, which carries offers too).
pub const MAX_OFFER: usize = crate::server::MAX_RPC_MESSAGE;

/// How long a request waits for the room to answer (it creates a transport and consumers on
/// the router, milliseconds normally).
const ROOM_TIMEOUT: Duration = Duration::from_secs(20);

/// The WHIP and WHEP routes, merged into [`crate::server::router`].
pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/whip", post(whip).options(preflight))
        .route("/whep", post(whep).options(preflight))
        .route("/whip/{room}/{peer}", resource(HttpPeerKind::Whip))
        .route("/whep/{room}/{peer}", resource(HttpPeerKind::Whep))
        .layer(DefaultBodyLimit::max(MAX_OFFER))
}

fn with_cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Location, Link"));
    r
}

async fn preflight() -> Response {
    // CORS's own Expose-Headers on top, so a page reads Location and Link.
    with_cors(crate::server::preflight("POST, PATCH, DELETE, OPTIONS"))
}

/// A refusal as plain text (WHIP clients log the body) with its status.
fn refused(status: StatusCode, message: &str) -> Response {
    info!(status = status.as_u16(), message, "WHIP/WHEP request refused");
    with_cors((status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response())
}

fn from_denied(d: Denied) -> Response {
    refused(d.status, &d.message)
}

/// The room's refusal as an HTTP one: its code is an HTTP status (anything else is ours, 500).
fn from_refusal(r: Refusal) -> Denied {
    let status = u16::try_from(r.code)
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Denied::new(status, r.message)
}

fn authorize(app: &App, headers: &HeaderMap) -> Result<Authorized, Denied> {
    let token = crate::server::bearer(headers)
        .ok_or_else(|| Denied::new(StatusCode::UNAUTHORIZED, "missing header Authorization: Bearer <auth token>"))?;
    app.authorize(token)
}

/// The offer in the body, which must be `application/sdp` text.
fn offer(headers: &HeaderMap, body: &Bytes) -> Result<String, Denied> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/sdp") {
        return Err(Denied::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the body must be an SDP offer (Content-Type: application/sdp), not {content_type:?}"),
        ));
    }
    String::from_utf8(body.to_vec()).map_err(|_| Denied::new(StatusCode::BAD_REQUEST, "the offer is not UTF-8 text"))
}

/// Hands `op` to the room's actor and waits for its answer.
async fn ask_room(app: &App, auth: &Authorized, op: HttpOp) -> Result<HttpReply, Denied> {
    let room = app.hub.room(&auth.room, &auth.template);
    let (reply, answer) = oneshot::channel();
    let gone = || Denied::new(StatusCode::SERVICE_UNAVAILABLE, "the room is shutting down");
    if room.send(RoomMsg::Http { op, reply }).is_err() {
        return Err(gone());
    }
    match tokio::time::timeout(ROOM_TIMEOUT, answer).await {
        Ok(Ok(result)) => result.map_err(from_refusal),
        Ok(Err(_)) => Err(gone()),
        Err(_) => Err(Denied::new(StatusCode::SERVICE_UNAVAILABLE, "the room did not answer in time")),
    }
}

/// 201 with the answer and the resource's URL, and the TURN servers as `Link` headers
/// (RFC 9725 4.6) with a credential for this client.
fn created(app: &App, kind: &str, room: &str, reply: HttpReply) -> Response {
    let HttpReply::Created { peer_id, sdp } = reply else {
        return refused(StatusCode::INTERNAL_SERVER_ERROR, "the room made no session");
    };
    let mut r = (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/sdp")], sdp).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/{kind}/{room}/{peer_id}")) {
        h.insert(header::LOCATION, v);
    }
    for link in app.ice_server_links(&peer_id) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append(header::LINK, v);
        }
    }
    with_cors(r)
}

#[derive(Debug, Deserialize)]
struct WhipQuery {
    name: Option<String>,
}

async fn whip(State(app): State<Arc<App>>, Query(q): Query<WhipQuery>, headers: HeaderMap, body: Bytes) -> Response {
    let publish = async {
        let auth = authorize(&app, &headers)?;
        let op = HttpOp::Publish {
            user_id: auth.claims.user_id.clone(),
            role: auth.claims.role.clone(),
            name: q.name.unwrap_or_default(),
            offer: offer(&headers, &body)?,
        };
        let reply = ask_room(&app, &auth, op).await?;
        Ok(created(&app, "whip", &auth.room.id, reply))
    };
    publish.await.unwrap_or_else(from_denied)
}

#[derive(Debug, Deserialize)]
struct WhepQuery {
    peer: Option<String>,
}

async fn whep(State(app): State<Arc<App>>, Query(q): Query<WhepQuery>, headers: HeaderMap, body: Bytes) -> Response {
    let play = async {
        let auth = authorize(&app, &headers)?;
        let op = HttpOp::Play {
            user_id: auth.claims.user_id.clone(),
            role: auth.claims.role.clone(),
            source: q.peer.filter(|p| !p.is_empty()),
            offer: offer(&headers, &body)?,
        };
        let reply = ask_room(&app, &auth, op).await?;
        Ok(created(&app, "whep", &auth.room.id, reply))
    };
    play.await.unwrap_or_else(from_denied)
}

/// `PATCH` (with its SDP fragment) or `DELETE` (`None`) of a resource: the token must be for
/// its room and user.
async fn on_resource(
    app: &App,
    headers: &HeaderMap,
    kind: HttpPeerKind,
    room: &str,
    peer: String,
    patch: Option<String>,
) -> Response {
    let act = async {
        let auth = authorize(app, headers)?;
        if auth.room.id != room {
            return Err(Denied::new(StatusCode::NOT_FOUND, "no such session for this token"));
        }
        let user_id = auth.claims.user_id.clone();
        let status = match patch {
            None => {
                ask_room(app, &auth, HttpOp::End { kind, peer_id: peer, user_id }).await?;
                StatusCode::OK
            }
            Some(fragment) => {
                ask_room(app, &auth, HttpOp::Patch { kind, peer_id: peer, user_id, fragment }).await?;
                StatusCode::NO_CONTENT
            }
        };
        Ok(with_cors(status.into_response()))
    };
    act.await.unwrap_or_else(from_denied)
}

/// A session resource's routes: `DELETE` ends it, `PATCH` takes an SDP fragment.
fn resource(kind: HttpPeerKind) -> axum::routing::MethodRouter<Arc<App>> {
    axum::routing::delete(
        move |State(app): State<Arc<App>>, Path((room, peer)): Path<(String, String)>, headers: HeaderMap| async move {
            on_resource(&app, &headers, kind, &room, peer, None).await
        },
    )
    .patch(
        move |State(app): State<Arc<App>>,
              Path((room, peer)): Path<(String, String)>,
              headers: HeaderMap,
              body: Bytes| async move {
            let fragment = String::from_utf8_lossy(&body).into_owned();
            on_resource(&app, &headers, kind, &room, peer, Some(fragment)).await
        },
    )
    .options(preflight)
}
