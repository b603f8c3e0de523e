//! ICE over TCP for one shard: RFC 6544 passive candidates, RFC 4571 framing.
//!
//! A client whose network drops UDP connects to the shard's TCP listener (same IP and port
//! number as its UDP socket) and sends what it would have sent as datagrams, each behind a
//! 16-bit big-endian length. To the engine a TCP client is just another source address: the
//! shard feeds it the deframed datagrams ([`Inbound::Datagram`]) and its replies to that address
//! go back over the connection ([`ShardTransmit`]). The engine does not know the difference.
//!
//! Reading lives outside the shard loop: an acceptor thread and, per connection, a reader
//! thread with blocking I/O; the shard drains one channel (woken by its [`Waker`] like a
//! command). Writing is the shard's: a turn's datagrams for a connection are framed into its
//! outbox, and after the turn one non-blocking `send` per connection writes them
//! ([`TcpPeers::flush`]). Only when the socket is full does the connection's writer thread take
//! over, writing the backlog with blocking writes until it is empty; the shard then writes
//! directly again. The UDP hot path pays one `is_empty` check while no TCP client is
//! connected. docs/decisions.md says why threads and not the shard's own poll loop.
//!
//! Against misuse: a connection's first frame must be a STUN message (else it is closed), a
//! connection silent for the consent timeout is closed, each shard keeps at most
//! `max_connections`, and a frame never exceeds the 64 KiB RFC 4571 allows. An outbox past
//! [`MAX_OUTBOX`] drops datagrams and counts them, as a full UDP socket buffer would.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::time::Duration;

use router_engine::Transmit;
use serde::Serialize;
use tracing::{debug, warn};

use crate::io::{Sender, Waker};

/// Bytes queued towards one client (framed datagrams the socket did not take yet) before
/// more datagrams are dropped: about a thousand full-size ones.
pub const MAX_OUTBOX: usize = 1536 * 1024;
/// Datagrams queued from all clients towards the shard before more are dropped.
const RECV_QUEUE: usize = 8192;
/// Stack of each connection's threads: they hold one frame buffer and little else.
const THREAD_STACK: usize = 128 * 1024;

/// What the connection threads tell the shard.
enum Inbound {
    Opened(SocketAddr, Connection),
    Datagram(SocketAddr, Vec<u8>),
    /// A connection ended; its number tells it from a newer one from the same address.
    Closed(SocketAddr, u64),
}

/// The shard's handle on one connection.
struct Connection {
    number: u64,
    outbox: Arc<Outbox>,
    stream: Arc<TcpStream>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The shard forgot the connection: its writer thread ends.
        self.outbox.lock().closed = true;
        self.outbox.ready.notify_one();
    }
}

/// What the shard and a connection's writer thread share: the framed datagrams not yet
/// written, in order.
#[derive(Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    /// Wakes the writer: it has a backlog to write, or the connection is forgotten.
    ready: Condvar,
}

#[derive(Default)]
struct OutboxState {
    bytes: Vec<u8>,
    /// The socket was full: the writer thread owns the writing until `bytes` is empty, and the
    /// shard only appends.
    backlog: bool,
    closed: bool,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counters shared by the threads and read by the shard for its `counters` reply.
#[derive(Debug, Default)]
struct Shared {
    open: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
    closed_not_stun: AtomicU64,
    closed_idle: AtomicU64,
    rx_datagrams: AtomicU64,
    rx_dropped: AtomicU64,
    tx_datagrams: AtomicU64,
    tx_dropped: AtomicU64,
}

/// The `tcp` part of a shard's counters.
#[derive(Debug, Serialize)]
pub struct TcpStats {
    pub open: usize,
    pub accepted: u64,
    /// Connections closed at once: past `max_connections`.
    pub refused: u64,
    /// Connections closed because their first frame was not STUN.
    pub closed_not_stun: u64,
    /// Connections closed after a consent timeout without a frame.
    pub closed_idle: u64,
    pub rx_datagrams: u64,
    /// Datagrams dropped because the shard had not drained the previous ones.
    pub rx_dropped: u64,
    pub tx_datagrams: u64,
    /// Datagrams dropped because the client's connection did not take them fast enough.
    pub tx_dropped: u64,
}

/// One shard's ICE-TCP side: the listener's address and the shard's view of the connections.
pub struct IceTcp {
    local: SocketAddr,
    inbound: mpsc::Receiver<Inbound>,
    peers: TcpPeers,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for IceTcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceTcp").field("local", &self.local).field("peers", &self.peers.map.len()).finish()
    }
}

