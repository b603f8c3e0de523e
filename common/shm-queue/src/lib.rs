//! Shared-memory queues between the platform's processes on one host (signaling ↔ router ↔
//! control ↔ recorder).
//!
//! # What it is
//!
//! A [`Segment`] is a memory-mapped file holding one or more single-producer single-consumer
//! rings of variable-length records. One process creates it, the other opens it; each attaches
//! to one side of a ring as a [`Producer`] or a [`Consumer`], or to one end of a two-ring
//! segment as a [`Channel`] (every link is two-way: requests one way, replies the other).
//!
//! - **Where the memory comes from.** Preferably a memfd ([`Segment::create_memfd`]): it has
//!   no name, so nothing is left behind when processes die, and it is handed to a child as an
//!   inherited fd ([`Segment::inheritable_fd`]) or to any process over a Unix socket
//!   ([`send_fd`] / [`recv_fd`]). A named file under /dev/shm ([`Segment::create_named`]) is
//!   there for processes that were not started by us; it is unlinked when its creator drops it,
//!   and [`clean_stale`] removes those of creators that died.
//! - **Records.** `send` copies a record in (or [`Producer::send_with`] lets you encode in
//!   place); the consumer gets each record as one contiguous slice, whole, in order. A record
//!   longer than the ring's maximum (half its capacity by default) is
//!   [`SendError::TooLarge`]. A full ring is [`SendError::Full`]: `send` never blocks and
//!   never overwrites, so the router can drop and count.
//! - **Waking.** A consumer that finds the ring empty spins briefly, then announces it is going
//!   to sleep and waits on a futex in the segment. The producer makes the wake-up syscall only
//!   when the consumer announced sleep, so a busy link costs no syscalls.
//! - **Peers dying.** The ring records each side's pid (and process start time, against pid
//!   reuse). A blocked receiver notices a closed producer at once and a killed one within
//!   [`LIVENESS_CHECK_INTERVAL`], and returns [`RecvError::Disconnected`] once the queued
//!   records are drained; [`Producer::peer_state`] tells a sender the same.
//! - **Trust.** Every index and length read from the segment is checked; a corrupt peer yields
//!   [`RecvError::Corrupt`], never a panic or an out-of-bounds read.
//! - **Long-lived links.** [`Consumer::read_loop`] is the reader thread of a link whose peer
//!   may come and go: records and the peer's arrivals and departures ([`LinkEvent`]) go to one
//!   handler, and waiting and backing off are done for it.
//!
//! # Example
//!
//! ```
//! use shm_queue::{Channel, Config, End, Segment};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The creator (say, control) makes a two-ring segment and takes end A ...
//! let segment = Segment::create_memfd("control-router", Config::channel(1 << 16))?;
//! let mut control = Channel::attach(&segment, End::A)?;
//! // ... and the other process (given the fd, see `inheritable_fd` / `send_fd`) takes end B.
//! let mut router = Channel::attach(&segment, End::B)?;
//!
//! control.send(b"create room 7")?;
//! let mut buf = Vec::new();
//! router.recv_timeout(&mut buf, Duration::from_secs(1))?;
//! assert_eq!(buf, b"create room 7");
//! router.send(b"ok")?;
//! control.recv_timeout(&mut buf, Duration::from_secs(1))?;
//! assert_eq!(buf, b"ok");
//! # Ok(()) }
//! ```
//!
//! # Testing the protocol
//!
//! The index and wake-up protocol (`ring.rs`) is model-checked with loom:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p shm-queue --release --lib loom
//! ```
//!
//! Under `--cfg loom` only the ring core and its model test are compiled. Normal `cargo test`
//! runs the unit tests, a two-thread stress test and a two-process test (`tests/`).

// Under loom only the ring core is built; the endpoint-facing helpers go unused there.
#![cfg_attr(loom, allow(dead_code))]

mod futex;
mod ring;
mod sync;

#[cfg(not(loom))]
mod endpoint;
#[cfg(not(loom))]
mod read_loop;
#[cfg(not(loom))]
mod segment;

#[cfg(not(loom))]
pub use endpoint::{Channel, Consumer, End, LIVENESS_CHECK_INTERVAL, PeerState, Producer};
#[cfg(not(loom))]
pub use read_loop::LinkEvent;
#[cfg(not(loom))]
pub use segment::{
    LAYOUT_VERSION, MAGIC, MAX_CAPACITY, MAX_RINGS, MIN_CAPACITY, SHM_DIR, Segment, clean_stale, recv_fd, send_fd,
};

/// The shape of a new segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Rings in the segment (1 to 16): 1 for a one-way queue, 2 for a [`Channel`].
    pub rings: usize,
    /// Data bytes per ring: a power of two from 64 bytes to 1 GiB.
    pub capacity: usize,
    /// Largest record; `None` for the most the ring allows, `capacity / 2 - 4`.
    pub max_record: Option<usize>,
}

impl Config {
    /// One ring of `capacity` bytes.
    pub fn one_way(capacity: usize) -> Config {
        Config { rings: 1, capacity, max_record: None }
    }

    /// Two rings of `capacity` bytes each, for a [`Channel`].
    pub fn channel(capacity: usize) -> Config {
        Config { rings: 2, capacity, max_record: None }
    }

    /// The same with a smaller record limit.
    pub fn with_max_record(self, max_record: usize) -> Config {
        Config { max_record: Some(max_record), ..self }
    }
}

/// Failures creating, opening or attaching to a segment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("shared-memory {op} failed: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {what} {value}: must be {rule}")]
    BadConfig { what: &'static str, value: usize, rule: &'static str },
    #[error("invalid segment name {0:?}: must be non-empty, without '/', '.' (in prefix and tag) or NUL")]
    BadName(String),
    #[error("segment too small: {len} bytes, its header alone needs {need}")]
    TooSmall { len: u64, need: u64 },
    #[error(
        "not a shm-queue segment: magic {found:#018x}, expected {expected:#018x} (wrong fd or file, or not yet initialized)"
    )]
    BadMagic { found: u64, expected: u64 },
    #[error(
        "segment layout version {found} is not supported: this build speaks version {supported}; run matching builds of both processes"
    )]
    BadVersion { found: u32, supported: u32 },
    #[error("corrupt segment header: {0}")]
    BadLayout(&'static str),
    #[error("ring {ring} does not exist: the segment has {rings} ring(s)")]
    NoSuchRing { ring: usize, rings: usize },
    #[error("the {role} side of ring {ring} is already attached by live process {pid}")]
    AlreadyAttached { ring: usize, role: &'static str, pid: u32 },
}

impl Error {
    pub(crate) fn io(op: &'static str, source: std::io::Error) -> Error {
        Error::Io { op, source }
    }
}

/// Why a record was not sent. Nothing was written in either case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("ring full")]
    Full,
    #[error("record of {len} bytes exceeds the ring's maximum of {max}")]
    TooLarge { len: usize, max: usize },
}

/// Why no record was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    #[error("no record within the timeout")]
    Timeout,
    #[error("the producer closed or died and every queued record has been received")]
    Disconnected,
    #[error("corrupt ring: {0}")]
    Corrupt(&'static str),
}

#[cfg(all(test, not(loom)))]
mod tests;
