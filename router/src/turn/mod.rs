//! TURN over TCP and TLS, relaying into the router's own shards.
//!
//! A client that reaches nothing but TCP (often only TLS on 443) allocates a relay here and
//! binds it to a shard's address, as it would with any TURN server. The relay never leaves
//! the process: what the client sends (ChannelData or Send indications) goes to the peer's
//! shard as datagrams from the client's relayed address ([`crate::stream_peers`]), and the
//! shard wraps its replies to that address as ChannelData (or Data indications) into the
//! connection's outbox, written with one `send` per turn, sealed by the connection's TLS
//! session: no second socket, no extra system call per datagram. docs/decisions.md has the
//! measurement that made this replace coturn's TCP and TLS listeners.
//!
//! Threads: one acceptor per listener, and per connection a reader (TLS records in, frames
//! cut, [`allocation::Allocation`] answers) and a writer that only writes a backlog the
//! socket refused. The certificate is read again when its files change.
//!
//! Against misuse: the first message must be STUN (a TLS listener first needs a handshake
//! within the idle timeout), a connection silent for the idle timeout or whose allocation
//! expired is closed, connections are capped, and the only peers are the shards.

pub mod allocation;
pub mod wire;

use std::io::Read;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info, warn};

use crate::stream_peers::{Connection, Counters, Framing, InboxSender, Outbox, TcpStats, write_backlog};
use allocation::{Allocation, Credentials, Outcome, Peers};

/// How often the certificate files are checked for a change.
const CERT_POLL: Duration = Duration::from_secs(2);
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// What the router's TURN needs.
#[derive(Debug, Clone)]
pub struct TurnOptions {
    /// Plain TCP (`turn:...?transport=tcp`).
    pub tcp: Option<SocketAddr>,
    /// TLS (`turns:`), with the certificate and key (PEM files).
    pub tls: Option<(SocketAddr, PathBuf, PathBuf)>,
    /// The "REST API for TURN" shared secret.
    pub secret: Vec<u8>,
    pub realm: String,
    /// The address relayed candidates carry (the router's announced one).
    pub relay_ip: IpAddr,
    pub max_connections: usize,
    pub idle: Duration,
}

/// One shard as a relay target: its addresses and its inbox.
#[derive(Debug, Clone)]
pub struct ShardTarget {
    pub addrs: Vec<SocketAddr>,
    pub inbox: InboxSender,
}

/// The running listeners.
#[derive(Debug)]
pub struct Turn {
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    counters: Arc<Counters>,
}

impl Turn {
    pub fn stats(&self) -> TcpStats {
        self.counters.snapshot()
    }
}

/// What every connection thread shares.
struct Shared {
    creds: Credentials,
    peers: Peers,
    shards: Vec<InboxSender>,
    relay_ip: IpAddr,
    counters: Arc<Counters>,
    max_connections: usize,
    idle: Duration,
}

/// Binds the listeners and starts accepting.
pub fn start(opts: TurnOptions, shards: Vec<ShardTarget>) -> std::io::Result<Turn> {
    let peers = Peers::new(shards.iter().enumerate().flat_map(|(i, s)| s.addrs.iter().map(move |a| (*a, i))));
    let counters = Arc::new(Counters::default());
    let shared = Arc::new(Shared {
        creds: Credentials::new(&opts.secret, &opts.realm),
        peers,
        shards: shards.into_iter().map(|s| s.inbox).collect(),
        relay_ip: opts.relay_ip,
        counters: counters.clone(),
        max_connections: opts.max_connections,
        idle: opts.idle,
    });
    let tls_config = match &opts.tls {
        None => None,
        Some((_, cert, key)) => Some(CertWatch::start(cert.clone(), key.clone())?),
    };
    let mut turn = Turn { tcp: None, tls: None, counters };
    for (bind, tls) in [(opts.tcp, None), (opts.tls.as_ref().map(|t| t.0), tls_config)] {
        let Some(bind) = bind else { continue };
        let listener = TcpListener::bind(bind)
            .map_err(|e| std::io::Error::new(e.kind(), format!("TURN listener on {bind}: {e}")))?;
        let local = listener.local_addr()?;
        if tls.is_some() {
            turn.tls = Some(local);
        } else {
            turn.tcp = Some(local);
        }
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("turn-accept-{}", local.port()))
            .spawn(move || accept(&listener, tls.as_ref(), &shared))?;
        info!(%local, tls = opts.tls.as_ref().is_some_and(|t| t.0 == bind), relay_ip = %opts.relay_ip, "TURN listening");
    }
    Ok(turn)
}

/// The TLS configuration; its certificate is read again when the files change.
#[derive(Clone)]
struct CertWatch(Arc<rustls::ServerConfig>);

