//! Clients that reach a shard other than by datagrams to its own socket: ICE-TCP clients
//! ([`crate::ice_tcp`]) and TURN clients relayed over TCP, TLS or UDP ([`crate::turn`]).
//!
//! To the engine each is just another source address. Their threads hand the shard the
//! datagrams they unwrapped ([`InboxSender`]); the shard's replies to that address go back
//! ([`ShardTransmit`]) wrapped as the client's [`Framing`] says: over its connection, sealed by
//! its rustls session on TLS, or, for TURN over UDP, as datagrams from the TURN socket, sent
//! together with one `sendmmsg` after the turn.
//!
//! Writing is the shard's: a turn's datagrams for a connection are framed into its outbox, and
//! after the turn one non-blocking `send` per connection writes them ([`StreamPeers::flush`]).
//! Only when the socket is full does the connection's writer thread take over, writing the
//! backlog with blocking writes until it is empty; the shard then writes directly again. The
//! UDP hot path pays one `is_empty` check while no such client is connected. An outbox past
//! [`MAX_OUTBOX`] drops datagrams and counts them, as a full UDP socket buffer would.
//! docs/decisions.md says why threads and not the shard's own poll loop.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};

use router_engine::Transmit;
use serde::Serialize;

use crate::io::{Sender, Waker};

/// Bytes queued towards one client (framed datagrams the socket did not take yet) before
/// more datagrams are dropped: about a thousand full-size ones.
pub const MAX_OUTBOX: usize = 1536 * 1024;
/// Datagrams queued from all connections towards one shard before more are dropped.
const RECV_QUEUE: usize = 8192;

/// What the connection threads tell the shard.
enum Inbound {
    Opened(SocketAddr, Connection),
    Datagram(SocketAddr, Vec<u8>),
    /// A connection ended; its number tells it from a newer one with the same address.
    Closed(SocketAddr, u64),
}

/// How the shard wraps a datagram for one client.
#[derive(Debug)]
pub enum Framing {
    /// RFC 4571: a 16-bit length, then the datagram (ICE-TCP).
    Rfc4571,
    /// TURN (RFC 8656): the datagram comes from `peer` (this shard's address), as ChannelData
    /// once the client bound `channel` to it (0 until then), else as a Data indication.
    Turn { peer: SocketAddr, channel: AtomicU16 },
}

impl Framing {
    /// Appends `datagram` framed for its client; `pad` for a stream (TURN's ChannelData is
    /// padded to four bytes there), `indications` numbers Data indications. False when the
    /// datagram cannot be framed (too long).
    fn frame(&self, out: &mut Vec<u8>, datagram: &[u8], pad: bool, indications: &Cell<u64>) -> bool {
        match self {
            Framing::Rfc4571 => frame_rfc4571(out, datagram),
            Framing::Turn { peer, channel } => match channel.load(Ordering::Relaxed) {
                0 => {
                    indications.set(indications.get() + 1);
                    crate::turn::wire::data_indication(out, *peer, datagram, indications.get())
                }
                channel => crate::turn::wire::channel_data(out, channel, datagram, pad),
            },
        }
    }
}

/// The shard's handle on one client.
#[derive(Debug)]
pub struct Connection {
    pub number: u64,
    pub sink: Sink,
    pub framing: Arc<Framing>,
    pub counters: Arc<Counters>,
}

/// Where a client's datagrams go.
#[derive(Debug)]
pub enum Sink {
    /// Its TCP connection.
    Stream { outbox: Arc<Outbox>, stream: Arc<TcpStream> },
    /// Datagrams to `client` from the TURN socket.
    Datagram { socket: Arc<DatagramSocket>, client: SocketAddr },
}

/// A UDP socket datagrams are sent from outside the shard's own batch (TURN's).
#[derive(Debug)]
pub struct DatagramSocket {
    pub socket: UdpSocket,
    /// Whether it is an IPv6 socket (IPv4 destinations then go v4-mapped).
    pub v6: bool,
}

