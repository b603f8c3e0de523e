//! The admin socket: how the control daemon acts on live rooms (its REST API's active-room
//! endpoints). A Unix socket speaking JSON lines: one request per line, one reply per line.
//!
//! ```text
//! → {"id":1,"op":"active_room","room_id":"6650f0..."}
//! ← {"id":1,"ok":{"room_id":"6650f0...","room_name":"standup","session_id":"...","started_at_ms":...,"peers":[...]}}
//! → {"id":2,"op":"remove_peers","room_id":"6650f0...","role":"guest","reason":"bye"}
//! ← {"id":2,"ok":{"removed":1}}
//! → {"id":3,"op":"end_room","room_id":"nope","reason":"","lock":false}
//! ← {"id":3,"error":{"status":404,"message":"room is not active"}}
//! ```
//!
//! Ops (`room_id` is the database room id): `active_room`, `update_peer {peer_id, name?, role?,
//! metadata?}`, `metrics` (no room: active rooms, router transports, open and accepted
//! WebSocket connections, for control's `GET /metrics`), `send_message {message, type?, peer_id?, role?}`, `remove_peers {peer_id? |
//! role?, reason?}`, `end_room {reason?, lock?}`, `start_recording {recording_id, tap, reader?}`,
//! `stop_recording {recording_id?}`, `request_keyframe {recording_id, track_id}` (track
//! recording: `room/recording.rs`), `job_state {job: {id, kind, status, created_at,
//! started_at, started_by, error, playback_url, rtmp_urls, recording, hls_vod, playlist_type}}`
//! (a job changed state: the room's peers are told, `room/jobs.rs`). Each becomes a [`RoomMsg::Admin`] to the
//! room's actor, so it is ordered with everything else the room does. Malformed lines,
//! unknown ops and lines over [`MAX_LINE`] get an error reply (status 400); the connection
//! stays.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};
use util::LockExt;

use crate::hub::Hub;
use crate::room::{AdminError, AdminOp, RoomMsg};

/// Longest request line accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// Binds `path` (replacing a stale socket file) and serves it until the process ends.
pub async fn serve(hub: Arc<Hub>, path: &Path) -> std::io::Result<()> {
    let listener = bind(path)?;
    info!(path = %path.display(), "admin socket listening");
    run(hub, listener).await;
    Ok(())
}

/// Binds the socket (removing a file left by a previous process).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    UnixListener::bind(path)
}

/// Accepts connections on a bound listener, each served on its own task.
pub async fn run(hub: Arc<Hub>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(hub.clone(), stream));
            }
            Err(e) => {
                warn!(error = %e, "admin socket accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(hub: Arc<Hub>, mut stream: UnixStream) {
    let mut buf: Vec<u8> = Vec::new();
    // Set while skipping the rest of an oversized line.
    let mut skipping = false;
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if skipping {
                skipping = false;
                continue;
            }
            let line = &line[..line.len() - 1];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let reply = handle_line(&hub, line).await;
            if write_line(&mut stream, &reply).await.is_err() {
                return;
            }
        }
        if buf.len() > MAX_LINE {
            if !skipping {
                let reply = error_reply(&Value::Null, 400, &format!("request line longer than {MAX_LINE} bytes"));
                if write_line(&mut stream, &reply).await.is_err() {
                    return;
                }
            }
            skipping = true;
            buf.clear();
        }
    }
}

async fn write_line(stream: &mut UnixStream, reply: &Value) -> std::io::Result<()> {
    let mut text = reply.to_string();
    text.push('\n');
    stream.write_all(text.as_bytes()).await
}

fn error_reply(id: &Value, status: u16, message: &str) -> Value {
    json!({ "id": id, "error": { "status": status, "message": message } })
}

/// One request line to its reply (`{"id", "ok"}` or `{"id", "error": {status, message}}`).
pub async fn handle_line(hub: &Arc<Hub>, line: &[u8]) -> Value {
    if line.len() > MAX_LINE {
        return error_reply(&Value::Null, 400, &format!("request line longer than {MAX_LINE} bytes"));
    }
    let request: Value = match serde_json::from_slice(line) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return error_reply(&Value::Null, 400, "a request must be a JSON object"),
        Err(e) => return error_reply(&Value::Null, 400, &format!("malformed JSON: {e}")),
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    match handle(hub, &request).await {
        Ok(ok) => json!({ "id": id, "ok": ok }),
        Err(e) => {
            debug!(status = e.status, message = %e.message, "admin request refused");
            error_reply(&id, e.status, &e.message)
        }
    }
}

fn bad(message: impl Into<String>) -> AdminError {
    AdminError::new(400, message)
}

/// A string field: `None` when absent or null, 400 when not a string.
fn opt_str(request: &Value, key: &str) -> Result<Option<String>, AdminError> {
    match request.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("{key} must be a string"))),
    }
}

fn req_str(request: &Value, key: &str) -> Result<String, AdminError> {
    opt_str(request, key)?.ok_or_else(|| bad(format!("missing {key}")))
}

