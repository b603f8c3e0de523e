//! UDP I/O for one router shard: one socket, one thread, batched receive and send, over either
//! io_uring or plain `recvmmsg`/`sendmmsg`.
//!
//! How data flows:
//! - **Receive.** [`UdpIo::recv`] waits (up to a timeout) for datagrams or a [`Waker`] wake, then
//!   calls the closure once per datagram with the source address and a mutable view of the
//!   payload in the backend's own buffer (a provided-buffer ring slot for io_uring, a `recvmmsg`
//!   slot otherwise). SRTP can decrypt in place; the buffer is recycled when the closure returns.
//! - **Send.** The shard asks for [`UdpIo::send_slot`], writes (encrypts) the datagram straight
//!   into it, and [`UdpIo::commit_send`]s it with a destination and length. [`UdpIo::flush`]
//!   then submits the whole batch at once: one `io_uring_enter` or one `sendmmsg`. Runs of
//!   consecutive datagrams to the same destination with equal sizes (the last may be shorter)
//!   go out as one UDP GSO send (`UDP_SEGMENT`), which measured 2–4× cheaper per packet.
//! - **Control.** A [`Waker`] (an eventfd both backends watch) makes a blocked `recv` return early
//!   so the shard can apply control commands between drain cycles.
//!
//! Backend choice: [`BackendChoice::Auto`] takes io_uring when the kernel allows it (setup,
//! opcodes, provided-buffer ring registration and a multishot receive all succeed) and falls
//! back to mmsg otherwise (containers often forbid io_uring). `bind` logs one `info` line naming
//! the backend and why.
//!
//! Send errors (an ICMP-induced `ECONNREFUSED`, an unreachable network, a full buffer that did not
//! drain) are counted in [`IoStats`] and never end the loop. A GSO send the kernel or NIC refuses
//! (`EIO`/`EINVAL`) turns GSO off for the socket and the run is resent datagram by datagram.
//!
//! ```no_run
//! use router::io::{BackendChoice, IoOptions, UdpIo};
//! let mut io = UdpIo::bind("0.0.0.0:3478".parse()?, BackendChoice::Auto, &IoOptions::default())?;
//! loop {
//!     // Echo every datagram straight from the receive buffer into the send batch.
//!     io.recv(Some(std::time::Duration::from_millis(10)), |from, payload, tx| {
//!         tx.send_slot()[..payload.len()].copy_from_slice(payload);
//!         tx.commit_send(from, payload.len());
//!     })?;
//!     io.flush()?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod mmsg;
mod sys;
mod uring;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

pub use sys::{drop_media_datagrams, pin_current_thread, send_batch};

/// Largest datagram either backend receives whole (bigger ones are dropped and counted as
/// truncated) and the size of every send slot. WebRTC stays below the path MTU, ~1200 bytes.
pub const MAX_DATAGRAM: usize = 2048;

/// Linux's `UDP_MAX_SEGMENTS` (newer kernels allow 128; 64 works everywhere GSO exists).
const MAX_GSO_SEGMENTS: usize = 64;
/// A GSO super-datagram must fit one IP packet: 65 535 minus IP and UDP headers, with margin.
const MAX_GSO_BYTES: usize = 65_000;
/// Segments above this would exceed a 1500-byte MTU (IPv6 + UDP headers), which the kernel
/// rejects for GSO; such datagrams go out one by one instead of disabling GSO for everyone.
const MAX_GSO_SEGMENT: usize = 1452;

/// The backend a [`UdpIo`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// One io_uring per shard: multishot RECVMSG into a provided-buffer ring, SENDMSG batches.
    Uring,
    /// `recvmmsg` after `ppoll`, `sendmmsg` with `UDP_SEGMENT` control messages.
    Mmsg,
}

impl BackendKind {
    /// A short name for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Uring => "io_uring",
            BackendKind::Mmsg => "mmsg",
        }
    }
}

/// Which backend [`UdpIo::bind`] should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// io_uring if the kernel allows it, otherwise mmsg.
    #[default]
    Auto,
    /// io_uring or an error.
    Uring,
    /// recvmmsg/sendmmsg.
    Mmsg,
}

