//! The io_uring backend: one ring per shard.
//!
//! - Receive: one multishot RECVMSG selects buffers from a provided-buffer ring (PBUF_RING, no
//!   incremental consumption: it truncates datagrams). Each completion carries a buffer id; the
//!   buffer holds an `io_uring_recvmsg_out` header, the source sockaddr and the payload. The
//!   buffer goes back into the ring as soon as the caller's closure returns. When a completion
//!   lacks `F_MORE` (e.g. `ENOBUFS` because the ring ran dry) the receive is re-armed before the
//!   next submission.
//! - Wake: a READ of the eventfd, re-armed after each completion; its completion ends a wait.
//! - Send: one SENDMSG per message of the planned batch (a message may be a GSO run), all pushed
//!   and submitted with one `io_uring_enter`; the flush reaps their completions (UDP sends
//!   complete inline unless the socket buffer is full) so the send arrays are free again on
//!   return. Receive completions reaped meanwhile are stashed for the next `recv`.
//! - Wait: `io_uring_enter` with `EXT_ARG` and a timespec, one per loop turn.
//!
//! Memory the kernel touches asynchronously (buffer ring, buffers, the eventfd read target, the
//! receive msghdr) is held through raw pointers and released only after every operation using
//! it has completed (see `Drop`).

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, register::Probe, squeue, types};

use super::sys::{self, MmapRegion};
use super::{IoStats, MAX_DATAGRAM};

/// Buffer group id of the provided-buffer ring (one ring per io_uring, any id works).
const BGID: u16 = 7;
const UD_RECV: u64 = 1;
const UD_WAKE: u64 = 2;
const UD_CANCEL: u64 = 3;
/// Send completions carry this bit plus the message index.
const UD_SEND: u64 = 1 << 32;

/// `struct io_uring_recvmsg_out`: namelen, controllen, payloadlen, flags (4 × u32).
const OUT_HDR: usize = 16;
/// Room for the source address: a sockaddr_in6 covers both families.
const NAME_LEN: usize = mem::size_of::<libc::sockaddr_in6>();
const PAYLOAD_OFF: usize = OUT_HDR + NAME_LEN;
/// What the kernel may fill per buffer: header, name and exactly MAX_DATAGRAM of payload, so
/// both backends truncate at the same size.
const BUF_LEN: usize = PAYLOAD_OFF + MAX_DATAGRAM;
/// Buffer stride, cache-line aligned.
const BUF_STRIDE: usize = BUF_LEN.next_multiple_of(64);
/// Size of one `struct io_uring_buf` ring entry (addr u64, len u32, bid u16, resv/tail u16).
const RING_ENTRY: usize = 16;

/// A completion copied out of the CQ so the ring can be borrowed again while it is handled.
#[derive(Debug, Clone, Copy)]
struct Cqe {
    user_data: u64,
    result: i32,
    flags: u32,
}

/// Checks that the backend can be built here, on a throwaway loopback socket.
pub(crate) fn probe() -> io::Result<()> {
    let sock = sys::udp_socket(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let event = sys::eventfd()?;
    let backend = UringBackend::new(sock.as_raw_fd(), event.as_raw_fd(), 1)?;
    drop(backend); // cancels and drains before the descriptors close
    Ok(())
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The provided-buffer ring: `entries` ring slots in one page-aligned mapping, `entries`
/// buffers of `BUF_STRIDE` bytes in another.
#[derive(Debug)]
struct BufRing {
    ring: MmapRegion,
    data: MmapRegion,
    entries: u16,
    /// Our producer index; published to the kernel by `publish`.
    tail: u16,
}

impl BufRing {
    fn new(entries: u16) -> io::Result<Self> {
        debug_assert!(entries.is_power_of_two());
        let ring = MmapRegion::new(usize::from(entries) * RING_ENTRY)?;
        let data = MmapRegion::new(usize::from(entries) * BUF_STRIDE)?;
        let mut me = Self { ring, data, entries, tail: 0 };
        for bid in 0..entries {
            me.push(bid);
        }
        me.publish();
        Ok(me)
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        let idx = usize::from(bid % self.entries);
        // SAFETY: idx < entries, so the offset stays inside the data mapping.
        unsafe { self.data.as_ptr().add(idx * BUF_STRIDE) }
    }

    /// Puts buffer `bid` at the ring's tail (not yet visible to the kernel).
    fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.entries - 1));
        let addr = self.buf_ptr(bid) as u64;
        // SAFETY: slot < entries, so the entry lies inside the ring mapping (16-byte aligned,
        // page-aligned base). The kernel only reads entries between its head and the published
        // tail; this slot is past the published tail. Fields are written one by one through raw
        // pointers so the tail (the `resv` field of entry 0) is never covered by a reference.
        unsafe {
            let e = self.ring.as_ptr().add(slot * RING_ENTRY);
            e.cast::<u64>().write(addr);
            e.add(8).cast::<u32>().write(BUF_LEN as u32);
            e.add(12).cast::<u16>().write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every pushed buffer visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail is the u16 at offset 14 of entry 0, inside the mapping and 2-aligned;
        // the kernel reads it with acquire semantics, so a release store orders the entries
        // written by `push` before it. It is only accessed atomically.
        let tail = unsafe { AtomicU16::from_ptr(self.ring.as_ptr().add(14).cast::<u16>()) };
        tail.store(self.tail, Ordering::Release);
    }
}

