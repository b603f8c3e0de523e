//! Thin, safe wrappers over the libc calls both UDP backends share: socket creation and
//! options, socket-address conversion, the eventfd behind [`super::Waker`], anonymous memory
//! mappings for kernel-shared buffers, and thread pinning.
//!
//! Every `unsafe` block here is a single system call or a plain-old-data conversion; the callers
//! above this module never touch libc directly except for the batch calls themselves
//! (`recvmmsg`, `sendmmsg`, `ppoll`) which live next to the buffers they use.
//!
//! Used only by the backends, e.g. `let fd = udp_socket(addr)?; set_buffer_sizes(&fd, rcv, snd);`
//! then `gso_supported(&fd)` to decide whether flushes may coalesce runs into GSO sends.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// Turns a libc `-1 + errno` return into an `io::Error`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// The current thread's errno as a positive number (0 if none).
pub(crate) fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Creates a blocking, close-on-exec UDP socket bound to `addr`.
///
/// Blocking is right for io_uring (the ring arms its own poll); the mmsg backend switches it to
/// non-blocking with [`set_nonblocking`].
pub fn udp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket(2) call with constant arguments; the result is checked.
    let raw = cvt(unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut storage = zeroed_storage();
    let len = encode_addr(addr, addr.is_ipv6(), &mut storage)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unsupported address"))?;
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the socket's family.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const storage).cast(), len) })?;
    Ok(fd)
}

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; F_GETFL takes no pointer argument.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above; F_SETFL takes an int.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the option value is a live c_int and its exact size is passed.
    cvt(unsafe {
        libc::setsockopt(fd, level, name, (&raw const value).cast(), mem::size_of::<libc::c_int>() as libc::socklen_t)
    })?;
    Ok(())
}

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value`/`len` are live locals of the sizes the kernel is told about.
    cvt(unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &raw mut len) })?;
    Ok(value)
}

/// Sets the kernel receive and send buffer sizes (0 = leave the default).
///
/// Tries the `*FORCE` variants first (root / CAP_NET_ADMIN may exceed `net.core.[rw]mem_max`,
/// which is what a busy shard needs), then the ordinary ones, which the kernel clamps.
/// Returns the sizes the kernel reports afterwards (it doubles the request for bookkeeping).
pub fn set_buffer_sizes(fd: &OwnedFd, recv: usize, send: usize) -> (usize, usize) {
    let raw = fd.as_raw_fd();
    for (bytes, force, plain) in
        [(recv, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (send, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)]
    {
        if bytes == 0 {
            continue;
        }
        let v = i32::try_from(bytes).unwrap_or(i32::MAX);
        if setsockopt_int(raw, libc::SOL_SOCKET, force, v).is_err() {
            // Without the privilege the kernel clamps to rmem_max/wmem_max; best effort only.
            let _ = setsockopt_int(raw, libc::SOL_SOCKET, plain, v);
        }
    }
    let get = |name| getsockopt_int(raw, libc::SOL_SOCKET, name).map_or(0, |v| v.max(0) as usize);
    (get(libc::SO_RCVBUF), get(libc::SO_SNDBUF))
}

/// Whether the kernel knows UDP GSO (`UDP_SEGMENT`, Linux 4.18+) on this socket.
pub fn gso_supported(fd: &OwnedFd) -> bool {
    getsockopt_int(fd.as_raw_fd(), libc::SOL_UDP, libc::UDP_SEGMENT).is_ok()
}

/// The address the socket is bound to.
pub fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    let mut storage = zeroed_storage();
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `storage`.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut storage).cast(), &raw mut len) })?;
    decode_addr(&storage, len as usize)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown address family"))
}

/// An all-zero `sockaddr_storage`.
pub(crate) fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

/// Writes `addr` as a sockaddr for a socket of the given family into `out`.
///
/// An IPv6 socket gets IPv4 peers as v4-mapped addresses (dual stack); an IPv4 socket accepts
/// v4-mapped IPv6 addresses back as IPv4. Returns `None` for an IPv6 peer on an IPv4 socket.
pub(crate) fn encode_addr(
    addr: SocketAddr,
    v6_socket: bool,
    out: &mut libc::sockaddr_storage,
) -> Option<libc::socklen_t> {
    let addr = match (addr, v6_socket) {
        (SocketAddr::V4(a), true) => SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0)),
        (SocketAddr::V6(a), false) => SocketAddr::V4(SocketAddrV4::new(a.ip().to_ipv4_mapped()?, a.port())),
        (a, _) => a,
    };
    *out = zeroed_storage();
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { (&raw mut *out).cast::<libc::sockaddr_in>().write(sin) };
            Some(mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { (&raw mut *out).cast::<libc::sockaddr_in6>().write(sin6) };
            Some(mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Reads a sockaddr the kernel wrote (`len` valid bytes). v4-mapped IPv6 addresses come back
/// as IPv4, so a peer has one spelling whichever socket family it arrived on.
pub(crate) fn decode_addr(st: &libc::sockaddr_storage, len: usize) -> Option<SocketAddr> {
    match i32::from(st.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and len covers it.
            let sin = unsafe { &*(&raw const *st).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, and len covers it.
            let sin6 = unsafe { &*(&raw const *st).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)),
            })
        }
        _ => None,
    }
}

/// [`decode_addr`] for a sockaddr that sits unaligned in a byte buffer (io_uring's multishot
/// receive writes it straight after its header).
pub(crate) fn decode_addr_bytes(bytes: &[u8]) -> Option<SocketAddr> {
    let mut st = zeroed_storage();
    let n = bytes.len().min(mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: copies `n` bytes into a local of at least that size; the regions cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut st).cast::<u8>(), n) };
    decode_addr(&st, n)
}

/// Creates the eventfd behind a waker: blocking (the io_uring READ relies on the kernel's poll,
/// the mmsg backend only reads after `ppoll` reports it readable), close-on-exec.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain eventfd(2) call; the result is checked.
    let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })?;
    // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Adds one to the eventfd counter, waking whoever polls or reads it.
pub(crate) fn eventfd_signal(fd: &OwnedFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of a live u64, as eventfd requires.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Pins the calling thread to one CPU core (`sched_setaffinity`), so a shard's packets stay on
/// one core from receive to send.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "core index out of range"));
    }
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: `core` is below CPU_SETSIZE (checked above), so the bit lies inside `set`.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: pid 0 means the calling thread; `set` is live and its exact size is passed.
    cvt(unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &raw const set) })?;
    Ok(())
}

/// Makes the kernel drop every RTP and RTCP datagram (first payload byte 128..=191, RFC 7983)
/// arriving on `fd` before it is queued, while STUN and DTLS still arrive.
///
/// This is for benchmark sinks: a simulated subscriber that completes ICE and DTLS like a real
/// one but must not spend the load generator's CPU on the media it is sent. The router's side
/// of each send is unchanged (the datagram is built, encrypted, sent and delivered to the
/// socket); the kernel then discards it at the socket filter, the cheapest possible receiver.
pub fn drop_media_datagrams(fd: &impl AsRawFd) -> io::Result<()> {
    // Classic BPF on a UDP socket runs with the packet starting at the UDP header (8 bytes).
    const UDP_HEADER: u32 = 8;
    let program = [
        // A = payload[0]
        libc::sock_filter { code: (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: UDP_HEADER },
        // A < 128 → accept (STUN 0..=3, DTLS 20..=63, TURN channels 64..=79)
        libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16, jt: 0, jf: 2, k: 128 },
        // A > 191 → accept (nothing WebRTC sends; keep whatever it is)
        libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16, jt: 1, jf: 0, k: 191 },
        // RTP or RTCP: keep 0 bytes, i.e. drop.
        libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: 0 },
        libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: u32::MAX },
    ];
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
    // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies the filter.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const prog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Anonymous, page-aligned, zeroed memory shared with the kernel (the provided-buffer ring and
/// its buffers). It is only ever accessed through raw pointers, because the kernel writes into
/// it behind Rust's back.
#[derive(Debug)]
pub(crate) struct MmapRegion {
    ptr: NonNull<u8>,
    len: usize,
    leaked: bool,
}

impl MmapRegion {
    pub(crate) fn new(len: usize) -> io::Result<Self> {
        let len = len.max(1);
        // SAFETY: anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len, leaked: false })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Never unmap: for memory the kernel might still write into.
    pub(crate) fn leak(&mut self) {
        self.leaked = true;
    }
}

impl Drop for MmapRegion {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: unmaps exactly the mapping created in `new`; nothing refers to it afterwards
        // (the owner makes sure the kernel is done with it first).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Sends `datagrams` from `socket` with `sendmmsg`, never blocking: what a full socket buffer
/// does not take is dropped. Returns how many were sent. For sockets outside the shards' send
/// batches (the TURN socket); a datagram the kernel refuses (unreachable) is skipped alone.
/// `v6_socket`: the socket is IPv6 (IPv4 destinations are then sent v4-mapped).
pub fn send_batch<'a>(
    socket: &impl AsRawFd,
    v6_socket: bool,
    datagrams: impl IntoIterator<Item = (SocketAddr, &'a [u8])>,
) -> usize {
    const CHUNK: usize = 64;
    let v6 = v6_socket;
    let mut sent = 0;
    let mut addrs = [zeroed_storage(); CHUNK];
    // SAFETY: iovec and mmsghdr are plain old data; all-zero is a valid (empty) value.
    let mut iovs: [libc::iovec; CHUNK] = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; CHUNK] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut iter = datagrams.into_iter().peekable();
    while iter.peek().is_some() {
        let mut n = 0;
        for (dst, data) in iter.by_ref().take(CHUNK) {
            let Some(len) = encode_addr(dst, v6, &mut addrs[n]) else { continue };
            iovs[n] = libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() };
            // SAFETY: all-zero is a valid msghdr; the pointers set below stay live for the call.
            let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            msg.msg_name = (&raw mut addrs[n]).cast();
            msg.msg_namelen = len;
            msg.msg_iov = &raw mut iovs[n];
            msg.msg_iovlen = 1;
            hdrs[n] = libc::mmsghdr { msg_hdr: msg, msg_len: 0 };
            n += 1;
        }
        let mut at = 0;
        while at < n {
            // SAFETY: headers `at..n` point at live sockaddrs, iovecs and the caller's slices;
            // the kernel only reads them (and writes `msg_len`).
            let r = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    hdrs[at..n].as_mut_ptr(),
                    (n - at) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                at += r as usize;
                sent += r as usize;
                continue;
            }
            match last_errno() {
                libc::EINTR => {}
                // Full: the rest of this chunk is dropped.
                libc::EAGAIN | libc::ENOBUFS => break,
                _ => at += 1,
            }
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_v4_mapped_addresses_come_back_as_ipv4() {
        let cases: [(&str, bool, &str); 4] = [
            ("1.2.3.4:5", false, "1.2.3.4:5"),
            ("1.2.3.4:5", true, "1.2.3.4:5"),
            ("[2001:db8::1]:443", true, "[2001:db8::1]:443"),
            ("[::ffff:10.0.0.1]:9", false, "10.0.0.1:9"),
        ];
        for (input, v6, want) in cases {
            let a: SocketAddr = input.parse().expect("test literal");
            let mut st = zeroed_storage();
            let len = encode_addr(a, v6, &mut st).expect("encodable");
            assert_eq!(i32::from(st.ss_family), if v6 { libc::AF_INET6 } else { libc::AF_INET });
            assert_eq!(decode_addr(&st, len as usize), Some(want.parse().expect("literal")));
        }
    }

    #[test]
    fn ipv6_peer_cannot_be_encoded_for_an_ipv4_socket() {
        let mut st = zeroed_storage();
        let a: SocketAddr = "[2001:db8::1]:1".parse().expect("test literal");
        assert_eq!(encode_addr(a, false, &mut st), None);
    }

    #[test]
    fn short_or_unknown_sockaddrs_decode_to_none() {
        assert_eq!(decode_addr_bytes(&[]), None);
        assert_eq!(decode_addr_bytes(&[2, 0, 0]), None); // AF_INET but truncated
        assert_eq!(decode_addr_bytes(&[99; 28]), None);
    }

    #[test]
    fn the_media_filter_drops_rtp_and_rtcp_and_keeps_stun_and_dtls() {
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        drop_media_datagrams(&sink).expect("attach filter");
        sink.set_read_timeout(Some(std::time::Duration::from_millis(200))).expect("timeout");
        let to = sink.local_addr().expect("addr");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // First bytes: RTP 0x80, STUN 0x00, RTCP 0x81 (V=2, one report block), DTLS 22, 0xff
        // (not WebRTC), RTP with every flag 0xbf.
        for first in [0x80u8, 0x00, 0x81, 22, 0xff, 0xbf] {
            tx.send_to(&[first, 1, 2, 3], to).expect("send");
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while let Ok(n) = sink.recv(&mut buf) {
            got.push(buf[..n][0]);
        }
        assert_eq!(got, vec![0x00, 22, 0xff]);
    }
}