/// Socket and batching options for [`UdpIo::bind`].
#[derive(Debug, Clone)]
pub struct IoOptions {
    /// Send slots per flush and `recvmmsg` batch size (1..=1024). Receive buffers for io_uring
    /// are `max(256, 4 × batch)` rounded up to a power of two.
    pub batch: usize,
    /// `SO_RCVBUF(FORCE)` request in bytes; 0 keeps the kernel default.
    pub recv_buffer_bytes: usize,
    /// `SO_SNDBUF(FORCE)` request in bytes; 0 keeps the kernel default.
    pub send_buffer_bytes: usize,
    /// Coalesce equal-size runs into UDP GSO sends when the kernel supports it.
    pub gso: bool,
    /// Sends a receive pass may queue before it stops taking datagrams (the rest stay in the
    /// backend for the next pass), so the flush that follows is bounded. Without it, one pass
    /// over a full buffer ring at fan-out 100 queued 25 600 sends: the first packet waited for
    /// all of them (milliseconds) and the sends past the batch's hard bound were dropped.
    pub send_budget: usize,
}

impl Default for IoOptions {
    fn default() -> Self {
        Self { batch: 64, recv_buffer_bytes: 4 << 20, send_buffer_bytes: 4 << 20, gso: true, send_budget: 8 }
    }
}

/// Running totals since bind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IoStats {
    /// Datagrams handed to the `recv` closure.
    pub rx_datagrams: u64,
    /// Payload bytes handed to the `recv` closure.
    pub rx_bytes: u64,
    /// Datagrams larger than [`MAX_DATAGRAM`], dropped.
    pub rx_truncated: u64,
    /// Receive errors that were survived (ICMP errors, unparsable source address, ...).
    pub rx_errors: u64,
    /// Datagrams the kernel accepted for sending.
    pub tx_datagrams: u64,
    /// Payload bytes the kernel accepted for sending.
    pub tx_bytes: u64,
    /// Datagrams that failed to send (counted, dropped).
    pub tx_errors: u64,
    /// Sends handed to the kernel (one per datagram, or one per GSO run).
    pub tx_messages: u64,
    /// Sends that carried more than one datagram as a GSO run.
    pub tx_gso_batches: u64,
}

/// What one [`UdpIo::flush`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Sends handed to the kernel (a GSO run counts once).
    pub messages: usize,
    /// Datagrams the kernel accepted.
    pub datagrams: usize,
    /// Sends that carried a GSO run of two or more datagrams.
    pub gso_batches: usize,
    /// Datagrams that failed (also added to [`IoStats::tx_errors`]).
    pub errors: usize,
}

/// Wakes the shard's blocked [`UdpIo::recv`] from any thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    /// Makes the current or next blocking `recv` return (possibly with 0 datagrams). Wakes
    /// coalesce: several before the shard looks count as one.
    pub fn wake(&self) {
        // The only failure is EAGAIN when the counter is saturated, i.e. a wake is already
        // pending, which is exactly what the caller wants.
        let _ = sys::eventfd_signal(&self.fd);
    }
}

/// Enum dispatch over the two backends: no vtable on the hot path.
// One per shard and never moved on the hot path; boxing the large variant would only add a
// pointer chase to every call.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Uring(uring::UringBackend),
    Mmsg(mmsg::MmsgBackend),
}

/// A shard's UDP socket with batched, zero-extra-copy receive and send. See the module docs.
pub struct UdpIo {
    // Field order is drop order: the io_uring backend cancels and drains its in-flight
    // operations before the send batch, socket and eventfd they point at are released.
    backend: Backend,
    send: SendBatch,
    sock: OwnedFd,
    event: Arc<OwnedFd>,
    local: SocketAddr,
    gso: bool,
    send_budget: usize,
    stats: IoStats,
}

// SAFETY: the raw pointers inside (msghdr/iovec arrays, mmap'd buffer ring, io_uring's shared
// rings) all point into allocations this value owns, which move with it; the kernel objects
// (socket, eventfd, a ring set up without SINGLE_ISSUER) may be used from any thread. `UdpIo`
// stays !Sync: one shard thread drives it.
unsafe impl Send for UdpIo {}