/// What the shard, a connection's reader thread and its writer thread share: the bytes not yet
/// written, in order, and the TLS session that seals them.
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    /// Wakes the writer: it has a backlog to write, or the connection is done.
    ready: Condvar,
}

#[derive(Debug, Default)]
pub struct OutboxState {
    /// What goes on the wire next (sealed, on a TLS connection).
    bytes: Vec<u8>,
    /// Framed datagrams not sealed yet (TLS connections only: the others frame into `bytes`).
    plain: Vec<u8>,
    pub tls: Option<rustls::ServerConnection>,
    /// The socket was full: the writer thread owns the writing until `bytes` is empty, and the
    /// others only append.
    backlog: bool,
    closed: bool,
}

impl Outbox {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn with_tls(tls: Option<rustls::ServerConnection>) -> Outbox {
        Outbox { state: Mutex::new(OutboxState { tls, ..Default::default() }), ready: Condvar::new() }
    }

    /// Marks the connection done: the writer thread shuts the socket and ends.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Writes what is queued now, from whichever thread holds `out`: one non-blocking `send`,
    /// the rest left to the writer thread.
    pub fn write_now(&self, out: &mut OutboxState, stream: &TcpStream) {
        out.seal();
        if out.backlog || out.closed || out.bytes.is_empty() {
            return;
        }
        match send_now(stream, &out.bytes) {
            Ok(n) if n == out.bytes.len() => out.bytes.clear(),
            Ok(n) => {
                out.bytes.drain(..n);
                out.backlog = true;
                self.ready.notify_one();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                out.backlog = true;
                self.ready.notify_one();
            }
            // The connection failed; its reader sees that too and reports the close.
            Err(_) => {
                out.bytes.clear();
                out.closed = true;
                self.ready.notify_one();
            }
        }
    }
}

impl OutboxState {
    /// Where framed datagrams go: straight to the wire buffer, or to be sealed first.
    pub fn frame_buffer(&mut self) -> &mut Vec<u8> {
        if self.tls.is_some() { &mut self.plain } else { &mut self.bytes }
    }

    fn queued(&self) -> usize {
        self.bytes.len() + self.plain.len()
    }

    /// Seals the framed plaintext into TLS records, and takes whatever else the session has to
    /// send (handshake messages, alerts).
    fn seal(&mut self) {
        let Some(tls) = self.tls.as_mut() else { return };
        if !self.plain.is_empty() {
            // rustls buffers without limit before the handshake ends; after it, it seals at once.
            let _ = tls.writer().write_all(&self.plain);
            self.plain.clear();
        }
        while tls.wants_write() {
            if tls.write_tls(&mut self.bytes).is_err() {
                break;
            }
        }
    }
}

/// Counters of one listener's connections, shared by its threads and the shards.
#[derive(Debug, Default)]
pub struct Counters {
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub closed_not_stun: AtomicU64,
    pub closed_idle: AtomicU64,
    pub rx_datagrams: AtomicU64,
    pub rx_dropped: AtomicU64,
    pub tx_datagrams: AtomicU64,
    pub tx_dropped: AtomicU64,
}

/// A snapshot of [`Counters`], for a shard's `counters` reply.
#[derive(Debug, Serialize)]
pub struct TcpStats {
    pub open: usize,
    pub accepted: u64,
    /// Connections closed at once: past the listener's connection cap.
    pub refused: u64,
    /// Connections closed because they did not open with STUN.
    pub closed_not_stun: u64,
    /// Connections closed after the idle timeout without a byte.
    pub closed_idle: u64,
    pub rx_datagrams: u64,
    /// Datagrams dropped because the shard had not drained the previous ones.
    pub rx_dropped: u64,
    pub tx_datagrams: u64,
    /// Datagrams dropped because the client's connection did not take them fast enough.
    pub tx_dropped: u64,
}