impl CertWatch {
    fn start(cert: PathBuf, key: PathBuf) -> std::io::Result<CertWatch> {
        let loaded = https_server::ReloadableCert::load(cert.clone(), key.clone())
            .map_err(|e| std::io::Error::other(format!("TURN certificate: {e}")))?;
        let loaded = Arc::new(loaded);
        // No ALPN: TURN clients (browsers among them) offer none, and a server list without
        // the client's protocol would fail the handshake.
        let config = loaded.server_config_with_alpn(Vec::new());
        let stamp = move || [&cert, &key].map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        let mut seen: [Option<SystemTime>; 2] = stamp();
        std::thread::Builder::new().name("turn-cert".into()).spawn(move || {
            loop {
                std::thread::sleep(CERT_POLL);
                let now = stamp();
                if now == seen {
                    continue;
                }
                seen = now;
                match loaded.reload() {
                    Ok(fingerprint) => info!(%fingerprint, "TURN certificate reloaded"),
                    Err(e) => warn!(error = %e, "TURN certificate not reloaded; the previous one stays"),
                }
            }
        })?;
        Ok(CertWatch(config))
    }

    fn config(&self) -> Arc<rustls::ServerConfig> {
        self.0.clone()
    }
}

fn accept(listener: &TcpListener, tls: Option<&CertWatch>, shared: &Arc<Shared>) {
    loop {
        let (stream, addr) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "TURN accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let counters = &shared.counters;
        if counters.open.load(Ordering::Relaxed) >= shared.max_connections {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            debug!(%addr, max = shared.max_connections, "TURN connection refused: too many open");
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let session = match tls.map(|t| rustls::ServerConnection::new(t.config())).transpose() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "TURN TLS session not made");
                continue;
            }
        };
        let number = counters.accepted.fetch_add(1, Ordering::Relaxed);
        counters.open.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("turn-read".into())
            .stack_size(crate::ice_tcp::THREAD_STACK)
            .spawn(move || serve(stream, addr, number, session, &shared));
        if let Err(e) = spawned {
            counters.open.fetch_sub(1, Ordering::Relaxed);
            warn!(%addr, error = %e, "cannot start a TURN connection's thread");
        }
    }
}

/// One connection, from accept to close.
fn serve(stream: TcpStream, addr: SocketAddr, number: u64, tls: Option<rustls::ServerConnection>, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(shared.idle));
    let stream = Arc::new(stream);
    let outbox = Arc::new(Outbox::with_tls(tls));
    let mut conn = match TurnConnection::new(addr, number, stream.clone(), outbox.clone(), shared) {
        Ok(c) => c,
        Err(e) => {
            warn!(%addr, error = %e, "TURN connection refused: no relay port");
            let _ = stream.shutdown(Shutdown::Both);
            shared.counters.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    let writer = stream.clone();
    let writer_outbox = outbox.clone();
    let spawned = std::thread::Builder::new()
        .name("turn-write".into())
        .stack_size(crate::ice_tcp::THREAD_STACK)
        .spawn(move || write_backlog(&writer, &writer_outbox));
    let why = match spawned {
        Ok(_) => conn.run(),
        Err(_) => "no writer thread",
    };
    debug!(%addr, relayed = %conn.allocation.relayed(), why, "TURN connection closed");
    let _ = stream.shutdown(Shutdown::Both);
    outbox.close();
    for (shard, _) in &conn.registered {
        shared.shards[*shard].closed(conn.allocation.relayed(), number);
    }
    shared.counters.open.fetch_sub(1, Ordering::Relaxed);
}

struct TurnConnection<'s> {
    addr: SocketAddr,
    number: u64,
    stream: Arc<TcpStream>,
    outbox: Arc<Outbox>,
    shared: &'s Shared,
    allocation: Allocation,
    /// Keeps the relayed port ours while the connection lives.
    _reservation: UdpSocket,
    /// The shards this client relays to, with the framing each wraps its datagrams in.
    registered: Vec<(usize, Arc<Framing>)>,
}

