//! The portable backend: `recvmmsg`/`sendmmsg` on a non-blocking socket, `ppoll` for waiting.
//!
//! - Receive: try `recvmmsg(MSG_DONTWAIT)` first (under load the data is already there and the
//!   poll would be a wasted syscall); only when it would block, `ppoll` the socket and the
//!   waker's eventfd with the remaining timeout, then try again.
//! - Send: one `sendmmsg` over the planned messages (GSO runs carry a `UDP_SEGMENT` cmsg). A
//!   failing message is recorded and skipped, and the call resumes after it, so one bad
//!   destination never blocks the rest. A full socket buffer waits briefly for `POLLOUT`.

use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::sys;
use super::{IoStats, MAX_DATAGRAM};

/// How long a flush waits for a full send buffer to drain before dropping the rest.
const SEND_STALL: Duration = Duration::from_millis(100);

pub(crate) struct MmsgBackend {
    sock: RawFd,
    event: RawFd,
    batch: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Messages the last `recvmmsg` filled, and the first not yet delivered: a pass that hit
    /// the send budget leaves the rest here for the next one.
    filled: usize,
    next: usize,
}

impl MmsgBackend {
    pub(crate) fn new(sock: RawFd, event: RawFd, batch: usize) -> Self {
        let empty_iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
        let empty_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Self {
            sock,
            event,
            batch,
            bufs: vec![0; batch * MAX_DATAGRAM],
            addrs: vec![sys::zeroed_storage(); batch],
            iovs: vec![empty_iov; batch],
            hdrs: vec![empty_hdr; batch],
            filled: 0,
            next: 0,
        }
    }