impl fmt::Debug for UdpIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpIo")
            .field("kind", &self.kind())
            .field("local", &self.local)
            .field("fd", &self.sock.as_raw_fd())
            .field("gso", &self.gso)
            .field("pending_sends", &self.send.pending.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Whether io_uring with everything this module needs works here (ring setup, opcodes,
/// provided-buffer ring, a multishot receive on a loopback socket). The error says what failed.
pub fn probe_uring() -> io::Result<()> {
    uring::probe()
}

impl UdpIo {
    /// Binds a UDP socket on `addr` and sets up the chosen backend. Logs one `info` line with the
    /// backend and the reason it was chosen.
    pub fn bind(addr: SocketAddr, choice: BackendChoice, opts: &IoOptions) -> io::Result<UdpIo> {
        let batch = opts.batch.clamp(1, 1024);
        let sock = sys::udp_socket(addr)?;
        let (rcvbuf, sndbuf) = sys::set_buffer_sizes(&sock, opts.recv_buffer_bytes, opts.send_buffer_bytes);
        let local = sys::local_addr(&sock)?;
        let event = Arc::new(sys::eventfd()?);
        let gso = opts.gso && sys::gso_supported(&sock);
        let (sfd, efd) = (sock.as_raw_fd(), event.as_raw_fd());
        let mmsg = |sock: &OwnedFd| -> io::Result<Backend> {
            sys::set_nonblocking(sock)?;
            Ok(Backend::Mmsg(mmsg::MmsgBackend::new(sfd, efd, batch)))
        };
        let (backend, reason) = match choice {
            BackendChoice::Uring => {
                (Backend::Uring(uring::UringBackend::new(sfd, efd, batch)?), "requested".to_owned())
            }
            BackendChoice::Mmsg => (mmsg(&sock)?, "requested".to_owned()),
            BackendChoice::Auto => match uring::UringBackend::new(sfd, efd, batch) {
                Ok(b) => (Backend::Uring(b), "auto: io_uring probe passed".to_owned()),
                Err(e) => (mmsg(&sock)?, format!("auto: io_uring unavailable ({e})")),
            },
        };
        let io = UdpIo {
            backend,
            send: SendBatch::new(batch, local.is_ipv6()),
            sock,
            event,
            local,
            gso,
            send_budget: opts.send_budget.clamp(1, MAX_SEND_BATCH / 2),
            stats: IoStats::default(),
        };
        tracing::info!(
            backend = io.kind().name(),
            %local,
            gso,
            batch,
            rcvbuf,
            sndbuf,
            %reason,
            "shard UDP socket ready"
        );
        Ok(io)
    }

    /// The backend in use.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Uring(_) => BackendKind::Uring,
            Backend::Mmsg(_) => BackendKind::Mmsg,
        }
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether flushes currently coalesce runs into GSO sends.
    pub fn gso_enabled(&self) -> bool {
        self.gso
    }

    /// A handle that wakes this socket's blocked `recv` from another thread.
    pub fn waker(&self) -> Waker {
        Waker { fd: Arc::clone(&self.event) }
    }

    /// Totals since bind.
    pub fn stats(&self) -> IoStats {
        self.stats
    }

    /// Waits up to `timeout` (`None` = forever) for at least one datagram or a wake, then calls
    /// `f(source, payload)` for every datagram of this batch and returns how many there were.
    /// Returns `Ok(0)` on timeout or wake. `f` may modify the payload in place; it must not keep
    /// it. Survivable socket errors are counted, not returned; an `Err` means the socket or ring
    /// is unusable.
    ///
    /// `f` also gets the send half, so a reply or a forwarded packet is written straight into
    /// the send batch while the received datagram is still in its receive buffer. During a
    /// receive the batch grows instead of flushing (up to [`MAX_SEND_BATCH`] datagrams; past
    /// that, sends are dropped and counted); [`flush`](Self::flush) submits it afterwards.
    pub fn recv<F>(&mut self, timeout: Option<Duration>, mut f: F) -> io::Result<usize>
    where
        F: FnMut(SocketAddr, &mut [u8], &mut Sender<'_>),
    {
        let UdpIo { backend, send, stats, send_budget, .. } = self;
        let budget = *send_budget;
        let mut tx_errors = 0u64;
        let n = {
            let mut deliver = |src: SocketAddr, buf: &mut [u8]| {
                let mut sender = Sender { batch: send, errors: &mut tx_errors };
                f(src, buf, &mut sender);
                if send.pending.len() >= budget { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            };
            match backend {
                Backend::Uring(b) => b.recv(timeout, stats, &mut deliver),
                Backend::Mmsg(b) => b.recv(timeout, stats, &mut deliver),
            }
        };
        stats.tx_errors += tx_errors;
        n
    }

    /// The send half on its own, for sends outside a receive (timers, commands). It grows the
    /// batch like the one `recv` hands out; `flush` submits it.
    pub fn sender(&mut self) -> Sender<'_> {
        Sender { batch: &mut self.send, errors: &mut self.stats.tx_errors }
    }

    /// The slot for the next outgoing datagram ([`MAX_DATAGRAM`] bytes). Write the datagram at
    /// its start, then [`commit_send`](Self::commit_send) it; an uncommitted slot is reused.
    /// When every slot of the batch is committed, this flushes first.
    pub fn send_slot(&mut self) -> &mut [u8] {
        if self.send.is_full() {
            // Errors are already counted in the stats; the slot must be handed out regardless.
            if let Err(e) = self.flush() {
                tracing::debug!(error = %e, "implicit flush failed");
            }
        }
        self.send.next_slot()
    }

    /// Queues the datagram written into the current [`send_slot`](Self::send_slot) for `dst`.
    /// A length above [`MAX_DATAGRAM`], a destination of the wrong family or a commit without a
    /// free slot is counted as a send error and dropped.
    pub fn commit_send(&mut self, dst: SocketAddr, len: usize) {
        if !self.send.commit(dst, len) {
            self.stats.tx_errors += 1;
            tracing::trace!(%dst, len, "send dropped at commit");
        }
    }

    /// Submits every committed send at once and waits for the kernel to accept them (it does so
    /// inline unless the send buffer is full). Per-datagram failures are counted, not returned.
    pub fn flush(&mut self) -> io::Result<FlushStats> {
        let mut fs = FlushStats::default();
        if self.send.pending.is_empty() {
            return Ok(fs);
        }
        let mut result = self.flush_pass(false, &mut fs);
        if matches!(result, Ok(true)) {
            // GSO was refused: resend the refused runs datagram by datagram.
            result = self.flush_pass(true, &mut fs);
        }
        self.send.pending.clear();
        self.stats.tx_messages += fs.messages as u64;
        self.stats.tx_datagrams += fs.datagrams as u64;
        self.stats.tx_gso_batches += fs.gso_batches as u64;
        self.stats.tx_errors += fs.errors as u64;
        result.map(|_| fs)
    }

    /// One submission of the planned messages. Returns whether a GSO run was refused and
    /// marked for an individual resend.
    fn flush_pass(&mut self, retry_pass: bool, fs: &mut FlushStats) -> io::Result<bool> {
        let m = self.send.plan(self.gso && !retry_pass, retry_pass);
        if m == 0 {
            return Ok(false);
        }
        let (hdrs, results) = self.send.kernel_view(m);
        let sent = match &mut self.backend {
            Backend::Uring(b) => b.send(hdrs, results),
            Backend::Mmsg(b) => b.send(hdrs, results),
        };
        if let Err(e) = sent {
            fs.errors += self.send.runs[..m].iter().map(|r| r.count).sum::<usize>();
            return Err(e);
        }
        let mut gso_refused = false;
        for i in 0..m {
            let run = self.send.runs[i];
            let res = self.send.results[i];
            if res >= 0 {
                fs.messages += 1;
                fs.datagrams += run.count;
                fs.gso_batches += usize::from(run.count > 1);
                self.stats.tx_bytes += res as u64;
            } else if run.count > 1 && (res == -libc::EIO || res == -libc::EINVAL) {
                gso_refused = true;
                for p in &mut self.send.pending[run.first..run.first + run.count] {
                    p.retry = true;
                }
            } else {
                fs.errors += run.count;
                let dst = self.send.pending[run.first].dst;
                tracing::trace!(%dst, errno = -res, datagrams = run.count, "send failed");
            }
        }
        if gso_refused {
            self.gso = false;
            tracing::warn!(local = %self.local, "UDP GSO send refused; GSO off for this socket");
        }
        Ok(gso_refused)
    }
}

/// One committed datagram of the send batch.
#[derive(Debug, Clone, Copy)]
struct Pending {
    dst: SocketAddr,
    len: usize,
    addr_len: libc::socklen_t,
    /// Part of a refused GSO run; resend on its own.
    retry: bool,
}

/// One kernel send: `count` consecutive pending datagrams starting at `first`.
#[derive(Debug, Clone, Copy)]
struct Run {
    first: usize,
    count: usize,
}

/// Room for one `UDP_SEGMENT` control message (`CMSG_SPACE(2)` = 24 on 64-bit Linux).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; 32]);

/// Most datagrams one send batch holds between two flushes (32 MiB of slots at most).
pub const MAX_SEND_BATCH: usize = 16 * 1024;

/// The send half of a [`UdpIo`]: slots of the send batch to write datagrams into.
pub struct Sender<'a> {
    batch: &'a mut SendBatch,
    errors: &'a mut u64,
}

impl std::fmt::Debug for Sender<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("pending", &self.batch.pending.len()).finish()
    }
}

