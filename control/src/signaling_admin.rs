//! Control's client of signaling's admin socket: how the REST API's active-room routes act on a
//! live room (list its peers, update or remove them, send a message, end the session).
//!
//! The socket (`<data-dir>/signaling-admin.sock`) speaks JSON lines: one request
//! `{"id", "op", ...params}`, one reply `{"id", "ok": {...}}` or
//! `{"id", "error": {"status", "message"}}`. A connection per call keeps this simple; these are
//! rare, human-paced requests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How long a call may take (connect, write, reply).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest reply read.
const MAX_REPLY: usize = 4 << 20;

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("signaling is unavailable: {0}")]
    Unavailable(String),
    #[error("{message}")]
    Refused { status: u16, message: String },
}

/// The client: where the socket is.
#[derive(Debug)]
pub struct AdminClient {
    path: PathBuf,
    next_id: AtomicU64,
}

impl AdminClient {
    pub fn new(path: PathBuf) -> AdminClient {
        AdminClient { path, next_id: AtomicU64::new(1) }
    }

    /// Runs `op` with `params` (a JSON object merged into the request).
    pub async fn call(&self, op: &str, params: Value) -> Result<Value, AdminError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut req = json!({ "id": id, "op": op });
        if let (Value::Object(r), Value::Object(p)) = (&mut req, params) {
            r.extend(p);
        }
        let reply = tokio::time::timeout(CALL_TIMEOUT, self.round_trip(req))
            .await
            .map_err(|_| AdminError::Unavailable("no reply within 5 s".into()))??;
        if let Some(ok) = reply.get("ok") {
            return Ok(ok.clone());
        }
        let err = reply.get("error").cloned().unwrap_or_default();
        Err(AdminError::Refused {
            status: err.get("status").and_then(Value::as_u64).unwrap_or(500) as u16,
            message: err.get("message").and_then(Value::as_str).unwrap_or("signaling refused the request").to_owned(),
        })
    }

    async fn round_trip(&self, req: Value) -> Result<Value, AdminError> {
        let down = |e: std::io::Error| AdminError::Unavailable(format!("{}: {e}", self.path.display()));
        let stream = UnixStream::connect(&self.path).await.map_err(down)?;
        let (read, mut write) = stream.into_split();
        let mut line = req.to_string();
        line.push('\n');
        write.write_all(line.as_bytes()).await.map_err(down)?;
        let mut reader = BufReader::new(read).take(MAX_REPLY as u64);
        let mut reply = String::new();
        reader.read_line(&mut reply).await.map_err(down)?;
        serde_json::from_str(&reply).map_err(|e| AdminError::Unavailable(format!("bad reply: {e}")))
    }
}
