//! TURN over UDP, TCP and TLS, relaying into the router's own shards.
//!
//! A client that cannot reach the shards directly (a network that allows only TLS on 443, or
//! only UDP to TURN's port) allocates a relay here and binds it to a shard's address, as it
//! would with any TURN server. The relay never leaves the process: what the client sends
//! (ChannelData or Send indications) goes to the peer's shard as datagrams from the client's
//! relayed address ([`crate::stream_peers`]), and the shard wraps its replies to that address
//! as ChannelData (or Data indications): into the connection's outbox, written with one `send`
//! per turn and sealed by the connection's TLS session, or, over UDP, into a batch sent with
//! one `sendmmsg` per turn. No second socket, no system call per relayed datagram.
//! docs/decisions.md has the measurement that made this replace coturn.
//!
//! - [`allocation`]: one client's allocation, sans-IO (RFC 8656 requests, credentials).
//! - [`wire`]: the messages' bytes.
//! - `tcp`: the TCP and TLS listeners; per connection a reader (TLS records in, frames cut,
//!   answers) and a writer that only writes a backlog the socket refused.
//! - `udp`: the UDP socket and its one thread, which keeps the clients by address.
//!
//! The certificate is read again when its files change. Against misuse: nothing is kept for a
//! client before it authenticates (the nonce is derived from its address); the first message
//! on a connection must be STUN (on TLS, after a handshake within the idle timeout); a
//! connection silent for the idle timeout or an expired allocation is closed; clients are
//! capped; and the only peers are the shards.

pub mod allocation;
mod tcp;
mod udp;
pub mod wire;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info, warn};

use crate::stream_peers::{Connection, Counters, Framing, InboxSender, Sink, TcpStats};
use allocation::{Allocation, Credentials, Outcome, Peers};

/// How often the certificate files are checked for a change.
const CERT_POLL: Duration = Duration::from_secs(2);

/// What the router's TURN needs.
#[derive(Debug, Clone)]
pub struct TurnOptions {
    /// UDP (`turn:...?transport=udp`).
    pub udp: Option<SocketAddr>,
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
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    counters: Arc<Counters>,
}

impl Turn {
    pub fn stats(&self) -> TcpStats {
        self.counters.snapshot()
    }
}

/// What every TURN thread shares.
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
    let mut turn = Turn { udp: None, tcp: None, tls: None, counters };
    if let Some(bind) = opts.udp {
        turn.udp = Some(udp::start(bind, shared.clone())?);
        info!(local = ?turn.udp, relay_ip = %opts.relay_ip, "TURN listening on UDP");
    }
    for (bind, tls) in [(opts.tcp, None), (opts.tls.as_ref().map(|t| t.0), tls_config)] {
        let Some(bind) = bind else { continue };
        let is_tls = tls.is_some();
        let local = tcp::start(bind, tls, shared.clone())?;
        if is_tls {
            turn.tls = Some(local);
        } else {
            turn.tcp = Some(local);
        }
        info!(%local, tls = is_tls, relay_ip = %opts.relay_ip, "TURN listening");
    }
    Ok(turn)
}

/// The TLS configuration; its certificate is read again when the files change.
#[derive(Clone)]
pub(crate) struct CertWatch(Arc<rustls::ServerConfig>);

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

    pub(crate) fn config(&self) -> Arc<rustls::ServerConfig> {
        self.0.clone()
    }
}

/// One TURN client, whatever carries it: its allocation, its reserved relay port, and the
/// shards it relays to with the framing each wraps its datagrams in.
struct Client {
    addr: SocketAddr,
    number: u64,
    allocation: Allocation,
    /// Keeps the relayed port ours while the allocation lives.
    reservation: Option<UdpSocket>,
    registered: Vec<(usize, Arc<Framing>)>,
}

/// A client's message handled: go on, or close (why).
type Handled = Result<(), &'static str>;

impl Client {
    fn new(addr: SocketAddr, number: u64, shared: &Shared) -> Client {
        Client {
            addr,
            number,
            allocation: Allocation::new(addr, &shared.creds),
            reservation: None,
            registered: Vec::new(),
        }
    }