impl<'s> TurnConnection<'s> {
    fn new(
        addr: SocketAddr,
        number: u64,
        stream: Arc<TcpStream>,
        outbox: Arc<Outbox>,
        shared: &'s Shared,
    ) -> std::io::Result<TurnConnection<'s>> {
        // A port of the kernel's choosing, bound for as long as the allocation lives, so the
        // relayed address is this client's alone: the shards tell clients apart by address.
        let any: IpAddr =
            if shared.relay_ip.is_ipv4() { [0, 0, 0, 0].into() } else { std::net::Ipv6Addr::UNSPECIFIED.into() };
        let reservation = UdpSocket::bind((any, 0))?;
        let relayed = SocketAddr::new(shared.relay_ip, reservation.local_addr()?.port());
        let mut nonce = [0u8; 12];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| std::io::Error::other("no randomness"))?;
        let nonce = nonce.iter().map(|b| format!("{b:02x}")).collect();
        Ok(TurnConnection {
            addr,
            number,
            stream,
            outbox,
            shared,
            allocation: Allocation::new(addr, relayed, nonce),
            _reservation: reservation,
            registered: Vec::new(),
        })
    }

    /// Reads until the connection ends; returns why it did.
    fn run(&mut self) -> &'static str {
        let mut raw = vec![0u8; READ_CHUNK];
        let mut plain: Vec<u8> = Vec::new();
        let mut first = true;
        loop {
            let n = match (&*self.stream).read(&mut raw) {
                Ok(0) => return "closed by the client",
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return crate::ice_tcp::ended(&e, &self.shared.counters),
            };
            if let Err(why) = self.unseal(&raw[..n], &mut plain) {
                return why;
            }
            let now = Instant::now();
            if self.allocation.expired(now) {
                return "the allocation expired";
            }
            let mut used = 0;
            loop {
                let frame = match wire::next_frame(&plain[used..]) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(wire::NotTurn) => {
                        if first {
                            self.shared.counters.closed_not_stun.fetch_add(1, Ordering::Relaxed);
                        }
                        return "neither STUN nor ChannelData";
                    }
                };
                let (frame, len) = frame;
                first = false;
                used += len;
                let outcome = self.allocation.handle(frame, now, unix_now(), &self.shared.creds, &self.shared.peers);
                match outcome {
                    Outcome::Nothing => {}
                    Outcome::Reply(reply) => self.reply(&reply),
                    Outcome::ReplyAndClose(reply) => {
                        self.reply(&reply);
                        return "the allocation was deleted";
                    }
                    Outcome::Relay { peer, data } => {
                        let datagram = data.to_vec();
                        if self.relay(peer, datagram).is_err() {
                            return "the router stopped";
                        }
                    }
                    Outcome::Bound { reply, peer, channel } => {
                        self.reply(&reply);
                        // After the answer: what the shard sends on the channel must not reach
                        // the client before the client knows the channel.
                        if let Some(framing) = self.register(peer) {
                            if let Framing::Turn { peer: registered, channel: c } = &*framing
                                && *registered == peer
                            {
                                c.store(channel, Ordering::Relaxed);
                            }
                        } else {
                            return "the router stopped";
                        }
                    }
                }
            }
            plain.drain(..used);
            if plain.len() > wire::MAX_FRAME + 4 {
                return "a message too long";
            }
        }
    }

    /// Turns what was read into plaintext: through TLS, or as it is.
    fn unseal(&self, raw: &[u8], plain: &mut Vec<u8>) -> Result<(), &'static str> {
        let mut out = self.outbox.lock();
        let Some(tls) = out.tls.as_mut() else {
            plain.extend_from_slice(raw);
            return Ok(());
        };
        let mut rest = raw;
        let mut failed = false;
        while !rest.is_empty() {
            if tls.read_tls(&mut rest).is_err() {
                failed = true;
                break;
            }
            if let Err(e) = tls.process_new_packets() {
                debug!(addr = %self.addr, error = %e, "TURN TLS failed");
                failed = true;
                break;
            }
            loop {
                let start = plain.len();
                plain.resize(start + READ_CHUNK, 0);
                match std::io::Read::read(&mut tls.reader(), &mut plain[start..]) {
                    Ok(n) => {
                        plain.truncate(start + n);
                        if n == 0 {
                            break;
                        }
                    }
                    Err(_) => {
                        plain.truncate(start);
                        break;
                    }
                }
            }
        }
        // Handshake messages, or the alert that ends a failed session.
        self.outbox.write_now(&mut out, &self.stream);
        if failed { Err("TLS failed") } else { Ok(()) }
    }

    fn reply(&self, reply: &[u8]) {
        let mut out = self.outbox.lock();
        out.frame_buffer().extend_from_slice(reply);
        self.outbox.write_now(&mut out, &self.stream);
    }

    /// Hands `datagram` to the shard at `peer`, registering this connection there first.
    fn relay(&mut self, peer: SocketAddr, datagram: Vec<u8>) -> Result<(), crate::stream_peers::ShardGone> {
        let Some(shard) = self.shared.peers.shard(peer) else { return Ok(()) };
        if self.register(peer).is_none() {
            return Err(crate::stream_peers::ShardGone);
        }
        self.shared.shards[shard].datagram(self.allocation.relayed(), datagram, &self.shared.counters)
    }

    /// This connection's framing at `peer`'s shard, registering it there the first time.
    fn register(&mut self, peer: SocketAddr) -> Option<Arc<Framing>> {
        let shard = self.shared.peers.shard(peer)?;
        if let Some((_, framing)) = self.registered.iter().find(|(s, _)| *s == shard) {
            return Some(framing.clone());
        }
        let framing = Arc::new(Framing::Turn { peer, channel: AtomicU16::new(0) });
        let conn = Connection {
            number: self.number,
            outbox: self.outbox.clone(),
            stream: self.stream.clone(),
            framing: framing.clone(),
            counters: self.shared.counters.clone(),
        };
        self.shared.shards[shard].open(self.allocation.relayed(), conn).ok()?;
        debug!(addr = %self.addr, relayed = %self.allocation.relayed(), %peer, shard, "TURN client relays to a shard");
        self.registered.push((shard, framing.clone()));
        Some(framing)
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
