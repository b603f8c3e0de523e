//! ICE over TCP for one shard: RFC 6544 passive candidates, RFC 4571 framing.
//!
//! A client whose network drops UDP connects to the shard's TCP listener (same IP and port
//! number as its UDP socket) and sends what it would have sent as datagrams, each behind a
//! 16-bit big-endian length. To the engine a TCP client is just another source address: the
//! shard feeds it the deframed datagrams ([`Inbound::Datagram`]) and its replies to that address
//! go back over the connection ([`ShardTransmit`]). The engine does not know the difference.
//!
//! The sockets live outside the shard loop: an acceptor thread and, per connection, a reader
//! and a writer thread with blocking I/O. The shard only drains one channel (woken by its
//! [`Waker`] like a command) and pushes each outgoing datagram into the connection's bounded
//! queue; the UDP hot path pays one `is_empty` check while no TCP client is connected.
//! docs/decisions.md says why threads and not the shard's own poll loop.
//!
//! Against misuse: a connection's first frame must be a STUN message (else it is closed), a
//! connection silent for the consent timeout is closed, each shard keeps at most
//! `max_connections`, and a frame never exceeds the 64 KiB RFC 4571 allows. A full queue drops
//! datagrams and counts them, as a full UDP socket buffer would.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use router_engine::Transmit;
use serde::Serialize;
use tracing::{debug, warn};

use crate::io::{Sender, Waker};

/// Datagrams queued towards one client before more are dropped (about 1.5 MB at full size).
const SEND_QUEUE: usize = 1024;
/// Datagrams queued from all clients towards the shard before more are dropped.
const RECV_QUEUE: usize = 8192;
/// Bytes a writer gathers from its queue into one `write`.
const WRITE_COALESCE: usize = 64 * 1024;
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
    out: mpsc::SyncSender<Vec<u8>>,
    stream: Arc<TcpStream>,
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
        Ok(IceTcp { local, inbound, peers: TcpPeers { map: HashMap::new(), shared: shared.clone() }, shared })
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
    /// Queues `datagram` on the connection from `dst`; false when `dst` is not a TCP client.
    fn send(&self, dst: SocketAddr, datagram: &[u8]) -> bool {
        let Some(conn) = self.map.get(&dst) else { return false };
        match conn.out.try_send(datagram.to_vec()) {
            Ok(()) => {
                self.shared.tx_datagrams.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.shared.tx_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }
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
        let (out_tx, out_rx) = mpsc::sync_channel::<Vec<u8>>(SEND_QUEUE);
        let conn = Connection { number, out: out_tx, stream: stream.clone() };
        self.tx.send(Inbound::Opened(addr, conn)).map_err(|_| ())?;
        self.wake.wake();
        debug!(%addr, "ICE-TCP connection open");
        let writer = stream.clone();
        let spawned = std::thread::Builder::new()
            .name("ice-tcp-write".into())
            .stack_size(THREAD_STACK)
            .spawn(move || write_loop(&writer, out_rx));
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

/// Writes each queued datagram behind its length, gathering what is queued into one write.
/// Ends when the shard forgets the connection (the queue's sender is dropped) or a write fails.
fn write_loop(stream: &TcpStream, queue: mpsc::Receiver<Vec<u8>>) {
    let mut buf = Vec::with_capacity(WRITE_COALESCE + 2 + u16::MAX as usize);
    let mut stream = stream;
    while let Ok(first) = queue.recv() {
        buf.clear();
        frame_into(&mut buf, &first);
        while buf.len() < WRITE_COALESCE {
            match queue.try_recv() {
                Ok(next) => frame_into(&mut buf, &next),
                Err(_) => break,
            }
        }
        if stream.write_all(&buf).is_err() {
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
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