impl Sender<'_> {
    /// The slot for the next outgoing datagram ([`MAX_DATAGRAM`] bytes).
    pub fn send_slot(&mut self) -> &mut [u8] {
        if self.batch.is_full() && !self.batch.grow() {
            // Past the hard bound: hand out the overflow slot; its commit is refused below.
            return &mut self.batch.overflow[..];
        }
        self.batch.next_slot()
    }

    /// Queues the datagram written into the current slot for `dst`; a datagram that does not
    /// fit the batch is dropped and counted as a send error.
    pub fn commit_send(&mut self, dst: SocketAddr, len: usize) {
        if !self.batch.commit(dst, len) {
            *self.errors += 1;
            tracing::trace!(%dst, len, "send dropped at commit");
        }
    }
}

/// The send arena and the kernel-facing arrays describing it. The vectors only change size in
/// [`SendBatch::grow`], between flushes: the msghdrs take their pointers at flush time, and the
/// kernel only reads them during [`UdpIo::flush`], which waits for every send to complete.
struct SendBatch {
    cap: usize,
    /// Where writes go once the batch is at [`MAX_SEND_BATCH`]; never sent.
    overflow: Box<[u8]>,
    v6_socket: bool,
    arena: Vec<u8>,
    pending: Vec<Pending>,
    /// Destination of each pending datagram, encoded at commit time.
    addrs: Vec<libc::sockaddr_storage>,
    /// One iovec per pending datagram; a GSO run's msghdr spans several consecutive ones.
    iovs: Vec<libc::iovec>,
    /// One per message.
    cmsgs: Vec<CmsgBuf>,
    hdrs: Vec<libc::mmsghdr>,
    runs: Vec<Run>,
    /// Per message: bytes sent or `-errno`.
    results: Vec<i32>,
}

