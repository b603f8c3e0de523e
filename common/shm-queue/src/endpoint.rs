//! The endpoints: [`Producer`], [`Consumer`] and the two-way [`Channel`], with attachment
//! (one process per side of a ring, recorded in the ring) and peer liveness.

use crate::ring::{ConsumerCore, ProducerCore, Side};
use crate::segment::{Mapping, Segment};
use crate::sync::Ordering;
use crate::{Error, RecvError, SendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a blocked receiver checks that its producer's process still exists. A killed
/// producer is noticed within this long (a clean close wakes the receiver at once).
pub const LIVENESS_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// Spins on an empty ring before sleeping: a record arriving within ~a microsecond is taken
/// without the futex round trip.
const SPIN_BEFORE_SLEEP: u32 = 100;

/// What one side of a ring knows about the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Nobody has attached to the other side yet.
    NotAttached,
    /// Attached, and its process is running.
    Alive,
    /// The other side dropped its endpoint.
    Closed,
    /// The other side's process is gone (killed, crashed) without closing.
    Dead,
}

/// Which end of a two-ring segment a [`Channel`] is: end A sends on ring 0 and receives on
/// ring 1, end B the reverse. By convention the creator takes A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    A,
    B,
}

/// This process's start time in clock ticks since boot (field 22 of /proc/PID/stat).
fn process_start_time(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything; fields resume after the
    // last ')'. Field 3 (state) is the first after it, field 22 (starttime) the 20th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn attach(side: &Side, ring: usize, role: &'static str) -> Result<(), Error> {
    let me = std::process::id();
    let pid = side.pid.load(Ordering::Acquire);
    if pid != 0 && side.closed.load(Ordering::Acquire) == 0 && peer_state(side) == PeerState::Alive {
        return Err(Error::AlreadyAttached { ring, role, pid });
    }
    let start = process_start_time(me).map_or(0, |(_, s)| s);
    side.start_time.store(start, Ordering::Relaxed);
    side.closed.store(0, Ordering::Relaxed);
    // Release: whoever reads our pid sees the start time and the cleared flag.
    side.pid.store(me, Ordering::Release);
    Ok(())
}

/// Liveness of a side, from its flags and /proc. Reads a file: not for the hot path.
fn peer_state(side: &Side) -> PeerState {
    let pid = side.pid.load(Ordering::Acquire);
    if pid == 0 {
        return PeerState::NotAttached;
    }
    if side.closed.load(Ordering::Acquire) != 0 {
        return PeerState::Closed;
    }
    let recorded = side.start_time.load(Ordering::Relaxed);
    match process_start_time(pid) {
        // Zombie (killed, not yet reaped) or dying: its memory writes are over.
        Some(('Z' | 'X', _)) => PeerState::Dead,
        // Same pid, different process: the peer died and the pid was reused.
        Some((_, start)) if recorded != 0 && start != recorded => PeerState::Dead,
        Some(_) => PeerState::Alive,
        // No /proc entry while /proc is mounted: the process is gone.
        None if std::path::Path::new("/proc/self").exists() => PeerState::Dead,
        None => {
            // No /proc here: ask the kernel whether the pid exists (EPERM: it does).
            // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
            let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            if exists { PeerState::Alive } else { PeerState::Dead }
        }
    }
}

fn check_ring(map: &Mapping, ring: usize) -> Result<(), Error> {
    let rings = map.shape().rings;
    if ring >= rings { Err(Error::NoSuchRing { ring, rings }) } else { Ok(()) }
}

/// The sending side of one ring. `send` never blocks and never overwrites: a full ring is
/// [`SendError::Full`], so the caller decides (the router drops and counts).
#[derive(Debug)]
pub struct Producer {
    core: ProducerCore,
    _map: Arc<Mapping>,
}