    /// Points every receive header at its buffer and address slot again (the kernel rewrites
    /// the name length and flags on each call).
    fn reset_headers(&mut self) {
        let base = self.bufs.as_mut_ptr();
        for i in 0..self.batch {
            // SAFETY: i < batch, so the slot lies inside `bufs`.
            let slot = unsafe { base.add(i * MAX_DATAGRAM) };
            self.iovs[i] = libc::iovec { iov_base: slot.cast(), iov_len: MAX_DATAGRAM };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&raw mut self.addrs[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &raw mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
    }

    /// One non-blocking `recvmmsg`: the number of messages, or the errno.
    fn recvmmsg(&mut self) -> Result<usize, i32> {
        self.reset_headers();
        // SAFETY: `hdrs[..batch]` are valid headers pointing into `bufs`, `addrs` and `iovs`,
        // all live and sized as declared; the kernel writes only within them.
        let n = unsafe {
            libc::recvmmsg(
                self.sock,
                self.hdrs.as_mut_ptr(),
                self.batch as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 { Err(sys::last_errno()) } else { Ok(n as usize) }
    }

    pub(crate) fn recv<F>(&mut self, timeout: Option<Duration>, stats: &mut IoStats, f: &mut F) -> io::Result<usize>
    where
        F: FnMut(SocketAddr, &mut [u8]) -> ControlFlow<()>,
    {
        // Datagrams a previous pass left (it hit the send budget) go first, without a syscall.
        if self.next < self.filled {
            let delivered = self.deliver(stats, f);
            if delivered > 0 {
                return Ok(delivered);
            }
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut woken = false;
        loop {
            match self.recvmmsg() {
                Ok(n) => {
                    (self.filled, self.next) = (n.min(self.batch), 0);
                    let delivered = self.deliver(stats, f);
                    if delivered > 0 {
                        return Ok(delivered);
                    }
                    // Everything was truncated or unparsable: keep waiting.
                    continue;
                }
                Err(libc::EAGAIN) => {}
                Err(libc::EINTR) => continue,
                Err(e @ (libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EFAULT)) => {
                    return Err(io::Error::from_raw_os_error(e));
                }
                // A pending socket error (ICMP unreachable and friends) is reported once and
                // cleared: count it and read on.
                Err(_) => {
                    stats.rx_errors += 1;
                    continue;
                }
            }
            if woken {
                return Ok(0);
            }
            let remaining = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(0);
                    }
                    Some(d - now)
                }
                None => None,
            };
            let mut fds = [
                libc::pollfd { fd: self.sock, events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: self.event, events: libc::POLLIN, revents: 0 },
            ];
            match poll(&mut fds, remaining) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
            if fds[1].revents & libc::POLLIN != 0 {
                let event = self.event;
                drain_eventfd(event);
                woken = true;
            }
            // Loop: the socket is readable (or errored), or we were woken and check once more
            // for data before returning.
        }
    }

    /// Hands the received messages not yet delivered to `f`, until `f` says stop; returns how
    /// many were delivered.
    fn deliver<F>(&mut self, stats: &mut IoStats, f: &mut F) -> usize
    where
        F: FnMut(SocketAddr, &mut [u8]) -> ControlFlow<()>,
    {
        let mut delivered = 0;
        while self.next < self.filled {
            let i = self.next;
            self.next += 1;
            let hdr = &self.hdrs[i];
            if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                stats.rx_truncated += 1;
                continue;
            }
            let Some(from) = sys::decode_addr(&self.addrs[i], hdr.msg_hdr.msg_namelen as usize) else {
                stats.rx_errors += 1;
                continue;
            };
            let len = (hdr.msg_len as usize).min(MAX_DATAGRAM);
            let payload = &mut self.bufs[i * MAX_DATAGRAM..i * MAX_DATAGRAM + len];
            stats.rx_datagrams += 1;
            stats.rx_bytes += len as u64;
            delivered += 1;
            if f(from, payload).is_break() {
                break;
            }
        }
        delivered
    }

    /// Sends every message in `hdrs`; `results[i]` gets bytes sent or `-errno`.
    pub(crate) fn send(&mut self, hdrs: &mut [libc::mmsghdr], results: &mut [i32]) -> io::Result<()> {
        let m = hdrs.len();
        let mut i = 0;
        let mut stalled = false;
        while i < m {
            if stalled {
                results[i] = -libc::EAGAIN;
                i += 1;
                continue;
            }
            let rest = &mut hdrs[i..];
            // SAFETY: every header in `rest` was planned by the send batch and points at live
            // iovecs, arena slots, sockaddrs and cmsg buffers; the kernel only reads them (and
            // writes `msg_len`).
            let n = unsafe { libc::sendmmsg(self.sock, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
            if n > 0 {
                for k in i..i + n as usize {
                    results[k] = hdrs[k].msg_len as i32;
                }
                i += n as usize;
                continue;
            }
            match if n == 0 { libc::EAGAIN } else { sys::last_errno() } {
                libc::EINTR => {}
                libc::EAGAIN | libc::ENOBUFS => {
                    let mut fds = [libc::pollfd { fd: self.sock, events: libc::POLLOUT, revents: 0 }];
                    stalled = !matches!(poll(&mut fds, Some(SEND_STALL)), Ok(n) if n > 0);
                }
                e @ (libc::EBADF | libc::ENOTSOCK | libc::EFAULT) => {
                    return Err(io::Error::from_raw_os_error(e));
                }
                // This message failed (unreachable, refused, refused GSO...); skip it only.
                e => {
                    results[i] = -e;
                    i += 1;
                }
            }
        }
        Ok(())
    }
}

/// Resets the eventfd counter after `ppoll` reported it readable.
fn drain_eventfd(fd: RawFd) {
    let mut value: u64 = 0;
    // SAFETY: reads 8 bytes into a live u64; the fd is readable so this does not block.
    let _ = unsafe { libc::read(fd, (&raw mut value).cast(), 8) };
}

/// `ppoll` with an optional timeout; returns the number of ready descriptors.
fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a live, correctly sized array; `ts_ptr` is null or points at a live
    // timespec; no signal mask is passed.
    let n = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ts_ptr, std::ptr::null()) };
    sys::cvt(n).map(|n| n as usize)
}