impl SendBatch {
    fn new(cap: usize, v6_socket: bool) -> Self {
        let empty_iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        Self {
            cap,
            overflow: vec![0; MAX_DATAGRAM].into_boxed_slice(),
            v6_socket,
            arena: vec![0; cap * MAX_DATAGRAM],
            pending: Vec::with_capacity(cap),
            addrs: vec![sys::zeroed_storage(); cap],
            iovs: vec![empty_iov; cap],
            cmsgs: vec![CmsgBuf([0; 32]); cap],
            hdrs: Vec::with_capacity(cap),
            runs: Vec::with_capacity(cap),
            results: vec![0; cap],
        }
    }

    fn is_full(&self) -> bool {
        self.pending.len() >= self.cap
    }

    /// Doubles the batch, up to [`MAX_SEND_BATCH`]. Safe between flushes only: `plan` takes
    /// the arena's pointers at flush time, and a flush returns only when the kernel is done
    /// with them, so moving the arena here leaves nothing dangling.
    fn grow(&mut self) -> bool {
        if self.cap >= MAX_SEND_BATCH {
            return false;
        }
        let cap = (self.cap * 2).min(MAX_SEND_BATCH);
        let empty_iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        self.arena.resize(cap * MAX_DATAGRAM, 0);
        self.addrs.resize(cap, sys::zeroed_storage());
        self.iovs.resize(cap, empty_iov);
        self.cmsgs.resize(cap, CmsgBuf([0; 32]));
        self.results.resize(cap, 0);
        self.pending.reserve(cap - self.pending.len());
        self.hdrs.reserve(cap.saturating_sub(self.hdrs.len()));
        self.runs.reserve(cap.saturating_sub(self.runs.len()));
        self.cap = cap;
        true
    }