/// Kernel-read memory that must stay put while operations are in flight: the multishot
/// receive's msghdr template and the eventfd read target.
struct Shared {
    recv_msg: libc::msghdr,
    wake_value: u64,
}

pub(crate) struct UringBackend {
    // Dropped first, after `Drop::drop` has drained every operation.
    ring: IoUring,
    sock: RawFd,
    event: RawFd,
    bufs: BufRing,
    shared: NonNull<Shared>,
    registered: bool,
    recv_armed: bool,
    wake_armed: bool,
    /// Sends submitted whose completion has not been reaped (non-zero only inside `send`, or
    /// after it failed part-way; `Drop` waits for them).
    sends_in_flight: usize,
    /// Completions reaped outside `recv` (during a flush), handled by the next `recv`.
    stash: Vec<Cqe>,
}

impl UringBackend {
    pub(crate) fn new(sock: RawFd, event: RawFd, batch: usize) -> io::Result<Self> {
        let nbufs = (batch * 4).clamp(256, 4096).next_power_of_two() as u16;
        let sq = (batch + 8).next_power_of_two().max(64) as u32;
        let cq = (u32::from(nbufs) + sq).next_power_of_two() * 2;
        // COOP_TASKRUN (5.19) avoids interrupting the shard for completions; older kernels
        // refuse the flag, so retry without it. No SINGLE_ISSUER: the UdpIo may be bound on one
        // thread and driven on another.
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_cqsize(cq)
            .build(sq)
            .or_else(|_| IoUring::builder().setup_cqsize(cq).build(sq))
            .map_err(|e| context(e, "io_uring_setup"))?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "io_uring lacks EXT_ARG timeouts (Linux 5.11+)"));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).map_err(|e| context(e, "io_uring register_probe"))?;
        for (code, name) in [
            (opcode::RecvMsg::CODE, "RECVMSG"),
            (opcode::SendMsg::CODE, "SENDMSG"),
            (opcode::Read::CODE, "READ"),
            (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(io::ErrorKind::Unsupported, format!("io_uring opcode {name} unsupported")));
            }
        }
        let bufs = BufRing::new(nbufs)?;
        // SAFETY: msghdr is plain old data; zero is a valid empty header. Only the name and
        // control lengths matter for a multishot receive.
        let mut recv_msg: libc::msghdr = unsafe { mem::zeroed() };
        recv_msg.msg_namelen = NAME_LEN as libc::socklen_t;
        let shared = NonNull::from(Box::leak(Box::new(Shared { recv_msg, wake_value: 0 })));
        let mut me = Self {
            ring,
            sock,
            event,
            bufs,
            shared,
            registered: false,
            recv_armed: false,
            wake_armed: false,
            sends_in_flight: 0,
            stash: Vec::with_capacity(cq as usize),
        };
        // SAFETY: the ring mapping stays alive until `Drop` unregisters it (or leaks it).
        unsafe { me.ring.submitter().register_buf_ring_with_flags(me.bufs.ring.as_ptr() as u64, nbufs, BGID, 0) }
            .map_err(|e| context(e, "io_uring PBUF_RING registration"))?;
        me.registered = true;
        me.rearm();
        me.ring.submit().map_err(|e| context(e, "io_uring submit"))?;
        // A kernel without multishot RECVMSG (before 6.0) fails it at once: catch that here so
        // `Auto` can fall back.
        me.reap(&mut []);
        if let Some(c) = me.stash.iter().find(|c| c.user_data == UD_RECV && c.result < 0) {
            let e = io::Error::from_raw_os_error(-c.result);
            me.recv_armed = cqueue::more(c.flags);
            return Err(context(e, "io_uring multishot RECVMSG"));
        }
        Ok(me)
    }

    /// Pushes one SQE, submitting first if the queue is full.
    ///
    /// # Safety
    /// Every pointer in `entry` must stay valid until the operation's final completion.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: forwarded to the caller.
        if unsafe { self.ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        self.ring.submit()?;
        // SAFETY: as above.
        unsafe { self.ring.submission().push(entry) }.map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    /// Queues the multishot receive and the eventfd read if they are not in flight.
    fn rearm(&mut self) {
        let shared = self.shared.as_ptr();
        if !self.recv_armed {
            // SAFETY: `shared` is a live heap allocation freed only after this operation ends.
            let msg = unsafe { &raw const (*shared).recv_msg };
            let e = opcode::RecvMsgMulti::new(types::Fd(self.sock), msg, BGID).build().user_data(UD_RECV);
            // SAFETY: msg and the registered buffer ring outlive the operation (see Drop).
            self.recv_armed = unsafe { self.push(&e) }.is_ok();
        }
        if !self.wake_armed {
            // SAFETY: as above.
            let target = unsafe { &raw mut (*shared).wake_value };
            let e = opcode::Read::new(types::Fd(self.event), target.cast::<u8>(), 8).build().user_data(UD_WAKE);
            // SAFETY: the 8-byte target outlives the operation (see Drop).
            self.wake_armed = unsafe { self.push(&e) }.is_ok();
        }
    }

    /// Moves every available completion out of the CQ: send results into `send_results`
    /// (indexed by message), everything else into the stash.
    fn reap(&mut self, send_results: &mut [i32]) {
        for e in self.ring.completion() {
            let ud = e.user_data();
            if ud & UD_SEND != 0 {
                if let Some(r) = send_results.get_mut((ud & 0xffff_ffff) as usize) {
                    *r = e.result();
                }
                self.sends_in_flight = self.sends_in_flight.saturating_sub(1);
            } else {
                self.stash.push(Cqe { user_data: ud, result: e.result(), flags: e.flags() });
            }
        }
    }

    pub(crate) fn recv<F>(&mut self, timeout: Option<Duration>, stats: &mut IoStats, f: &mut F) -> io::Result<usize>
    where
        F: FnMut(SocketAddr, &mut [u8]) -> ControlFlow<()>,
    {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.rearm();
            let mut timed_out = false;
            let waited = if !self.stash.is_empty() {
                // Work is already here; just hand the re-arms to the kernel.
                self.ring.submit()
            } else if let Some(d) = deadline {
                let ts = types::Timespec::from(d.saturating_duration_since(Instant::now()));
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            } else {
                self.ring.submit_and_wait(1)
            };
            match waited {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => timed_out = true,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)) => {}
                Err(e) => return Err(context(e, "io_uring_enter")),
            }
            self.reap(&mut []);
            let (n, woken) = self.handle_stash(stats, f)?;
            if n > 0 || woken || timed_out {
                return Ok(n);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(0);
            }
        }
    }

    /// Handles the stashed completions: delivers datagrams, recycles their buffers, notes wakes
    /// and ended multishots. Returns (datagrams delivered, woken).
    fn handle_stash<F>(&mut self, stats: &mut IoStats, f: &mut F) -> io::Result<(usize, bool)>
    where
        F: FnMut(SocketAddr, &mut [u8]) -> ControlFlow<()>,
    {
        let mut delivered = 0;
        let mut woken = false;
        let mut fatal = None;
        // Completions up to here are handled; the rest (after a pass hit the send budget) stay
        // stashed, in order, for the next `recv`.
        let mut handled = self.stash.len();
        for i in 0..self.stash.len() {
            let c = self.stash[i];
            match c.user_data {
                UD_RECV => {
                    if !cqueue::more(c.flags) {
                        self.recv_armed = false;
                    }
                    let bid = cqueue::buffer_select(c.flags);
                    if c.result < 0 {
                        match -c.result {
                            // Ring ran dry or the op was cancelled: re-armed on the next turn.
                            libc::ENOBUFS | libc::ECANCELED | libc::EINTR | libc::EAGAIN => {}
                            libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EFAULT | libc::EOPNOTSUPP => {
                                fatal = Some(io::Error::from_raw_os_error(-c.result));
                            }
                            // ICMP-reported errors and the like: survivable.
                            _ => stats.rx_errors += 1,
                        }
                    } else if let Some(bid) = bid {
                        let used = (c.result as usize).min(BUF_LEN);
                        // SAFETY: this completion hands buffer `bid` to us: the kernel is done
                        // writing it, and it is not back in the ring until the push below, so
                        // nothing else reads or writes it while `buf` lives.
                        let buf = unsafe { std::slice::from_raw_parts_mut(self.bufs.buf_ptr(bid), BUF_LEN) };
                        let flow = deliver(&mut buf[..used], stats, f);
                        delivered += usize::from(flow.is_some());
                        self.bufs.push(bid);
                        if flow.is_some_and(|f| f.is_break()) {
                            handled = i + 1;
                            break;
                        }
                        continue;
                    } else {
                        stats.rx_errors += 1;
                    }
                    if let Some(bid) = bid {
                        self.bufs.push(bid);
                    }
                }
                UD_WAKE => {
                    self.wake_armed = false;
                    woken |= c.result >= 0;
                }
                _ => {} // cancel acknowledgements
            }
        }
        self.stash.drain(..handled);
        self.bufs.publish();
        match fatal {
            Some(e) => Err(context(e, "io_uring multishot RECVMSG")),
            None => Ok((delivered, woken)),
        }
    }

    /// Sends every message in `hdrs` (one SENDMSG each) with one submission and waits for all
    /// their completions; `results[i]` gets bytes sent or `-errno`.
    pub(crate) fn send(&mut self, hdrs: &mut [libc::mmsghdr], results: &mut [i32]) -> io::Result<()> {
        self.rearm();
        let m = hdrs.len();
        let mut pushed = 0;
        let mut wait = 0;
        while pushed < m || self.sends_in_flight > 0 {
            while pushed < m {
                let msg = &raw const hdrs[pushed].msg_hdr;
                let e = opcode::SendMsg::new(types::Fd(self.sock), msg).build().user_data(UD_SEND | pushed as u64);
                // SAFETY: the msghdr and everything it points to (iovecs, send arena, sockaddr,
                // cmsg) belong to the caller's send batch, which is not touched until this
                // function has seen every send completion.
                if unsafe { self.ring.submission().push(&e) }.is_err() {
                    break; // queue full: submit what we have, continue after completions
                }
                pushed += 1;
                self.sends_in_flight += 1;
            }
            match self.ring.submit_and_wait(wait) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)) => {}
                Err(e) => return Err(context(e, "io_uring_enter (send)")),
            }
            self.reap(results);
            wait = 1;
        }
        Ok(())
    }
}

