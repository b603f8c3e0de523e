//! [`Consumer::read_loop`]: the blocking reader thread of a long-lived link, one loop for every
//! process that serves one (the router's end of the signaling link, signaling's end).
//!
//! A link outlives its peers: the process at the other end may be restarted (control
//! supervises it) and re-attach to the same ring. So the loop never ends on a peer's absence:
//! it waits, polling at a slow pace, and reports the change once; a corrupt ring is reported
//! and waited out the same way, for the peer to re-attach and reset it.

use std::ops::ControlFlow;
use std::time::Duration;

use crate::{Consumer, RecvError};

/// How long one wait for a record lasts before the loop waits again. Only bounds how late the
/// loop notices a peer gone quiet; records wake it at once.
const POLL: Duration = Duration::from_secs(1);
/// The pause between two looks at a ring whose producer is gone.
const GONE_BACKOFF: Duration = Duration::from_millis(50);
/// The pause between two looks at a corrupt ring.
const CORRUPT_BACKOFF: Duration = Duration::from_millis(200);

/// What [`Consumer::read_loop`] hands its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent<'a> {
    /// A record, whole.
    Record(&'a [u8]),
    /// A record arrived for the first time since the loop started or since the peer left;
    /// the record itself follows as [`LinkEvent::Record`].
    PeerUp,
    /// The producer closed or died and its queued records were all delivered. Reported once
    /// per absence; `was_up` is false when no record came since the loop started (the peer
    /// may simply not have attached yet).
    PeerGone { was_up: bool },
    /// The ring is corrupt; reported each time the loop looks again (every 200 ms).
    Corrupt(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Peer {
    Unknown,
    Up,
    Gone,
}

impl Consumer {
    /// Receives records until `handle` breaks, riding out the peer's absences: each record
    /// (copied out of the ring, so the slot is free while the handler works) and each change
    /// of the peer go to `handle`. Blocks the calling thread; run it on its own.
    pub fn read_loop<B>(&mut self, mut handle: impl FnMut(LinkEvent<'_>) -> ControlFlow<B>) -> B {
        let mut buf = Vec::new();
        let mut peer = Peer::Unknown;
        loop {
            let event = match self.recv_timeout(&mut buf, POLL) {
                Ok(()) => {
                    if peer != Peer::Up {
                        peer = Peer::Up;
                        if let ControlFlow::Break(b) = handle(LinkEvent::PeerUp) {
                            return b;
                        }
                    }
                    LinkEvent::Record(&buf)
                }
                Err(RecvError::Timeout) => continue,
                Err(RecvError::Disconnected) => {
                    let was = std::mem::replace(&mut peer, Peer::Gone);
                    if was != Peer::Gone
                        && let ControlFlow::Break(b) = handle(LinkEvent::PeerGone { was_up: was == Peer::Up })
                    {
                        return b;
                    }
                    std::thread::sleep(GONE_BACKOFF);
                    continue;
                }
                Err(RecvError::Corrupt(why)) => {
                    if let ControlFlow::Break(b) = handle(LinkEvent::Corrupt(why)) {
                        return b;
                    }
                    std::thread::sleep(CORRUPT_BACKOFF);
                    continue;
                }
            };
            if let ControlFlow::Break(b) = handle(event) {
                return b;
            }
        }
    }
}
