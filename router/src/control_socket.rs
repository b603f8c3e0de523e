//! The router's local control channel: a Unix socket speaking JSON lines. Each request
//! `{"id": 7, "method": "create_transport", "params": {...}}` gets one reply
//! `{"id": 7, "result": ...}` or `{"id": 7, "error": {"code": "...", "message": "..."}}`.
//! A connection that sends `{"method": "subscribe"}` also receives every shard event as
//! `{"shard": 0, "event": {...}}`. Signaling uses the shared-memory link instead (`link.rs`),
//! with the same commands: they are the `schema` crate's [`schema::RouterCommand`], and
//! events are its [`schema::RouterEvent`].
//!
//! `{"id": 1, "method": "metrics"}` answers every shard's counters at once, with what the shard
//! shell measures (I/O totals, the in-router latency histogram, CPU time): what control's
//! `GET /metrics` renders for Prometheus.
//!
//! A request may carry the schema version it was written for, `{"v": 1, "id": ..., ...}`; a
//! version other than [`schema::SCHEMA_VERSION`] is refused with the error code
//! `version_mismatch` and a message saying which side to upgrade. Without `"v"` a request is
//! read as the current version.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tracing::{debug, info, warn};

use schema::frame::{self, FrameError};
use util::LockExt;

use crate::handle::Router;
use schema::RouterCommand;

/// Longest request line accepted on the control channel.
const MAX_LINE: usize = 64 * 1024;

/// Serves the control channel on a Unix socket until the process ends.
pub fn serve(router: Arc<Router>, path: &Path) -> std::io::Result<()> {
    if path.exists() {
        // A socket left by a previous run; a live router on it would still hold the path,
        // so probe first rather than steal it.
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another router is listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    info!(path = %path.display(), "control channel listening");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let router = router.clone();
                std::thread::spawn(move || {
                    if let Err(e) = handle_connection(&router, stream) {
                        debug!(error = %e, "control connection ended");
                    }
                });
            }
            Err(e) => warn!(error = %e, "control accept failed"),
        }
    }
    Ok(())
}

/// Removes the socket file when the router exits.
#[derive(Debug)]
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn handle_connection(router: &Router, stream: UnixStream) -> std::io::Result<()> {
    let writer = Arc::new(Mutex::new(stream.try_clone()?));
    let mut reader = BufReader::new(stream);
    // Bytes, not a String: `read_line` fails on invalid UTF-8 (or on a character cut by the
    // length limit), which ended the connection instead of answering `bad_json`.
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        let reply = if n > MAX_LINE {
            // Drain the rest of the oversized line so the next request starts clean. When the
            // newline already arrived (a line exactly one byte over), there is nothing to drain:
            // draining then would swallow the next request.
            if line.last() != Some(&b'\n') {
                skip_line(&mut reader)?;
            }
            error_reply(Value::Null, "too_large", &format!("request longer than {MAX_LINE} bytes"))
        } else {
            match std::str::from_utf8(&line) {
                Ok(text) => handle_line(router, text.trim(), &writer),
                Err(e) => error_reply(Value::Null, "bad_json", &format!("request is not UTF-8: {e}")),
            }
        };
        if let Some(reply) = reply {
            let mut w = writer.lock_unpoisoned();
            w.write_all(reply.as_bytes())?;
            w.write_all(b"\n")?;
        }
    }
}

/// Discards input up to and including the next newline (or EOF) without buffering it: the
/// rest of an oversized line may be arbitrarily long, so collecting it would let one client
/// grow the router's memory without bound.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let len = buf.len();
                reader.consume(len);
            }
        }
    }
}

fn handle_line(router: &Router, line: &str, writer: &Arc<Mutex<UnixStream>>) -> Option<String> {
    if line.is_empty() {
        return None;
    }
    let request: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return error_reply(Value::Null, "bad_json", &e.to_string()),
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    if let Some(v) = request.get("v")
        && let Err(e) = frame::json_version(Some(v)).and_then(frame::check_version)
    {
        return match e {
            // Worded for the client: "this process" in FrameError's message would be ambiguous.
            FrameError::VersionMismatch { ours, theirs } => error_reply(
                id,
                "version_mismatch",
                &format!(
                    "schema version mismatch: the router speaks v{ours}, the request is v{theirs}; upgrade the {} \
                     (the older side), or send v{ours}",
                    if theirs > ours { "router" } else { "client" }
                ),
            ),
            e => error_reply(id, "bad_request", &e.to_string()),
        };
    }
    if request.get("method").and_then(Value::as_str) == Some("subscribe") {
        let rx = router.subscribe();
        let writer = writer.clone();
        std::thread::spawn(move || {
            for event in rx {
                let line = match serde_json::to_string(&event) {
                    Ok(line) => line,
                    Err(e) => {
                        warn!(error = %e, "event not serializable; dropped");
                        continue;
                    }
                };
                let mut w = writer.lock_unpoisoned();
                if w.write_all(line.as_bytes()).and_then(|_| w.write_all(b"\n")).is_err() {
                    return;
                }
            }
        });
        return Some(json!({ "id": id, "result": null }).to_string());
    }
    if request.get("method").and_then(Value::as_str) == Some("metrics") {
        return Some(match router.metrics() {
            Ok(result) => json!({ "id": id, "result": result }).to_string(),
            Err(e) => return error_reply(id, e.code(), &e.to_string()),
        });
    }
    let mut body = request.clone();
    if let Some(obj) = body.as_object_mut() {
        obj.remove("id");
        obj.remove("v");
        obj.entry("params").or_insert(json!({}));
    }
    let cmd: RouterCommand = match serde_json::from_value(body) {
        Ok(c) => c,
        Err(e) => return error_reply(id, "bad_request", &e.to_string()),
    };
    match router.call(cmd) {
        Ok(result) => Some(json!({ "id": id, "result": result }).to_string()),
        Err(e) => error_reply(id, e.code(), &e.to_string()),
    }
}

fn error_reply(id: Value, code: &str, message: &str) -> Option<String> {
    Some(json!({ "id": id, "error": { "code": code, "message": message } }).to_string())
}
