//! TURN over TCP and TLS: an acceptor per listener and, per connection, a reader thread (TLS
//! records in, frames cut, answers written) and a writer thread that only writes a backlog
//! the socket refused ([`crate::stream_peers::write_backlog`]).

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::{CertWatch, Client, Shared, wire};
use crate::stream_peers::{Outbox, Sink, write_backlog};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Binds `bind` and starts accepting; TLS when `tls` is given. Returns the bound address.
pub(super) fn start(bind: SocketAddr, tls: Option<CertWatch>, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener =
        TcpListener::bind(bind).map_err(|e| std::io::Error::new(e.kind(), format!("TURN listener on {bind}: {e}")))?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name(format!("turn-accept-{}", local.port()))
        .spawn(move || accept(&listener, tls.as_ref(), &shared))?;
    Ok(local)
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
            debug!(%addr, max = shared.max_connections, "TURN connection refused: too many clients");
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
    let writer = stream.clone();
    let writer_outbox = outbox.clone();
    let spawned = std::thread::Builder::new()
        .name("turn-write".into())
        .stack_size(crate::ice_tcp::THREAD_STACK)
        .spawn(move || write_backlog(&writer, &writer_outbox));
    let mut conn = Conn { stream: stream.clone(), outbox: outbox.clone(), client: Client::new(addr, number, shared) };
    let why = match spawned {
        Ok(_) => conn.run(shared),
        Err(_) => "no writer thread",
    };
    debug!(%addr, relayed = ?conn.client.allocation.relayed(), why, "TURN connection closed");
    let _ = stream.shutdown(Shutdown::Both);
    outbox.close();
    conn.client.close(shared);
    shared.counters.open.fetch_sub(1, Ordering::Relaxed);
}

struct Conn {
    stream: Arc<TcpStream>,
    outbox: Arc<Outbox>,
    client: Client,
}

impl Conn {
    /// Reads until the connection ends; returns why it did.
    fn run(&mut self, shared: &Shared) -> &'static str {
        let mut raw = vec![0u8; READ_CHUNK];
        let mut plain: Vec<u8> = Vec::new();
        let mut first = true;
        let (stream, outbox) = (self.stream.clone(), self.outbox.clone());
        let sink = || Sink::Stream { outbox: outbox.clone(), stream: stream.clone() };
        let mut reply = |answer: &[u8]| {
            let mut out = outbox.lock();
            out.frame_buffer().extend_from_slice(answer);
            outbox.write_now(&mut out, &stream);
        };
        loop {
            let n = match (&*self.stream).read(&mut raw) {
                Ok(0) => return "closed by the client",
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return crate::ice_tcp::ended(&e, &shared.counters),
            };
            if let Err(why) = self.unseal(&raw[..n], &mut plain) {
                return why;
            }
            // A client opens with an Allocate: anything else (HTTP, a ChannelData with no channel
            // bound) is not a TURN client.
            if first && plain.first().is_some_and(|b| b >> 6 != 0) {
                shared.counters.closed_not_stun.fetch_add(1, Ordering::Relaxed);
                return "the first message is not STUN";
            }
            let now = Instant::now();
            let mut used = 0;
            loop {
                let (frame, len) = match wire::next_frame(&plain[used..]) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(wire::NotTurn) => {
                        if first {
                            shared.counters.closed_not_stun.fetch_add(1, Ordering::Relaxed);
                        }
                        return "neither STUN nor ChannelData";
                    }
                };
                first = false;
                used += len;
                if let Err(why) = self.client.handle(frame, now, shared, &mut reply, &sink) {
                    return why;
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
                debug!(addr = %self.client.addr, error = %e, "TURN TLS failed");
                failed = true;
                break;
            }
            // Plaintext until the session has none (WouldBlock) or the peer closed. Appended in
            // place: no zeroed scratch to copy from.
            let _ = tls.reader().read_to_end(plain);
        }
        // Handshake messages, or the alert that ends a failed session.
        self.outbox.write_now(&mut out, &self.stream);
        if failed { Err("TLS failed") } else { Ok(()) }
    }
}
