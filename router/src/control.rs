//! The router as a whole (its shards) and its local control channel.
//!
//! The channel is a Unix socket speaking JSON lines: each request
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use serde_json::{Value, json};
use tracing::{debug, info, warn};

use router_engine::{ApiError, Event};
use schema::RouterEvent;
use schema::frame::{self, FrameError};

use crate::config::Config;
use crate::io::IoOptions;
use crate::shard::{self, Command, Reply, ShardHandle, ShardSpec};

/// Longest request line accepted on the control channel.
const MAX_LINE: usize = 64 * 1024;

/// A running router: its shards and where their events go.
#[derive(Debug)]
pub struct Router {
    shards: Vec<ShardHandle>,
    next_shard: AtomicUsize,
    subscribers: Arc<Mutex<Vec<mpsc::Sender<RouterEvent>>>>,
}

impl Router {
    /// Binds every shard's socket and starts the shard threads.
    pub fn start(cfg: &Config) -> std::io::Result<Router> {
        Router::start_with_tap(cfg, None)
    }

    /// As [`Router::start`], with the media tap segment (one ring per shard) to the recorder.
    pub fn start_with_tap(cfg: &Config, tap: Option<shm_queue::Segment>) -> std::io::Result<Router> {
        let count = cfg.shard_count().min(255);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let (ev_tx, ev_rx) = mpsc::channel::<(u8, Event)>();
        let mut shards = Vec::with_capacity(count);
        for i in 0..count {
            let port = if cfg.base_port == 0 { 0 } else { cfg.base_port + i as u16 };
            let spec = ShardSpec {
                index: i as u8,
                bind: std::net::SocketAddr::new(cfg.listen_ip, port),
                announced: cfg.announced_ip,
                pin_core: cfg.pin.then_some(i % cores),
                backend: cfg.backend.into(),
                io: IoOptions {
                    gso: cfg.gso,
                    send_budget: cfg.send_budget,
                    recv_buffer_bytes: cfg.recv_buffer,
                    send_buffer_bytes: cfg.send_buffer,
                    ..IoOptions::default()
                },
                engine: cfg.engine_config(i as u8),
                tap: tap.clone(),
            };
            shards.push(shard::spawn(spec, ev_tx.clone())?);
        }
        let subscribers: Arc<Mutex<Vec<mpsc::Sender<RouterEvent>>>> = Arc::default();
        let subs = subscribers.clone();
        std::thread::Builder::new().name("router-events".into()).spawn(move || {
            for (shard, event) in ev_rx {
                debug!(shard, ?event, "event");
                let event = RouterEvent { shard, event };
                // A poisoned lock means a subscriber thread panicked; keep serving the rest.
                let mut subs = subs.lock().unwrap_or_else(|p| p.into_inner());
                subs.retain(|s| s.send(event.clone()).is_ok());
            }
        })?;
        Ok(Router { shards, next_shard: AtomicUsize::new(0), subscribers })
    }

    /// The shards' socket addresses, in shard order.
    pub fn shard_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.shards.iter().map(|s| s.addr).collect()
    }

    pub fn shard_backends(&self) -> Vec<crate::io::BackendKind> {
        self.shards.iter().map(|s| s.backend).collect()
    }

    /// Runs one command on the shard it belongs to.
    pub fn call(&self, cmd: Command) -> Reply {
        let index = match cmd.shard() {
            Some(i) => i as usize,
            None => self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len(),
        };
        if let Command::Consume { transport, params } = &cmd
            && transport.0 >> 24 != params.producer.0 >> 24
        {
            return Err(ApiError::InvalidParams(format!(
                "producer {} and transport {} are on different shards; place a room's transports on one shard",
                params.producer, transport
            )));
        }
        let Some(shard) = self.shards.get(index) else {
            // An id whose shard byte names no shard of this router (a stale id from a run with
            // more shards, or a made-up one) is an unknown object to signaling, exactly like a
            // stale id on a real shard; only an explicit `shard` parameter is a bad parameter.
            return Err(unknown_object(&cmd).unwrap_or_else(|| ApiError::InvalidParams(format!("no shard {index}"))));
        };
        shard.call(cmd)
    }

    /// Every shard's counters with its shell's figures (I/O, latency histogram, CPU time), for
    /// the control channel's `metrics` request: `{"drop_reasons": [...], "shards": [{"shard",
    /// "addr", "backend", "counters": {...}}]}`. docs/router.md lists the fields.
    pub fn metrics(&self) -> Result<Value, ApiError> {
        let mut shards = Vec::with_capacity(self.shards.len());
        for s in &self.shards {
            let counters = s.call(Command::Counters { shard: Some(s.index) })?;
            shards.push(json!({
                "shard": s.index,
                "addr": s.addr.to_string(),
                "backend": s.backend.name(),
                "counters": counters,
            }));
        }
        Ok(json!({ "drop_reasons": crate::metrics::DROP_REASONS, "shards": shards }))
    }

    /// Registers a listener for every shard event.
    pub fn subscribe(&self) -> mpsc::Receiver<RouterEvent> {
        let (tx, rx) = mpsc::channel();
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }

    /// Stops every shard.
    pub fn shutdown(&mut self) {
        for s in &mut self.shards {
            s.shutdown();
        }
    }
}

/// The "unknown ..." error for the object an id-carrying command names; `None` for commands
/// that pick their shard with an explicit parameter.
fn unknown_object(cmd: &Command) -> Option<ApiError> {
    Some(match *cmd {
        Command::ConnectTransport { transport, .. }
        | Command::Produce { transport, .. }
        | Command::Consume { transport, .. }
        | Command::CloseTransport { transport }
        | Command::SetTransportMaxBitrate { transport, .. }
        | Command::OpenDataChannel { transport, .. }
        | Command::SendData { transport, .. } => ApiError::UnknownTransport(transport),
        Command::PauseProducer { producer, .. }
        | Command::CloseProducer { producer }
        | Command::SetProducerPriority { producer, .. }
        | Command::ProducerStats { producer }
        | Command::StartTap { producer, .. }
        | Command::StopTap { producer } => ApiError::UnknownProducer(producer),
        Command::PauseConsumer { consumer, .. }
        | Command::CloseConsumer { consumer }
        | Command::SetPreferredLayer { consumer, .. }
        | Command::ConsumerLayers { consumer }
        | Command::ConsumerStats { consumer } => ApiError::UnknownConsumer(consumer),
        Command::CreateTransport { .. } | Command::Counters { .. } => return None,
    })
}

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
            let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
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
                let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
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
    let cmd: Command = match serde_json::from_value(body) {
        Ok(c) => c,
        Err(e) => return error_reply(id, "bad_request", &e.to_string()),
    };
    Some(match router.call(cmd) {
        Ok(result) => json!({ "id": id, "result": result }).to_string(),
        Err(e) => return error_reply(id, e.code(), &e.to_string()),
    })
}

fn error_reply(id: Value, code: &str, message: &str) -> Option<String> {
    Some(json!({ "id": id, "error": { "code": code, "message": message } }).to_string())
}