fn parse_op(request: &Value) -> Result<AdminOp, AdminError> {
    let op = req_str(request, "op")?;
    Ok(match op.as_str() {
        "active_room" => AdminOp::ActiveRoom,
        "update_peer" => AdminOp::UpdatePeer {
            peer_id: req_str(request, "peer_id")?,
            name: opt_str(request, "name")?,
            role: opt_str(request, "role")?,
            metadata: opt_str(request, "metadata")?,
        },
        "send_message" => AdminOp::SendMessage {
            message: req_str(request, "message")?,
            kind: opt_str(request, "type")?.unwrap_or_else(|| "chat".into()),
            peer_id: opt_str(request, "peer_id")?,
            role: opt_str(request, "role")?,
        },
        "remove_peers" => {
            let (peer_id, role) = (opt_str(request, "peer_id")?, opt_str(request, "role")?);
            if peer_id.is_none() && role.is_none() {
                return Err(bad("remove_peers needs peer_id or role"));
            }
            AdminOp::RemovePeers { peer_id, role, reason: opt_str(request, "reason")?.unwrap_or_default() }
        }
        "end_room" => AdminOp::EndRoom {
            reason: opt_str(request, "reason")?.unwrap_or_default(),
            lock: match request.get("lock") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(bad("lock must be a boolean")),
            },
        },
        "start_recording" => AdminOp::StartRecording {
            recording_id: req_str(request, "recording_id")?,
            tap: match request.get("tap").and_then(Value::as_u64) {
                Some(t) if t > 0 && t <= u64::from(u32::MAX) => t as u32,
                _ => return Err(bad("tap must be an integer from 1 to 4294967295")),
            },
            reader: match request.get("reader") {
                None | Some(Value::Null) => schema::tap::TapReader::Recorder,
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|_| bad("reader must be \"recorder\" or \"compositor\""))?,
            },
        },
        "stop_recording" => AdminOp::StopRecording { recording_id: opt_str(request, "recording_id")? },
        "request_keyframe" => AdminOp::RequestKeyframe {
            recording_id: req_str(request, "recording_id")?,
            track_id: req_str(request, "track_id")?,
        },
        "job_state" => AdminOp::JobState(match request.get("job") {
            Some(v @ Value::Object(_)) => {
                serde_json::from_value(v.clone()).map_err(|e| bad(format!("job is not a job state: {e}")))?
            }
            _ => return Err(bad("job_state needs a job object")),
        }),
        other => return Err(bad(format!("unknown op '{other}'"))),
    })
}

async fn handle(hub: &Arc<Hub>, request: &Value) -> Result<Value, AdminError> {
    if request.get("op").and_then(Value::as_str) == Some("metrics") {
        return Ok(json!({
            "active_rooms": hub.active_rooms(),
            "transports": hub.transport_count(),
            "open_sockets": hub.open_sockets.load(std::sync::atomic::Ordering::Relaxed),
            "sockets_accepted": hub.sockets_accepted.load(std::sync::atomic::Ordering::Relaxed),
            "join_latency": hub.join_latency.lock_unpoisoned().clone(),
            "join_latency_bounds_us": &schema::histogram::BOUNDS_US[..],
        }));
    }
    let op = parse_op(request)?;
    let room_id = req_str(request, "room_id")?;
    let Some(room) = hub.running_room(&room_id) else {
        return Err(AdminError::new(404, "room is not active"));
    };
    let (reply, answer) = oneshot::channel();
    room.send(RoomMsg::Admin { op, reply }).map_err(|_| AdminError::new(404, "room is not active"))?;
    answer.await.map_err(|_| AdminError::new(404, "room is not active"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_are_parsed_with_their_defaults_and_bad_fields_are_400() {
        let op = parse_op(&json!({"op": "send_message", "message": "hi"})).unwrap();
        assert_eq!(op, AdminOp::SendMessage { message: "hi".into(), kind: "chat".into(), peer_id: None, role: None });
        let op = parse_op(&json!({"op": "end_room"})).unwrap();
        assert_eq!(op, AdminOp::EndRoom { reason: String::new(), lock: false });
        assert_eq!(parse_op(&json!({"op": "teleport"})).unwrap_err().status, 400);
        assert_eq!(parse_op(&json!({"op": "remove_peers"})).unwrap_err().status, 400);
        assert_eq!(parse_op(&json!({"op": "update_peer", "peer_id": 5})).unwrap_err().status, 400);
        assert_eq!(parse_op(&json!({"op": "end_room", "lock": "yes"})).unwrap_err().status, 400);
        assert_eq!(parse_op(&json!({})).unwrap_err().status, 400);
        let op = parse_op(&json!({"op": "request_keyframe", "recording_id": "r", "track_id": "t"})).unwrap();
        assert_eq!(op, AdminOp::RequestKeyframe { recording_id: "r".into(), track_id: "t".into() });
        assert_eq!(parse_op(&json!({"op": "request_keyframe", "recording_id": "r"})).unwrap_err().status, 400);
    }
}