impl Counters {
    pub fn snapshot(&self) -> TcpStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TcpStats {
            open: self.open.load(Ordering::Relaxed),
            accepted: get(&self.accepted),
            refused: get(&self.refused),
            closed_not_stun: get(&self.closed_not_stun),
            closed_idle: get(&self.closed_idle),
            rx_datagrams: get(&self.rx_datagrams),
            rx_dropped: get(&self.rx_dropped),
            tx_datagrams: get(&self.tx_datagrams),
            tx_dropped: get(&self.tx_dropped),
        }
    }
}

/// A connection thread's way into one shard: clonable, one per shard.
#[derive(Clone)]
pub struct InboxSender {
    tx: mpsc::SyncSender<Inbound>,
    wake: Waker,
}

impl std::fmt::Debug for InboxSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InboxSender")
    }
}

/// The shard has stopped: the connection ends.
#[derive(Debug)]
pub struct ShardGone;

impl InboxSender {
    /// Datagrams to and from `addr` now go over `conn`.
    pub fn open(&self, addr: SocketAddr, conn: Connection) -> Result<(), ShardGone> {
        self.tx.send(Inbound::Opened(addr, conn)).map_err(|_| ShardGone)?;
        self.wake.wake();
        Ok(())
    }

    /// A datagram from `addr`; dropped (and counted) when the shard is behind.
    pub fn datagram(&self, addr: SocketAddr, datagram: Vec<u8>, counters: &Counters) -> Result<(), ShardGone> {
        counters.rx_datagrams.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Inbound::Datagram(addr, datagram)) {
            Ok(()) => self.wake.wake(),
            Err(mpsc::TrySendError::Full(_)) => {
                counters.rx_dropped.fetch_add(1, Ordering::Relaxed);
                self.wake.wake();
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(ShardGone),
        }
        Ok(())
    }

    /// Connection `number` from `addr` ended.
    pub fn closed(&self, addr: SocketAddr, number: u64) {
        if self.tx.send(Inbound::Closed(addr, number)).is_ok() {
            self.wake.wake();
        }
    }
}

/// One shard's end: what its connections sent, and where its replies to them go.
pub struct ShardInbox {
    inbound: mpsc::Receiver<Inbound>,
    sender: InboxSender,
    peers: StreamPeers,
}

impl std::fmt::Debug for ShardInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardInbox").field("peers", &self.peers.map.len()).finish()
    }
}

impl ShardInbox {
    /// `wake` is the shard's waker: a connection's datagram ends the shard's wait.
    pub fn new(wake: Waker) -> ShardInbox {
        let (tx, inbound) = mpsc::sync_channel(RECV_QUEUE);
        ShardInbox {
            inbound,
            sender: InboxSender { tx, wake },
            peers: StreamPeers {
                map: HashMap::new(),
                dirty: RefCell::new(Vec::new()),
                datagrams: RefCell::new(DatagramBatch::default()),
                indications: Cell::new(0),
            },
        }
    }

    pub fn sender(&self) -> InboxSender {
        self.sender.clone()
    }

