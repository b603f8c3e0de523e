//! The router as a whole: its shards, the command routing that sends each command to the shard
//! its id names, and the fan-out of every shard's events to subscribers. The JSON-lines control
//! socket (`control_socket.rs`) and the shared-memory link to signaling (`link.rs`) both drive
//! a [`Router`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use serde_json::{Value, json};
use tracing::debug;

use schema::RouterEvent;
use schema::api::{ApiError, Event};
use util::LockExt;

use crate::config::Config;
use crate::io::IoOptions;
use crate::shard::{self, ShardHandle, ShardSpec};
use schema::{RouterCommand, RouterResult};

/// A running router: its shards and where their events go.
#[derive(Debug)]
pub struct Router {
    shards: Vec<ShardHandle>,
    /// TURN over TCP and TLS, when configured.
    turn: Option<crate::turn::Turn>,
    next_shard: AtomicUsize,
    subscribers: Arc<Mutex<Vec<mpsc::Sender<RouterEvent>>>>,
}

impl Router {
    /// Binds every shard's socket and starts the shard threads.
    pub fn start(cfg: &Config) -> std::io::Result<Router> {
        Router::start_with_taps(cfg, Vec::new())
    }

    /// As [`Router::start`], with media tap segments (one ring per shard each): one per reader
    /// (the recorder's, the compositor's).
    pub fn start_with_taps(
        cfg: &Config,
        taps: Vec<(schema::tap::TapReader, shm_queue::Segment)>,
    ) -> std::io::Result<Router> {
        let count = cfg.shard_count().min(255);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let (ev_tx, ev_rx) = mpsc::channel::<(u8, Event)>();
        let mut shards = Vec::with_capacity(count);
        for i in 0..count {
            let port = if cfg.base_port == 0 { 0 } else { cfg.base_port + i as u16 };
            let spec = ShardSpec {
                index: i as u8,
                bind: std::net::SocketAddr::new(cfg.listen_ip, port),
                announce_ips: cfg.announce_ips.clone(),
                ice_tcp: cfg.ice_tcp.then_some(cfg.ice_tcp_max_connections),
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
                taps: taps.clone(),
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
                let mut subs = subs.lock_unpoisoned();
                subs.retain(|s| s.send(event.clone()).is_ok());
            }
        })?;
        let turn = start_turn(cfg, &shards)?;
        Ok(Router { shards, turn, next_shard: AtomicUsize::new(0), subscribers })
    }

    /// TURN's TCP and TLS listeners' addresses, when running.
    pub fn turn(&self) -> Option<&crate::turn::Turn> {
        self.turn.as_ref()
    }

    /// The shards' socket addresses, in shard order.
    pub fn shard_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.shards.iter().map(|s| s.addr).collect()
    }

    /// The candidates shard `i` puts in its transports' infos (empty past the last shard).
    pub fn shard_candidates(&self, i: usize) -> Vec<schema::api::IceCandidate> {
        self.shards.get(i).map(|s| s.candidates.clone()).unwrap_or_default()
    }

    pub fn shard_backends(&self) -> Vec<crate::io::BackendKind> {
        self.shards.iter().map(|s| s.backend).collect()
    }

    /// Runs one command and answers its result as the control socket writes it: the payload
    /// alone, as JSON (`null` for a command without one). For JSON clients and tests; code that
    /// wants the typed result calls [`Router::request`].
    pub fn call(&self, cmd: RouterCommand) -> Result<Value, ApiError> {
        self.request(cmd)?.into_plain_json().map_err(json_error)
    }

    /// Runs one command on the shard it belongs to; its typed result.
    pub fn request(&self, cmd: RouterCommand) -> RouterResult {
        let index = match cmd.shard() {
            Some(i) => i as usize,
            None => self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len(),
        };
        if let RouterCommand::Consume { transport, params } = &cmd
            && transport.shard() != params.producer.shard()
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
            return Err(cmd.target().unknown().unwrap_or_else(|| ApiError::InvalidParams(format!("no shard {index}"))));
        };
        shard.call(cmd)
    }

    /// Every shard's counters with its shell's figures (I/O, latency histogram, CPU time), for
    /// the control channel's `metrics` request: `{"drop_reasons": [...], "shards": [{"shard",
    /// "addr", "backend", "counters": {...}}], "turn": {...}}` (`turn` when TURN runs: its
    /// clients and datagrams, for the whole process). docs/router.md lists the fields.
    pub fn metrics(&self) -> Result<Value, ApiError> {
        let mut shards = Vec::with_capacity(self.shards.len());
        for s in &self.shards {
            let counters =
                s.call(RouterCommand::Counters { shard: Some(s.index) })?.into_plain_json().map_err(json_error)?;
            shards.push(json!({
                "shard": s.index,
                "addr": s.addr.to_string(),
                "backend": s.backend.name(),
                "counters": counters,
            }));
        }
        let turn = self.turn.as_ref().map(|t| t.stats());
        Ok(json!({ "drop_reasons": crate::metrics::DROP_REASONS, "shards": shards, "turn": turn }))
    }

    /// Registers a listener for every shard event.
    pub fn subscribe(&self) -> mpsc::Receiver<RouterEvent> {
        let (tx, rx) = mpsc::channel();
        self.subscribers.lock_unpoisoned().push(tx);
        rx
    }

    /// Stops every shard.
    pub fn shutdown(&mut self) {
        for s in &mut self.shards {
            s.shutdown();
        }
    }
}

/// A reply that would not render as JSON: it cannot happen (every payload is plain data with
/// string keys), but the control channel answers an error rather than panic.
fn json_error(e: serde_json::Error) -> ApiError {
    ApiError::InvalidParams(format!("reply not serializable: {e}"))
}

/// Starts TURN when configured, relaying to the shards' UDP candidates; relayed addresses
/// carry the first announced address of the family the shards are reached at.
fn start_turn(cfg: &Config, shards: &[ShardHandle]) -> std::io::Result<Option<crate::turn::Turn>> {
    let udp = |s: &ShardHandle| -> Vec<std::net::SocketAddr> {
        s.candidates.iter().filter(|c| c.protocol == schema::api::IceProtocol::Udp).map(|c| c.addr).collect()
    };
    let relay_ip = shards
        .first()
        .and_then(|s| udp(s).iter().map(|a| a.ip()).find(std::net::IpAddr::is_ipv4).or(udp(s).first().map(|a| a.ip())))
        .unwrap_or(cfg.listen_ip);
    let Some(opts) = cfg.turn_options(relay_ip).map_err(std::io::Error::other)? else { return Ok(None) };
    let targets = shards.iter().map(|s| crate::turn::ShardTarget { addrs: udp(s), inbox: s.inbox.clone() }).collect();
    crate::turn::start(opts, targets).map(Some)
}
