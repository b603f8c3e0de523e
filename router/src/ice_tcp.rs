//! ICE over TCP for one shard: RFC 6544 passive candidates, RFC 4571 framing.
//!
//! A client whose network drops UDP connects to the shard's TCP listener (same IP and port
//! number as its UDP socket) and sends what it would have sent as datagrams, each behind a
//! 16-bit big-endian length. To the engine a TCP client is just another source address: the
//! connection's reader thread hands the shard the deframed datagrams, and the shard's replies
//! go back over the connection ([`crate::stream_peers`], which also holds the writing).
//!
//! Reading lives outside the shard loop: an acceptor thread and, per connection, a reader
//! thread with blocking I/O.
//!
//! Against misuse: a connection's first frame must be a STUN message (else it is closed), a
//! connection silent for the consent timeout is closed, each shard keeps at most
//! `max_connections`, and a frame never exceeds the 64 KiB RFC 4571 allows.

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, warn};

use crate::stream_peers::{Connection, Counters, Framing, InboxSender, Outbox, Sink, TcpStats, write_backlog};

/// Stack of each connection's threads: they hold one frame buffer and little else.
pub const THREAD_STACK: usize = 128 * 1024;

/// One shard's ICE-TCP listener.
#[derive(Debug)]
pub struct IceTcp {
    local: SocketAddr,
    counters: Arc<Counters>,
}

impl IceTcp {
    /// Binds the listener at `bind` and starts accepting; the connections' datagrams go to
    /// `inbox`, the shard's. `idle` is the consent timeout.
    pub fn start(
        bind: SocketAddr,
        max_connections: usize,
        idle: Duration,
        inbox: InboxSender,
    ) -> std::io::Result<IceTcp> {
        let listener = TcpListener::bind(bind)?;
        let local = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let acceptor = Acceptor { listener, inbox, counters: counters.clone(), max_connections, idle };
        std::thread::Builder::new().name(format!("ice-tcp-{}", local.port())).spawn(move || acceptor.run())?;
        Ok(IceTcp { local, counters })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> TcpStats {
        self.counters.snapshot()
    }
}

struct Acceptor {
    listener: TcpListener,
    inbox: InboxSender,
    counters: Arc<Counters>,
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
            if self.counters.open.load(Ordering::Relaxed) >= self.max_connections {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                debug!(%addr, max = self.max_connections, "ICE-TCP connection refused: too many open");
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
            let number = self.counters.accepted.fetch_add(1, Ordering::Relaxed);
            self.counters.open.fetch_add(1, Ordering::Relaxed);
            if self.start_connection(stream, addr, number).is_err() {
                // The shard is gone (its receiver dropped): stop accepting.
                self.counters.open.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        }
    }

    fn start_connection(&self, stream: TcpStream, addr: SocketAddr, number: u64) -> Result<(), ()> {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(self.idle));
        let stream = Arc::new(stream);
        let outbox = Arc::new(Outbox::default());
        let conn = Connection {
            number,
            sink: Sink::Stream { outbox: outbox.clone(), stream: stream.clone() },
            framing: Arc::new(Framing::Rfc4571),
            counters: self.counters.clone(),
        };
        self.inbox.open(addr, conn).map_err(|_| ())?;
        debug!(%addr, "ICE-TCP connection open");
        let writer = stream.clone();
        let writer_outbox = outbox.clone();
        let spawned = std::thread::Builder::new()
            .name("ice-tcp-write".into())
            .stack_size(THREAD_STACK)
            .spawn(move || write_backlog(&writer, &writer_outbox));
        let reader =
            Reader { stream, outbox, addr, number, inbox: self.inbox.clone(), counters: self.counters.clone() };
        let spawned = spawned.and_then(|_| {
            std::thread::Builder::new().name("ice-tcp-read".into()).stack_size(THREAD_STACK).spawn(move || reader.run())
        });
        if let Err(e) = spawned {
            warn!(%addr, error = %e, "cannot start an ICE-TCP connection's threads");
        }
        Ok(())
    }
}

struct Reader {
    stream: Arc<TcpStream>,
    outbox: Arc<Outbox>,
    addr: SocketAddr,
    number: u64,
    inbox: InboxSender,
    counters: Arc<Counters>,
}

impl Reader {
    fn run(self) {
        let why = self.read_frames();
        debug!(addr = %self.addr, why, "ICE-TCP connection closed");
        let _ = self.stream.shutdown(Shutdown::Both);
        self.outbox.close();
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        self.inbox.closed(self.addr, self.number);
    }

    /// Reads frames until the connection ends; returns why it did.
    fn read_frames(&self) -> &'static str {
        let mut stream = &*self.stream;
        let mut first = true;
        loop {
            let mut len = [0u8; 2];
            if let Err(e) = stream.read_exact(&mut len) {
                return ended(&e, &self.counters);
            }
            let mut datagram = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if let Err(e) = stream.read_exact(&mut datagram) {
                return ended(&e, &self.counters);
            }
            if datagram.is_empty() {
                continue;
            }
            // RFC 7983: STUN starts with 0..=3. A client opens with a connectivity check; a
            // connection that starts otherwise is not ICE and gets nothing from the engine.
            if first && datagram[0] > 3 {
                self.counters.closed_not_stun.fetch_add(1, Ordering::Relaxed);
                return "the first frame is not STUN";
            }
            first = false;
            if self.inbox.datagram(self.addr, datagram, &self.counters).is_err() {
                return "the shard stopped";
            }
        }
    }
}

/// Why a read ended, counted when it was the idle timeout.
pub fn ended(e: &std::io::Error, counters: &Counters) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            counters.closed_idle.fetch_add(1, Ordering::Relaxed);
            "idle past the timeout"
        }
        std::io::ErrorKind::UnexpectedEof => "closed by the client",
        _ => "read failed",
    }
}