/// Parses one multishot-receive buffer (`io_uring_recvmsg_out`, name, payload) and hands the
/// payload to `f`. Returns what `f` returned, or `None` if no datagram was delivered.
fn deliver<F>(buf: &mut [u8], stats: &mut IoStats, f: &mut F) -> Option<ControlFlow<()>>
where
    F: FnMut(SocketAddr, &mut [u8]) -> ControlFlow<()>,
{
    if buf.len() < PAYLOAD_OFF {
        stats.rx_errors += 1;
        return None;
    }
    let word = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let (namelen, payloadlen, flags) = (word(0) as usize, word(8) as usize, word(12));
    let room = buf.len() - PAYLOAD_OFF;
    if flags & libc::MSG_TRUNC as u32 != 0 || payloadlen > room {
        stats.rx_truncated += 1;
        return None;
    }
    let Some(from) = sys::decode_addr_bytes(&buf[OUT_HDR..OUT_HDR + namelen.min(NAME_LEN)]) else {
        stats.rx_errors += 1;
        return None;
    };
    let payload = &mut buf[PAYLOAD_OFF..PAYLOAD_OFF + payloadlen];
    stats.rx_datagrams += 1;
    stats.rx_bytes += payload.len() as u64;
    Some(f(from, payload))
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        // Cancel the long-lived operations and wait for their final completions, so the kernel
        // never writes into memory we are about to free.
        for (armed, ud) in [(self.recv_armed, UD_RECV), (self.wake_armed, UD_WAKE)] {
            if armed {
                let e = opcode::AsyncCancel::new(ud).build().user_data(UD_CANCEL);
                // SAFETY: a cancel request carries no pointers.
                let _ = unsafe { self.push(&e) };
            }
        }
        for _ in 0..200 {
            if !self.recv_armed && !self.wake_armed && self.sends_in_flight == 0 {
                break;
            }
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap(&mut []);
            for c in self.stash.drain(..) {
                match c.user_data {
                    UD_RECV if !cqueue::more(c.flags) => self.recv_armed = false,
                    UD_WAKE => self.wake_armed = false,
                    _ => {}
                }
            }
        }
        if self.recv_armed || self.wake_armed || self.sends_in_flight > 0 {
            // Should not happen; leaking beats letting the kernel write into freed memory.
            tracing::warn!("io_uring operations still in flight at drop; leaking their buffers");
            self.bufs.ring.leak();
            self.bufs.data.leak();
            return;
        }
        if self.registered {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
        }
        // SAFETY: allocated with Box::leak in `new`; no operation refers to it any more.
        drop(unsafe { Box::from_raw(self.shared.as_ptr()) });
    }
}
