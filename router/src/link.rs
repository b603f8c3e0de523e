//! The router's end of the shared-memory link to signaling.
//!
//! Control creates a two-ring memfd segment ([`shm_queue::Channel`]) and hands its fd to both
//! the router (end B) and signaling (end A). Signaling sends [`schema::Message::RouterCommand`]
//! frames ([`schema::frame`]); the router answers each with a [`schema::Message::RouterReply`]
//! carrying the request id and pushes every shard event as a [`schema::Message::RouterEvent`].
//! These are the same commands as the JSON-lines control socket (`control_socket.rs`).
//!
//! Signaling may die and be restarted while the router runs (control supervises it): the router
//! keeps its transports and keeps forwarding, and serves whichever process attaches to end A
//! next. While nobody is attached, events that do not fit in the ring are dropped and counted,
//! never waited for: the router never blocks on signaling.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{debug, info, warn};

use schema::frame::{self, FrameError};
use schema::{Message, RouterReply};
use shm_queue::{Channel, End, LinkEvent, Producer, Segment, SendError};
use util::LockExt;

use crate::handle::Router;

/// How long a reply may wait for room in a full ring before it is dropped. Replies are small
/// and signaling drains its ring continuously, so a full ring means signaling is stuck or gone.
const REPLY_SEND_PATIENCE: Duration = Duration::from_millis(500);

/// Counters of the link, for logs and tests.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub commands: AtomicU64,
    pub bad_frames: AtomicU64,
    pub events_dropped: AtomicU64,
    pub replies_dropped: AtomicU64,
}

/// Serves the link on `segment` (end B) until the process exits: one thread runs commands,
/// one forwards events.
pub fn serve_link(router: Arc<Router>, segment: Segment) -> Result<Arc<LinkStats>, shm_queue::Error> {
    let (tx, mut rx) = Channel::attach(&segment, End::B)?.split();
    let tx = Arc::new(Mutex::new(tx));
    let stats = Arc::new(LinkStats::default());
    info!("link to signaling attached (shared-memory end B)");

    let events = router.subscribe();
    {
        let tx = tx.clone();
        let stats = stats.clone();
        std::thread::Builder::new()
            .name("link-events".into())
            .spawn(move || {
                let mut buf = Vec::new();
                for event in events {
                    buf.clear();
                    if let Err(e) = frame::encode(&Message::RouterEvent(event), &mut buf) {
                        warn!(error = %e, "event not encodable; dropped");
                        continue;
                    }
                    let mut tx = tx.lock_unpoisoned();
                    if tx.send(&buf).is_err() {
                        let n = stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                        if n.is_power_of_two() {
                            warn!(dropped = n + 1, "link to signaling full: events dropped");
                        }
                    }
                }
            })
            .map_err(|e| shm_queue::Error::Io { op: "spawn link thread", source: e })?;
    }

    let commands_stats = stats.clone();
    std::thread::Builder::new()
        .name("link-commands".into())
        .spawn(move || {
            // Keeps the mapping alive for as long as the threads use it.
            let _segment = segment;
            let stats = commands_stats;
            let mut out = Vec::new();
            rx.read_loop(|event| {
                match event {
                    LinkEvent::Record(record) => {
                        if let Some(reply) = run_command(&router, record, &stats) {
                            out.clear();
                            match frame::encode(&Message::RouterReply(reply), &mut out) {
                                Ok(()) => send_patiently(&tx, &out, &stats),
                                Err(e) => warn!(error = %e, "reply not encodable; dropped"),
                            }
                        }
                    }
                    LinkEvent::PeerUp => info!("signaling connected on the link"),
                    // Not before it ever came: the router usually starts first.
                    LinkEvent::PeerGone { was_up: false } => {}
                    LinkEvent::PeerGone { was_up: true } => {
                        warn!("signaling left the link; media keeps flowing, waiting for it to come back")
                    }
                    LinkEvent::Corrupt(why) => warn!(why, "link ring corrupt; waiting for signaling to re-attach"),
                }
                ControlFlow::<Infallible>::Continue(())
            });
        })
        .map_err(|e| shm_queue::Error::Io { op: "spawn link thread", source: e })?;
    Ok(stats)
}

/// Runs the command a record carries; its reply, or `None` for a record that is not a
/// command (counted and logged).
fn run_command(router: &Router, record: &[u8], stats: &LinkStats) -> Option<RouterReply> {
    match frame::decode(record) {
        Ok(Message::RouterCommand(req)) => {
            stats.commands.fetch_add(1, Ordering::Relaxed);
            debug!(id = req.id, method = req.command.method(), "link command");
            Some(RouterReply { id: req.id, result: router.request(req.command) })
        }
        Ok(other) => {
            stats.bad_frames.fetch_add(1, Ordering::Relaxed);
            warn!(kind = ?other.kind(), "unexpected message on the router link; ignored");
            None
        }
        Err(e) => {
            stats.bad_frames.fetch_add(1, Ordering::Relaxed);
            log_bad_frame(&e);
            None
        }
    }
}

fn log_bad_frame(e: &FrameError) {
    match e {
        FrameError::VersionMismatch { .. } => warn!(error = %e, "signaling speaks another schema version"),
        e => warn!(error = %e, "bad frame on the router link; dropped"),
    }
}

fn send_patiently(tx: &Mutex<Producer>, record: &[u8], stats: &LinkStats) {
    let deadline = std::time::Instant::now() + REPLY_SEND_PATIENCE;
    loop {
        let res = tx.lock_unpoisoned().send(record);
        match res {
            Ok(()) => return,
            Err(SendError::Full) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => {
                stats.replies_dropped.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "reply to signaling dropped");
                return;
            }
        }
    }
}