impl Producer {
    /// Attaches as the producer of ring `ring` (fails if a live process already is).
    pub fn attach(segment: &Segment, ring: usize) -> Result<Producer, Error> {
        check_ring(&segment.map, ring)?;
        let r = segment.map.ring(ring);
        let core = ProducerCore::new(r);
        attach(&core.ctl().producer.side, ring, "producer")?;
        Ok(Producer { core, _map: segment.map.clone() })
    }

    /// Appends one record (a copy of `record`).
    pub fn send(&mut self, record: &[u8]) -> Result<(), SendError> {
        self.core.try_push_with(record.len(), |buf| buf.copy_from_slice(record))
    }

    /// Appends one record of `len` bytes that `fill` writes in place (no intermediate copy:
    /// encode straight into the ring). `fill` gets exactly `len` bytes.
    pub fn send_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), SendError> {
        self.core.try_push_with(len, fill)
    }

    /// The largest record this ring accepts.
    pub fn max_record(&self) -> usize {
        self.core.max_record()
    }

    /// Bytes queued and not yet consumed (frames, including padding).
    pub fn queued_bytes(&self) -> usize {
        self.core.len_bytes() as usize
    }

    /// Whether the consumer has announced it is going to sleep.
    pub fn consumer_sleeping(&self) -> bool {
        self.core.consumer_sleeping()
    }

    /// The consumer's state (reads /proc: call it on a timer or after `Full`, not per send).
    pub fn peer_state(&self) -> PeerState {
        peer_state(&self.core.ctl().consumer.side)
    }

    /// The pid of the last process that attached as consumer (0: none yet). A change means a
    /// new reader, e.g. a restarted one that needs the stream's state again.
    pub fn peer_pid(&self) -> u32 {
        self.core.ctl().consumer.side.pid.load(Ordering::Acquire)
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.core.ctl().producer.side.closed.store(1, Ordering::Release);
        // Unconditional: a consumer between its sleep announcement and the futex sees the
        // bumped word and returns, and one already asleep is woken, to see `closed`.
        self.core.wake();
    }
}

/// The receiving side of one ring.
#[derive(Debug)]
pub struct Consumer {
    core: ConsumerCore,
    _map: Arc<Mapping>,
}

impl Consumer {
    /// Attaches as the consumer of ring `ring` (fails if a live process already is).
    pub fn attach(segment: &Segment, ring: usize) -> Result<Consumer, Error> {
        check_ring(&segment.map, ring)?;
        let core = ConsumerCore::new(segment.map.ring(ring));
        attach(&core.ctl().consumer.side, ring, "consumer")?;
        Ok(Consumer { core, _map: segment.map.clone() })
    }

    /// Takes the next record if there is one, handing it to `f` in place (no copy).
    /// `Ok(None)`: empty. `Err(Disconnected)`: empty and the producer closed its end.
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, RecvError> {
        let closed = self.core.ctl().producer.side.closed.load(Ordering::Acquire) != 0;
        // `closed` is loaded first: it was stored after the producer's last publish, so if we
        // see it, the peek below sees every record there will ever be.
        match self.core.peek()? {
            Some(rec) => {
                let r = f(rec);
                self.core.commit();
                Ok(Some(r))
            }
            None if closed => Err(RecvError::Disconnected),
            None => Ok(None),
        }
    }

    /// Copies the next record into `out` (cleared first; its capacity is reused, so no
    /// allocation once it has grown). `Ok(true)` if a record was taken.
    pub fn try_recv(&mut self, out: &mut Vec<u8>) -> Result<bool, RecvError> {
        self.try_recv_with(|rec| {
            out.clear();
            out.extend_from_slice(rec);
        })
        .map(|r| r.is_some())
    }

    /// Waits up to `timeout` for the next record and hands it to `f` in place.
    /// Records already queued are delivered even after the producer closed or died; then
    /// `Disconnected`. `Timeout` if nothing came.
    pub fn recv_timeout_with<R>(&mut self, timeout: Duration, f: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        self.recv_until(Some(Instant::now() + timeout), f)
    }

