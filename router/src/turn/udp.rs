//! TURN over UDP: one socket, one thread that reads it and keeps the clients by address. The
//! shards send what they relay to a client from the same socket, each with one `sendmmsg`
//! per turn ([`crate::stream_peers`]'s datagram batch); this thread only answers requests.
//!
//! A client is kept only once its Allocate succeeded: the challenge's nonce comes from its
//! address, so spoofed or unauthenticated datagrams cost a reply and no memory. An allocation
//! that expires (not refreshed) or is deleted is forgotten, and the shards with it.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Client, Shared, wire};
use crate::stream_peers::{DatagramSocket, Sink};

/// How often expired allocations are looked for.
const SWEEP: Duration = Duration::from_secs(1);

/// Binds `bind` and starts the thread. Returns the bound address.
pub(super) fn start(bind: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let socket =
        UdpSocket::bind(bind).map_err(|e| std::io::Error::new(e.kind(), format!("TURN UDP socket on {bind}: {e}")))?;
    let local = socket.local_addr()?;
    socket.set_read_timeout(Some(SWEEP))?;
    let send = Arc::new(DatagramSocket { socket: socket.try_clone()?, v6: local.is_ipv6() });
    std::thread::Builder::new()
        .name(format!("turn-udp-{}", local.port()))
        .spawn(move || Server { socket, send, clients: HashMap::new() }.run(&shared))?;
    Ok(local)
}

struct Server {
    socket: UdpSocket,
    /// The same socket, for the shards' sends.
    send: Arc<DatagramSocket>,
    clients: HashMap<SocketAddr, Client>,
}

impl Server {
    fn run(mut self, shared: &Shared) {
        let mut buf = vec![0u8; wire::MAX_FRAME];
        let mut swept = Instant::now();
        loop {
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => self.datagram(from, &buf[..n], shared),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // An ICMP error for an earlier send, and the like: the socket goes on.
                Err(e) => {
                    debug!(error = %e, "TURN UDP receive failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let now = Instant::now();
            if now.duration_since(swept) >= SWEEP {
                swept = now;
                self.clients.retain(|_, client| {
                    let live = !client.allocation.expired(now);
                    if !live {
                        forget(client, "the allocation expired", shared);
                    }
                    live
                });
            }
        }
    }

    fn datagram(&mut self, from: SocketAddr, datagram: &[u8], shared: &Shared) {
        let Ok(frame) = wire::datagram_frame(datagram) else { return };
        let now = Instant::now();
        let socket = &self.socket;
        let mut reply = |answer: &[u8]| {
            if let Err(e) = socket.send_to(answer, from) {
                debug!(%from, error = %e, "TURN UDP answer not sent");
            }
        };
        let send = self.send.clone();
        let sink = move || Sink::Datagram { socket: send.clone(), client: from };
        if let Some(client) = self.clients.get_mut(&from) {
            if let Err(why) = client.handle(frame, now, shared, &mut reply, &sink)
                && let Some(client) = self.clients.remove(&from)
            {
                forget(&client, why, shared);
            }
            return;
        }
        // Not a client yet: only an Allocate can make one, and only below the cap.
        if matches!(frame, wire::Frame::ChannelData { .. }) {
            return;
        }
        let counters = &shared.counters;
        if counters.open.load(Ordering::Relaxed) >= shared.max_connections {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            debug!(%from, max = shared.max_connections, "TURN UDP request ignored: too many clients");
            return;
        }
        let mut client = Client::new(from, 0, shared);
        let _ = client.handle(frame, now, shared, &mut reply, &sink);
        if !client.allocation.is_granted() {
            return;
        }
        client.number = counters.accepted.fetch_add(1, Ordering::Relaxed);
        counters.open.fetch_add(1, Ordering::Relaxed);
        debug!(%from, relayed = ?client.allocation.relayed(), "TURN UDP allocation");
        self.clients.insert(from, client);
    }
}

/// A client is gone: its shards forget it.
fn forget(client: &Client, why: &str, shared: &Shared) {
    debug!(client = %client.addr, why, "TURN UDP client forgotten");
    client.close(shared);
    shared.counters.open.fetch_sub(1, Ordering::Relaxed);
}