    fn next_slot(&mut self) -> &mut [u8] {
        // `send_slot` flushed if full, so `i < cap` and the slot lies inside the arena.
        let i = self.pending.len().min(self.cap - 1);
        &mut self.arena[i * MAX_DATAGRAM..(i + 1) * MAX_DATAGRAM]
    }

    fn commit(&mut self, dst: SocketAddr, len: usize) -> bool {
        let i = self.pending.len();
        if i >= self.cap || len > MAX_DATAGRAM {
            return false;
        }
        let Some(addr_len) = sys::encode_addr(dst, self.v6_socket, &mut self.addrs[i]) else {
            return false;
        };
        self.pending.push(Pending { dst, len, addr_len, retry: false });
        true
    }

    /// Groups the pending datagrams into kernel messages and fills `hdrs[..m]`; returns `m`.
    /// On the retry pass only datagrams marked `retry` are planned, one message each.
    fn plan(&mut self, gso: bool, retry_pass: bool) -> usize {
        self.runs.clear();
        self.hdrs.clear();
        let base = self.arena.as_mut_ptr();
        let n = self.pending.len();
        let mut i = 0;
        while i < n {
            if retry_pass && !self.pending[i].retry {
                i += 1;
                continue;
            }
            let count = if gso { self.gso_run_len(i) } else { 1 };
            for k in i..i + count {
                // SAFETY: k < pending.len() <= cap, so the slot lies inside the arena.
                let slot = unsafe { base.add(k * MAX_DATAGRAM) };
                self.iovs[k] = libc::iovec { iov_base: slot.cast(), iov_len: self.pending[k].len };
            }
            let m = self.runs.len();
            // SAFETY: msghdr is plain old data; all-zero is a valid empty header. Built field by
            // field because its padding differs between libcs.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = (&raw mut self.addrs[i]).cast();
            hdr.msg_namelen = self.pending[i].addr_len;
            hdr.msg_iov = &raw mut self.iovs[i];
            hdr.msg_iovlen = count as _;
            if count > 1 {
                set_gso_cmsg(&mut hdr, &mut self.cmsgs[m], self.pending[i].len as u16);
            }
            self.hdrs.push(libc::mmsghdr { msg_hdr: hdr, msg_len: 0 });
            self.runs.push(Run { first: i, count });
            i += count;
        }
        self.runs.len()
    }

    /// How many datagrams from `first` on can share one GSO send: same destination, same size
    /// as the first, except that a shorter one may end the run; within the kernel's limits.
    fn gso_run_len(&self, first: usize) -> usize {
        let p0 = self.pending[first];
        let seg = p0.len;
        if seg == 0 || seg > MAX_GSO_SEGMENT {
            return 1;
        }
        let mut count = 1;
        let mut total = seg;
        while let Some(p) = self.pending.get(first + count) {
            if count == MAX_GSO_SEGMENTS
                || p.dst != p0.dst
                || p.len == 0
                || p.len > seg
                || total + p.len > MAX_GSO_BYTES
            {
                break;
            }
            total += p.len;
            count += 1;
            if p.len < seg {
                break;
            }
        }
        count
    }

    /// The planned headers and the result slots the backend fills, for `m` messages.
    fn kernel_view(&mut self, m: usize) -> (&mut [libc::mmsghdr], &mut [i32]) {
        (&mut self.hdrs[..m], &mut self.results[..m])
    }
}