/// The open connections by client address: where [`ShardTransmit`] sends.
pub struct TcpPeers {
    map: HashMap<SocketAddr, Connection>,
    /// Connections given datagrams this turn, for [`TcpPeers::flush`].
    dirty: RefCell<Vec<SocketAddr>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TcpPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.map.keys()).finish()
    }
}

impl IceTcp {
    /// Binds the listener at `bind` and starts accepting. `wake` is the shard's waker; `idle` the
    /// consent timeout.
    pub fn start(bind: SocketAddr, max_connections: usize, idle: Duration, wake: Waker) -> std::io::Result<IceTcp> {
        let listener = TcpListener::bind(bind)?;
        let local = listener.local_addr()?;
        let (tx, inbound) = mpsc::sync_channel(RECV_QUEUE);
        let shared = Arc::new(Shared::default());
        let acceptor = Acceptor { listener, tx, wake, shared: shared.clone(), max_connections, idle };
        std::thread::Builder::new().name(format!("ice-tcp-{}", local.port())).spawn(move || acceptor.run())?;
        let peers = TcpPeers { map: HashMap::new(), dirty: RefCell::new(Vec::new()), shared: shared.clone() };
        Ok(IceTcp { local, inbound, peers, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Takes what the connections sent since the last call: registers new connections, forgets
    /// closed ones, and hands each datagram to `deliver` with the peers to reply through.
    pub fn drain(&mut self, mut deliver: impl FnMut(SocketAddr, &mut [u8], &TcpPeers)) -> usize {
        let mut datagrams = 0;
        while let Ok(msg) = self.inbound.try_recv() {
            match msg {
                Inbound::Opened(addr, conn) => {
                    self.peers.map.insert(addr, conn);
                }
                Inbound::Closed(addr, number) => {
                    if self.peers.map.get(&addr).is_some_and(|c| c.number == number) {
                        self.peers.map.remove(&addr);
                    }
                }
                Inbound::Datagram(addr, mut buf) => {
                    datagrams += 1;
                    deliver(addr, &mut buf, &self.peers);
                }
            }
        }
        datagrams
    }

    pub fn peers(&self) -> &TcpPeers {
        &self.peers
    }

    pub fn stats(&self) -> TcpStats {
        let s = &self.shared;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TcpStats {
            open: s.open.load(Ordering::Relaxed),
            accepted: get(&s.accepted),
            refused: get(&s.refused),
            closed_not_stun: get(&s.closed_not_stun),
            closed_idle: get(&s.closed_idle),
            rx_datagrams: get(&s.rx_datagrams),
            rx_dropped: get(&s.rx_dropped),
            tx_datagrams: get(&s.tx_datagrams),
            tx_dropped: get(&s.tx_dropped),
        }
    }
}

impl Drop for IceTcp {
    fn drop(&mut self) {
        // The acceptor blocks in accept(): shutting the connections down ends their threads;
        // the acceptor ends at its next accept, when the shard's channel is gone.
        for conn in self.peers.map.values() {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
    }
}

impl TcpPeers {
    /// Frames `datagram` into the outbox of the connection from `dst`; false when `dst` is not
    /// a TCP client. Written by the next [`TcpPeers::flush`].
    fn send(&self, dst: SocketAddr, datagram: &[u8]) -> bool {
        let Some(conn) = self.map.get(&dst) else { return false };
        let mut out = conn.outbox.lock();
        if out.closed || out.bytes.len() + 2 + datagram.len() > MAX_OUTBOX {
            self.shared.tx_dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if out.bytes.is_empty() && !out.backlog {
            self.dirty.borrow_mut().push(dst);
        }
        frame_into(&mut out.bytes, datagram);
        self.shared.tx_datagrams.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Writes each connection's datagrams of this turn with one non-blocking `send`; what a
    /// full socket does not take stays in the outbox for the connection's writer thread.
    pub fn flush(&self) {
        if self.map.is_empty() {
            return;
        }
        for addr in self.dirty.borrow_mut().drain(..) {
            let Some(conn) = self.map.get(&addr) else { continue };
            let mut out = conn.outbox.lock();
            if out.backlog || out.closed || out.bytes.is_empty() {
                continue;
            }
            match send_now(&conn.stream, &out.bytes) {
                Ok(n) if n == out.bytes.len() => out.bytes.clear(),
                Ok(n) => {
                    out.bytes.drain(..n);
                    out.backlog = true;
                    conn.outbox.ready.notify_one();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    out.backlog = true;
                    conn.outbox.ready.notify_one();
                }
                // The connection failed; its reader sees that too and reports the close.
                Err(_) => {
                    out.bytes.clear();
                    out.closed = true;
                    conn.outbox.ready.notify_one();
                }
            }
        }
    }
}

/// One `send` that does not block (the socket stays blocking for the connection's threads)
/// and raises no SIGPIPE.
fn send_now(stream: &TcpStream, bytes: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `bytes` is a live slice for the call; the fd is open while `stream` is.
    let n = unsafe {
        libc::send(stream.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// The engine's [`Transmit`] in a shard: a datagram for a TCP client goes to its connection,
/// every other one into the UDP send batch.
#[derive(Debug)]
pub struct ShardTransmit<'s, 'a> {
    pub udp: &'s mut Sender<'a>,
    pub tcp: Option<&'s TcpPeers>,
}

impl Transmit for ShardTransmit<'_, '_> {
    fn buffer(&mut self) -> &mut [u8] {
        self.udp.send_slot()
    }

    fn commit(&mut self, dst: SocketAddr, len: usize) {
        if let Some(tcp) = self.tcp.filter(|t| !t.map.is_empty()) {
            // The engine wrote into the slot `buffer` handed out; uncommitted, `send_slot`
            // hands out the same one again.
            let slot = self.udp.send_slot();
            if tcp.send(dst, &slot[..len.min(slot.len())]) {
                return;
            }
        }
        self.udp.commit_send(dst, len);
    }
}

struct Acceptor {
    listener: TcpListener,
    tx: mpsc::SyncSender<Inbound>,
    wake: Waker,
    shared: Arc<Shared>,
    max_connections: usize,
    idle: Duration,
}

impl Acceptor {
    fn run(self) {
        loop {
            let (stream, addr) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    warn!(error = %e, "ICE-TCP accept failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if self.shared.open.load(Ordering::Relaxed) >= self.max_connections {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                debug!(%addr, max = self.max_connections, "ICE-TCP connection refused: too many open");
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
            let number = self.shared.accepted.fetch_add(1, Ordering::Relaxed);
            self.shared.open.fetch_add(1, Ordering::Relaxed);
            if self.start_connection(stream, addr, number).is_err() {
                // The shard is gone (its receiver dropped): stop accepting.
                self.shared.open.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        }
    }

    fn start_connection(&self, stream: TcpStream, addr: SocketAddr, number: u64) -> Result<(), ()> {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(self.idle));
        let stream = Arc::new(stream);
        let outbox = Arc::new(Outbox::default());
        let conn = Connection { number, outbox: outbox.clone(), stream: stream.clone() };
        self.tx.send(Inbound::Opened(addr, conn)).map_err(|_| ())?;
        self.wake.wake();
        debug!(%addr, "ICE-TCP connection open");
        let writer = stream.clone();
        let spawned = std::thread::Builder::new()
            .name("ice-tcp-write".into())
            .stack_size(THREAD_STACK)
            .spawn(move || write_backlog(&writer, &outbox));
        let reader =
            Reader { stream, addr, number, tx: self.tx.clone(), wake: self.wake.clone(), shared: self.shared.clone() };
        let spawned = spawned.and_then(|_| {
            std::thread::Builder::new().name("ice-tcp-read".into()).stack_size(THREAD_STACK).spawn(move || reader.run())
        });
        if let Err(e) = spawned {
            warn!(%addr, error = %e, "cannot start an ICE-TCP connection's threads");
        }
        Ok(())
    }
}

/// The connection's writer: sleeps until the shard finds the socket full, then writes the
/// outbox with blocking writes until it is empty and hands the writing back. Ends when the
/// shard forgets the connection or a write fails.
fn write_backlog(stream: &TcpStream, outbox: &Outbox) {
    let mut stream = stream;
    let mut buf = Vec::new();
    loop {
        {
            let mut out = outbox.lock();
            loop {
                if out.closed {
                    drop(out);
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                if out.backlog {
                    if !out.bytes.is_empty() {
                        break;
                    }
                    // Written out: the shard writes directly again.
                    out.backlog = false;
                }
                out = outbox.ready.wait(out).unwrap_or_else(PoisonError::into_inner);
            }
            std::mem::swap(&mut buf, &mut out.bytes);
        }
        if stream.write_all(&buf).is_err() {
            let mut out = outbox.lock();
            out.closed = true;
            out.bytes.clear();
        }
        buf.clear();
    }
}

/// Appends one RFC 4571 frame; a datagram too long for one is dropped (the engine never makes
/// one: its datagrams fit a UDP MTU).
fn frame_into(buf: &mut Vec<u8>, datagram: &[u8]) {
    let Ok(len) = u16::try_from(datagram.len()) else { return };
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(datagram);
}

struct Reader {
    stream: Arc<TcpStream>,
    addr: SocketAddr,
    number: u64,
    tx: mpsc::SyncSender<Inbound>,
    wake: Waker,
    shared: Arc<Shared>,
}

impl Reader {
    fn run(self) {
        let why = self.read_frames();
        debug!(addr = %self.addr, why, "ICE-TCP connection closed");
        let _ = self.stream.shutdown(Shutdown::Both);
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
        if self.tx.send(Inbound::Closed(self.addr, self.number)).is_ok() {
            self.wake.wake();
        }
    }

    /// Reads frames until the connection ends; returns why it did.
    fn read_frames(&self) -> &'static str {
        let mut stream = &*self.stream;
        let mut first = true;
        loop {
            let mut len = [0u8; 2];
            if let Err(e) = stream.read_exact(&mut len) {
                return self.ended(&e);
            }
            let mut datagram = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if let Err(e) = stream.read_exact(&mut datagram) {
                return self.ended(&e);
            }
            if datagram.is_empty() {
                continue;
            }
            // RFC 7983: STUN starts with 0..=3. A client opens with a connectivity check; a
            // connection that starts otherwise is not ICE and gets nothing from the engine.
            if first && datagram[0] > 3 {
                self.shared.closed_not_stun.fetch_add(1, Ordering::Relaxed);
                return "the first frame is not STUN";
            }
            first = false;
            self.shared.rx_datagrams.fetch_add(1, Ordering::Relaxed);
            match self.tx.try_send(Inbound::Datagram(self.addr, datagram)) {
                Ok(()) => self.wake.wake(),
                Err(mpsc::TrySendError::Full(_)) => {
                    self.shared.rx_dropped.fetch_add(1, Ordering::Relaxed);
                    self.wake.wake();
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return "the shard stopped",
            }
        }
    }

    fn ended(&self, e: &std::io::Error) -> &'static str {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                self.shared.closed_idle.fetch_add(1, Ordering::Relaxed);
                "idle past the consent timeout"
            }
            std::io::ErrorKind::UnexpectedEof => "closed by the client",
            _ => "read failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{BackendChoice, IoOptions, UdpIo};

    /// A client that does not read fills the socket: the shard's direct sends stop, the
    /// writer thread writes the backlog, the outbox's cap drops the excess, and what arrives
    /// is every kept datagram whole and in order.
    #[test]
    fn a_full_socket_hands_the_writing_to_the_writer_and_nothing_arrives_out_of_order() {
        let udp = UdpIo::bind("127.0.0.1:0".parse().unwrap(), BackendChoice::Mmsg, &IoOptions::default()).unwrap();
        let mut tcp = IceTcp::start("127.0.0.1:0".parse().unwrap(), 4, Duration::from_secs(30), udp.waker()).unwrap();
        let mut client = TcpStream::connect(tcp.local_addr()).unwrap();
        let addr = client.local_addr().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while tcp.peers().map.is_empty() {
            tcp.drain(|_, _, _| {});
            assert!(std::time::Instant::now() < deadline, "the connection was not registered");
            std::thread::sleep(Duration::from_millis(10));
        }
        // 8 MB in turns of 50 datagrams while the client reads nothing.
        let sent = 7000u32;
        for i in 0..sent {
            let mut datagram = vec![(i % 251) as u8; 1200];
            datagram[..4].copy_from_slice(&i.to_be_bytes());
            assert!(tcp.peers().send(addr, &datagram));
            if i % 50 == 49 {
                tcp.peers().flush();
            }
        }
        tcp.peers().flush();
        let stats = tcp.stats();
        assert!(stats.tx_dropped > 0, "8 MB to a client that reads nothing overflows the outbox");
        // Now the client reads everything there is.
        client.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let (mut got, mut last) = (0u64, None::<u32>);
        loop {
            let mut len = [0u8; 2];
            if client.read_exact(&mut len).is_err() {
                break;
            }
            let mut datagram = vec![0u8; usize::from(u16::from_be_bytes(len))];
            client.read_exact(&mut datagram).unwrap();
            let i = u32::from_be_bytes(datagram[..4].try_into().unwrap());
            assert!(datagram[4..].iter().all(|&b| b == (i % 251) as u8), "datagram {i} arrived whole");
            assert!(last.is_none_or(|l| i > l), "datagram {i} after {last:?}");
            last = Some(i);
            got += 1;
        }
        assert_eq!(got + stats.tx_dropped, u64::from(sent), "each datagram arrived or was counted dropped");
        assert!(got > 1000, "the writer wrote the backlog: {got} arrived");
        // The writing is the shard's again: a new datagram goes straight out.
        while tcp.peers().map[&addr].outbox.lock().backlog {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(tcp.peers().send(addr, &sent.to_be_bytes()));
        tcp.peers().flush();
        let mut frame = [0u8; 6];
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        client.read_exact(&mut frame).unwrap();
        assert_eq!(frame, [0, 4, 0, 0, 0x1b, 0x58]);
    }
}
