//! A str0m [`Client`] on a real socket: UDP, a TCP connection to the router's ICE-TCP
//! candidate with RFC 4571 framing (a 16-bit length before each datagram), or UDP through a
//! TURN server's relay ([`crate::turn`]). [`Peer::pump`] moves what arrived into the client and
//! what the client wants to send onto the wire.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use str0m::net::Protocol;

use crate::client::{Client, Publication};
use crate::media::{OpusStream, Vp8Stream};

/// How a peer reaches the router.
#[derive(Debug)]
enum Link {
    Udp(UdpSocket),
    /// The connection and the bytes read but not yet a whole frame.
    Tcp(TcpStream, Vec<u8>),
    /// A UDP socket whose every datagram goes through a TURN relay to the router.
    Relayed(UdpSocket, crate::turn::Allocation),
    /// A TCP or TLS connection to a TURN server relaying to the router.
    RelayedStream(Box<crate::turn::TurnStream>, crate::turn::Allocation),
}

/// A client and its socket.
#[derive(Debug)]
pub struct Peer {
    pub client: Client,
    link: Link,
}

impl Peer {
    /// A client on its own UDP socket on 127.0.0.1.
    pub fn udp() -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        socket.set_nonblocking(true).expect("non-blocking");
        Peer { client: Client::new(socket.local_addr().expect("bound"), Instant::now()), link: Link::Udp(socket) }
    }

    /// A client whose only path is a TCP connection to `router` (an ICE-TCP candidate).
    pub fn tcp(router: SocketAddr) -> Peer {
        let stream = TcpStream::connect(router).expect("connect to the ICE-TCP candidate");
        stream.set_nonblocking(true).expect("non-blocking");
        stream.set_nodelay(true).expect("no delay");
        let client = Client::over(Protocol::Tcp, stream.local_addr().expect("connected"), Instant::now());
        Peer { client, link: Link::Tcp(stream, Vec::new()) }
    }

    /// A client whose datagrams go through a relay allocated on the TURN server `turn` (with
    /// a long-term credential), its channel bound to `router`: the router sees the relay's
    /// address.
    pub fn relayed(turn: SocketAddr, username: &str, password: &str, router: SocketAddr) -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        let allocation = crate::turn::allocate(&socket, turn, username, password, router)
            .unwrap_or_else(|e| panic!("TURN allocation on {turn}: {e}"));
        socket.set_nonblocking(true).expect("non-blocking");
        let client = Client::new(socket.local_addr().expect("bound"), Instant::now());
        Peer { client, link: Link::Relayed(socket, allocation) }
    }

    /// As [`Peer::relayed`], reaching the TURN server over TCP, or TLS when `tls`.
    pub fn relayed_over_stream(
        turn: SocketAddr,
        tls: bool,
        username: &str,
        password: &str,
        router: SocketAddr,
    ) -> Peer {
        let mut stream = crate::turn::TurnStream::connect(turn, tls).unwrap_or_else(|e| panic!("TURN at {turn}: {e}"));
        let allocation = crate::turn::allocate_on_stream(&mut stream, username, password, router)
            .unwrap_or_else(|e| panic!("TURN allocation on {turn}: {e}"));
        // The client's own address is its relayed one, as the router sees it.
        let client = Client::new(allocation.relayed, Instant::now());
        Peer { client, link: Link::RelayedStream(Box::new(stream), allocation) }
    }

    /// Receives what is waiting, then sends what the client has to send.
    pub fn pump(&mut self) {
        match &mut self.link {
            Link::Udp(socket) => {
                let mut buf = [0u8; 2048];
                while let Ok((n, src)) = socket.recv_from(&mut buf) {
                    self.client.handle(Instant::now(), src, &buf[..n]);
                }
                for (dst, data) in self.client.poll(Instant::now()) {
                    let _ = socket.send_to(&data, dst);
                }
            }
            Link::Relayed(socket, relay) => {
                let mut buf = [0u8; 2048];
                while let Ok((n, src)) = socket.recv_from(&mut buf) {
                    // Data from the router arrives as ChannelData; the server's own messages
                    // (none are asked for after the setup) are ignored.
                    if let Some(data) = crate::turn::from_channel(&buf[..n]).filter(|_| src == relay.server) {
                        self.client.handle(Instant::now(), relay.peer, data);
                    }
                }
                for (dst, data) in self.client.poll(Instant::now()) {
                    assert_eq!(dst, relay.peer, "a relayed client sends only to its one peer");
                    let _ = socket.send_to(&crate::turn::channel_data(&data), relay.server);
                }
            }
            Link::RelayedStream(stream, relay) => {
                for msg in stream.receive() {
                    // ChannelData from the router; Data indications before the channel was
                    // bound; nothing else is asked for.
                    if let Some(data) = crate::turn::from_channel(&msg) {
                        self.client.handle(Instant::now(), relay.peer, data);
                    } else if let Some(data) = crate::turn::from_data_indication(&msg) {
                        self.client.handle(Instant::now(), relay.peer, &data);
                    }
                }
                for (dst, data) in self.client.poll(Instant::now()) {
                    assert_eq!(dst, relay.peer, "a relayed client sends only to its one peer");
                    stream.send_channel_data(&data);
                }
            }
            Link::Tcp(stream, pending) => {
                let router = stream.peer_addr().expect("connected");
                let mut buf = [0u8; 65536];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("ICE-TCP read: {e}"),
                    }
                }
                while pending.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
                    if pending.len() < 2 + len {
                        break;
                    }
                    let frame: Vec<u8> = pending.drain(..2 + len).skip(2).collect();
                    self.client.handle(Instant::now(), router, &frame);
                }
                for (dst, data) in self.client.poll(Instant::now()) {
                    assert_eq!(dst, router, "a TCP client sends only on its connection");
                    let mut framed = (data.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&data);
                    write_all_nonblocking(stream, &framed, "ICE-TCP");
                }
            }
        }
    }
}