/// Attaches a `UDP_SEGMENT` control message with segment size `seg` to `hdr`, stored in `buf`.
fn set_gso_cmsg(hdr: &mut libc::msghdr, buf: &mut CmsgBuf, seg: u16) {
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic on the argument.
    let (space, len) = unsafe { (libc::CMSG_SPACE(size_of::<u16>() as u32), libc::CMSG_LEN(size_of::<u16>() as u32)) };
    debug_assert!(space as usize <= size_of::<CmsgBuf>());
    hdr.msg_control = buf.0.as_mut_ptr().cast();
    hdr.msg_controllen = space as _;
    // SAFETY: msg_control points at `buf`, 8-aligned and at least CMSG_SPACE(2) bytes, so
    // CMSG_FIRSTHDR returns a non-null, aligned cmsghdr inside it and CMSG_DATA has room for
    // the u16 payload.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = len as _;
        libc::CMSG_DATA(cmsg).cast::<u16>().write_unaligned(seg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_with(sends: &[(&str, usize)]) -> SendBatch {
        let mut b = SendBatch::new(64, false);
        for (dst, len) in sends {
            assert!(b.commit(dst.parse().expect("test literal"), *len));
        }
        b
    }

    fn runs(b: &mut SendBatch, gso: bool) -> Vec<usize> {
        let m = b.plan(gso, false);
        b.runs[..m].iter().map(|r| r.count).collect()
    }

    #[test]
    fn equal_sizes_to_one_destination_form_one_gso_run_with_a_shorter_tail() {
        let a = "10.0.0.1:1";
        let mut b = batch_with(&[(a, 1200), (a, 1200), (a, 1200), (a, 700), (a, 1200)]);
        assert_eq!(runs(&mut b, true), vec![4, 1]);
        // The GSO message spans four iovecs and carries the segment size.
        let hdr = &b.hdrs[0].msg_hdr;
        assert_eq!(hdr.msg_iovlen, 4);
        assert!(!hdr.msg_control.is_null());
        assert_eq!(runs(&mut b, false), vec![1, 1, 1, 1, 1]);
    }

    #[test]
    fn runs_break_on_destination_change_larger_size_and_kernel_limits() {
        let (a, c) = ("10.0.0.1:1", "10.0.0.2:1");
        let mut b = batch_with(&[(a, 100), (a, 100), (c, 100), (c, 200), (c, 200), (a, 0), (a, 0)]);
        assert_eq!(runs(&mut b, true), vec![2, 1, 2, 1, 1]);

        let many: Vec<(&str, usize)> = vec![(a, 1200); 64];
        let mut b = batch_with(&many);
        // 54 × 1200 = 64 800 bytes is the most that fits MAX_GSO_BYTES.
        assert_eq!(runs(&mut b, true), vec![54, 10]);

        let big: Vec<(&str, usize)> = vec![(a, 1500); 3];
        let mut b = batch_with(&big);
        assert_eq!(runs(&mut b, true), vec![1, 1, 1]);
    }

    #[test]
    fn commit_rejects_oversize_wrong_family_and_overflow() {
        let mut b = SendBatch::new(2, false);
        assert!(!b.commit("1.2.3.4:5".parse().expect("lit"), MAX_DATAGRAM + 1));
        assert!(!b.commit("[2001:db8::1]:5".parse().expect("lit"), 10));
        assert!(b.commit("1.2.3.4:5".parse().expect("lit"), 10));
        assert!(b.commit("1.2.3.4:5".parse().expect("lit"), 10));
        assert!(!b.commit("1.2.3.4:5".parse().expect("lit"), 10));
    }

    #[test]
    fn retry_pass_plans_only_marked_datagrams_one_by_one() {
        let a = "10.0.0.1:1";
        let mut b = batch_with(&[(a, 100), (a, 100), (a, 100)]);
        b.pending[1].retry = true;
        b.pending[2].retry = true;
        let m = b.plan(false, true);
        assert_eq!(m, 2);
        assert_eq!((b.runs[0].first, b.runs[1].first), (1, 2));
    }
}