    /// Takes what the connections sent since the last call: registers new connections, forgets
    /// closed ones, and hands each datagram to `deliver` with the peers to reply through.
    pub fn drain(&mut self, mut deliver: impl FnMut(SocketAddr, &mut [u8], &StreamPeers)) -> usize {
        let mut datagrams = 0;
        while let Ok(msg) = self.inbound.try_recv() {
            match msg {
                Inbound::Opened(addr, conn) => {
                    let outbox = match &conn.sink {
                        Sink::Stream { outbox, .. } => Some(outbox.clone()),
                        Sink::Datagram { .. } => None,
                    };
                    if let Some(Connection { sink: Sink::Stream { outbox: old, .. }, .. }) =
                        self.peers.map.insert(addr, conn)
                        && !outbox.is_some_and(|new| Arc::ptr_eq(&old, &new))
                    {
                        old.close();
                    }
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

    pub fn peers(&self) -> &StreamPeers {
        &self.peers
    }
}

impl Drop for ShardInbox {
    fn drop(&mut self) {
        // The shard is stopping: its connections end (their readers see the shutdown).
        for conn in self.peers.map.values() {
            if let Sink::Stream { stream, .. } = &conn.sink {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// The clients by address: where [`ShardTransmit`] sends.
pub struct StreamPeers {
    map: HashMap<SocketAddr, Connection>,
    /// Connections given datagrams this turn, for [`StreamPeers::flush`].
    dirty: RefCell<Vec<SocketAddr>>,
    /// This turn's datagrams for TURN clients over UDP.
    datagrams: RefCell<DatagramBatch>,
    /// Data indications sent: their transaction ids.
    indications: Cell<u64>,
}

impl std::fmt::Debug for StreamPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.map.keys()).finish()
    }
}

impl StreamPeers {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Frames `datagram` into the outbox of the connection of `dst`; false when `dst` is not
    /// such a client. Written by the next [`StreamPeers::flush`].
    pub fn send(&self, dst: SocketAddr, datagram: &[u8]) -> bool {
        let Some(conn) = self.map.get(&dst) else { return false };
        let framed = match &conn.sink {
            Sink::Datagram { socket, client } => {
                let mut batch = self.datagrams.borrow_mut();
                batch.queue(socket, &conn.counters, *client, |out| {
                    conn.framing.frame(out, datagram, false, &self.indications)
                })
            }
            Sink::Stream { outbox, .. } => {
                let mut out = outbox.lock();
                // The largest framing (a Data indication) adds 36 bytes.
                if out.closed || out.queued() + 36 + datagram.len() > MAX_OUTBOX {
                    false
                } else {
                    if out.queued() == 0 && !out.backlog {
                        self.dirty.borrow_mut().push(dst);
                    }
                    conn.framing.frame(out.frame_buffer(), datagram, true, &self.indications)
                }
            }
        };
        let counter = if framed { &conn.counters.tx_datagrams } else { &conn.counters.tx_dropped };
        counter.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Writes each connection's datagrams of this turn with one non-blocking `send`; what a
    /// full socket does not take stays in the outbox for the connection's writer thread.
    pub fn flush(&self) {
        if self.map.is_empty() {
            return;
        }
        for addr in self.dirty.borrow_mut().drain(..) {
            let Some(Connection { sink: Sink::Stream { outbox, stream }, .. }) = self.map.get(&addr) else { continue };
            let mut out = outbox.lock();
            outbox.write_now(&mut out, stream);
        }
        self.datagrams.borrow_mut().send();
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
    pub streams: &'s StreamPeers,
}

impl Transmit for ShardTransmit<'_, '_> {
    fn buffer(&mut self) -> &mut [u8] {
        self.udp.send_slot()
    }

    fn commit(&mut self, dst: SocketAddr, len: usize) {
        if !self.streams.is_empty() {
            // The engine wrote into the slot `buffer` handed out; uncommitted, `send_slot`
            // hands out the same one again.
            let slot = self.udp.send_slot();
            if self.streams.send(dst, &slot[..len.min(slot.len())]) {
                return;
            }
        }
        self.udp.commit_send(dst, len);
    }
}

/// The connection's writer: sleeps until the socket is found full, then writes the outbox
/// with blocking writes until it is empty and hands the writing back. Ends when the
/// connection is done or a write fails.
pub fn write_backlog(stream: &TcpStream, outbox: &Outbox) {
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
                    out.seal();
                    if !out.bytes.is_empty() {
                        break;
                    }
                    // Written out: the others write directly again.
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
fn frame_rfc4571(buf: &mut Vec<u8>, datagram: &[u8]) -> bool {
    let Ok(len) = u16::try_from(datagram.len()) else { return false };
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(datagram);
    true
}

/// A turn's datagrams for TURN clients over UDP: framed into one buffer, sent after the turn
/// with one `sendmmsg` per TURN socket, without blocking (what the socket does not take is
/// dropped and counted, as the shard's own sends are).
#[derive(Default)]
struct DatagramBatch {
    bytes: Vec<u8>,
    /// The sockets this turn's datagrams go from (one TURN socket, in practice), with the
    /// counters their drops go to.
    sockets: Vec<(Arc<DatagramSocket>, Arc<Counters>)>,
    /// Each datagram: its socket's place in `sockets`, its destination and place in `bytes`.
    datagrams: Vec<(usize, SocketAddr, std::ops::Range<usize>)>,
}

impl DatagramBatch {
    /// Queues what `frame` appends, to `client` from `socket`; false when it appended nothing.
    fn queue(
        &mut self,
        socket: &Arc<DatagramSocket>,
        counters: &Arc<Counters>,
        client: SocketAddr,
        frame: impl FnOnce(&mut Vec<u8>) -> bool,
    ) -> bool {
        let start = self.bytes.len();
        if !frame(&mut self.bytes) {
            return false;
        }
        let index = match self.sockets.iter().position(|(s, _)| Arc::ptr_eq(s, socket)) {
            Some(i) => i,
            None => {
                self.sockets.push((socket.clone(), counters.clone()));
                self.sockets.len() - 1
            }
        };
        self.datagrams.push((index, client, start..self.bytes.len()));
        true
    }

    /// Sends the batch, counting what the sockets did not take as dropped.
    fn send(&mut self) {
        for (index, (socket, counters)) in self.sockets.iter().enumerate() {
            let mine = self.datagrams.iter().filter(|(i, _, _)| *i == index);
            let queued = mine.clone().count();
            let sent = crate::io::send_batch(
                &socket.socket,
                socket.v6,
                mine.map(|(_, dst, range)| (*dst, &self.bytes[range.clone()])),
            );
            let dropped = (queued - sent) as u64;
            if dropped > 0 {
                counters.tx_datagrams.fetch_sub(dropped, Ordering::Relaxed);
                counters.tx_dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        }
        self.sockets.clear();
        self.datagrams.clear();
        self.bytes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ice_tcp::IceTcp;
    use crate::io::{BackendChoice, IoOptions, UdpIo};
    use std::io::Read;
    use std::time::Duration;

    /// A client that does not read fills the socket: the shard's direct sends stop, the
    /// writer thread writes the backlog, the outbox's cap drops the excess, and what arrives
    /// is every kept datagram whole and in order.
    #[test]
    fn a_full_socket_hands_the_writing_to_the_writer_and_nothing_arrives_out_of_order() {
        let udp = UdpIo::bind("127.0.0.1:0".parse().unwrap(), BackendChoice::Mmsg, &IoOptions::default()).unwrap();
        let mut inbox = ShardInbox::new(udp.waker());
        let tcp = IceTcp::start("127.0.0.1:0".parse().unwrap(), 4, Duration::from_secs(30), inbox.sender()).unwrap();
        let mut client = TcpStream::connect(tcp.local_addr()).unwrap();
        let addr = client.local_addr().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while inbox.peers().map.is_empty() {
            inbox.drain(|_, _, _| {});
            assert!(std::time::Instant::now() < deadline, "the connection was not registered");
            std::thread::sleep(Duration::from_millis(10));
        }
        // 8 MB in turns of 50 datagrams while the client reads nothing.
        let sent = 7000u32;
        for i in 0..sent {
            let mut datagram = vec![(i % 251) as u8; 1200];
            datagram[..4].copy_from_slice(&i.to_be_bytes());
            assert!(inbox.peers().send(addr, &datagram));
            if i % 50 == 49 {
                inbox.peers().flush();
            }
        }
        inbox.peers().flush();
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
        let Sink::Stream { outbox, .. } = &inbox.peers().map[&addr].sink else { panic!("a TCP client") };
        while outbox.lock().backlog {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(inbox.peers().send(addr, &sent.to_be_bytes()));
        inbox.peers().flush();
        let mut frame = [0u8; 6];
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        client.read_exact(&mut frame).unwrap();
        assert_eq!(frame, [0, 4, 0, 0, 0x1b, 0x58]);
    }
}