/// Writes all of `data` to a non-blocking stream, waiting out a full socket for up to 2 s;
/// `what` names the connection in a failure.
pub(crate) fn write_all_nonblocking(stream: &mut TcpStream, mut data: &[u8], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !data.is_empty() {
        match stream.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the other end stopped reading the {what} connection");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{what} write: {e}"),
        }
    }
}

/// A publisher's media in real time: Opus every 20 ms, VP8 at 30 fps, a keyframe first and
/// one for each keyframe request, as a browser answers them.
#[derive(Debug)]
pub struct LiveMedia {
    pub opus: OpusStream,
    pub vp8: Vp8Stream,
    next_audio: Instant,
    next_video: Instant,
}

impl LiveMedia {
    pub fn new(opus: OpusStream, vp8: Vp8Stream, start: Instant) -> LiveMedia {
        LiveMedia { opus, vp8, next_audio: start, next_video: start }
    }

    /// Sends through `client` the packets due at `now`.
    pub fn send_due(&mut self, client: &mut Client, audio: &Publication, video: &Publication, now: Instant) {
        if now >= self.next_audio {
            self.next_audio += Duration::from_millis(20);
            let p = self.opus.next_packet();
            client.send(audio, now, p.seq, p.ts, p.marker, &p.payload);
        }
        if now >= self.next_video {
            self.next_video += Duration::from_micros(33_333);
            if std::mem::take(&mut client.keyframe_requests) > 0 {
                self.vp8.force_keyframe();
            }
            for p in self.vp8.next_frame() {
                client.send(video, now, p.seq, p.ts, p.marker, &p.payload);
            }
        }
    }
}

/// Pumps every peer for `d`, a millisecond apart.
pub fn pump_all(peers: &mut [Peer], d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        for p in peers.iter_mut() {
            p.pump();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