    /// Handles one message: answers go to `reply`; `sink` makes this client's [`Sink`] for a
    /// shard it starts relaying to.
    fn handle(
        &mut self,
        frame: wire::Frame<'_>,
        now: Instant,
        shared: &Shared,
        reply: &mut dyn FnMut(&[u8]),
        sink: &dyn Fn() -> Sink,
    ) -> Handled {
        if self.allocation.expired(now) {
            return Err("the allocation expired");
        }
        let (reservation, relay_ip) = (&mut self.reservation, shared.relay_ip);
        let mut reserve = || reserve_port(reservation, relay_ip);
        let mut ctx = allocation::Context {
            unix_now: util::unix_ms() / 1000,
            creds: &shared.creds,
            peers: &shared.peers,
            reserve: &mut reserve,
        };
        match self.allocation.handle(frame, now, &mut ctx) {
            Outcome::Nothing => Ok(()),
            Outcome::Reply(answer) => {
                reply(&answer);
                Ok(())
            }
            Outcome::ReplyAndClose(answer) => {
                reply(&answer);
                Err("the allocation was deleted")
            }
            Outcome::Relay { peer, data } => self.relay(peer, data, shared, sink),
            Outcome::Bound { reply: answer, peer, channel } => {
                reply(&answer);
                // After the answer: what the shard sends on the channel must not reach the
                // client before the client knows the channel.
                let framing = self.register(peer, shared, sink).ok_or("the router stopped")?;
                if let Framing::Turn { peer: registered, channel: c } = &*framing
                    && *registered == peer
                {
                    c.store(channel, Ordering::Relaxed);
                }
                Ok(())
            }
        }
    }

    /// Hands `datagram` to the shard at `peer`, registering this client there first.
    fn relay(&mut self, peer: SocketAddr, datagram: &[u8], shared: &Shared, sink: &dyn Fn() -> Sink) -> Handled {
        let (Some(shard), Some(relayed)) = (shared.peers.shard(peer), self.allocation.relayed()) else { return Ok(()) };
        self.register(peer, shared, sink).ok_or("the router stopped")?;
        shared.shards[shard].datagram(relayed, datagram.to_vec(), &shared.counters).map_err(|_| "the router stopped")
    }

    /// This client's framing at `peer`'s shard, registering it there the first time.
    fn register(&mut self, peer: SocketAddr, shared: &Shared, sink: &dyn Fn() -> Sink) -> Option<Arc<Framing>> {
        let shard = shared.peers.shard(peer)?;
        let relayed = self.allocation.relayed()?;
        if let Some((_, framing)) = self.registered.iter().find(|(s, _)| *s == shard) {
            return Some(framing.clone());
        }
        let framing = Arc::new(Framing::Turn { peer, channel: AtomicU16::new(0) });
        let conn = Connection {
            number: self.number,
            sink: sink(),
            framing: framing.clone(),
            counters: shared.counters.clone(),
        };
        shared.shards[shard].open(relayed, conn).ok()?;
        debug!(client = %self.addr, %relayed, %peer, shard, "TURN client relays to a shard");
        self.registered.push((shard, framing.clone()));
        Some(framing)
    }

    /// The client is gone: the shards forget it.
    fn close(&self, shared: &Shared) {
        let Some(relayed) = self.allocation.relayed() else { return };
        for (shard, _) in &self.registered {
            shared.shards[*shard].closed(relayed, self.number);
        }
    }
}

/// A port of the kernel's choosing, bound for as long as the allocation lives, so the relayed
/// address is this client's alone: the shards tell clients apart by address.
fn reserve_port(reservation: &mut Option<UdpSocket>, relay_ip: IpAddr) -> Option<SocketAddr> {
    let any: IpAddr = if relay_ip.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let socket = UdpSocket::bind((any, 0)).map_err(|e| warn!(error = %e, "no port left for a TURN relay")).ok()?;
    let port = socket.local_addr().ok()?.port();
    *reservation = Some(socket);
    Some(SocketAddr::new(relay_ip, port))
}