    /// As [`Consumer::recv_timeout_with`], copying into `out`.
    pub fn recv_timeout(&mut self, out: &mut Vec<u8>, timeout: Duration) -> Result<(), RecvError> {
        self.recv_timeout_with(timeout, |rec| {
            out.clear();
            out.extend_from_slice(rec);
        })
    }

    /// Blocks until the next record, copying it into `out`, or until the producer is gone
    /// (a producer that has not attached yet is waited for).
    pub fn recv(&mut self, out: &mut Vec<u8>) -> Result<(), RecvError> {
        self.recv_until(None, |rec| {
            out.clear();
            out.extend_from_slice(rec);
        })
    }

    fn recv_until<R>(&mut self, deadline: Option<Instant>, f: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        // Fast path for a busy link: no clock read, no liveness check.
        if let Some(rec) = self.core.peek()? {
            let r = f(rec);
            self.core.commit();
            return Ok(r);
        }
        for _ in 0..SPIN_BEFORE_SLEEP {
            if self.core.has_data() {
                break;
            }
            std::hint::spin_loop();
        }
        let mut last_check = Instant::now();
        loop {
            if self.core.has_data() {
                let r = self.core.peek()?.map(f);
                match r {
                    Some(r) => {
                        self.core.commit();
                        return Ok(r);
                    }
                    // Padding with nothing after it (only a corrupt peer): peek advanced past it.
                    None => return Err(RecvError::Corrupt("padding with no record after it")),
                }
            }
            let now = Instant::now();
            if now.duration_since(last_check) >= LIVENESS_CHECK_INTERVAL
                || self.core.ctl().producer.side.closed.load(Ordering::Acquire) != 0
            {
                last_check = now;
                if matches!(self.peer_state(), PeerState::Closed | PeerState::Dead) && !self.core.has_data() {
                    return Err(RecvError::Disconnected);
                }
            }
            let mut slice = LIVENESS_CHECK_INTERVAL;
            if let Some(deadline) = deadline {
                if now >= deadline {
                    return Err(RecvError::Timeout);
                }
                slice = slice.min(deadline - now);
            }
            self.core.wait(Some(slice));
        }
    }

    /// The producer's state (reads /proc).
    pub fn peer_state(&self) -> PeerState {
        peer_state(&self.core.ctl().producer.side)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.core.ctl().consumer.side.closed.store(1, Ordering::Release);
    }
}

/// A two-way link: a [`Producer`] on one ring and a [`Consumer`] on the other, over a segment
/// of two rings (`Config::channel`). Every link between processes is two-way (commands and
/// replies, events and acknowledgements).
#[derive(Debug)]
pub struct Channel {
    /// Outgoing records.
    pub tx: Producer,
    /// Incoming records.
    pub rx: Consumer,
}

impl Channel {
    /// Attaches as `end` of a two-ring segment.
    pub fn attach(segment: &Segment, end: End) -> Result<Channel, Error> {
        let (tx, rx) = match end {
            End::A => (0, 1),
            End::B => (1, 0),
        };
        if segment.rings() != 2 {
            return Err(Error::NoSuchRing { ring: 1, rings: segment.rings() });
        }
        Ok(Channel { tx: Producer::attach(segment, tx)?, rx: Consumer::attach(segment, rx)? })
    }

    /// See [`Producer::send`].
    pub fn send(&mut self, record: &[u8]) -> Result<(), SendError> {
        self.tx.send(record)
    }

    /// See [`Consumer::try_recv`].
    pub fn try_recv(&mut self, out: &mut Vec<u8>) -> Result<bool, RecvError> {
        self.rx.try_recv(out)
    }

    /// See [`Consumer::recv_timeout`].
    pub fn recv_timeout(&mut self, out: &mut Vec<u8>, timeout: Duration) -> Result<(), RecvError> {
        self.rx.recv_timeout(out, timeout)
    }

    /// The two halves, to use from different threads.
    pub fn split(self) -> (Producer, Consumer) {
        (self.tx, self.rx)
    }
}
